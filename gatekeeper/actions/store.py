"""An action's row, next to its gate in the tenant's Gates table (partition = the action id = the gate's
instance id, RowKey `action`), so everything about one gate stays in one partition.

The row is created create-only: the action id derives from (tenant, idempotency key), so of any number of
identical concurrent requests exactly one creates it; the others read it back and answer the same action.
Later changes (submitted, cancelled, expired, reported) are ETag-conditional replaces, so a cancel racing a
report, or two cancels, cannot both win. The request itself (command, context, requester) is sealed.
The claim row also says whether the action was announced (indexed, audited as requested): what a creator
could not finish (an outage, a crash) one re-request takes over under the announce lease (`take_over`). It
also keeps where the audit log stood when the key was claimed (`audit_from`), so the one taking over finds an
`action_requested` the creator appended before its flag write failed, instead of appending a second.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.repository import TenantRepository, check_key
from gatekeeper.store.tables import StorageAccount, TablePurpose, validate_tenant_id

ACTION_ROW = "action"
CLAIM_ROW = "claim"
ANNOUNCE_LEASE = timedelta(seconds=30)
"""How long the request that claimed a key keeps the sole right to announce the action (index it, audit
`action_requested`): three table writes on request-path budgets take seconds. After it, or at once when the
creator handed it back (an outage), one re-request (ETag-conditional) announces it instead, so an action whose
creator died between its writes is still found by its status route and audited, exactly once."""
CLOSE_AUDIT_LEASE = ANNOUNCE_LEASE
"""How long the request that closed an action (cancel, expiry) keeps the sole right to audit the close; after
it, or at once when it handed the close back, the next reader of the action audits it (ETag-conditionally)."""
_HANDED_BACK = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming an idempotency key: whether this request created the action, the action as
    first requested, and whether its event was already handed to the queue."""

    created: bool
    record: ActionRecord
    submitted: bool
    failed: bool = False  # the creator could not queue the event: the next re-request queues it
    announced: bool = True  # indexed and audited (`action_requested`); claims from before the flag were
    # The audit log's size when the key was claimed: an announcer looks for `action_requested` from there, so a
    # creator whose `mark_announced` failed after its append is not audited again by the re-request taking over.
    audit_from: int | None = None


def action_key(tenant_id: str, idempotency_key: str) -> str:
    """The run id an action's event carries: one per (tenant, idempotency key), so the business key, and so
    the gate's instance id, are the same for every re-request."""
    return "action:" + hashlib.sha256(f"{tenant_id}|{idempotency_key}".encode()).hexdigest()[:40]


