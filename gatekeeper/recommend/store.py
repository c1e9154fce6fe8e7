"""The versioned model per tenant (its Models table), the cached recommender, and the refit.

Layout (`gk<tenant>Models`): PartitionKey `model`, RowKey = the version (create-only, sealed, the newest
`KEEP_VERSIONS` kept) and RowKey `current` (the version in use, sealed the same way). The model holds counts
of the tenant's own rules, repositories and environments, so it is sealed with the tenant's data key like
every other tenant row, bound to its table and row. A refit reads only the tenant's own audit log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from gatekeeper.errors import Conflict
from gatekeeper.recommend.history import Entry, read_history
from gatekeeper.recommend.model import Model, Recommendation, fit, recommend
from gatekeeper.store.chunks import join_property, split_property
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.tables import StorageAccount, TablePurpose, tenant_table_name, validate_tenant_id
from gatekeeper.ttl_cache import TtlCache

log = logging.getLogger("gatekeeper.recommend")

PARTITION = "model"
CURRENT = "current"
KEEP_VERSIONS = 30
HISTORY_DAYS = 180  # a refit learns from this much of the tenant's history
CACHE_SECONDS = 600.0  # a refit takes effect on every worker within ten minutes
CACHE_TENANTS = 256
MAKE_CURRENT_ATTEMPTS = 5  # lost races on the `current` row before a refit says it could not put its model in use


class HistoryLog(Protocol):
    """The tenant's audit log as the refit uses it (gatekeeper.audit.log.AuditLog has this shape)."""

    def records(self, from_seq: int = 0, to_seq: int | None = None) -> Iterable[Entry]: ...

    def append(
        self,
        kind: str,
        actor: str,
        instance_id: str | None = None,
        subject: str | None = None,
        data: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> Any: ...


class ModelStore:
    """One tenant's model versions, sealed."""

    def __init__(self, storage: StorageAccount, tenant_id: str, cipher: EnvelopeCipher) -> None:
        self._tenant = validate_tenant_id(tenant_id)
        self._table = tenant_table_name(self._tenant, TablePurpose.MODELS)
        self._storage = storage
        self._cipher = cipher

    def _entity(self, row: str, model: Model) -> dict[str, Any]:
        sealed = self._cipher.seal_json(self._tenant, self._table, PARTITION, row, model.model_dump(mode="json"))
        return {"PartitionKey": PARTITION, "RowKey": row, "version": model.version, **split_property("model", sealed)}

    def _open(self, entity: Mapping[str, Any]) -> Model:
        row = str(entity["RowKey"])
        document = self._cipher.open_json(self._tenant, self._table, PARTITION, row, join_property(entity, "model"))
        return Model.model_validate(document)

    def add_version(self, model: Model) -> None:
        """Store `model` as a new version (create-only), not yet in use."""
        table = self._storage.ensure_table(self._table)
        with contextlib.suppress(ResourceExistsError):  # the same counts fitted in the same second
            table.create_entity(self._entity(model.version, model))

    def make_current(self, model: Model) -> None:
        """Make `model` the version recommendations use, unless a newer one already is (two refits that
        overlap: the one that finishes last must not put an older model back); then `prune`. Conflict (named,
        never silent) when the row kept changing under it for `MAKE_CURRENT_ATTEMPTS` reads."""
        table = self._storage.ensure_table(self._table)
        entity = self._entity(CURRENT, model)
        for _ in range(MAKE_CURRENT_ATTEMPTS):  # each lost race is another refit's write: read it again
            try:
                current = table.get_entity(PARTITION, CURRENT, select=["version"])
            except ResourceNotFoundError:
                current = None
            try:
                if current is None:
                    table.create_entity(entity)
                elif str(current.get("version") or "") <= model.version:  # versions sort by their fit time
                    etag = current.metadata["etag"]
                    table.update_entity(
                        entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
                break
            except (ResourceExistsError, ResourceModifiedError):
                continue
        else:  # never silent: the timer reports it for this tenant, like its other failures
            self.prune(self.versions())
            raise Conflict(
                f"tenant {self._tenant}: recommendation model {model.version} was not put in use; the model in use "
                f"changed {MAKE_CURRENT_ATTEMPTS} times while this refit tried (another refit kept writing it)",
                code="model-current-contended",
                title="Model not put in use",
            )
        self.prune(self.versions())

    def versions(self) -> list[str]:
        """The stored versions, oldest first (not `current`)."""
        table = self._storage.ensure_table(self._table)
        rows = table.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION}, select=["RowKey"])
        return sorted(v for v in (str(e["RowKey"]) for e in rows) if v != CURRENT)

    def prune(self, versions: list[str]) -> None:
        """Drop the versions past the newest `KEEP_VERSIONS` of `versions` (as listed); one another refit
        dropped since the listing is no error."""
        table = self._storage.ensure_table(self._table)
        for old in versions[:-KEEP_VERSIONS]:
            with contextlib.suppress(ResourceNotFoundError):
                table.delete_entity(PARTITION, old)

    def current(self) -> Model | None:
        try:
            entity = self._storage.table(self._table).get_entity(PARTITION, CURRENT)
        except ResourceNotFoundError:
            return None
        return self._open(entity)

    def version(self, version: str) -> Model | None:
        try:
            entity = self._storage.table(self._table).get_entity(PARTITION, version)
        except ResourceNotFoundError:
            return None
        return self._open(entity)


