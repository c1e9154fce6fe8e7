"""The watches' state in the tenant's Watches table: one record per watch, one rollback lease per
environment, and the last known good deployment per (repository, environment).

Rows:
- PartitionKey `watch`, RowKey = watch instance id: the record (sealed JSON) plus plain `state`;
- PartitionKey `lease`, RowKey = sha256(repository|environment): who is rolling that environment back. Taken
  create-only; an expired lease is taken over by an ETag-conditional replace, so of two watches that fail at
  the same moment exactly one rolls back (the dispatcher's claim pattern);
- PartitionKey `good`, RowKey = sha256(repository|environment): the last deployment whose window passed
  clean; moved forward only (ETag-conditional, never to an older deployment).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.repository import TenantRepository, check_key
from gatekeeper.store.tables import StorageAccount, TablePurpose, validate_tenant_id

WATCH_PARTITION = "watch"
LEASE_PARTITION = "lease"
GOOD_PARTITION = "good"
ROLLBACK_RUN_PARTITION = "rollbackrun"
MAX_ROUNDS_KEPT = 1000


class WatchState(StrEnum):
    WATCHING = "watching"
    HEALTHY = "healthy"  # the window passed clean: last known good
    INCONCLUSIVE = "inconclusive"  # people were asked
    UNHEALTHY = "unhealthy"  # failed, no automatic rollback (held, a rollback's own watch, no target)
    AWAITING_APPROVAL = "awaiting_approval"  # L2 rollback: the approval chain runs
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"  # escalated to L3
    HUMAN_TASK = "human_task"  # L3: people roll back


class Deployment(BaseModel):
    """The deployment a watch is about (from the CI's event)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    repository: str | None = None
    environment: str
    ref: str | None = None
    commit: str | None = None
    run_id: str | None = None
    status: str | None = None
    actor: str | None = None


class RollbackRun(BaseModel):
    """A rollback that was started: where, and how it ended."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: str
    target: str | None = None
    run_id: str | None = None
    url: str | None = None
    conclusion: str | None = None  # success | failure | timed_out | not_started | None while running
    detail: str = ""
    to_ref: str | None = None
    to_commit: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class WatchRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_id: str
    tenant_id: str
    deployment: Deployment
    gate_id: str | None = None
    is_rollback: bool = False
    state: WatchState = WatchState.WATCHING
    held: bool = False
    held_by: str | None = None
    rounds: tuple[str, ...] = ()
    probes: tuple[dict[str, Any], ...] = ()  # the last round's probe results (name, outcome, detail)
    reasons: tuple[str, ...] = ()
    started_at: datetime
    updated_at: datetime
    ends_at: datetime | None = None
    rollback: RollbackRun | None = None
    requested_by: str | None = None  # who asked for a manual rollback
    # Where the audit log stood before that request, until its `rollback` entry is written (None once audited,
    # and for older rows): its wake cannot be undone, so the person's retry audits a request whose append failed.
    request_audit_from: int | None = None
    alerts: tuple[str, ...] = Field(default=(), max_length=50)
    # RMM alerts (`<connector>:<alert uid>`) that fired on the watched devices: resolved after a successful
    # rollback (gatekeeper.rollback.rmm), then removed.
    rmm_alerts: tuple[str, ...] = Field(default=(), max_length=50)
    rmm_maintenance: tuple[str, ...] = Field(default=(), max_length=200)  # devices put in maintenance for the watch
    wakes: int = 0  # wake events raised to the orchestration so far (control routes, alerts)
    dispatched_wall: datetime | None = None  # when the rollback run was dispatched, by the wall clock
    failed_at: datetime | None = None  # when the watch first found the deployment unhealthy (time to restore)


class WatchRepository(TenantRepository):
    purpose = TablePurpose.WATCHES
    sealed_properties = frozenset({"record"})


def environment_key(repository: str | None, environment: str) -> str:
    return hashlib.sha256(f"{(repository or '').lower()}|{environment.lower()}".encode()).hexdigest()


class WatchStore:
    """One tenant's watches, rollback leases and last known good deployments."""

    def __init__(self, storage: StorageAccount, tenant_id: str, cipher: EnvelopeCipher):
        self._repo = WatchRepository(storage, validate_tenant_id(tenant_id), cipher)

    def _ready(self) -> WatchRepository:
        return self._repo.ready()

    # records ---------------------------------------------------------------------------------------
    def save(self, record: WatchRecord) -> None:
        self._ready().upsert(
            {
                "PartitionKey": WATCH_PARTITION,
                "RowKey": check_key("instance_id", record.instance_id),
                "state": record.state.value,
                "updated_at": record.updated_at,
                "record": record.model_dump(mode="json"),
            }
        )

    def load(self, instance_id: str) -> WatchRecord | None:
        entity = self._ready().get(WATCH_PARTITION, check_key("instance_id", instance_id))
        return None if entity is None else WatchRecord.model_validate(entity["record"])

    def change(
        self, instance_id: str, update: Callable[[WatchRecord], dict[str, Any]], *, attempts: int = 10
    ) -> WatchRecord | None:
        """Apply `update(record)` to the stored record if nobody changed it since it was read (ETag), retrying
        on a lost race: the record after the change, None when there is none. LookupError after `attempts`."""
        repo = self._ready()
        for _ in range(attempts):
            entity = repo.get(WATCH_PARTITION, check_key("instance_id", instance_id))
            if entity is None:
                return None
            record = WatchRecord.model_validate(entity["record"])
            updated = record.model_copy(update=update(record))
            row = {
                "PartitionKey": WATCH_PARTITION,
                "RowKey": instance_id,
                "state": updated.state.value,
                "updated_at": updated.updated_at,
                "record": updated.model_dump(mode="json"),
            }
            try:
                repo.replace(row, str(entity.metadata["etag"]))
            except ResourceModifiedError:
                continue
            return updated
        raise LookupError(f"watch {instance_id} kept changing; gave up after {attempts} attempts")

    def in_states(self, states: Iterable[WatchState]) -> Iterator[WatchRecord]:
        """The tenant's watches whose plain `state` column is one of `states`."""
        wanted = [s.value for s in states]
        clause = " or ".join(f"state eq @s{i}" for i in range(len(wanted)))
        parameters: dict[str, Any] = {"pk": WATCH_PARTITION} | {f"s{i}": v for i, v in enumerate(wanted)}
        query = f"PartitionKey eq @pk and ( {clause} )"  # the SDK ends a parameter name at a space
        for entity in self._ready().query(query, parameters):
            yield WatchRecord.model_validate(entity["record"])

    def update(self, instance_id: str, **changes: Any) -> WatchRecord:
        """Set `changes` on the stored record, ETag-conditionally (`change`): other fields written meanwhile stay."""
        updated = self.change(instance_id, lambda _record: changes)
        if updated is None:
            raise LookupError(f"watch {instance_id} has no record")
        return updated

    def wakes(self, instance_id: str) -> int:
        record = self.load(instance_id)
        return record.wakes if record is not None else 0

    # rollback runs: their own deployments are never rolled back ------------------------------------------
    def mark_rollback_run(self, source: str, run_id: str, watch_id: str) -> None:
        key = hashlib.sha256(f"{source}|{run_id}".encode()).hexdigest()
        self._ready().upsert({"PartitionKey": ROLLBACK_RUN_PARTITION, "RowKey": key, "watch_id": watch_id})

    def is_rollback_run(self, source: str, run_id: str | None) -> bool:
        if not run_id:
            return False
        key = hashlib.sha256(f"{source}|{run_id}".encode()).hexdigest()
        return self._ready().get(ROLLBACK_RUN_PARTITION, key) is not None

    # rollback lease --------------------------------------------------------------------------------
    def acquire_lease(
        self, repository: str | None, environment: str, owner: str, now: datetime, lease: timedelta
    ) -> str | None:
        """Take the environment's rollback lease for `owner`: None when taken, else the holder (`owner`
        itself, also when it already held it). Another holder's lease only after it expired."""
        repo = self._ready()
        key = environment_key(repository, environment)
        row = {"PartitionKey": LEASE_PARTITION, "RowKey": key, "owner": owner, "until": now + lease}
        try:
            repo.create(row)
            return owner
        except ResourceExistsError:
            pass
        current = repo.get(LEASE_PARTITION, key)
        if current is None:  # released between our create and read: try once more
            try:
                repo.create(row)
                return owner
            except ResourceExistsError:
                return None
        until = current.get("until")
        if current.get("owner") != owner and isinstance(until, datetime) and until > now:
            return None
        try:
            repo.replace(row, str(current.metadata["etag"]))
        except ResourceModifiedError:
            return None
        return owner

    def lease_holder(self, repository: str | None, environment: str, now: datetime) -> str | None:
        current = self._ready().get(LEASE_PARTITION, environment_key(repository, environment))
        if current is None:
            return None
        until = current.get("until")
        return str(current["owner"]) if isinstance(until, datetime) and until > now else None

    def release_lease(self, repository: str | None, environment: str, owner: str) -> bool:
        """Give the lease back if `owner` still holds it: it expires at once (ETag-conditional)."""
        repo = self._ready()
        key = environment_key(repository, environment)
        current = repo.get(LEASE_PARTITION, key)
        if current is None or current.get("owner") != owner:
            return False
        try:  # "released" is an expired lease: the next holder takes it over ETag-conditionally, as after a crash
            repo.replace({**current, "until": datetime(1970, 1, 1, tzinfo=UTC)}, str(current.metadata["etag"]))
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    # last known good -------------------------------------------------------------------------------
    def record_good(self, record: WatchRecord, at: datetime) -> bool:
        """This watch's deployment becomes the environment's last known good one, unless a newer one is."""
        repo = self._ready()
        d = record.deployment
        key = environment_key(d.repository, d.environment)
        row = {
            "PartitionKey": GOOD_PARTITION,
            "RowKey": key,
            "watch_id": record.instance_id,
            "deployed_at": record.started_at,
            "recorded_at": at,
            "record": {"deployment": d.model_dump(mode="json"), "watch_id": record.instance_id},
        }
        for _ in range(5):
            current = repo.get(GOOD_PARTITION, key)
            try:
                if current is None:
                    repo.create(row)
                    return True
                deployed = current.get("deployed_at")
                if isinstance(deployed, datetime) and deployed > record.started_at:
                    return False  # a newer deployment already passed its watch
                repo.replace(row, str(current.metadata["etag"]))
                return True
            except (ResourceExistsError, ResourceModifiedError):
                continue
        return False

    def last_good(self, repository: str | None, environment: str) -> Deployment | None:
        row = self._ready().get(GOOD_PARTITION, environment_key(repository, environment))
        return None if row is None else Deployment.model_validate(row["record"]["deployment"])
