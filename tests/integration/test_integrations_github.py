"""GitHub App callbacks against the local GitHub stand-in: real requests, real PyJWT verification, the App
key used through the real `CryptographyClient.from_jwk`, request bodies validated against the published
schema of `actions/review-custom-gates-for-run`."""

from __future__ import annotations

import logging
import time

import jsonschema
import jwt
import pytest
from azure.keyvault.keys import JsonWebKey
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.github import LocalGitHubServer, review_validator
from gatekeeper.events.model import GitHubCallback
from gatekeeper.integrations.github_app import (
    MAX_COMMENT_CHARS,
    GitHubApp,
    InMemoryCommentBudget,
    rsa_jwk,
    truncate_comment,
)
from gatekeeper.integrations.retry import RetryPolicy
from tests.support.adapter_logs import adapter_lines

APP_ID = "424242"
SCHEMA = "github/review-custom-gates-for-run.request-schema.json"


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def github(app_key, shared_fixture):
    server = LocalGitHubServer(APP_ID, app_key.public_key(), installation_id=77, review_schema=shared_fixture(SCHEMA))
    with server:
        yield server


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def app(app_key, github, waits) -> GitHubApp:
    signer = CryptographyClient.from_jwk(rsa_jwk(app_key))
    policy = RetryPolicy(max_attempts=5, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=waits.append)
    return GitHubApp(APP_ID, signer, github.api_url, policy=policy, allow_loopback_http=True)


def handle(github: LocalGitHubServer, **overrides) -> GitHubCallback:
    values = dict(owner="contoso", repo="web", run_id=9001, environment_name="production", installation_id=77)
    values.update(overrides)
    return GitHubCallback(**values)


def test_app_jwt_is_rs256_signed_by_the_key_and_carries_the_documented_claims(app, app_key):
    token = app.app_jwt()
    now = time.time()
    claims = jwt.decode(token, app_key.public_key(), algorithms=["RS256"])
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert claims["iss"] == APP_ID
    assert claims["iat"] <= now - 59  # back-dated against clock drift
    assert 0 < claims["exp"] - now <= 600  # at most ten minutes ahead
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.public_key(), algorithms=["RS256"])


def test_approval_posts_a_schema_valid_review_with_an_installation_token(app, github, shared_fixture):
    result = app.decide(handle(github), approved=True, comment="All checks passed; approved by alice.")

    assert result.ok and result.status_code == 204 and result.attempts == 1
    assert result.target == "github" and result.action == "complete"
    [review] = github.decisions()
    body = review["body"]
    assert body == {
        "environment_name": "production",
        "state": "approved",
        "comment": "All checks passed; approved by alice.",
    }
    assert (review["owner"], review["repo"], review["run_id"]) == ("contoso", "web", 9001)
    review_validator(shared_fixture(SCHEMA)).validate(body)  # the wire format, proven against the spec
    [call] = github.requests_to("/deployment_protection_rule")
    assert call.headers["authorization"].removeprefix("Bearer ") in github.tokens
    assert call.headers["x-github-api-version"] == "2022-11-28"


def test_rejection_and_the_published_example_validate(app, github, shared_fixture):
    result = app.decide(handle(github), approved=False, comment="Change window closed.")
    assert result.ok
    assert github.decisions()[0]["body"]["state"] == "rejected"
    document = shared_fixture(SCHEMA)
    example = document["requestBody"]["content"]["application/json"]["examples"]["default"]["value"]
    review_validator(document).validate(example)
    with pytest.raises(jsonschema.ValidationError):
        review_validator(document).validate({"environment_name": "prod", "state": "maybe"})


def test_server_refuses_a_body_outside_the_schema(app, github):
    result = app.review(handle(github), None, None)  # neither state nor comment: refused before sending
    assert not result.ok and result.attempts == 0 and "state or comment" in result.detail
    assert github.requests_to("/deployment_protection_rule") == []


def test_installation_token_is_cached_until_close_to_expiry(app, github):
    assert app.decide(handle(github), True, "one").ok
    assert app.decide(handle(github, run_id=9002), True, "two").ok
    assert len(github.requests_to("/access_tokens")) == 1


def test_installation_token_is_refreshed_when_it_expires_within_the_margin(app_key, shared_fixture, waits):
    with LocalGitHubServer(
        APP_ID, app_key.public_key(), installation_id=77, token_ttl_seconds=120, review_schema=shared_fixture(SCHEMA)
    ) as server:
        app = GitHubApp(APP_ID, CryptographyClient.from_jwk(rsa_jwk(app_key)), server.api_url, allow_loopback_http=True)
        assert app.decide(handle(server), True, "one").ok
        assert app.decide(handle(server, run_id=2), True, "two").ok
        assert len(server.requests_to("/access_tokens")) == 2


