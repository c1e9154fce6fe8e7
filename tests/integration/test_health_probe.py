"""The HTTP health probe against local servers: pass, fail and error as the watch counts them, and the
outbound rules a policy-supplied URL must pass (no private addresses, no redirects, a bounded body)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest

from devstack.health import LocalHealthServer
from devstack.server import LocalServer, Response, json_response
from gatekeeper.policy.watch import HttpProbeSpec
from gatekeeper.rollback.probes import MAX_BODY_BYTES, HttpHealthProbe


class Scripted(LocalServer):
    """Answers every request with `answer` (status, headers, body)."""

    def __init__(self, answer: Response):
        super().__init__()
        self.answer = answer

    def route(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> Response:
        return self.answer


@pytest.fixture
def health() -> Iterator[LocalHealthServer]:
    with LocalHealthServer() as server:
        yield server


def spec(url: str, **over: Any) -> HttpProbeSpec:
    return HttpProbeSpec.model_validate({"name": "health", "url": url} | over)


PROBE = HttpHealthProbe(allow_loopback_http=True)


def test_healthy_then_unhealthy_then_unreadable(health):
    health.unhealthy_from, health.garbled_from = 1, 2
    condition = {"json": {"path": "status", "equals": "ok"}}
    first = PROBE.run(spec(health.health_url, **condition))
    assert first.outcome == "pass" and first.status_code == 200
    second = PROBE.run(spec(health.health_url, **condition))
    assert second.outcome == "fail" and second.detail == "status 503, expected 200"
    third = PROBE.run(spec(health.health_url, **condition))
    assert third.outcome == "error" and "not JSON" in third.detail
    assert [r.headers["user-agent"] for r in health.requests] == ["gatekeeper-health-probe"] * 3


@pytest.mark.parametrize(
    ("body", "condition", "outcome", "words"),
    [
        ({"status": "ok"}, {"path": "status", "equals": "ok"}, "pass", "status 200"),
        ({"status": "degraded"}, {"path": "status", "equals": "ok"}, "fail", "is 'degraded', expected 'ok'"),
        ({"checks": {"db": {"up": True}}}, {"path": "checks.db.up", "equals": True}, "pass", "status 200"),
        ({"checks": {"db": {"up": 1}}}, {"path": "checks.db.up", "equals": True}, "fail", "expected True"),
        ({"up": True}, {"path": "up", "equals": 1}, "fail", "expected 1"),  # a bool is not a number
        ({"other": 1}, {"path": "status", "equals": "ok"}, "fail", "field status is missing"),
        ([1, 2], {"path": "status", "equals": "ok"}, "fail", "field status is missing"),
    ],
)
def test_the_json_condition(body, condition, outcome, words):
    with Scripted(json_response(200, body)) as server:
        result = PROBE.run(spec(server.url + "/health", json=condition))
    assert result.outcome == outcome and words in result.detail


def test_hostile_answers_are_errors_not_passes():
    deep = b"[" * 200 + b"]" * 200
    with Scripted((200, {"Content-Type": "application/json"}, deep)) as server:
        assert PROBE.run(spec(server.url, json={"path": "a", "equals": 1})).outcome == "error"
    huge = b'{"status": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    with Scripted((200, {"Content-Type": "application/json"}, huge)) as server:
        result = PROBE.run(spec(server.url, json={"path": "status", "equals": "ok"}))
    assert result.outcome == "error" and "longer than" in result.detail


def test_redirects_are_not_followed():
    with Scripted((302, {"Location": "http://169.254.169.254/metadata"}, b"")) as server:
        result = PROBE.run(spec(server.url))
    assert result.outcome == "fail" and result.detail == "status 302, expected 200"


def test_a_slow_answer_fails_on_latency():
    ticks = count(step=3)  # every clock reading is 3 s later than the one before
    slow = HttpHealthProbe(allow_loopback_http=True, clock=lambda: float(next(ticks)))
    with Scripted(json_response(200, {})) as server:
        result = slow.run(spec(server.url, max_latency="PT2S"))
    assert result.outcome == "fail" and result.detail == "answered in 3000 ms, limit 2000 ms"


@pytest.mark.parametrize(
    "url",
    ["https://169.254.169.254/metadata", "https://10.0.0.4/health", "https://127.0.0.1/health", "https://localhost/h"],
)
def test_private_and_link_local_addresses_are_never_called(url):
    result = HttpHealthProbe().run(spec(url))
    assert result.outcome == "error" and "must not point at a private" in result.detail


def test_loopback_http_only_in_development(health):
    assert HttpHealthProbe().run(spec(health.health_url)).outcome == "error"
    assert health.requests == []


def test_a_refused_connection_is_an_error():
    with Scripted(json_response(200, {})) as server:
        url = server.url
    refused = PROBE.run(spec(url))  # the server has stopped
    assert refused.outcome == "error" and "request failed" in refused.detail
