"""The KQL probe: a Log Analytics query through `azure-monitor-query` (imported on first use: cold start),
judged against an absolute threshold and/or the same query's pre-deploy baseline.

Only workspaces registered for the tenant (`azure-monitor:workspace:<id>` in its identities) are queried:
the service's managed identity may read several customers' workspaces, and one tenant's policy must never
read another's. A query that fails, answers partially, or has no numeric value is an `error` (it counts
towards `consecutive_error_limit`), never a pass.
"""

from __future__ import annotations

import math
import operator as op
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gatekeeper.policy.watch import KqlProbeSpec
from gatekeeper.rollback.probes import ProbeResult

_OPERATORS: dict[str, Callable[[float, float], bool]] = {">": op.gt, ">=": op.ge, "<": op.lt, "<=": op.le}


class QueryFailed(Exception):
    """The query could not give one number; the message is safe to show (no token, no row data)."""


def first_number(tables: Any) -> float:
    """The value of the first row: its column `value` if there is one, else its first numeric column."""
    if not tables or not tables[0].rows:
        raise QueryFailed("the query returned no rows")
    table = tables[0]
    row = table.rows[0]
    columns = [str(c) for c in table.columns]
    candidates = [columns.index("value")] if "value" in columns else range(len(columns))
    for index in candidates:
        cell = row[index]
        if isinstance(cell, bool) or not isinstance(cell, int | float):
            continue
        number = float(cell)
        if math.isfinite(number):
            return number
    raise QueryFailed("the first row has no finite numeric value")


class KqlProbe:
    """Runs `KqlProbeSpec`s with a `LogsQueryClient` (the process credential, the configured endpoint)."""

    def __init__(
        self,
        credential: Callable[[], Any],
        endpoint: str,
        workspace_allowed: Callable[[str, str], bool],
        **client_options: Any,
    ):
        self._credential = credential
        self._endpoint = endpoint
        self._allowed = workspace_allowed
        self._options = client_options
        self._client: Any = None

    def _logs(self) -> Any:
        if self._client is None:
            from azure.monitor.query import LogsQueryClient

            self._client = LogsQueryClient(self._credential(), endpoint=self._endpoint, **self._options)
        return self._client

    def _value(self, spec: KqlProbeSpec, timespan: Any) -> float:
        from azure.core.exceptions import AzureError
        from azure.monitor.query import LogsQueryStatus

        try:
            response = self._logs().query_workspace(
                spec.workspace_id,
                spec.query,
                timespan=timespan,
                server_timeout=int(spec.timeout.total_seconds()),
                connection_timeout=spec.timeout.total_seconds(),
                read_timeout=spec.timeout.total_seconds(),
            )
        except AzureError as exc:
            status = getattr(exc, "status_code", None)
            raise QueryFailed(f"query failed ({type(exc).__name__}{f' {status}' if status else ''})") from None
        if response.status != LogsQueryStatus.SUCCESS:
            raise QueryFailed("the query answered only partially")
        return first_number(response.tables)

    def run(self, spec: KqlProbeSpec, tenant_id: str, deployed_at: datetime) -> ProbeResult:
        name = spec.name
        if not self._allowed(tenant_id, spec.workspace_id):
            return ProbeResult(name, "error", f"workspace {spec.workspace_id} is not registered for the tenant")
        try:
            value = self._value(spec, spec.timespan)
            baseline = (
                self._value(spec, (deployed_at - spec.timespan, deployed_at))
                if spec.max_increase_percent is not None
                else None
            )
        except QueryFailed as exc:
            return ProbeResult(name, "error", str(exc))
        reasons = []
        if spec.threshold is not None and _OPERATORS[spec.operator](value, spec.threshold):
            reasons.append(f"{value:g} {spec.operator} {spec.threshold:g}")
        if baseline is not None and spec.max_increase_percent is not None:
            limit = baseline * (1 + spec.max_increase_percent / 100)
            if value > limit:
                reasons.append(f"{value:g} is more than {spec.max_increase_percent:g}% above the baseline {baseline:g}")
        if reasons:
            return ProbeResult(name, "fail", "; ".join(reasons))
        shown = f"{value:g}" + (f" (baseline {baseline:g})" if baseline is not None else "")
        return ProbeResult(name, "pass", shown)
