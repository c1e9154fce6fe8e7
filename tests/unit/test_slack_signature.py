"""Slack's v0 request signatures (gatekeeper/slack/edge.py `verify`): the signing secret over
`v0:{timestamp}:{body}`, within five minutes either side of now, and the one 401 for everything else (a stale or
future timestamp, a malformed header, a wrong secret), never a crash on a hostile timestamp."""

from __future__ import annotations

import pytest

from devstack.slack import sign
from gatekeeper.errors import Unauthenticated
from gatekeeper.slack.edge import MAX_SKEW_SECONDS, verify

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"
NOW = 1_765_000_000


def check(headers: dict[str, str], secrets: tuple[bytes, ...] = (SECRET.encode(),)) -> None:
    verify(BODY, headers, secrets, now=lambda: NOW)


@pytest.mark.parametrize("age", [0, MAX_SKEW_SECONDS, -MAX_SKEW_SECONDS])
def test_a_signature_within_five_minutes_either_side_is_accepted(age):
    check(sign(SECRET, BODY, timestamp=NOW - age))


@pytest.mark.parametrize("age", [MAX_SKEW_SECONDS + 1, -(MAX_SKEW_SECONDS + 1), 3600, -3600])
def test_a_stale_or_future_timestamp_is_refused_even_correctly_signed(age):
    with pytest.raises(Unauthenticated) as refused:
        check(sign(SECRET, BODY, timestamp=NOW - age))
    assert refused.value.code == "slack-signature"


@pytest.mark.parametrize("timestamp", ["1" * 13, "1" * 5000, "-1765000000", "1765000000.5", " ", ""])
def test_a_timestamp_that_is_no_unix_second_is_the_one_401_not_a_crash(timestamp):
    headers = sign(SECRET, BODY, timestamp=NOW)
    headers["X-Slack-Request-Timestamp"] = timestamp
    with pytest.raises(Unauthenticated):
        check(headers)


def test_any_of_the_tenants_secrets_verifies_and_none_other():
    headers = sign(SECRET, BODY, timestamp=NOW)
    check(headers, (b"old-secret-being-rotated-out", SECRET.encode()))
    with pytest.raises(Unauthenticated):
        check(headers, (b"another-workspaces-secret",))
    with pytest.raises(Unauthenticated):
        check(headers, ())


def test_header_names_are_read_in_any_case():
    headers = {k.upper(): v for k, v in sign(SECRET, BODY, timestamp=NOW).items()}
    check(headers)