def refit(
    tenant_id: str, audit: HistoryLog, models: ModelStore, at: datetime, *, history_days: int = HISTORY_DAYS
) -> Model | None:
    """Fit the tenant's model from its own audit history, store it as a new version, audit `model_fitted`,
    and only then put it in use: every model a recommendation cites has its `model_fitted` entry (an audit
    that fails leaves the previous model in use and the new version unused). None (nothing stored or
    audited) for a tenant that has never had a gate to learn from."""
    history = read_history(audit.records(), since=at - timedelta(days=history_days))
    model = fit(tenant_id, history, at)
    if model.samples == 0 and models.current() is None:
        return None
    models.add_version(model)
    audit.append(
        "model_fitted",
        "system:gatekeeper",
        "",
        f"recommendation model {model.version}",
        {
            "model_version": model.version,
            "samples": model.samples,
            "brier": model.brier,
            "base_rate_brier": model.base_rate_brier,
            "features": sorted(model.counts),
            "good": model.good,
            "bad": model.bad,
            "weights": model.weights,
            "history_days": history_days,
        },
        at=at,
    )
    models.make_current(model)
    return model


class Recommender:
    """What the gate step asks: the recommendation for one gate, from the tenant's current model (cached per
    tenant for `CACHE_SECONDS`, at most `CACHE_TENANTS` tenants)."""

    def __init__(
        self,
        storage: StorageAccount,
        cipher: EnvelopeCipher,
        *,
        cache: TtlCache[str, Model | None] | None = None,
        store_for: Callable[[str], ModelStore] | None = None,
    ) -> None:
        self._storage = storage
        self._cipher = cipher
        self._cache: TtlCache[str, Model | None] = cache or TtlCache(
            ttl_seconds=CACHE_SECONDS, max_entries=CACHE_TENANTS
        )
        self._store_for = store_for or (lambda tenant: ModelStore(self._storage, tenant, self._cipher))

    def store(self, tenant_id: str) -> ModelStore:
        return self._store_for(tenant_id)

    def model(self, tenant_id: str) -> Model | None:
        found, model = self._cache.get(tenant_id)
        if found:
            return model
        model = self.store(tenant_id).current()
        self._cache.put([(tenant_id, model)])
        return model

    def remember(self, tenant_id: str, model: Model) -> None:
        """Use `model` for the tenant from now on in this process (after a refit here)."""
        self._cache.put([(tenant_id, model)])

    def recommend(self, tenant_id: str, features: Mapping[str, str], at: datetime) -> Recommendation:
        return recommend(self.model(tenant_id), features, at)
