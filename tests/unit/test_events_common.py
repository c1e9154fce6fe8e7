"""Shared parser helpers: error translation, status vocabulary, decision words."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from functions.http import problem_body
from gatekeeper.errors import InvalidInput
from gatekeeper.events.common import (
    HTTP_ONLY_LOCAL,
    Ignored,
    Payload,
    action_from_text,
    decision_from_text,
    https_or_loopback_url,
    is_local_host,
    json_path,
    normalise_status,
    validate,
)
from gatekeeper.events.model import ActionKind
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url


class _Inner(Payload):
    login: str


class _Outer(Payload):
    id: int
    users: list[_Inner]
    token: SecretStr | None = None


def test_json_path() -> None:
    assert json_path(("deployment", "creator", "login")) == "deployment.creator.login"
    assert json_path(("labels", 2)) == "labels[2]"
    assert json_path(("x", "function-after[_check(), str]"), root="payload") == "payload.x"
    assert json_path((), root="") == "$"


def test_validate_names_first_field_and_lists_all() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(_Outer, {"users": [{"login": 1}]}, context="thing", root="payload")
    problem = caught.value
    assert problem.detail == "thing: field 'payload.id' is required (and 1 more)"
    assert problem.field == "payload.id"
    assert problem.extra["errors"] == [
        {"field": "payload.id", "detail": "is required"},
        {"field": "payload.users[0].login", "detail": "should be a valid string"},
    ]


def test_validate_never_echoes_input_or_chains_pydantic_errors() -> None:
    secret = "ghs_0123456789abcdefSECRET"
    with pytest.raises(InvalidInput) as caught:
        validate(_Outer, {"id": secret, "users": [], "token": secret}, context="thing")
    assert secret not in str(problem_body(caught.value))
    assert secret not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_strict_payload_models_refuse_lookalikes() -> None:
    for bad in (True, "12", 1.0):
        with pytest.raises(InvalidInput):
            validate(_Outer, {"id": bad, "users": []}, context="thing")
    assert validate(_Outer, {"id": 12, "users": [], "ignored": "extra"}, context="thing").id == 12


def test_non_object_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(_Outer, "text", context="thing", root="payload")
    assert caught.value.field == "payload"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("succeeded", "success"),
        ("Succeeded", "success"),
        ("failed", "failure"),
        ("canceled", "cancelled"),
        ("inProgress", "in_progress"),
        ("partiallySucceeded", "partially_succeeded"),
        ("in_progress", "in_progress"),
        ("Change Approved", "change_approved"),
        ("  ", None),
        (None, None),
    ],
)
def test_normalise_status(raw: str | None, normal: str | None) -> None:
    assert normalise_status(raw) == normal


@pytest.mark.parametrize(
    ("texts", "decision"),
    [
        (("Change Approved",), True),
        (("CAB Rejected",), False),
        (("Declined by customer",), False),
        (("Pending Approval",), None),
        (("Not Approved",), None),
        (("Approved - Rejected",), None),
        ((None, "", "approved"), True),
        (("Unapproved",), None),
    ],
)
def test_decision_from_text(texts: tuple[str | None, ...], decision: bool | None) -> None:
    assert decision_from_text(*texts) is decision


def test_action_from_text() -> None:
    assert action_from_text("Change Request", "Deployment") is ActionKind.DEPLOY
    assert action_from_text(None, "Infrastructure change") is ActionKind.INFRASTRUCTURE_CHANGE
    assert action_from_text("Roll back release 2.3") is ActionKind.ROLLBACK
    assert action_from_text("Printer toner", None) is None


def test_ignored_is_a_frozen_value() -> None:
    assert Ignored("x") == Ignored("x")
    with pytest.raises(AttributeError):
        Ignored("x").reason = "y"  # type: ignore[misc]
    assert not isinstance(Ignored("x"), BaseModel)


# --- https, or plain http to a local server: the rule of URLs a document names for later calls ---------------

LOCAL_SPELLINGS = [
    "localhost",
    "LocalHost",
    "localhost.",
    "app.localhost",
    "ip6-localhost",
    "127.0.0.1",
    "127.0.0.2",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
]
NOT_LOCAL_SPELLINGS = [
    "127.1",  # loopback spelled oddly: refused even where loopback is allowed
    "2130706433",
    "0x7f.0.0.1",
    "017700000001",
    "0",
    "0.0.0.0",  # noqa: S104 - a URL host to refuse, nothing binds to it
    "10.0.0.1",
    "169.254.169.254",
    "[::ffff:10.0.0.1]",
    "[fe80::1]",
    "ci.contoso.com",
    "localhost.contoso.com",
    "1.2.3.4.5",
    "8.8.8.8",
]


@pytest.mark.parametrize("host", LOCAL_SPELLINGS)
def test_plain_http_is_allowed_to_a_local_server(host: str) -> None:
    url = f"http://{host}:7071/cb"
    assert is_local_host(host.strip("[]")) and https_or_loopback_url(url) == url


@pytest.mark.parametrize("host", NOT_LOCAL_SPELLINGS)
def test_plain_http_elsewhere_is_refused_and_https_is_not_judged_here(host: str) -> None:
    with pytest.raises(ValueError, match=re.escape(HTTP_ONLY_LOCAL)):
        https_or_loopback_url(f"http://{host}/cb")
    if host != "1.2.3.4.5":  # where an https URL leads is checked when it is called (check_outbound_url)
        assert https_or_loopback_url(f"https://{host}/cb") == f"https://{host}/cb"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://ci.contoso.com/cb", "must be an absolute https URL"),
        ("/relative/cb", "must be an absolute https URL"),
        ("https://", "must be an absolute https URL"),
        ("https://[::1/cb", "must be an absolute https URL"),
        ("https://user:pass@ci.contoso.com/cb", "must not carry credentials"),
        ("http://:secret@localhost/cb", "must not carry credentials"),
    ],
)
def test_https_or_loopback_url_says_which_rule_a_url_breaks(url: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        https_or_loopback_url(url)
    assert str(caught.value) == words


_OCTET = st.integers(min_value=0, max_value=255)
_HOSTS = st.one_of(
    st.sampled_from(LOCAL_SPELLINGS + NOT_LOCAL_SPELLINGS),
    st.builds(lambda *o: ".".join(map(str, o)), st.sampled_from([127, 10, 0, 169, 8]), _OCTET, _OCTET, _OCTET),
    st.builds(lambda n: str(n), st.integers(min_value=0, max_value=2**32 - 1)),
    st.builds(lambda a, n: f"{a}.{n}", st.sampled_from([127, 10, 8]), st.integers(min_value=0, max_value=2**24 - 1)),
    st.builds(lambda o: f"[::ffff:127.0.0.{o}]", _OCTET),
    st.builds(lambda o: f"[::{o:x}]", st.integers(min_value=0, max_value=3)),
    st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}(\.localhost)?", fullmatch=True),
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(host=_HOSTS)
def test_plain_http_is_local_exactly_where_the_outbound_check_allows_loopback(host: str) -> None:
    """A callback or probe URL accepted as plain http when the document is read is one the send-time check
    (gatekeeper.integrations.urls, with loopback http allowed) lets through, and the reverse: one classifier."""
    url = f"http://{host}:8080/cb"
    try:
        https_or_loopback_url(url)
        accepted_here = True
    except ValueError:
        accepted_here = False
    try:
        check_outbound_url(url, field="callbackUrl", allow_loopback_http=True)
        accepted_when_sent = True
    except OutboundUrlError:
        accepted_when_sent = False
    assert accepted_here == accepted_when_sent, url


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
    host=st.text(min_size=0, max_size=40),
    rest=st.sampled_from(["", "/cb", ":8080/cb", ":99999/cb", ":x/cb", "?code=k", "#f"]),
)
def test_hostile_urls_are_refused_with_a_value_error_only(scheme: str, host: str, rest: str) -> None:
    """Any text a body or policy may carry ends in the URL or a ValueError (a 422 naming the field), never
    another exception (a 500): the classifier's own errors on odd hosts stay inside it."""
    url = f"{scheme}://{host}{rest}"
    try:
        accepted = https_or_loopback_url(url)
    except ValueError:
        return
    assert accepted == url


@pytest.mark.parametrize(
    ("check", "url"),
    [
        ("prefix", "http://127.evil.example/hooks/"),
        ("psa", "http://127.evil.example/"),
        ("prefix", "http://127.1/hooks/"),
        ("psa", "http://2130706433/"),
    ],
)
def test_every_http_for_a_local_server_rule_is_the_one_classifier(check, url):
    """The registry's callback prefixes and the PSA settings once kept their own loopback lists (the prefix
    rule took any host starting with `127.`, a DNS name included); they now ask gatekeeper.addresses."""
    from gatekeeper.tenancy.ownership import normalise_callback_prefix
    from gatekeeper.tenancy.psa_settings import check_url

    validate = normalise_callback_prefix if check == "prefix" else check_url
    with pytest.raises(ValueError):
        validate(url)
    local = url.replace(url.split("/")[2], "127.0.0.2:8080")
    assert validate(local)
