"""GitHub Actions OIDC tokens: the real validator (`gatekeeper.security.github_oidc`) against a local issuer
serving GitHub's discovery paths and claim shape (`devstack.github_oidc`), over HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import jwt
import pytest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.github_oidc import LocalGitHubOidcIssuer
from gatekeeper.errors import DependencyUnavailable, Unauthenticated
from gatekeeper.security.github_oidc import GitHubOidcValidator, is_github_token

AUDIENCE = "api://gatekeeper/github-actions"


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalGitHubOidcIssuer]:
    with LocalGitHubOidcIssuer() as server:
        yield server


@pytest.fixture
def validator(issuer) -> GitHubOidcValidator:
    return GitHubOidcValidator(AUDIENCE, issuer.issuer)


def refusal(validator: GitHubOidcValidator, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        validator.validate(token)
    return str(caught.value.extra["reason"])


def _b64(document: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def test_a_job_token_with_githubs_claim_shape_is_accepted(issuer, validator):
    job = validator.validate(
        issuer.issue(AUDIENCE, repository="contoso/infra", actor="dev-alice", triggering_actor="dev-bob")
    )
    assert (job.repository, job.repository_owner, job.repository_owner_id) == ("contoso/infra", "contoso", "4200001")
    assert (job.actor, job.requester) == ("dev-alice", "dev-bob")  # a re-run by another person: they asked
    assert job.subject == "repo:contoso/infra:environment:production" and job.run_id == "9100001"


def test_discovery_answers_at_githubs_paths(issuer):
    import requests

    config = requests.get(f"{issuer.issuer}/.well-known/openid-configuration", timeout=5).json()
    assert config["issuer"] == issuer.issuer and config["jwks_uri"] == f"{issuer.issuer}/.well-known/jwks"
    keys = requests.get(config["jwks_uri"], timeout=5).json()["keys"]
    assert [k["kty"] for k in keys] == ["RSA"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"audience": "api://another-deployment"}, "audience"),
        ({"issued_at": time.time() - 3600}, "expired"),
        ({"issuer": "https://token.actions.githubusercontent.com.evil.example"}, "issuer"),
        ({"extra_claims": {"nbf": int(time.time()) + 3600}}, "not-yet-valid"),
        ({"extra_claims": {"repository_owner_id": None}}, "missing-claim"),
        ({"extra_claims": {"repository_owner_id": "12ab"}}, "missing-claim"),
        ({"extra_claims": {"repository_owner": "mallory"}}, "missing-claim"),
    ],
)
def test_wrong_audience_expired_wrong_issuer_or_bad_claims_are_refused(issuer, validator, change, reason):
    audience = change.pop("audience", AUDIENCE)
    extra = change.pop("extra_claims", None)
    token = issuer.issue(audience, **change)
    if extra:
        claims = jwt.decode(token, options={"verify_signature": False})
        claims.update(extra)
        token = issuer.sign({k: v for k, v in claims.items() if v is not None})
    assert refusal(validator, token) == reason


def test_alg_none_and_hs256_are_refused_before_any_key_is_used(issuer, validator):
    claims = jwt.decode(issuer.issue(AUDIENCE), options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert refusal(validator, unsigned) == "algorithm"
    # HS256 keyed with the issuer's public key: the classic confusion attack
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': issuer._key.kid})}.{_b64(claims)}"
    mac = hmac.new(issuer._key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert refusal(validator, forged) == "algorithm"


def test_a_token_signed_by_another_key_is_refused(issuer, validator):
    with LocalGitHubOidcIssuer() as impostor:
        token = impostor.issue(AUDIENCE, issuer=issuer.issuer)
    assert refusal(validator, token) == "unknown-key"


def test_the_keys_are_fetched_once_and_cached(issuer):
    fresh = GitHubOidcValidator(AUDIENCE, issuer.issuer)
    before = issuer.requests["/.well-known/jwks"]
    for _ in range(5):
        fresh.validate(issuer.issue(AUDIENCE))
    assert issuer.requests["/.well-known/jwks"] - before == 1


def test_an_unreachable_issuer_is_a_dependency_outage_not_a_refusal():
    with LocalGitHubOidcIssuer() as gone:
        token = gone.issue(AUDIENCE)
        address = gone.issuer
    with pytest.raises(DependencyUnavailable):
        GitHubOidcValidator(AUDIENCE, address, http_timeout_seconds=2).validate(token)


def test_only_tokens_naming_the_issuer_are_routed_to_this_validator(issuer):
    assert is_github_token(issuer.issue(AUDIENCE), issuer.issuer)
    with LocalEntraIssuer() as entra:
        entra_token = entra.issue("0000000a-0000-4000-8000-00000000000a", "72f988bf-86f1-41af-91ab-2d7cd011db47", "x")
    assert not is_github_token(entra_token, issuer.issuer)
    assert not is_github_token("not-a-jwt", issuer.issuer)


def _claims_of(issuer: LocalGitHubOidcIssuer, **extra: object) -> dict:
    claims = jwt.decode(issuer.issue(AUDIENCE), options={"verify_signature": False})
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize("missing", ["nbf", "iat", "sub", "actor", "repository"])
def test_a_token_without_a_required_claim_is_refused(issuer, validator, missing):
    """GitHub always sets these; a token without one was not minted for a job (time claims included: without
    `nbf`/`iat` nothing bounds when it was made)."""
    token = issuer.sign(_claims_of(issuer, **{missing: None}))
    assert refusal(validator, token) == "missing-claim"


def test_an_oversized_token_or_kid_is_refused_before_any_key_is_fetched(issuer, validator):
    before = issuer.requests["/.well-known/jwks"]
    padded = issuer.sign(_claims_of(issuer, padding="x" * 9000))
    assert refusal(validator, padded) == "malformed"
    long_kid = issuer.sign(_claims_of(issuer), headers={"kid": "k" * 201})
    assert refusal(validator, long_kid) == "unknown-key"
    assert issuer.requests["/.well-known/jwks"] == before


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("repository", "contoso/infra/extra"),  # owner/name only
        ("repository", "contoso/"),
        ("actor", "dev alice"),  # a login has no blanks
        ("actor", "-dev"),  # nor starts with a hyphen
        ("actor", "d" * 40),  # at most 39 characters
        ("actor", "dev-alice\n"),  # the whole value is the login (a `$` alone would let a line break through)
        ("repository_owner_id", True),  # a boolean is not an id
    ],
)
def test_identifying_claims_must_have_githubs_shapes(issuer, validator, claim, value):
    token = issuer.sign(_claims_of(issuer, **{claim: value}))
    assert refusal(validator, token) == "missing-claim"


def test_optional_claims_of_the_wrong_shape_are_left_out_not_trusted(issuer, validator):
    """A triggering actor that is no login does not become the requester (the actor does); a boolean or an
    over-long text is no ref or workflow; an owner that is no login gives way to the repository's owner."""
    token = issuer.sign(
        _claims_of(
            issuer,
            triggering_actor="mallory the approver",
            ref=True,
            workflow_ref="w" * 501,
            repository_owner="not a login",
            run_id=False,
        )
    )
    job = validator.validate(token)
    assert job.requester == job.actor == "dev-alice"
    assert job.ref is None and job.workflow_ref is None and job.run_id is None
    assert job.repository_owner == "contoso"


def test_numeric_claims_as_numbers_are_read_as_their_digits(issuer, validator):
    job = validator.validate(issuer.sign(_claims_of(issuer, run_id=9100002, run_attempt=2)))
    assert (job.run_id, job.run_attempt) == ("9100002", "2")


def test_the_issuer_setting_may_end_with_a_slash(issuer):
    job = GitHubOidcValidator(AUDIENCE, issuer.issuer + "/").validate(issuer.issue(AUDIENCE))
    assert job.repository == "contoso/infra"


def test_a_lookalike_issuer_is_not_githubs(issuer):
    for lookalike in (issuer.issuer + ".evil.example", issuer.issuer + "/x", "x" + issuer.issuer):
        assert not is_github_token(issuer.issue(AUDIENCE, issuer=lookalike), issuer.issuer)