def test_a_revoked_token_is_replaced_once(app, github):
    assert app.decide(handle(github), True, "first").ok
    github.revoke_tokens()
    result = app.decide(handle(github, run_id=9002), True, "second")
    assert result.ok and result.attempts == 2  # 401, then the retry with a fresh token
    assert len(github.requests_to("/access_tokens")) == 2


def test_two_bad_gateways_then_success_takes_three_attempts(app, github):
    github.fail_next(2, 502, path_contains="/deployment_protection_rule")
    result = app.decide(handle(github), True, "ok")
    assert result.ok and result.attempts == 3 and result.status_code == 204
    assert [r.status for r in github.requests_to("/deployment_protection_rule")] == [502, 502, 204]


def test_a_client_error_is_not_retried(app, github):
    github.fail_next(1, 404, path_contains="/deployment_protection_rule", body={"message": "Not Found"})
    result = app.decide(handle(github), True, "ok")
    assert not result.ok and result.attempts == 1 and result.status_code == 404
    assert "not retryable" in result.detail and "Not Found" in result.detail


def test_retry_after_on_429_sets_the_wait(app, github, waits):
    github.fail_next(1, 429, path_contains="/deployment_protection_rule", retry_after=7)
    result = app.decide(handle(github), True, "ok")
    assert result.ok and result.attempts == 2
    assert waits == [7.0]


def test_final_failure_is_returned_not_raised(app, github, waits):
    github.fail_next(50, 503, path_contains="/deployment_protection_rule")
    result = app.decide(handle(github), True, "ok")
    assert not result.ok and result.attempts == 5 and result.status_code == 503
    assert "retries exhausted" in result.detail
    assert len(waits) == 4


def test_installation_token_failure_is_a_result(app, github):
    github.fail_next(1, 401, path_contains="/access_tokens", body={"message": "Bad credentials"})
    result = app.decide(handle(github), True, "ok")
    assert not result.ok and "installation token" in result.detail and result.status_code == 401
    assert github.requests_to("/deployment_protection_rule") == []


def test_a_signer_without_the_private_key_fails_cleanly(app_key, github):
    public = app_key.public_key().public_numbers()
    raw = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")  # noqa: E731
    verify_only = CryptographyClient.from_jwk(
        JsonWebKey(kid="pub", kty="RSA", key_ops=["verify"], n=raw(public.n), e=raw(public.e))
    )
    app = GitHubApp(APP_ID, verify_only, github.api_url, allow_loopback_http=True)
    result = app.decide(handle(github), True, "ok")
    assert not result.ok and "signing failed" in result.detail
    assert github.requests == []


def test_missing_installation_id_is_looked_up_with_the_app_jwt(app, github):
    result = app.decide(handle(github, installation_id=None), True, "ok")
    assert result.ok
    [lookup] = github.requests_to("/repos/contoso/web/installation", method="GET")
    assert lookup.status == 200
    assert github.jwt_claims and all(c["iss"] == APP_ID for c in github.jwt_claims)


def test_deployment_callback_url_is_used_only_under_the_api_root(app, github):
    own = github.deployment_callback_url("contoso", "web", 5)
    assert app.decide(handle(github, run_id=5, deployment_callback_url=own), True, "ok").ok
    foreign = "https://attacker.example/repos/contoso/web/actions/runs/6/deployment_protection_rule"
    result = app.decide(handle(github, run_id=6, deployment_callback_url=foreign), True, "ok")
    assert result.ok  # answered through the configured API, the token never went to the foreign host
    assert [d["run_id"] for d in github.decisions()] == [5, 6]


def test_progress_comments_are_truncated_and_capped_leaving_one_for_the_decision(app, github):
    callback = handle(github)
    long_comment = "waiting for approval " * 100  # 2,100 characters
    results = [app.progress(callback, f"{i}: {long_comment}") for i in range(12)]

    posted = [r for r in results if not r.skipped]
    skipped = [r for r in results if r.skipped]
    assert len(posted) == 9 and all(r.ok and r.action == "progress" for r in posted)
    assert len(skipped) == 3 and "skipped" in skipped[0].detail and "10" in skipped[0].detail
    comments = github.comments_for("contoso", "web", 9001, "production")
    assert len(comments) == 9
    assert all(len(c) == MAX_COMMENT_CHARS and c.endswith("\u2026") for c in comments)
    assert github.decisions() == []  # comment-only reviews carry no state

    decision = app.decide(callback, True, "Approved by alice and bob.")
    assert decision.ok
    assert github.decisions()[0]["body"]["comment"] == "Approved by alice and bob."
    assert len(github.comments_for("contoso", "web", 9001, "production")) == 10


