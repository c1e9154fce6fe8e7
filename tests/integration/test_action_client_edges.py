"""The action client's edges, over real HTTP on loopback against the contract double: `Retry-After` as an HTTP
date (honoured, capped, or ignored when it cannot be read), a token provider that fails or returns nothing,
answers that are too large or not an object, and arguments refused before anything is sent.

The contract double is tests/support/actions_contract_double.py; the main paths are in test_action_client.py."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from gatekeeper.client import GatekeeperClient, InvalidRequest, Unavailable, UnexpectedResponse
from gatekeeper.client.api import MAX_ANSWER_BYTES, MAX_RETRY_AFTER, parse_duration
from tests.integration.test_action_client import KEY, TENANT, TF, FakeClock, client_for
from tests.support.actions_contract_double import ActionsContractDouble


@pytest.fixture
def double() -> Iterator[ActionsContractDouble]:
    with ActionsContractDouble() as server:
        server.api_keys[TENANT] = KEY
        server.tokens["good-token"] = (TENANT, "github:login:octocat")
        yield server


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def _one_retry_sleep(double: ActionsContractDouble, retry_after: str) -> float:
    clock = FakeClock()
    client = client_for(double, sleep=clock.sleep, clock=clock, retry_budget=2 * MAX_RETRY_AFTER)
    double.fail_next(1, 503, path_contains="/api/actions", retry_after=retry_after)
    assert client.request(TF, "infrastructure_change", "production", idempotency_key="date-1").state.pending
    assert [p.status for p in double.requests_to("/api/actions", "POST")] == [503, 202]
    [slept] = clock.sleeps
    return slept


def test_a_retry_after_http_date_is_honoured(double: ActionsContractDouble) -> None:
    slept = _one_retry_sleep(double, _http_date(12))
    assert 10 <= slept <= 13  # the date's distance from now, plus at most 1 s of jitter


def test_a_retry_after_date_far_away_is_capped(double: ActionsContractDouble) -> None:
    slept = _one_retry_sleep(double, _http_date(3 * 3600))
    assert MAX_RETRY_AFTER <= slept <= MAX_RETRY_AFTER + 1


def test_a_retry_after_date_in_the_past_means_now(double: ActionsContractDouble) -> None:
    assert 0 <= _one_retry_sleep(double, _http_date(-600)) <= 1


@pytest.mark.parametrize("unreadable", ["soon", "Tue, 99 Foo 2026 25:61:00 GMT", "Sun, 15 Nov 2099 08:12:31 -0000"])
def test_an_unreadable_or_zoneless_retry_after_falls_back_to_the_backoff(
    double: ActionsContractDouble, unreadable: str
) -> None:
    """A date without a zone (`-0000`: RFC 5322's "unknown") could be any of 26 hours: it is not trusted, the
    client's own backoff applies (jittered exponential, 0.5 s base: well under the 60 s cap the date would
    otherwise reach)."""
    assert _one_retry_sleep(double, unreadable) <= 1.0


def test_a_token_provider_that_fails_is_unavailable_and_nothing_is_sent(double: ActionsContractDouble) -> None:
    def broken() -> str:
        raise ConnectionError("metadata endpoint down: secret-detail")

    client = GatekeeperClient(double.url, token_provider=broken, sleep=lambda _: None, retry_budget=0)
    with pytest.raises(Unavailable) as caught:
        client.get("act-0001")
    assert "token provider failed: ConnectionError" in str(caught.value)
    assert "secret-detail" not in str(caught.value)
    assert double.requests == []


@pytest.mark.parametrize("empty", ["", "   ", None])
def test_a_token_provider_that_returns_no_token_is_bad_credentials(
    double: ActionsContractDouble, empty: str | None
) -> None:
    client = GatekeeperClient(double.url, token_provider=lambda: empty)  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidRequest) as caught:
        client.get("act-0001")
    assert caught.value.field == "credentials"
    assert double.requests == []


def test_a_refused_token_invalidates_the_providers_cache_before_the_retry(double: ActionsContractDouble) -> None:
    class CachingProvider:
        def __init__(self) -> None:
            self.cached: str | None = "expired-token"
            self.invalidated = 0

        def __call__(self) -> str:
            if self.cached is None:
                self.cached = "good-token"
            return self.cached

        def invalidate(self) -> None:
            self.invalidated += 1
            self.cached = None

    provider = CachingProvider()
    approval = GatekeeperClient(double.url, token_provider=provider).request(
        TF, "infrastructure_change", "production", idempotency_key="cache-1"
    )
    assert approval.state.pending and provider.invalidated == 1
    assert [r.status for r in double.requests_to("/api/actions", "POST")] == [401, 202]


def test_an_answer_over_the_bound_is_refused_after_reading_at_most_the_bound(double: ActionsContractDouble) -> None:
    double.answer_huge(1, 32 * MAX_ANSWER_BYTES, path_contains="/api/actions/act-0001")
    with pytest.raises(UnexpectedResponse, match=f"over {MAX_ANSWER_BYTES} bytes"):
        client_for(double).get("act-0001")
    deadline = time.monotonic() + 5  # the server notes what it wrote once it sees the client hang up
    while not double.huge_written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (
        double.huge_written and double.huge_written[0] < 16 * MAX_ANSWER_BYTES
    )  # hung up early (socket buffers aside)


@pytest.mark.parametrize("body", [[1, 2], "pending", 7])
def test_an_answer_that_is_not_an_object_is_unexpected(double: ActionsContractDouble, body: object) -> None:
    double.fail_next(1, 200, path_contains="/api/actions/act-0001", body=body)
    with pytest.raises(UnexpectedResponse, match="not a JSON object"):
        client_for(double).get("act-0001")


def test_cancel_passes_on_a_refusal_that_is_not_a_race(double: ActionsContractDouble) -> None:
    approval = client_for(double).request(TF, "infrastructure_change", "production", idempotency_key="c-1")
    problem = {"type": "https://gatekeeper.dev/problems/forbidden", "title": "x", "status": 403, "detail": "no"}
    double.fail_next(1, 403, path_contains="/cancel", body=problem)
    with pytest.raises(InvalidRequest) as caught:
        approval.cancel()
    assert caught.value.status == 403
    assert double.requests_to(f"/api/actions/{approval.id}", "GET") == []  # no state read: the refusal stands


def test_empty_context_values_are_left_out_of_the_request(double: ActionsContractDouble) -> None:
    context: dict[str, object] = {"ticket": "CHG0042", "repository": "", "version_tags": [], "run_url": None}
    client_for(double).request(TF, "infrastructure_change", "production", context=context, idempotency_key="ctx")
    [sent] = double.requests_to("/api/actions", "POST")
    assert sent.json["context"] == {"ticket": "CHG0042"}


@pytest.mark.parametrize(("wait", "ok"), [(0, True), (25, True), (26, False), (-1, False), (True, False), (1.5, False)])
def test_the_poll_wait_is_whole_seconds_up_to_25(double: ActionsContractDouble, wait: object, ok: bool) -> None:
    approval = client_for(double).request(TF, "infrastructure_change", "production", idempotency_key="w")
    double.decide(approval.id, "approved")
    if ok:
        assert client_for(double).get(approval.id, wait=wait).approved  # type: ignore[arg-type]
    else:
        before = len(double.requests)
        with pytest.raises(InvalidRequest) as caught:
            client_for(double).get(approval.id, wait=wait)  # type: ignore[arg-type]
        assert caught.value.field == "wait" and len(double.requests) == before


@pytest.mark.parametrize(
    ("outcome", "exit_code", "field"),
    [
        ("ran", None, "outcome"),
        ("executed", True, "exit_code"),
        ("executed", 2**31, "exit_code"),
        ("executed", -(2**31) - 1, "exit_code"),
        ("executed", "0", "exit_code"),
    ],
)
def test_a_report_with_a_bad_outcome_or_exit_code_is_refused(
    double: ActionsContractDouble, outcome: str, exit_code: object, field: str
) -> None:
    approval = client_for(double).request(TF, "infrastructure_change", "production", idempotency_key="rep")
    with pytest.raises(InvalidRequest) as caught:
        approval.report(outcome, exit_code=exit_code)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert double.requests_to(f"/api/actions/{approval.id}/report", "POST") == []


def test_the_extreme_32_bit_exit_codes_are_reported(double: ActionsContractDouble) -> None:
    approval = client_for(double).request(TF, "infrastructure_change", "production", idempotency_key="ext")
    double.decide(approval.id, "approved")
    for code in (-(2**31), 2**31 - 1):
        approval.report("executed", exit_code=code)
    sent = [r.json["exit_code"] for r in double.requests_to(f"/api/actions/{approval.id}/report", "POST")]
    assert sent == [-(2**31), 2**31 - 1]


@pytest.mark.parametrize("bad", [None, "", "   "])
def test_a_missing_base_url_names_the_setting(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="GATEKEEPER_URL") as caught:
        GatekeeperClient(bad, token="t")  # type: ignore[arg-type]
    assert caught.value.field == "base_url"


def test_a_timedelta_timeout_is_whole_seconds() -> None:
    assert parse_duration(timedelta(minutes=30)) == 1800
    with pytest.raises(InvalidRequest):
        parse_duration(timedelta(days=8))
