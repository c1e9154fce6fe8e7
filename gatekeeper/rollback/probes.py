"""The HTTP health probe: one GET, bounded in time and size, judged against the policy's expectations.

`pass` when the status is expected, the answer came within `max_latency` and the JSON condition holds;
`fail` when the endpoint answered and one of those does not hold; `error` when it could not be evaluated
(no answer in time, refused, an outbound URL that is not allowed, a body that is not bounded JSON), which
counts towards `consecutive_error_limit` rather than `failure_limit`, as in Argo Rollouts.

The URL comes from the tenant's policy, so it passes the same outbound check as callbacks (https to a public
host; loopback only in development), redirects are not followed, and at most 64 KiB of the body is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import requests

from gatekeeper import json_bounded
from gatekeeper.integrations.guarded_http import OutboundRefused, guarded_session
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url
from gatekeeper.policy.watch import HttpProbeSpec, KqlProbeSpec, RmmProbeSpec

MAX_BODY_BYTES = 64 * 1024
_MISSING = object()


@dataclass(frozen=True)
class ProbeResult:
    name: str
    outcome: Literal["pass", "fail", "error"]
    detail: str
    status_code: int | None = None
    latency_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome,
            "detail": self.detail[:300],
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
        }


def _field(document: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(document, dict) or part not in document:
            return _MISSING
        document = document[part]
    return document


def _read_bounded(response: requests.Response) -> bytes | None:
    """At most MAX_BODY_BYTES of the body; None when it is longer."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=8192):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class HttpHealthProbe:
    """Runs `HttpProbeSpec`s. `allow_loopback_http` only in development (the local stack and tests)."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        allow_loopback_http: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self._session = session or guarded_session(allow_loopback_http)  # the tenant policy names the URL
        self._allow_loopback_http = allow_loopback_http
        self._clock = clock

    def run(self, spec: HttpProbeSpec, tenant_id: str = "", deployed_at: datetime | None = None) -> ProbeResult:
        name = spec.name
        try:
            url = check_outbound_url(
                spec.url, field=f"probe {name}: url", allow_loopback_http=self._allow_loopback_http
            )
        except OutboundUrlError as exc:
            return ProbeResult(name, "error", str(exc))
        started = self._clock()
        try:
            with self._session.get(
                url,
                timeout=spec.timeout.total_seconds(),
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json", "User-Agent": "gatekeeper-health-probe"},
            ) as response:
                latency_ms = int((self._clock() - started) * 1000)
                body = _read_bounded(response) if spec.json_condition is not None else b""
                status = response.status_code
        except requests.Timeout:
            return ProbeResult(name, "error", f"no answer within {spec.timeout.total_seconds():g} s")
        except OutboundRefused as exc:
            return ProbeResult(name, "error", str(exc))
        except requests.RequestException as exc:
            return ProbeResult(name, "error", f"request failed: {type(exc).__name__}")
        if status not in spec.expected_status:
            expected = ", ".join(str(s) for s in spec.expected_status)
            return ProbeResult(name, "fail", f"status {status}, expected {expected}", status, latency_ms)
        if latency_ms > spec.max_latency.total_seconds() * 1000:
            limit = int(spec.max_latency.total_seconds() * 1000)
            return ProbeResult(name, "fail", f"answered in {latency_ms} ms, limit {limit} ms", status, latency_ms)
        condition = spec.json_condition
        if condition is not None:
            if body is None:
                return ProbeResult(name, "error", f"body longer than {MAX_BODY_BYTES} bytes", status, latency_ms)
            try:
                document = json_bounded.loads(body)
            except json_bounded.JsonBoundsError as exc:
                return ProbeResult(name, "error", f"body is not JSON: {json_bounded.verdict(exc)}", status, latency_ms)
            value = _field(document, condition.path)
            if value is _MISSING:
                return ProbeResult(name, "fail", f"field {condition.path} is missing", status, latency_ms)
            if value != condition.equals or isinstance(value, bool) != isinstance(condition.equals, bool):
                return ProbeResult(
                    name, "fail", f"field {condition.path} is {str(value)[:60]!r}, expected {condition.equals!r}"
                )
        return ProbeResult(name, "pass", f"status {status} in {latency_ms} ms", status, latency_ms)


class KqlRunner(Protocol):
    """`gatekeeper.rollback.kql.KqlProbe` (kept apart: it imports the query SDK on first use)."""

    def run(self, spec: KqlProbeSpec, tenant_id: str, deployed_at: datetime) -> ProbeResult: ...


class RmmRunner(Protocol):
    """`gatekeeper.rollback.rmm_probe.RmmDeviceProbe`: the tenant's RMM asked about devices."""

    def run(self, spec: RmmProbeSpec, tenant_id: str, deployed_at: datetime) -> ProbeResult: ...


class Probes:
    """The watch's probes by type: HTTP health endpoints, KQL queries when a query client is configured, and
    device status from the tenant's RMM."""

    def __init__(self, http: HttpHealthProbe, kql: KqlRunner | None = None, rmm: RmmRunner | None = None):
        self._http = http
        self._kql = kql
        self._rmm = rmm

    def run(
        self, spec: HttpProbeSpec | KqlProbeSpec | RmmProbeSpec, tenant_id: str, deployed_at: datetime
    ) -> ProbeResult:
        if isinstance(spec, RmmProbeSpec):
            if self._rmm is None:
                return ProbeResult(spec.name, "error", "RMM probes are not configured in this deployment")
            return self._rmm.run(spec, tenant_id, deployed_at)
        if isinstance(spec, KqlProbeSpec):
            if self._kql is None:
                return ProbeResult(spec.name, "error", "KQL probes are not configured in this deployment")
            return self._kql.run(spec, tenant_id, deployed_at)
        return self._http.run(spec, tenant_id, deployed_at)