def test_the_decision_goes_out_without_a_comment_when_the_budget_is_spent(app_key, github):
    budget = InMemoryCommentBudget()
    app = GitHubApp(
        APP_ID, CryptographyClient.from_jwk(rsa_jwk(app_key)), github.api_url, budget=budget, allow_loopback_http=True
    )
    callback = handle(github)
    for _ in range(10):
        budget.take("contoso/web/runs/9001/production", 10)
    result = app.decide(callback, False, "this comment no longer fits")
    assert result.ok
    assert github.decisions()[0]["body"] == {"environment_name": "production", "state": "rejected"}


def test_truncate_comment_keeps_short_text():
    assert truncate_comment("short") == "short"
    assert len(truncate_comment("x" * 5000)) == MAX_COMMENT_CHARS


def test_tokens_never_reach_logs_results_or_reprs(app, github, caplog):
    caplog.set_level(logging.DEBUG)
    assert app.decide(handle(github), True, "first").ok
    github.fail_next(
        50, 500, path_contains="/deployment_protection_rule", body={"message": "echo: " + next(iter(github.tokens))}
    )
    result = app.decide(handle(github, run_id=2), True, "second")
    assert not result.ok
    issued = list(github.tokens)
    assert issued
    jwt_text = app.app_jwt()
    for secret in [*issued, jwt_text.split(".")[2]]:
        assert secret not in caplog.text
        assert secret not in result.detail
        assert secret not in repr(result) and secret not in repr(app)
    assert "***" in result.detail  # the echoed token was redacted


# --- the App acts only for the gate's tenant, on the gate's own run ------------------------------------------


@pytest.fixture
def scoped_app(app_key, github) -> GitHubApp:
    """An App confined to registered installations: tenant contoso has 77 (the server's), fabrikam has 78."""
    registered = {"contoso": frozenset({77}), "fabrikam": frozenset({78})}
    signer = CryptographyClient.from_jwk(rsa_jwk(app_key))
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=lambda _s: None)
    return GitHubApp(
        APP_ID,
        signer,
        github.api_url,
        policy=policy,
        allow_loopback_http=True,
        installations=lambda tenant: registered.get(tenant, frozenset()),
    )


def test_scoped_app_answers_with_the_tenants_installation(scoped_app, github):
    result = scoped_app.decide(handle(github), approved=True, comment=None, tenant_id="contoso")
    assert result.ok and [r["body"]["state"] for r in github.decisions()] == ["approved"]
    missing = scoped_app.decide(handle(github, installation_id=None), approved=True, comment=None, tenant_id="contoso")
    assert missing.ok  # no installation on the handle: the tenant's only registered one


def test_scoped_app_asks_github_for_the_installation_among_several(app_key, github):
    """A gate without an installation from a tenant with several: GitHub's installation for the repository
    (the server's 77), used only when it is registered for the tenant; otherwise nothing is sent."""
    registered = {"several": frozenset({77, 79}), "others": frozenset({78, 79})}
    signer = CryptographyClient.from_jwk(rsa_jwk(app_key))
    policy = RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=lambda _s: None)
    app = GitHubApp(
        APP_ID,
        signer,
        github.api_url,
        policy=policy,
        allow_loopback_http=True,
        installations=lambda tenant: registered.get(tenant, frozenset()),
    )
    refused = app.decide(handle(github, installation_id=None), approved=True, comment=None, tenant_id="others")
    assert not refused.ok and "installation 77 is not registered for tenant others" in refused.detail
    assert github.requests_to("/access_tokens") == [] and github.decisions() == []
    result = app.decide(handle(github, installation_id=None), approved=True, comment=None, tenant_id="several")
    assert result.ok and [r["body"]["state"] for r in github.decisions()] == ["approved"]
    assert len(github.requests_to("/repos/contoso/web/installation", method="GET")) == 2


