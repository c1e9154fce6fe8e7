"""The commit-time lookup (`GET /repos/{owner}/{repo}/commits/{sha}`) against the local GitHub server: real
requests, the App's installation token, one bounded attempt, and every failure turned into "no commit time"
by the gate step without a secret in the log."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.github import LocalGitHubServer
from gatekeeper.events.model import EventKind, EventSource, GitHubCallback, PipelineEvent, WebhookCallback
from gatekeeper.gates.commit_time import deployed_commit_time
from gatekeeper.integrations.github_app import GitHubApp, rsa_jwk
from gatekeeper.integrations.github_commits import LOOKUP_POLICY, CommitLookupFailed, GitHubCommitTimes
from gatekeeper.integrations.retry import RetryPolicy

APP_ID = "424242"
INSTALLATION = 77
SHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
FAST = RetryPolicy(max_attempts=1, connect_timeout=1.0, read_timeout=0.5, initial_wait=0, max_wait=0)


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def github(app_key):
    with LocalGitHubServer(APP_ID, app_key.public_key(), installation_id=INSTALLATION) as server:
        yield server


def lookup(app_key: rsa.RSAPrivateKey, github: LocalGitHubServer, policy: RetryPolicy = FAST) -> GitHubCommitTimes:
    app = GitHubApp(
        APP_ID,
        CryptographyClient.from_jwk(rsa_jwk(app_key)),
        github.api_url,
        policy=policy,
        allow_loopback_http=True,
        installations=lambda tenant: {INSTALLATION} if tenant == "contoso" else set(),
    )
    return GitHubCommitTimes(app, clock=lambda: NOW, policy=policy)


def handle(**over: Any) -> GitHubCallback:
    values: dict[str, Any] = dict(
        owner="octo-org", repo="octo-repo", run_id=9001, environment_name="production", installation_id=INSTALLATION
    )
    return GitHubCallback(**(values | over))


def gate_event(**over: Any) -> PipelineEvent:
    values: dict[str, Any] = dict(
        tenant_id="contoso",
        source=EventSource.GITHUB,
        kind=EventKind.GATE_REQUEST,
        environment="production",
        repository="octo-org/octo-repo",
        commit=SHA,
        run_id="9001/deployments/1",
        callback=handle(),
    )
    return PipelineEvent(**(values | over))


def test_the_lookup_reads_the_committer_date_as_the_tenants_installation(app_key, github):
    github.add_commit(SHA, "2026-12-04T22:10:00+01:00", "2026-12-01T08:00:00Z")
    assert lookup(app_key, github).commit_time("contoso", handle(), SHA) == datetime(2026, 12, 4, 21, 10, tzinfo=UTC)
    (call,) = github.requests_to(f"/repos/octo-org/octo-repo/commits/{SHA}", "GET")
    assert call.headers["authorization"].removeprefix("Bearer ") in github.tokens  # an installation token
    assert call.query == {"per_page": ["1"]} and call.status == 200


def test_without_a_committer_the_author_date_is_the_commit_time(app_key, github):
    github.commits[SHA] = (None, "2026-12-01T08:00:00Z")
    assert lookup(app_key, github).commit_time("contoso", handle(), SHA) == datetime(2026, 12, 1, 8, tzinfo=UTC)


def test_an_installation_not_registered_for_the_tenant_asks_nothing(app_key, github):
    github.add_commit(SHA, "2026-12-04T21:10:00Z")
    with pytest.raises(CommitLookupFailed, match="not registered for tenant fabrikam"):
        lookup(app_key, github).commit_time("fabrikam", handle(), SHA)
    assert github.requests_to("/commits/") == [] and github.requests_to("/access_tokens") == []


def test_what_is_not_a_github_commit_is_not_looked_up(app_key, github):
    times = lookup(app_key, github)
    assert times.commit_time("contoso", handle(), "main; rm -rf /") is None
    assert times.commit_time("contoso", WebhookCallback(url="https://ci.contoso.com/hook"), SHA) is None
    assert github.requests == []


@pytest.mark.parametrize("status", [500, 404, 403])
def test_a_failed_lookup_is_one_attempt_and_says_why_without_the_token(app_key, github, status: int):
    github.add_commit(SHA, "2026-12-04T21:10:00Z")
    github.fail_next(3, status, path_contains="/commits/")
    with pytest.raises(CommitLookupFailed) as caught:
        lookup(app_key, github, LOOKUP_POLICY).commit_time("contoso", handle(), SHA)
    assert f"HTTP {status}" in str(caught.value) and "after 1 attempt" in str(caught.value)
    assert len(github.requests_to("/commits/")) == 1  # no retries of its own
    assert not any(token in str(caught.value) for token in github.tokens)


def test_an_unknown_commit_is_no_commit_time(app_key, github):
    with pytest.raises(CommitLookupFailed, match="No commit found"):
        lookup(app_key, github).commit_time("contoso", handle(), "0" * 40)


def test_a_stalled_github_costs_the_read_timeout_not_more(app_key, github):
    github.add_commit(SHA, "2026-12-04T21:10:00Z")
    github.commit_delay_seconds = 2.0
    started = time.monotonic()
    with pytest.raises(CommitLookupFailed, match="ReadTimeout"):
        lookup(app_key, github).commit_time("contoso", handle(), SHA)
    assert time.monotonic() - started < 1.8  # read timeout 0.5 s, one attempt


def test_a_huge_answer_is_not_read_past_its_bound(app_key, github):
    github.answer_huge(1, 64 * 1024 * 1024, path_contains="/commits/")  # an answer that never ends
    with pytest.raises(CommitLookupFailed, match="bound"):
        lookup(app_key, github, LOOKUP_POLICY).commit_time("contoso", handle(), SHA)
    deadline = time.monotonic() + 10  # the server thread notices the hang-up a moment later
    while not github.huge_written and time.monotonic() < deadline:
        time.sleep(0.02)
    assert github.huge_written[0] < 16 * 1024 * 1024  # the client hung up near its bound (socket buffers aside)


# ----- the gate step: best effort ----------------------------------------------------------------------


def test_the_gate_step_prefers_the_events_own_commit_time_and_asks_nobody(app_key, github):
    own = datetime(2026, 12, 3, tzinfo=UTC)
    times = lookup(app_key, github)
    assert deployed_commit_time(times, "contoso", gate_event(commit_time=own)) == own
    assert github.requests == []


def test_the_gate_step_looks_a_github_gate_up(app_key, github):
    github.add_commit(SHA, "2026-12-04T21:10:00Z")
    times = lookup(app_key, github)
    found = deployed_commit_time(times, "contoso", gate_event())
    assert found == datetime(2026, 12, 4, 21, 10, tzinfo=UTC)
    assert deployed_commit_time(None, "contoso", gate_event()) is None


def test_any_failure_of_the_lookup_leaves_the_gate_without_a_commit_time_logged_without_secrets(
    app_key, github, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    github.add_commit(SHA, "2026-12-04T21:10:00Z")
    github.fail_next(1, 500, path_contains="/commits/", body={"message": "boom"})
    times = lookup(app_key, github)
    assert deployed_commit_time(times, "contoso", gate_event()) is None
    (line,) = [r.getMessage() for r in caplog.records if r.name == "gatekeeper.gates.commit_time"]
    assert "no commit time for a gate of contoso" in line and "HTTP 500" in line
    tokens = list(github.tokens)
    assert tokens and not any(t in r.getMessage() for r in caplog.records for t in tokens)

    class Broken:
        def commit_time(self, *_: Any) -> datetime | None:
            raise RuntimeError("https://user:hunter2@example.invalid")

    assert deployed_commit_time(Broken(), "contoso", gate_event()) is None
    assert "hunter2" not in caplog.text and "RuntimeError" in caplog.text


def test_a_lookup_that_does_not_return_in_time_is_given_up_on(caplog: pytest.LogCaptureFixture):
    """The whole lookup (token, Key Vault signing, the GET) is bounded, not only its HTTP calls."""
    release = threading.Event()

    class Stalled:
        def commit_time(self, *_: Any) -> datetime | None:
            release.wait(5)
            return NOW

    started = time.monotonic()
    try:
        assert deployed_commit_time(Stalled(), "contoso", gate_event(), deadline=0.3) is None
        assert time.monotonic() - started < 1.5
    finally:
        release.set()
    assert "no answer within 0.3 s" in caplog.text


def test_an_app_that_cannot_be_set_up_means_no_lookup_not_a_failed_gate(tmp_path, caplog: pytest.LogCaptureFixture):
    """The composition root: GATEKEEPER_GITHUB_APP_ID set but the App's key missing (local key mode)."""
    from gatekeeper.services import build_services
    from gatekeeper.settings import KeyMode, Settings

    settings = Settings(github_app_id=APP_ID, key_mode=KeyMode.LOCAL, local_key_dir=str(tmp_path))
    assert build_services(settings).commit_lookup is None
    assert "the GitHub App could not be set up (FileNotFoundError)" in caplog.text
    assert build_services(Settings()).commit_lookup is None  # no App at all: nothing to ask