class ActionRecord(BaseModel):
    """One action request and what became of it (sealed in the `record` property)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action_id: str
    tenant_id: str
    idempotency_key: str
    fingerprint: str  # sha256 of what the key stands for (command, action, environment, resource)
    command: str
    argv: tuple[str, ...] | None = None
    action: str
    environment: str
    resource: str | None = None
    credential: str
    caller_key: str
    requester_ids: tuple[str, ...] = ()
    requested_by: str | None = None
    agent: str | None = None  # the requesting token's client application (`azp`/`appid`): telemetry's `agent`
    level: str
    immediate: str | None = None  # L0/L1 "approved", L3 "human_only", blocked "denied"; None: people decide
    reason: str = ""
    created_at: datetime
    expires_at: datetime | None = None
    event: dict[str, Any] = Field(default_factory=dict)  # the sealable event, re-submitted by a re-request
    submitted: bool = False
    closed: str | None = None  # "cancelled" | "expired": ended by the requester or the request's timeout
    closed_at: datetime | None = None
    closed_by: str | None = None
    # A close (cancel, expiry) not yet known to be audited: where the audit log stood before the close was
    # written (its `action_<closed>` entry is looked for from there), who may audit it until when (None: at
    # once), and whether ending the approval chain succeeded. None once audited, and for older rows.
    close_audit_from: int | None = None
    close_audit_until: datetime | None = None
    chain_ended: bool | None = None
    outcome: str | None = None  # "executed" | "skipped", as the client reported
    exit_code: int | None = None
    reported_at: datetime | None = None


class ActionRepository(TenantRepository):
    purpose = TablePurpose.GATES
    sealed_properties = frozenset({"record"})


class ActionStore:
    """One tenant's action rows."""

    def __init__(self, storage: StorageAccount, tenant_id: str, cipher: EnvelopeCipher):
        self._repo = ActionRepository(storage, validate_tenant_id(tenant_id), cipher)

    def _ready(self) -> ActionRepository:
        return self._repo.ready()

    @staticmethod
    def _entity(record: ActionRecord) -> dict[str, Any]:
        return {
            "PartitionKey": check_key("action_id", record.action_id),
            "RowKey": ACTION_ROW,
            "level": record.level,
            "closed": record.closed or "",
            "outcome": record.outcome or "",
            "record": record.model_dump(mode="json"),
        }

    def claim(self, record: ActionRecord, audit_from: int | None = None) -> Claim:
        """Claim the idempotency key (row `claim` in the partition named by the key's run id), create-only,
        then write the action's row. Of identical concurrent requests one creates; the rest get the first
        request's record back (and write the action's row if its creator has not written it yet). A creator
        whose row write fails hands the claim back (`hand_back`), so the retry announces and queues at once."""
        first = self.claim_key(record, audit_from)
        if first is not None:
            return first
        try:
            self.write_action_row(record)
        except Exception:
            with contextlib.suppress(Exception):  # best effort: the announce lease expires on its own otherwise
                self.hand_back(record, record.created_at + ANNOUNCE_LEASE)
            raise
        return Claim(True, record, False, audit_from=audit_from)

    def claim_key(self, record: ActionRecord, audit_from: int | None = None) -> Claim | None:
        """None when this request claimed the key; otherwise the first request's claim. A duplicate whose
        fingerprint matches also writes the action's row if it is missing, so a creator that died between
        its two writes does not leave the action without a row."""
        repo = self._ready()
        key = check_key("run_id", str(record.event.get("run_id", "")))
        try:
            repo.create(
                {
                    "PartitionKey": key,
                    "RowKey": CLAIM_ROW,
                    "action_id": record.action_id,
                    "submitted": False,
                    "announced": False,
                    "announce_until": record.created_at + ANNOUNCE_LEASE,
                    "record": record.model_dump(mode="json"),
                    **({"audit_from": audit_from} if audit_from is not None else {}),
                }
            )
        except ResourceExistsError:
            entity = repo.get(key, CLAIM_ROW)
            if entity is None:  # pragma: no cover - claim rows are never deleted
                raise
            first = ActionRecord.model_validate(entity["record"])
            if first.fingerprint == record.fingerprint and self.load(first.action_id) is None:
                self.write_action_row(first)
            return Claim(
                False,
                first,
                bool(entity.get("submitted")),
                bool(entity.get("submit_failed")),
                bool(entity.get("announced", True)),
                entity["audit_from"] if isinstance(entity.get("audit_from"), int) else None,
            )
        return None

    def write_action_row(self, record: ActionRecord) -> None:
        """Create the action's row, create-only. The creator and any duplicate that found the row missing
        both write the claimed record, so whichever comes second finds the same action already there (and
        must not overwrite it: a cancel or report may have changed it in between)."""
        with contextlib.suppress(ResourceExistsError):
            self._ready().create(self._entity(record))

    def mark_submitted(self, record: ActionRecord, *, ok: bool = True) -> None:
        """The event is on the queue (later re-requests need not queue it again), or queueing failed (the next
        re-request queues it at once instead of after RESUBMIT_AFTER)."""
        key = check_key("run_id", str(record.event.get("run_id", "")))
        flag = {"submitted": True} if ok else {"submit_failed": True}
        self._ready().upsert({"PartitionKey": key, "RowKey": CLAIM_ROW, **flag}, merge=True)

    def take_over(self, record: ActionRecord, now: datetime) -> bool:
        """The right to announce an action its creator has not announced: True for one caller only, once the
        creator handed it back (`hand_back`) or its ANNOUNCE_LEASE expired (it died between its writes); taken
        with an ETag-conditional write, so of several identical re-requests at most one announces."""
        repo = self._ready()
        key = check_key("run_id", str(record.event.get("run_id", "")))
        row = repo.get(key, CLAIM_ROW)
        if row is None or row.get("announced", True):
            return False
        until, etag = row.get("announce_until"), row.metadata.get("etag")
        if (isinstance(until, datetime) and until > now) or not etag:
            return False
        try:
            repo.replace({**row, "announce_until": now + ANNOUNCE_LEASE}, str(etag))
        except ResourceModifiedError:
            return False
        return True

    def mark_announced(self, record: ActionRecord) -> None:
        """The action is indexed and its `action_requested` entry written: nobody announces it again."""
        key = check_key("run_id", str(record.event.get("run_id", "")))
        self._ready().upsert({"PartitionKey": key, "RowKey": CLAIM_ROW, "announced": True}, merge=True)

    def hand_back(self, record: ActionRecord, lease_until: datetime) -> None:
        """Announcing or queueing failed (an outage): the next re-request announces and queues at once. The
        announce lease is reopened only while it is still the one this caller holds (`lease_until`, the
        `announce_until` its claim or take-over wrote; ETag-conditional): a creator slower than its lease never
        reopens the lease of a re-request that took over meanwhile (a third would announce a second time)."""
        repo = self._ready()
        key = check_key("run_id", str(record.event.get("run_id", "")))
        for _ in range(3):  # a lost race is a flag write (`mark_submitted`) next to ours: read it again
            row = repo.get(key, CLAIM_ROW)
            if row is None:  # pragma: no cover - claim rows are never deleted
                return
            until = row.get("announce_until")
            if row.get("announced", True) or not isinstance(until, datetime) or until != lease_until:
                break  # announced, or another holds the lease now: leave it alone
            try:
                repo.replace({**row, "submit_failed": True, "announce_until": _HANDED_BACK}, str(row.metadata["etag"]))
                return
            except ResourceModifiedError:
                continue
        # The queueing hint only (a duplicate submission is harmless); the lease stays with whoever holds it.
        repo.upsert({"PartitionKey": key, "RowKey": CLAIM_ROW, "submit_failed": True}, merge=True)

    def load(self, action_id: str) -> tuple[ActionRecord, str] | None:
        """The record and its ETag, or None."""
        try:
            key = check_key("action_id", action_id)
        except ValueError:
            return None
        entity = self._ready().get(key, ACTION_ROW)
        if entity is None:
            return None
        return ActionRecord.model_validate(entity["record"]), str(entity.metadata.get("etag", ""))

    def open_records(self, limit: int) -> list[ActionRecord]:
        """Up to `limit` actions nobody closed and nobody reported on (candidates for "pending"), newest
        first; a filter on the plain properties, so the scan stays within this tenant's table."""
        rows = self._ready().query(
            "RowKey eq @row and closed eq @empty and outcome eq @empty", {"row": ACTION_ROW, "empty": ""}
        )
        found: list[ActionRecord] = []
        for entity in rows:
            found.append(ActionRecord.model_validate(entity["record"]))
            if len(found) >= limit:
                break
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def replace(self, record: ActionRecord, etag: str) -> str | None:
        """Write the record if nobody changed it since `etag`: its new ETag; None when somebody did."""
        try:
            return self._ready().replace(self._entity(record), etag) or None
        except ResourceModifiedError:
            return None