@pytest.mark.parametrize(
    ("tenant", "installation"),
    [("fabrikam", 77), ("contoso", 78), ("contoso", 999), (None, 77), ("nobody", None)],
)
def test_scoped_app_refuses_an_installation_not_registered_for_the_tenant(scoped_app, github, tenant, installation):
    callback = handle(github, installation_id=installation)
    result = scoped_app.decide(callback, approved=True, comment="approved", tenant_id=tenant)
    assert not result.ok and "not registered for tenant" in result.detail
    assert github.requests_to("/access_tokens") == [] and github.requests_to("/deployment_protection_rule") == []


@pytest.mark.parametrize(
    "path",
    [
        "/repos/fabrikam/web/actions/runs/9001/deployment_protection_rule",  # another owner
        "/repos/contoso/api/actions/runs/9001/deployment_protection_rule",  # another repository
        "/repos/contoso/web/actions/runs/9002/deployment_protection_rule",  # another run
        "/repos/contoso/web/actions/runs/9001/approve",  # not the review endpoint
    ],
)
def test_app_refuses_a_callback_url_naming_another_run_than_the_gates(scoped_app, app, github, path):
    callback = handle(github, deployment_callback_url=github.api_url + path)
    for client, tenant in ((scoped_app, "contoso"), (app, None)):
        result = client.decide(callback, approved=True, comment=None, tenant_id=tenant)
        assert not result.ok and "deployment_callback_url" in result.detail
    assert github.requests_to("/deployment_protection_rule") == [] and github.requests_to("/access_tokens") == []
    own = handle(
        github,
        deployment_callback_url=github.api_url + "/repos/Contoso/Web/actions/runs/9001/deployment_protection_rule",
    )
    assert scoped_app.decide(own, approved=True, comment=None, tenant_id="contoso").ok  # case-insensitive owner/repo


def test_each_review_logs_its_result_detail_once_on_the_github_logger(app, github, caplog):
    """The log line is the result's detail (info when GitHub acknowledged, error when it did not), and a
    review retried with a fresh token counts the attempts of both rounds."""
    caplog.set_level(logging.DEBUG, logger="gatekeeper.integrations.github")
    assert app.decide(handle(github), True, "first").ok
    github.revoke_tokens()
    renewed = app.decide(handle(github, run_id=9002), True, None)
    github.fail_next(10, 422, path_contains="/deployment_protection_rule")
    failed = app.progress(handle(github, run_id=9003), "still waiting")
    lines = adapter_lines(caplog, "gatekeeper.integrations.github", "github_app.py")
    assert lines[1:] == [(logging.INFO, renewed.detail), (logging.ERROR, failed.detail)]
    assert renewed.detail.startswith("github review approved contoso/web run 9002: HTTP 204 after 1 attempt")
    assert (renewed.ok, renewed.attempts, renewed.target, renewed.action) == (True, 2, "github", "complete")
    assert (failed.ok, failed.status_code, failed.attempts, failed.action) == (False, 422, 1, "progress")
    assert failed.detail.startswith("github review comment contoso/web run 9003: HTTP 422 (not retryable)")


def test_a_revoked_token_whose_replacement_cannot_be_had_is_a_result_without_a_second_post(app, github):
    assert app.decide(handle(github), True, "first").ok
    github.revoke_tokens()
    github.fail_next(5, 502, path_contains="/access_tokens")  # GitHub cannot mint the fresh token either
    result = app.decide(handle(github, run_id=9003), True, "second")
    assert not result.ok and result.action and result.attempts == 1 and "installation token" in result.detail
    assert [r.status for r in github.requests_to("/runs/9003/deployment_protection_rule")] == [401]


def test_the_app_key_from_its_pem_signs_what_github_accepts_and_a_non_rsa_pem_is_refused(app_key, github):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gatekeeper.integrations.github_app import rsa_jwk_from_pem

    def pem(key) -> bytes:  # type: ignore[no-untyped-def]
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    signer = CryptographyClient.from_jwk(rsa_jwk_from_pem(pem(app_key)))
    from_pem = GitHubApp(APP_ID, signer, github.api_url, policy=RetryPolicy(max_attempts=1), allow_loopback_http=True)
    assert from_pem.decide(handle(github), True, "ok").ok
    with pytest.raises(ValueError, match="the PEM is not an RSA private key"):
        rsa_jwk_from_pem(pem(ec.generate_private_key(ec.SECP256R1())))


@pytest.mark.parametrize("app_id", ["", "   "])
def test_an_app_without_an_id_is_refused_naming_the_setting(app_key, github, app_id):
    with pytest.raises(ValueError, match="GATEKEEPER_GITHUB_APP_ID"):
        GitHubApp(app_id, CryptographyClient.from_jwk(rsa_jwk(app_key)), github.api_url, allow_loopback_http=True)
