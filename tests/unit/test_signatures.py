"""The signature helpers on their own (issue 21): every way a near-miss secret must fail, and rotation.

These are the checks behind GitHub webhooks, connector messages, the Azure DevOps check and service hooks and
the generic API. A mutation spot-check showed that a check accepting any prefix of the secret, or counting only
the last of several rotated secrets, passed the whole suite: each test here fails on one such mutant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.security.signatures import (
    GITHUB_SIGNATURE_PREFIX,
    basic_auth_password,
    github_signature,
    verify_github_signature,
    verify_shared_secret,
)

SECRET = b"s3cr3t-shared-value-0123456789"
OTHERS = [b"first-rotated-secret-aaaaaaaa", b"middle-rotated-secret-bbbbbbb", b"last-rotated-secret-ccccccccc"]
BODY = b'{"action":"requested","run_id":42}'


def _independent_signature(secret: bytes, body: bytes) -> str:
    """GitHub's documented X-Hub-Signature-256: 'sha256=' + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# --- shared secrets (Azure DevOps check, service hooks, generic API) -------------------------------------------


def test_the_exact_secret_is_accepted():
    assert verify_shared_secret([SECRET], SECRET.decode()) is True


@pytest.mark.parametrize(
    "offered",
    [
        SECRET[:1].decode(),  # a one-character prefix
        SECRET[:-1].decode(),  # truncated by one
        SECRET[: len(SECRET) // 2].decode(),  # half
        SECRET.decode() + "x",  # extended
        "x" + SECRET.decode(),  # prefixed
        SECRET[1:].decode(),  # suffix
        SECRET.decode().upper(),  # case changed
        SECRET.decode()[:-1] + "X",  # last character changed
        " " + SECRET.decode(),
    ],
    ids=["one-char-prefix", "truncated", "half", "extended", "prefixed", "suffix", "upper", "last-char", "space"],
)
def test_near_miss_shared_secrets_are_refused(offered: str):
    assert verify_shared_secret([SECRET], offered) is False


@pytest.mark.parametrize("offered", ["", None])
def test_empty_or_missing_offer_is_refused(offered):
    assert verify_shared_secret([SECRET], offered) is False


def test_no_configured_secret_refuses_everything():
    assert verify_shared_secret([], SECRET.decode()) is False
    assert verify_shared_secret([], "") is False


def test_an_empty_configured_secret_does_not_match_an_empty_offer():
    assert verify_shared_secret([b""], "") is False


@pytest.mark.parametrize("position", [0, 1, 2], ids=["first", "middle", "last"])
def test_rotation_accepts_the_secret_in_any_position(position: int):
    secrets = list(OTHERS)
    secrets[position] = SECRET
    assert verify_shared_secret(secrets, SECRET.decode()) is True


@pytest.mark.parametrize("position", [0, 1, 2], ids=["first", "middle", "last"])
def test_rotation_refuses_a_prefix_of_the_secret_in_any_position(position: int):
    secrets = list(OTHERS)
    secrets[position] = SECRET
    assert verify_shared_secret(secrets, SECRET[:-3].decode()) is False


def test_rotation_refuses_a_value_that_matches_no_secret():
    assert verify_shared_secret(OTHERS, SECRET.decode()) is False


@settings(derandomize=True, max_examples=60, deadline=None)
@given(secret=st.binary(min_size=1, max_size=40).filter(lambda b: b.isascii()), cut=st.integers(min_value=0))
def test_every_proper_prefix_is_refused(secret: bytes, cut: int):
    prefix = secret[: cut % len(secret)]
    assert verify_shared_secret([secret], prefix.decode()) is False
    assert verify_shared_secret([secret], secret.decode()) is True


# --- GitHub-style HMAC signatures (GitHub webhooks, connector messages) ----------------------------------------


def test_github_signature_matches_the_documented_construction():
    assert github_signature(SECRET, BODY) == _independent_signature(SECRET, BODY)
    assert GITHUB_SIGNATURE_PREFIX == "sha256="


def test_a_valid_signature_is_accepted():
    assert verify_github_signature([SECRET], BODY, _independent_signature(SECRET, BODY)) is True


def test_the_signature_is_over_the_exact_body():
    header = _independent_signature(SECRET, BODY)
    assert verify_github_signature([SECRET], BODY + b" ", header) is False
    assert verify_github_signature([SECRET], BODY[:-1], header) is False


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: h[:-1],  # truncated
        lambda h: h[: len("sha256=") + 8],  # a short prefix of the digest
        lambda h: "sha256=",  # the prefix alone
        lambda h: h + "0",  # extended
        lambda h: h[:-1] + ("0" if h[-1] != "0" else "1"),  # last hex digit changed
        lambda h: h.upper(),  # upper-case hex
        lambda h: "sha1=" + h[len("sha256=") :],  # another algorithm's prefix
        lambda h: h[len("sha256=") :],  # digest without the prefix
        lambda h: "",
    ],
    ids=["truncated", "short", "prefix-only", "extended", "last-digit", "upper", "sha1", "no-prefix", "empty"],
)
def test_near_miss_signatures_are_refused(mangle):
    header = mangle(_independent_signature(SECRET, BODY))
    assert verify_github_signature([SECRET], BODY, header) is False


def test_missing_header_is_refused():
    assert verify_github_signature([SECRET], BODY, None) is False


def test_no_secret_means_no_valid_signature():
    assert verify_github_signature([], BODY, _independent_signature(SECRET, BODY)) is False


def test_a_signature_under_another_secret_is_refused():
    assert verify_github_signature([SECRET], BODY, _independent_signature(OTHERS[0], BODY)) is False


@pytest.mark.parametrize("position", [0, 1, 2], ids=["first", "middle", "last"])
def test_signature_rotation_accepts_the_secret_in_any_position(position: int):
    secrets = list(OTHERS)
    secrets[position] = SECRET
    assert verify_github_signature(secrets, BODY, _independent_signature(SECRET, BODY)) is True


@pytest.mark.parametrize("position", [0, 1, 2], ids=["first", "middle", "last"])
def test_signature_rotation_refuses_a_forgery_whatever_the_position(position: int):
    secrets = list(OTHERS)
    secrets[position] = SECRET
    forged = _independent_signature(b"attacker", BODY)
    assert verify_github_signature(secrets, BODY, forged) is False


def test_non_ascii_header_is_refused_not_raised():
    assert verify_github_signature([SECRET], BODY, "sha256=" + "é" * 64) is False


# --- HTTP Basic (Azure DevOps service hooks) --------------------------------------------------------------------


def _basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def test_basic_auth_password_is_the_part_after_the_first_colon():
    assert basic_auth_password(_basic("hooks:pa:ss")) == "pa:ss"
    assert basic_auth_password(_basic(":only-password")) == "only-password"
    assert basic_auth_password("basic " + base64.b64encode(b"u:p").decode()) == "p"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "Basic",
        "Basic !!!notbase64",
        _basic("no-colon"),
        "Basic " + base64.b64encode(b"\xff:\xfe").decode(),
    ],
    ids=["none", "empty", "bearer", "bare", "bad-b64", "no-colon", "not-utf8"],
)
def test_basic_auth_without_a_password_gives_none(header):
    assert basic_auth_password(header) is None
