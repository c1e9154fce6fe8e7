"""How outbound calls wait and give up, against a loopback server that answers as rate-limiting services do:
`Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3), a malformed one, GitHub's exhausted quota
(403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`), a plain-text error body; and the refusals that
are never retried (an invalid URL). The real `requests` session and tenacity; waits recorded, never slept."""

from __future__ import annotations

import email.utils
import http.server
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from gatekeeper.integrations.retry import RetryPolicy, describe, send_with_retry


class Scripted(http.server.ThreadingHTTPServer):
    """Answers each request with the next scripted (status, headers, body); 200 `{}` once the script ends."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.seen = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Scripted

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen += 1
        status, headers, body = self.server.script.pop(0) if self.server.script else (200, {}, b"{}")
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    thread = threading.Thread(target=scripted.serve_forever, daemon=True)
    thread.start()
    try:
        yield scripted
    finally:
        scripted.shutdown()
        scripted.server_close()


def policy(waits: list[float], attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, initial_wait=1.0, max_wait=4.0, jitter=0, sleep=waits.append)


def call(server: Scripted, waits: list[float], attempts: int = 3):  # type: ignore[no-untyped-def]
    return send_with_retry(lambda: requests.get(server.url, timeout=5), policy(waits, attempts), label="test call")


def test_a_policy_needs_at_least_one_attempt():
    with pytest.raises(ValueError, match="max_attempts: must be at least 1"):
        RetryPolicy(max_attempts=0)


def test_retry_after_as_an_http_date_is_waited_until_that_moment(server: Scripted):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.script = [(503, {"Retry-After": when}, b"{}")]
    waits: list[float] = []
    outcome = call(server, waits)
    assert outcome.ok and outcome.attempts == 2
    [waited] = waits
    assert 27 <= waited <= 30  # the date's whole seconds, less the time the answer took


def test_retry_after_in_the_past_is_no_wait_and_a_malformed_one_falls_back_to_backoff(server: Scripted):
    past = email.utils.formatdate(time.time() - 600, usegmt=True)
    server.script = [(503, {"Retry-After": past}, b"{}"), (503, {"Retry-After": "soon"}, b"{}")]
    waits: list[float] = []
    assert call(server, waits).ok
    assert waits == [0.0, 2.0]  # then the exponential backoff's second step (1 s doubled, no jitter)


def test_an_exhausted_github_quota_is_waited_until_its_reset(server: Scripted):
    reset = str(int(time.time()) + 20)
    server.script = [
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}, b'{"message": "API rate limit exceeded"}'),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "later"}, b'{"message": "API rate limit"}'),
    ]
    waits: list[float] = []
    assert call(server, waits).ok and server.seen == 3
    assert 17 <= waits[0] <= 20 and waits[1] == 2.0  # a reset that is no number: backoff


def test_a_plain_text_error_body_is_told_as_text_and_a_refused_403_is_not_retried(server: Scripted):
    server.script = [(403, {"Content-Type": "text/plain"}, b"  Forbidden by the proxy  ")]
    waits: list[float] = []
    outcome = call(server, waits)
    assert (outcome.status_code, outcome.attempts, waits) == (403, 1, [])
    assert describe(outcome, "probe") == "probe: HTTP 403 (not retryable) after 1 attempt: Forbidden by the proxy"


def test_an_invalid_url_is_one_attempt_naming_the_error_never_retried():
    waits: list[float] = []
    outcome = send_with_retry(lambda: requests.get("http://", timeout=5), policy(waits), label="bad url")
    assert (outcome.response, outcome.attempts, outcome.error, waits) == (None, 1, "InvalidURL", [])
    assert describe(outcome, "callback") == "callback: no response (InvalidURL) after 1 attempt"


def test_an_error_body_without_a_message_is_told_as_its_json_and_an_empty_one_adds_nothing(server: Scripted):
    server.script = [(404, {}, b'{"code": 17, "errors": ["no"]}'), (404, {"Content-Type": "text/plain"}, b"")]
    first, second = call(server, []), call(server, [])
    assert (
        describe(first, "lookup") == 'lookup: HTTP 404 (not retryable) after 1 attempt: {"code": 17, "errors": ["no"]}'
    )
    assert describe(second, "lookup") == "lookup: HTTP 404 (not retryable) after 1 attempt"


def test_secrets_are_removed_from_a_detail_but_a_value_too_short_to_be_one_is_left(server: Scripted):
    server.script = [(401, {}, b'{"message": "token tok-0123456789 refused for id ab"}')]
    outcome = call(server, [])
    assert describe(outcome, "call", ["tok-0123456789", "ab", None]) == (
        "call: HTTP 401 (not retryable) after 1 attempt: token *** refused for id ab"
    )
