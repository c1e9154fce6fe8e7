"""Bounded retries with backoff for outbound HTTP calls (tenacity).

Retry what can heal: connection errors, timeouts, 5xx and 429 (and GitHub's rate-limit 403). Never retry
other 4xx: the request is wrong and will stay wrong. A server's `Retry-After` (or GitHub's rate-limit reset)
sets the wait, capped so an activity never sleeps for long. The last outcome is returned, not raised.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)

from gatekeeper.integrations.guarded_http import OutboundRefused
from gatekeeper.integrations.urls import install_query_redaction

log = logging.getLogger("gatekeeper.integrations")
install_query_redaction()

TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (requests.ConnectionError, requests.Timeout)
MAX_DETAIL_CHARS = 300
READ_CHUNK_BYTES = 64 * 1024


class AnswerTooLarge(requests.RequestException):
    """An answer longer than the caller's bound: read no further than the bound, the connection closed, and
    not retried (the same request gets the same answer). The message names the bound."""


def read_bounded(response: requests.Response, limit: int) -> bytes:
    """The body of a streamed (`stream=True`) response, reading at most `limit` bytes (plus one chunk's
    worth from the socket buffer); a longer body closes the connection and raises `AnswerTooLarge`.
    `response.content` reads everything first, so a vendor (or whoever answers in its place) could make the
    worker hold gigabytes before any size check. urllib3's read errors arrive as requests exceptions
    (`iter_content`), so a stalled or cut answer is a transport failure like any other."""
    declared = response.headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        response.close()
        raise AnswerTooLarge(f"the answer is over the {limit}-byte bound (Content-Length {int(declared)})")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=min(READ_CHUNK_BYTES, limit + 1)):
            size += len(chunk)
            if size > limit:
                raise AnswerTooLarge(f"the answer is over the {limit}-byte bound; read no further")
            chunks.append(chunk)
    except BaseException:
        response.close()
        raise
    return b"".join(chunks)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults keep a failing callback under about a minute of waiting."""

    max_attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 20.0
    jitter: float = 1.0
    max_retry_after: float = 60.0  # cap on a server-requested wait
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts: must be at least 1")

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


@dataclass(frozen=True)
class HttpOutcome:
    """The last response (or transport error) after all attempts."""

    response: requests.Response | None
    attempts: int
    error: str | None = None  # a transport error's class name when there was no response
    waits: tuple[float, ...] = ()
    # The answer's body when the call was made with `max_body` (read bounded from a streamed response, whose
    # `content` is then consumed): read this, never `response.content`.
    body: bytes | None = None

    @property
    def status_code(self) -> int | None:
        return None if self.response is None else self.response.status_code

    @property
    def ok(self) -> bool:
        return self.response is not None and 200 <= self.response.status_code < 300


def is_retryable_status(response: requests.Response) -> bool:
    status = response.status_code
    if status == 429 or status >= 500:
        return True
    # GitHub's secondary rate limits answer 403 with Retry-After or an exhausted quota.
    return status == 403 and ("retry-after" in response.headers or response.headers.get("x-ratelimit-remaining") == "0")


def retry_after_seconds(response: requests.Response, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: `Retry-After` (seconds or HTTP date), else GitHub's reset."""
    now = time.time() if now is None else now
    value = response.headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - now)
    if response.headers.get("x-ratelimit-remaining") == "0":
        reset = response.headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return max(0.0, float(reset) - now)
    return None


def send_with_retry(
    attempt: Callable[[], requests.Response],
    policy: RetryPolicy,
    *,
    label: str,
    retryable: Callable[[requests.Response], bool] = is_retryable_status,
    max_body: int | None = None,
) -> HttpOutcome:
    """Call `attempt` (which builds and sends one request, so signatures can be fresh per try) until it
    succeeds, fails for good, or the attempts run out. With `max_body`, `attempt` must send with
    `stream=True`: each answer is read with `read_bounded` into `HttpOutcome.body`, and an answer over the
    bound is a failure whose `error` names the bound (not retried)."""
    backoff = wait_exponential_jitter(multiplier=policy.initial_wait, max=policy.max_wait, jitter=policy.jitter)
    count = 0
    waits: list[float] = []

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            asked = retry_after_seconds(outcome.result())
            if asked is not None:
                return min(asked, policy.max_retry_after)
        return float(backoff(state))

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        policy.sleep(seconds)

    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        if outcome is None:
            return
        what = type(outcome.exception()).__name__ if outcome.failed else f"HTTP {outcome.result().status_code}"
        log.warning("%s: attempt %d failed (%s); retrying", label, state.attempt_number, what)

    bodies: dict[int, bytes] = {}

    def one() -> requests.Response:
        nonlocal count
        count += 1
        response = attempt()
        if max_body is not None:
            bodies[id(response)] = read_bounded(response, max_body)
        return response

    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception_type(TRANSPORT_ERRORS) | retry_if_result(retryable),
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=lambda state: state.outcome,
        reraise=False,
    )
    try:
        result = retrying(one)
    except (AnswerTooLarge, OutboundRefused) as exc:  # said in full: the bound, or the internal peer refused
        return HttpOutcome(None, count, str(exc), tuple(waits))
    except requests.RequestException as exc:  # not retryable (e.g. invalid URL)
        return HttpOutcome(None, count, type(exc).__name__, tuple(waits))
    if isinstance(result, requests.Response):
        return HttpOutcome(result, count, None, tuple(waits), bodies.get(id(result)))
    # retries exhausted: `result` is the last attempt's future
    if result.failed:
        return HttpOutcome(None, count, type(result.exception()).__name__, tuple(waits))
    last = result.result()
    return HttpOutcome(last, count, None, tuple(waits), bodies.get(id(last)))


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def response_message(response: requests.Response, raw: bytes | None = None) -> str:
    """The short human part of an error body (GitHub `message`, Azure DevOps/Graph `message`); `raw` is the
    body already read bounded (`HttpOutcome.body`), parsed with the bounded JSON reader."""
    try:
        if raw is not None:
            from gatekeeper import json_bounded

            body = json_bounded.loads(raw)
        else:
            body = response.json()
    except (ValueError, json.JSONDecodeError):
        text = raw.decode("utf-8", errors="replace") if raw is not None else response.text
        return text[:MAX_DETAIL_CHARS].strip()
    if isinstance(body, dict):
        for candidate in (
            body.get("message"),
            (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else body.get("error"),
        ):
            if isinstance(candidate, str) and candidate:
                return candidate[:MAX_DETAIL_CHARS]
    return json.dumps(body)[:MAX_DETAIL_CHARS]


def describe(outcome: HttpOutcome, what: str, secrets: Iterable[str | None] = ()) -> str:
    """One line for results, logs and the audit log; secrets removed, length bounded."""
    tries = f"after {outcome.attempts} attempt{'s' if outcome.attempts != 1 else ''}"
    if outcome.response is None:
        error = outcome.error or "error"
        text = f"{what}: {error} {tries}" if " bound" in error else f"{what}: no response ({error}) {tries}"
    elif outcome.ok:
        text = f"{what}: HTTP {outcome.response.status_code} {tries}"
    else:
        kind = "retries exhausted" if is_retryable_status(outcome.response) else "not retryable"
        message = response_message(outcome.response, outcome.body)
        text = f"{what}: HTTP {outcome.response.status_code} ({kind}) {tries}"
        if message:
            text += f": {message}"
    return redact(text, secrets)[: MAX_DETAIL_CHARS + 100]
