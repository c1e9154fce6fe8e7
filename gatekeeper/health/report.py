"""Runs the health probes concurrently under one deadline and builds the health route's answer.

Why a deadline and a pool of its own: a dependency that hangs must make the route answer 503 quickly (within
`DEADLINE_SECONDS`), and probe threads stuck on it must not starve the threads other routes use
(`asyncio.to_thread`'s default pool). A probe still running at the deadline is reported `timeout`; its thread
ends when the SDK's own request-path timeouts fire (gatekeeper.store.budgets).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from gatekeeper.ports import DependencyProbe
from gatekeeper.settings import DataBoundary
from gatekeeper.tenancy.bootstrap import BootstrapResult

log = logging.getLogger("gatekeeper.health")

DEADLINE_SECONDS = 1.5
CACHE_SECONDS = 5.0  # an answer is reused this long (HealthCache)
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health-probe")


@dataclass(frozen=True)
class DependencyStatus:
    name: str
    ok: bool
    reason: str | None = None  # timeout | unreachable | refused | missing | error (never exception text)
    detail: str | None = None
    milliseconds: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "ok" if self.ok else "unavailable", "ms": self.milliseconds}
        if self.reason:
            body["reason"] = self.reason
        if self.detail:
            body["detail"] = self.detail
        return body


@dataclass(frozen=True)
class HealthReport:
    dependencies: tuple[DependencyStatus, ...]
    data_boundary: DataBoundary
    bootstrap: BootstrapResult
    failing: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.dependencies) and self.bootstrap.healthy

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unavailable",
            "dataBoundary": self.data_boundary.value,
            "dependencies": {d.name: d.to_json() for d in self.dependencies},
            "bootstrap": self.bootstrap.to_json(),
        }


def reason_of(exc: BaseException) -> str:
    """A fixed word for what went wrong; the exception's text never leaves the process."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError) or "timeout" in type(exc).__name__.lower():
        return "timeout"  # ours, or the SDK's read timeout (ServiceResponseTimeoutError) within the budget
    if isinstance(exc, ResourceNotFoundError):
        return "missing"
    if isinstance(exc, ClientAuthenticationError | PermissionError):
        return "refused"
    if isinstance(exc, HttpResponseError) and exc.status_code in (401, 403):
        return "refused"
    if isinstance(exc, ServiceRequestError | ConnectionError | OSError) or "connect" in type(exc).__name__.lower():
        return "unreachable"  # nothing answered (aiohttp's ClientConnectorError too)
    return "error"


async def _probe(probe: DependencyProbe, deadline: float) -> DependencyStatus:
    started = time.monotonic()
    try:
        check = probe.check
        if inspect.iscoroutinefunction(check):
            detail = await asyncio.wait_for(check(), deadline)
        else:
            loop = asyncio.get_running_loop()
            detail = await asyncio.wait_for(loop.run_in_executor(_POOL, check), deadline)
        return DependencyStatus(probe.name, True, detail=detail, milliseconds=_ms(started))
    except Exception as exc:  # every failure is a status, never a 500
        reason = reason_of(exc)
        log.warning("health: %s unavailable (%s, %s)", probe.name, reason, type(exc).__name__)
        return DependencyStatus(probe.name, False, reason=reason, milliseconds=_ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def check_health(
    probes: Sequence[DependencyProbe],
    data_boundary: DataBoundary,
    bootstrap: Callable[[], BootstrapResult],
    deadline: float = DEADLINE_SECONDS,
) -> HealthReport:
    """Every probe and the bootstrap's status, concurrently, each bounded by `deadline` seconds."""

    def bootstrap_status() -> BootstrapResult:
        return bootstrap()

    loop = asyncio.get_running_loop()
    results = await asyncio.gather(
        *(_probe(p, deadline) for p in probes),
        _bounded_bootstrap(loop.run_in_executor(_POOL, bootstrap_status), deadline),
    )
    dependencies = tuple(r for r in results if isinstance(r, DependencyStatus))
    status = next(r for r in results if isinstance(r, BootstrapResult))
    return HealthReport(dependencies, data_boundary, status, tuple(d.name for d in dependencies if not d.ok))


class HealthCache:
    """The last report, answered again for `ttl` seconds; concurrent callers share one check in progress.

    Why: the route is anonymous and each check reads Key Vault (throttled per vault, a budget the data
    path's unwraps and signatures share), storage twice and the task hub. Without a bound any caller on the
    internet sets the pace of those reads; with it, one check per interval per instance, whatever the load."""

    def __init__(self, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._last: tuple[float, HealthReport] | None = None
        self._pending: asyncio.Future[HealthReport] | None = None

    def expire(self) -> None:
        self._last = None

    async def report(self, check: Callable[[], Awaitable[HealthReport]]) -> HealthReport:
        last = self._last
        if last is not None and self._clock() - last[0] < self._ttl:
            return last[1]
        pending = self._pending
        if pending is None or pending.done() or pending.get_loop() is not asyncio.get_running_loop():
            pending = asyncio.ensure_future(check())
            self._pending = pending
        report = await asyncio.shield(pending)
        self._last = (self._clock(), report)
        return report


async def _bounded_bootstrap(pending: Any, deadline: float) -> BootstrapResult:
    from gatekeeper.tenancy.bootstrap import BootstrapState

    try:
        return await asyncio.wait_for(pending, deadline)
    except Exception as exc:
        log.warning("health: bootstrap status unknown (%s)", type(exc).__name__)
        return BootstrapResult(BootstrapState.PENDING, detail="status unknown: storage did not answer")
