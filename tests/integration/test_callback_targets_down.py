"""Callback targets down, through PipelineCallbacks with the real HTTP clients: the local GitHub API answering
500 and an Azure DevOps plan endpoint that accepts connections and never answers. Each call gives up after its
bounded attempts, each attempt after its read timeout, and the result names the failure without the job's
AuthToken, the installation token or the App's JWT."""

from __future__ import annotations

import time

import pytest

from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.services import build_pipeline_callbacks
from gatekeeper.settings import Settings
from tests.integration.test_integrations_callbacks import (
    ADO_TOKEN,
    APP_ID,
    WEBHOOK_SECRET,
    app_key,
    handles,
    key_dir,
    servers,
)
from tests.support.outage import SilentServer

__all__ = ["app_key", "key_dir", "servers"]  # fixtures shared with the callback tests

READ_TIMEOUT = 0.3
ATTEMPTS = 3


@pytest.fixture
def bounded(servers, key_dir):
    """The product's callbacks with a short read timeout and no real sleeping between attempts."""
    github, _, _ = servers
    env = {
        "GATEKEEPER_GITHUB_APP_ID": APP_ID,
        "GATEKEEPER_GITHUB_API_URL": github.api_url,
        "GATEKEEPER_KEY_MODE": "local",
        "GATEKEEPER_LOCAL_KEY_DIR": str(key_dir),
    }
    policy = RetryPolicy(
        max_attempts=ATTEMPTS,
        initial_wait=0.01,
        max_wait=0.02,
        jitter=0,
        read_timeout=READ_TIMEOUT,
        sleep=lambda s: None,
    )
    return build_pipeline_callbacks(
        Settings.from_environ(env),
        policy=policy,
        allow_loopback_http=True,
        webhook_secret=lambda tenant: WEBHOOK_SECRET if tenant == "contoso" else b"",
    )


def test_github_answering_500_is_retried_a_bounded_number_of_times_and_reported_without_tokens(bounded, servers):
    github, _, _ = servers
    github.fail_next(100, 500, path_contains="deployment_protection_rule")
    result = bounded.complete("contoso", handles(servers)["github"], True, "Approved.", {"instance_id": "gate-9"})
    assert not result.ok and result.target == "github" and result.status_code == 500
    assert len(github.requests_to("deployment_protection_rule", "POST")) == ATTEMPTS
    tokens = {r.headers.get("authorization", "") for r in github.requests} - {""}
    assert tokens and not any(token.split()[-1] in result.detail for token in tokens)


def test_an_azure_devops_plan_that_never_answers_is_given_up_after_bounded_attempts(bounded, servers):
    with SilentServer() as silent:
        handle = dict(handles(servers)["azure-devops"])
        handle["plan_url"] = f"http://127.0.0.1:{silent.port}/"
        started = time.monotonic()
        result = bounded.complete("contoso", handle, True, "Approved.", {"instance_id": "gate-9"})
        elapsed = time.monotonic() - started
        assert silent.accepted == ATTEMPTS  # each attempt timed out on its own connection
    assert not result.ok and result.target == "azure-devops" and result.status_code is None
    assert elapsed < ATTEMPTS * (READ_TIMEOUT + 1.0), f"gave up after {elapsed:.2f} s"
    assert ADO_TOKEN not in result.detail
