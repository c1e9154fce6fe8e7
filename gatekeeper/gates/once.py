"""Durable activities run at least once; their effects must happen once.

The host runs an activity again when its worker died before the completion reached the orchestration's
history, and an activity called with a retry policy runs again after a failure that may have come after part
of its work. Appending the audit entries again audits one change twice; calling the pipeline, the rollback
target or the PSA again starts a second rollback, contradicts the first callback or logs the time twice.

So every activity with effects runs through `run_once`, keyed by the step and its input (the orchestrator
sends the same input on every run: its `at` is the replay-safe orchestration time):

- the first run creates its step row (create-only: one writer wins) noting where the tenant's audit log stood
  (`audit_from`), runs the step, and stores the step's result in the row (sealed, bound to the row);
- a run that finds the row with a result returns that result and does nothing else (the completed step);
- a run that finds the row without a result (the first run failed or died half-way) runs the step again,
  and each audit entry the step would append is first looked for from `audit_from` (kind, instance id and
  the step's time are stored in the clear, so nothing is opened): an entry the earlier run appended is
  reused, never appended again (`appended_before`, called by `gatekeeper.gates.common.append_audit`).

The rows live in the tenant's Gates table, partition `step~<instance id>`, next to the gate's own rows and
outside every query those make (each names its partition).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import UpdateMode

from gatekeeper.audit.records import format_time
from gatekeeper.store.chunks import join_property, split_property
from gatekeeper.store.repository import check_key
from gatekeeper.store.tables import TablePurpose, tenant_table_name

if TYPE_CHECKING:
    from gatekeeper.gates.needs import GateNeeds

log = logging.getLogger("gatekeeper.gates.once")

STEP_PARTITION_PREFIX = "step~"
RESULT_PROPERTY = "sealed_result"


@runtime_checkable
class SearchableLog(Protocol):
    """What the lookup needs of the tenant's audit log (`gatekeeper.audit.log.AuditLog` has it)."""

    def head(self) -> Any: ...

    def entries(self, from_seq: int = 0, to_seq: int | None = None) -> Iterator[dict[str, Any]]: ...


@dataclass
class _Run:
    """One run of a step: where to look for its earlier entries, and which entries this run owns already."""

    log: SearchableLog | None
    audit_from: int
    rerun: bool
    owned: set[int] = field(default_factory=set)


_CURRENT: ContextVar[_Run | None] = ContextVar("gatekeeper_step_run", default=None)


def step_key(step: str, payload: Mapping[str, Any]) -> str:
    """The step row's key: the step's name and its input as canonical JSON, hashed (the same on every run)."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{step}\n{canonical}".encode()).hexdigest()[:48]


def run_once(
    services: GateNeeds,
    step: str,
    tenant_id: str,
    instance_id: str,
    payload: Mapping[str, Any],
    body: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Run `body` (the step, returning its JSON result) at most once to completion for this input; see the
    module docstring. A failing `body` raises as before, leaving the row without a result for the retry."""
    table_name = tenant_table_name(tenant_id, TablePurpose.GATES)
    table = services.storage.ensure_tenant_table(tenant_id, TablePurpose.GATES)
    partition = check_key("instance_id", STEP_PARTITION_PREFIX + instance_id)
    row = step_key(step, payload)
    trail = services.audit_for(tenant_id)
    searchable = trail if isinstance(trail, SearchableLog) else None
    audit_from = int(searchable.head().size) if searchable is not None else 0
    try:
        table.create_entity({"PartitionKey": partition, "RowKey": row, "step": step, "audit_from": audit_from})
        rerun = False
    except ResourceExistsError:
        stored = table.get_entity(partition, row)
        if RESULT_PROPERTY in stored:
            log.info("step %s of %s ran before: its result, no second effect", step, instance_id)
            done: dict[str, Any] = services.cipher.open_json(
                tenant_id, table_name, partition, row, join_property(stored, RESULT_PROPERTY)
            )
            return done
        rerun, audit_from = True, int(stored.get("audit_from") or 0)
    token = _CURRENT.set(_Run(searchable, audit_from, rerun))
    try:
        result = body()
    finally:
        _CURRENT.reset(token)
    try:
        sealed = services.cipher.seal_json(tenant_id, table_name, partition, row, result)
        table.update_entity(
            {"PartitionKey": partition, "RowKey": row, **split_property(RESULT_PROPERTY, sealed)}, mode=UpdateMode.MERGE
        )
    except Exception as exc:  # the step is done; a run after this one redoes it but finds its entries
        log.warning("step %s of %s: could not store its result: %s", step, instance_id, type(exc).__name__)
    return result


def appended_before(kind: str, instance_id: str, at: datetime) -> int | None:
    """The sequence number of the entry an earlier run of the current step appended for this (kind, instance,
    time), not yet claimed by this run; None outside a step, on a first run, or when there is none."""
    run = _CURRENT.get()
    if run is None or not run.rerun or run.log is None:
        return None
    when = format_time(at)
    for entry in run.log.entries(run.audit_from):
        seq = entry.get("seq")
        if (
            isinstance(seq, int)
            and seq not in run.owned
            and entry.get("kind") == kind
            and entry.get("instance_id") == instance_id
            and entry.get("at") == when
        ):
            run.owned.add(seq)
            return seq
    return None


def appended(seq: int) -> None:
    """This run appended entry `seq`: a later lookup in the same run must not take it for an earlier one."""
    run = _CURRENT.get()
    if run is not None:
        run.owned.add(seq)


def rerun() -> bool:
    """Whether the current step runs after an earlier run of it failed or died half-way (so a step can look for
    an external effect that run recorded before making it again)."""
    run = _CURRENT.get()
    return run is not None and run.rerun
