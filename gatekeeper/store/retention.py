"""Retention of transit keys: delete (crypto-shred) the `transit` rows of a tenant's Keys table once no queued
message can still need them.

Every ingesting instance registers one transit key per tenant and cache period (gatekeeper.store.transit), so
the rows grow by about one per active instance, tenant and 5 minutes, and each is key material. A queued
message lives at most the queue's message time-to-live (the product sets none, so Azure's default of 7 days,
`QUEUE_MESSAGE_TTL_DAYS`); the claim-check blob of a large event at most 30 days (storage lifecycle rule). A
transit key older than the retention period (`GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS`, at least 8 days) can
only still be needed by a dead letter, which it would keep readable: the operator decides how long that is.

What is deleted: only rows in partition `transit` whose RowKey is a transit id and whose `created` is older
than the cutoff; never the `datakey` rows (the active and the regular data keys), never the `pointer` row,
never a row without a `created` time (it cannot be dated, so it is kept and counted), never another tenant's
table (the table name comes from the validated tenant id). Deletions are ETag-conditional (a row re-wrapped
meanwhile is left for the next run), and a row someone else deleted first is counted as already gone, so two
pruners at once neither fail nor delete a row twice. Work per run is bounded: at most `limit` rows per tenant,
in entity-group transactions of at most 100; the rest goes on the next run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, TableTransactionError

from gatekeeper.store.key_errors import KeyServiceUnavailable
from gatekeeper.store.tables import StorageAccount, TablePurpose, validate_tenant_id
from gatekeeper.store.transit import TRANSIT_PARTITION, is_transit_id

QUEUE_MESSAGE_TTL_DAYS = 7  # Azure Queue Storage's default; QueueEventSink sends without time_to_live
MIN_RETENTION_DAYS = QUEUE_MESSAGE_TTL_DAYS + 1  # a key always outlives every queued message sealed under it
MAX_RETENTION_DAYS = 3650
DEFAULT_RETENTION_DAYS = 30
MAX_DELETIONS_PER_RUN = 1000  # per tenant and run; the hourly timer keeps up with ~24,000 new rows a day
TRANSACTION_SIZE = 100  # the Tables service's limit for one entity-group transaction
PAGE_SIZE = 100


def cutoff(now: dt.datetime, retention_days: int) -> dt.datetime:
    """Transit keys created strictly before this instant are past retention."""
    if not MIN_RETENTION_DAYS <= retention_days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention_days: must be {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}, not {retention_days}")
    if now.tzinfo is None:
        raise ValueError("now: must be timezone-aware")
    return now - dt.timedelta(days=retention_days)


def is_expired(entity: TableEntity | dict[str, Any], before: dt.datetime) -> bool:
    """True only for a dated transit row created before `before`: the one test every deletion passes."""
    created = entity.get("created")
    return (
        entity.get("PartitionKey") == TRANSIT_PARTITION
        and isinstance(entity.get("RowKey"), str)
        and is_transit_id(entity["RowKey"])
        and isinstance(created, dt.datetime)
        and created.tzinfo is not None
        and created < before
    )


@dataclass(frozen=True)
class PruneResult:
    """What one run did for one tenant. `deleted` are the ids this run removed (or, in a dry run, would
    remove); `already_gone` were removed by someone else in between; `changed` were modified since they were
    read (left for the next run); `more` says the run stopped at its limit with expired rows left."""

    tenant_id: str
    dry_run: bool
    deleted: tuple[str, ...] = ()
    already_gone: int = 0
    changed: int = 0
    more: bool = False
    cutoff: dt.datetime | None = field(default=None, compare=False)


class TransitKeyPruner:
    """Deletes a tenant's transit keys past retention, bounded per run, safe to run twice at once."""

    def __init__(
        self,
        storage: StorageAccount,
        retention_days: int,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        page_size: int = PAGE_SIZE,
    ) -> None:
        cutoff(clock(), retention_days)  # validates the period once, here
        self._storage = storage
        self.retention_days = retention_days
        self._clock = clock
        self._page_size = max(1, min(page_size, 1000))

    def __repr__(self) -> str:
        return f"TransitKeyPruner(retention_days={self.retention_days})"

    def cutoff(self) -> dt.datetime:
        return cutoff(self._clock(), self.retention_days)

    def expired_ids(self, tenant_id: str, *, limit: int | None = None) -> list[str]:
        """Ids of the tenant's transit keys past retention (at most `limit`), without deleting anything."""
        before = self.cutoff()
        ids: list[str] = []
        for entity in self._expired(validate_tenant_id(tenant_id), before):
            if limit is not None and len(ids) >= limit:
                break
            ids.append(str(entity["RowKey"]))
        return ids

    def prune(self, tenant_id: str, *, limit: int = MAX_DELETIONS_PER_RUN, dry_run: bool = False) -> PruneResult:
        tenant_id = validate_tenant_id(tenant_id)
        if limit < 1:
            raise ValueError(f"limit: must be at least 1, not {limit}")
        before = self.cutoff()
        batch: list[TableEntity] = []
        more = False
        for entity in self._expired(tenant_id, before):
            if len(batch) >= limit:
                more = True
                break
            batch.append(entity)
        if dry_run:
            return PruneResult(tenant_id, True, tuple(str(e["RowKey"]) for e in batch), more=more, cutoff=before)
        table = self._table(tenant_id)
        deleted: list[str] = []
        gone = changed = 0
        for start in range(0, len(batch), TRANSACTION_SIZE):
            chunk = batch[start : start + TRANSACTION_SIZE]
            if self._delete_together(table, chunk):
                deleted.extend(str(e["RowKey"]) for e in chunk)
                continue
            for entity in chunk:  # someone else touched one of them: settle each on its own
                outcome = self._delete_one(tenant_id, table, entity)
                if outcome == "deleted":
                    deleted.append(str(entity["RowKey"]))
                elif outcome == "gone":
                    gone += 1
                else:
                    changed += 1
        return PruneResult(tenant_id, False, tuple(deleted), gone, changed, more, before)

    # -- storage ---------------------------------------------------------------------------------
    def _table(self, tenant_id: str) -> TableClient:
        return self._storage.tenant_table(tenant_id, TablePurpose.KEYS)

    def _expired(self, tenant_id: str, before: dt.datetime) -> Iterator[TableEntity]:
        """Expired rows, page by page; the service filters, and `is_expired` checks every row again."""
        query = "PartitionKey eq @pk and created lt @before"
        try:
            pages = self._table(tenant_id).query_entities(
                query, parameters={"pk": TRANSIT_PARTITION, "before": before}, results_per_page=self._page_size
            )
            for entity in pages:
                if is_expired(entity, before):
                    yield entity
        except ResourceNotFoundError:  # no Keys table: nothing to prune
            return
        except AzureError as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: Keys table cannot be read") from exc

    @staticmethod
    def _delete_together(table: TableClient, chunk: list[TableEntity]) -> bool:
        """One entity-group transaction (all or nothing); False if any row changed or vanished meanwhile."""
        operations: list[Any] = [
            ("delete", entity, {"etag": entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified})
            for entity in chunk
        ]
        try:
            table.submit_transaction(operations)
        except (TableTransactionError, ResourceNotFoundError, ResourceModifiedError):
            return False
        except AzureError:
            return False  # settled row by row, where a real outage raises with the tenant named
        return True

    @staticmethod
    def _delete_one(tenant_id: str, table: TableClient, entity: TableEntity) -> str:
        """A transaction of one, not `delete_entity`: the SDK's `delete_entity` hides a 404, and whether this
        run or another one deleted the row is what keeps the counts honest."""
        operation: Any = (
            "delete",
            entity,
            {"etag": entity.metadata["etag"], "match_condition": MatchConditions.IfNotModified},
        )
        try:
            table.submit_transaction([operation])
        except (TableTransactionError, ResourceNotFoundError, ResourceModifiedError) as exc:
            code = str(getattr(exc, "error_code", "") or "")
            if exc.status_code == 404 or code == "ResourceNotFound":
                return "gone"
            if exc.status_code == 412 or code == "UpdateConditionNotSatisfied":
                return "changed"
            raise KeyServiceUnavailable(f"tenant {tenant_id}: transit key could not be deleted") from exc
        except AzureError as exc:
            raise KeyServiceUnavailable(f"tenant {tenant_id}: transit key could not be deleted") from exc
        return "deleted"
