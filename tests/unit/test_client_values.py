"""The client's pure parts: the policy vocabulary it checks, durations, derived idempotency keys, the CI run
it reads from the environment, and the GitHub OIDC token cache."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.client import ACTION_KINDS, InvalidRequest, derive_idempotency_key, format_duration, parse_duration
from gatekeeper.client.api import KEY_PATTERN, MAX_TIMEOUT_SECONDS
from gatekeeper.client.environment import ClientEnvironment
from gatekeeper.client.oidc import GitHubOidcTokenProvider, audience_url, token_expiry
from gatekeeper.events.model import ActionKind
from tests.support.actions_contract_double import GitHubIdTokenEndpoint, unsigned_jwt


def test_the_client_checks_the_policy_vocabulary_exactly() -> None:
    assert set(ACTION_KINDS) == {kind.value for kind in ActionKind}


@settings(derandomize=True, max_examples=200)
@given(st.integers(min_value=1, max_value=MAX_TIMEOUT_SECONDS))
def test_a_duration_survives_formatting(seconds: int) -> None:
    text = format_duration(seconds)
    assert re.fullmatch(r"PT(\d+H)?(\d+M)?(\d+S)?", text)
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT30M", 1800), ("pt1h", 3600), ("P1DT2H", 93600), ("P7D", 604800), ("90s", 90), ("30m", 1800), ("2h", 7200)],
)
def test_durations_in_both_forms(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@settings(derandomize=True, max_examples=300)
@given(st.text(max_size=40))
def test_no_text_gets_through_except_a_bounded_duration(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except InvalidRequest as exc:
        assert exc.field == "timeout"
    else:
        assert 1 <= seconds <= MAX_TIMEOUT_SECONDS


@pytest.mark.parametrize("bad", ["P", "PT", "P8D", "PT0S", "0s", "P1Y", "-PT1M", "PT1.5M", "1w", True, 0, 10**9])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(InvalidRequest):
        parse_duration(bad)  # type: ignore[arg-type]


@settings(derandomize=True, max_examples=100)
@given(
    command=st.one_of(st.text(min_size=1, max_size=50).filter(str.strip), st.lists(st.text(min_size=1), min_size=1)),
    run=st.text(max_size=30),
)
def test_a_derived_key_is_valid_and_stable(command: str | list[str], run: str) -> None:
    if isinstance(command, list) and not command[0].strip():
        return
    if "\x00" in (command if isinstance(command, str) else "".join(command)):
        return
    key = derive_idempotency_key(command, "deploy", "production", None, run)
    assert KEY_PATTERN.fullmatch(key)
    assert key == derive_idempotency_key(command, "deploy", "production", None, run)
    assert key != derive_idempotency_key(command, "deploy", "staging", None, run)
    assert key != derive_idempotency_key(command, "deploy", "production", None, run + "x")


def test_a_string_and_an_argv_are_different_commands() -> None:
    assert derive_idempotency_key("a b", "deploy", "p", None, "r") != derive_idempotency_key(
        ["a", "b"], "deploy", "p", None, "r"
    )


def test_the_run_and_context_of_an_azure_pipelines_job() -> None:
    env = ClientEnvironment.from_environ(
        {
            "TF_BUILD": "True",
            "SYSTEM_COLLECTIONURI": "https://dev.azure.com/contoso/",
            "SYSTEM_TEAMPROJECT": "infra",
            "BUILD_BUILDID": "77",
            "SYSTEM_JOBID": "job-guid",
            "SYSTEM_JOBATTEMPT": "2",
            "BUILD_REPOSITORY_NAME": "infra",
            "BUILD_SOURCEBRANCH": "refs/heads/main",
            "BUILD_SOURCEVERSION": "abc123",
            "GATEKEEPER_API_KEY": "secret-key-value",
            "UNRELATED": "x",
        }
    )
    assert env.on_azure_pipelines and not env.on_github
    assert env.run() == "ado:https://dev.azure.com/contoso/:infra:77:job-guid:2"
    assert env.context()["run_url"] == "https://dev.azure.com/contoso/infra/_build/results?buildId=77"
    assert "UNRELATED" not in env.values and "secret-key-value" not in repr(env)
    assert ClientEnvironment.from_environ({}).run() is None and ClientEnvironment.from_environ({}).context() == {}


def test_the_audience_is_added_to_the_request_url_once() -> None:
    url = audience_url("https://runner/idtoken?api-version=2.0&audience=old", "api://gk x")
    assert url == "https://runner/idtoken?api-version=2.0&audience=api%3A%2F%2Fgk+x"


def test_token_expiry_reads_exp_and_tolerates_garbage() -> None:
    assert token_expiry(unsigned_jwt({"exp": 1700000000})) == 1700000000
    for bad in ("", "a.b", "a.!!!.c", unsigned_jwt({"exp": "soon"}), unsigned_jwt({"exp": True})):
        assert token_expiry(bad) is None


def test_the_oidc_token_is_cached_and_renewed_a_minute_before_it_expires() -> None:
    now = [time.time()]
    minted: list[str] = []

    def mint(audience: str) -> str:
        minted.append(unsigned_jwt({"aud": audience, "exp": int(now[0]) + 300, "n": len(minted)}))
        return minted[-1]

    with GitHubIdTokenEndpoint("req-token", mint) as endpoint:
        provider = GitHubOidcTokenProvider(endpoint.request_url, "req-token", "api://gk", clock=lambda: now[0])
        first = provider()
        assert provider() == first and provider.fetches == 1
        now[0] += 239
        assert provider() == first
        now[0] += 2  # under a minute left
        assert provider() != first and provider.fetches == 2
        provider.invalidate()
        provider()
        assert provider.fetches == 3
        wrong = GitHubOidcTokenProvider(endpoint.request_url, "other", "api://gk")
        with pytest.raises(Exception, match="HTTP 401"):
            wrong()
    assert "req-token" not in repr(provider)


def test_no_oidc_permission_is_bad_input_naming_the_credentials() -> None:
    with pytest.raises(InvalidRequest) as caught:
        GitHubOidcTokenProvider("", "", "api://gk")
    assert caught.value.field == "credentials" and "id-token: write" in caught.value.detail


def test_the_default_command_never_shows_argument_values() -> None:
    from gatekeeper.client.guard import default_command

    def export(table: str, password: str) -> None: ...

    shown = default_command(export, ("customers",), {"password": "s3cret-value"})
    assert shown.endswith("export(<1 positional>, password=...)")
    assert "s3cret" not in shown and "customers" not in shown


def test_the_client_imports_nothing_heavy() -> None:
    """An agent or build step loads `gatekeeper.client` quickly: requests (tenacity on first retry), no Azure
    SDK, no pydantic, no JWT or crypto library."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    probe = (
        "import json, sys, gatekeeper.client, gatekeeper.client.oidc, gatekeeper.client.environment\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert "requests" in loaded
    assert not loaded & {"azure", "pydantic", "msgraph", "jwt", "cryptography", "yaml", "tenacity"}
