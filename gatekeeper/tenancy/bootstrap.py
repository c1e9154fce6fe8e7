"""The first tenant, onboarded by the install: the app imports it from its app settings on its first run.

Why the app and not a deployment script: the app already holds the one identity with the data roles (tables,
Key Vault) and the code that validates, imports, publishes and audits; a deployment script would need a
second identity with those roles, a container image and a storage account of its own, and would have to
ship this code again. The app runs this on every host start and every five minutes until it is done
(functions/bootstrap.py), so a role assignment that needs minutes to take effect only delays it.

What it does, idempotently (a second run, or instances racing, change nothing and audit nothing twice):
1. The `GATEKEEPER_BOOTSTRAP_TENANT_*` settings become a `TenantRecord`, or a `BootstrapRefused` naming the
   setting (logged; the health route says so). The record requires this deployment's data boundary.
2. One run claims the work: a create-only row (`bootstrap`, tenant id) in the registry table, taken over
   ETag-conditionally only when its holder's lease has run out. Everyone else stops.
3. The claimant imports the tenant through `TenantRegistry.import_records` (boundary and identity checks)
   unless the registry already holds it: a record that differs is an admin's and is kept as it is.
4. Publishes the example policy (a copy of examples/policy.yaml shipped with the app) unless the tenant has one.
5. Appends one audit transaction (tenant_changed + policy_changed, with both data boundaries) unless the
   log already holds the bootstrap's entries (instance id `bootstrap`), then marks the row done.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from gatekeeper.errors import InvalidInput
from gatekeeper.settings import BOOTSTRAP_PREFIX, DataBoundary
from gatekeeper.store.tables import TENANT_ID_PATTERN, SharedTable, StorageAccount
from gatekeeper.tenancy.boundary import BoundaryMismatch
from gatekeeper.tenancy.registry import RegistryConflict

if TYPE_CHECKING:
    from gatekeeper.audit.log import AuditLog
    from gatekeeper.policy.store import PolicyStore
    from gatekeeper.tenancy.model import TenantRecord
    from gatekeeper.tenancy.registry import TenantRegistry

log = logging.getLogger("gatekeeper.bootstrap")

POLICY_FILE = Path(__file__).with_name("first_tenant_policy.yaml")  # examples/policy.yaml (a test keeps them equal)
CLAIM_PARTITION = "bootstrap"
CLAIM_LEASE = timedelta(minutes=5)
ACTOR = "gatekeeper-bootstrap"
AUDIT_INSTANCE = "bootstrap"  # the instance id of the bootstrap's audit entries: how a re-run finds them
AUDIT_SCAN_LIMIT = 200  # the bootstrap's entries are among a new tenant's first ones

TENANT_ID = BOOTSTRAP_PREFIX + "ID"
TENANT_NAME = BOOTSTRAP_PREFIX + "NAME"
ENTRA_ID = BOOTSTRAP_PREFIX + "ENTRA_ID"
OPERATORS = BOOTSTRAP_PREFIX + "OPERATORS"
GITHUB = BOOTSTRAP_PREFIX + "GITHUB"
AZURE_DEVOPS = BOOTSTRAP_PREFIX + "AZURE_DEVOPS"

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
MAX_OPERATORS = 20
FLAGS = {"true": True, "false": False, "": False}


class BootstrapRefused(InvalidInput):
    """A bootstrap setting is missing or wrong: nothing is imported; `field` names the setting."""

    default_code = "bootstrap-refused"
    default_title = "The first tenant's settings are invalid"

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


class BootstrapState(StrEnum):
    NOT_CONFIGURED = "not-configured"  # no GATEKEEPER_BOOTSTRAP_TENANT_ID: nothing to do
    REFUSED = "refused"  # a setting is invalid (named); fix it and the next run imports
    PENDING = "pending"  # configured, not done yet (first run to come, or a dependency failed: retried)
    IN_PROGRESS = "in-progress"  # another instance holds the claim
    DONE = "done"


@dataclass(frozen=True)
class BootstrapResult:
    state: BootstrapState
    setting: str | None = None  # the setting at fault (refused)
    detail: str = ""  # what happened, without tenant data

    @property
    def healthy(self) -> bool:
        return self.state in (BootstrapState.DONE, BootstrapState.NOT_CONFIGURED)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.state.value}
        if self.setting:
            body["setting"] = self.setting
        if self.detail:
            body["detail"] = self.detail
        return body


def secret_reference(tenant_id: str, purpose: str) -> str:
    """The `env:NAME` reference of a bootstrap tenant secret, e.g. env:GK_CONTOSO_API_KEY (docs/deploy.md)."""
    return f"env:GK_{tenant_id.upper()}_{purpose}"


def first_tenant(values: Mapping[str, str], boundary: DataBoundary) -> TenantRecord | None:
    """The tenant the settings describe (None: no bootstrap configured); BootstrapRefused names a bad setting."""
    from pydantic import ValidationError

    from gatekeeper.tenancy.model import SecretPurpose, TenantRecord

    tenant_id = values.get(TENANT_ID, "").strip()
    if not tenant_id:
        set_others = sorted(k for k in (TENANT_NAME, ENTRA_ID, OPERATORS) if values.get(k, "").strip())
        if set_others:
            raise BootstrapRefused(f"is required when {set_others[0]} is set", field=TENANT_ID)
        return None
    if not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise BootstrapRefused("must be 3-32 lower-case letters and digits, starting with a letter", field=TENANT_ID)
    name = values.get(TENANT_NAME, "").strip()
    if not name or len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BootstrapRefused("must be 1-200 printable characters", field=TENANT_NAME)
    entra = values.get(ENTRA_ID, "").strip()
    if not GUID.match(entra):
        raise BootstrapRefused("must be the Entra tenant id, a GUID", field=ENTRA_ID)
    operators = tuple(o.strip() for o in values.get(OPERATORS, "").split(",") if o.strip())
    if not operators:
        raise BootstrapRefused("must name at least one operator's mail address", field=OPERATORS)
    if len(operators) > MAX_OPERATORS:
        raise BootstrapRefused(f"names more than {MAX_OPERATORS} addresses", field=OPERATORS)
    for index, address in enumerate(operators):
        if len(address) > 254 or not MAIL.match(address):
            raise BootstrapRefused(f"address {index + 1} is not a mail address", field=OPERATORS)
    github, azure_devops = _flag(values, GITHUB), _flag(values, AZURE_DEVOPS)
    secrets: dict[SecretPurpose, tuple[str, ...]] = {
        SecretPurpose.GENERIC_API_KEY: (secret_reference(tenant_id, "API_KEY"),),
        SecretPurpose.CALLBACK_SIGNING: (secret_reference(tenant_id, "CALLBACK_SECRET"),),
    }
    if github:
        secrets[SecretPurpose.GITHUB_WEBHOOK] = (secret_reference(tenant_id, "GITHUB_SECRET"),)
    if azure_devops:
        secrets[SecretPurpose.AZURE_DEVOPS_CHECK] = (secret_reference(tenant_id, "ADO_CHECK_SECRET"),)
        secrets[SecretPurpose.AZURE_DEVOPS_SERVICE_HOOK] = (secret_reference(tenant_id, "ADO_HOOK_SECRET"),)
    try:
        return TenantRecord(
            tenant_id=tenant_id,
            display_name=name,
            entra_tenant_ids=(entra.lower(),),
            operators=tuple(o.lower() for o in operators),
            secrets=secrets,
            data_boundary=boundary,
        )
    except ValidationError as exc:  # pragma: no cover - every field is checked above
        raise BootstrapRefused(exc.errors()[0]["msg"], field=TENANT_ID) from None


def _flag(values: Mapping[str, str], name: str) -> bool:
    raw = values.get(name, "").strip().lower()
    if raw not in FLAGS:
        raise BootstrapRefused("must be 'true' or 'false'", field=name)
    return FLAGS[raw]


def _same(a: TenantRecord, b: TenantRecord) -> bool:
    return a.model_dump(exclude={"kek_public"}) == b.model_dump(exclude={"kek_public"})


class FirstTenantBootstrap:
    """Runs the bootstrap (`run`, the timer) and reports on it (`status`, the health route)."""

    def __init__(
        self,
        values: Mapping[str, str],
        boundary: DataBoundary,
        *,
        storage: StorageAccount,
        status_storage: StorageAccount,
        registry: TenantRegistry,
        policies: Callable[[str], PolicyStore],
        audit_for: Callable[[str], AuditLog],
        kek_public: Callable[[str], dict[str, str] | None] = lambda _tenant: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        owner: str | None = None,
    ) -> None:
        self._values = dict(values)
        self._boundary = boundary
        self._storage = storage
        self._status_storage = status_storage
        self._registry = registry
        self._policies = policies
        self._audit_for = audit_for
        self._kek_public = kek_public
        self._clock = clock
        self._owner = owner or uuid.uuid4().hex
        self._done = False

    def plan(self) -> TenantRecord | None:
        return first_tenant(self._values, self._boundary)

    # -- the health route: one bounded read, no writes --------------------------------------------

    def status(self) -> BootstrapResult:
        try:
            record = self.plan()
        except BootstrapRefused as exc:
            return BootstrapResult(BootstrapState.REFUSED, exc.field, exc.detail)
        if record is None:
            return BootstrapResult(BootstrapState.NOT_CONFIGURED)
        if self._done:
            return BootstrapResult(BootstrapState.DONE)
        try:
            row = self._status_storage.table(SharedTable.TENANTS).get_entity(CLAIM_PARTITION, record.tenant_id)
        except ResourceNotFoundError:
            return BootstrapResult(BootstrapState.PENDING, detail="the first run has not finished yet")
        if row.get("state") == BootstrapState.DONE.value:
            self._done = True
            return BootstrapResult(BootstrapState.DONE)
        if row.get("state") == BootstrapState.REFUSED.value:
            return BootstrapResult(BootstrapState.REFUSED, str(row.get("setting") or ""), str(row.get("detail") or ""))
        return BootstrapResult(BootstrapState.IN_PROGRESS, detail="an instance is importing the first tenant")

    # -- the timer ----------------------------------------------------------------------------------

    def run(self) -> BootstrapResult:
        """One attempt. A refused setting is logged (error) and returned; dependency failures raise to the
        timer, which logs them, and the next run tries again."""
        try:
            record = self.plan()
        except BootstrapRefused as exc:
            log.error("first tenant bootstrap refused: %s", exc)
            return BootstrapResult(BootstrapState.REFUSED, exc.field, exc.detail)
        if record is None:
            return BootstrapResult(BootstrapState.NOT_CONFIGURED)
        if self._done:
            return BootstrapResult(BootstrapState.DONE)
        table = self._storage.ensure_table(SharedTable.TENANTS)
        etag = self._claim(table, record.tenant_id)
        if etag is None:
            return self.status()
        self._registry.invalidate()
        existing = self._registry.get(record.tenant_id)
        if existing is not None and not _same(existing, record):
            log.info("first tenant bootstrap: the registry already holds the tenant (kept as it is)")
            self._finish(table, record.tenant_id, etag, "kept")
            return BootstrapResult(BootstrapState.DONE, detail="the tenant was already registered; kept as it is")
        if existing is None:
            try:
                self._import(record)
            except (RegistryConflict, BoundaryMismatch) as exc:  # permanent until someone changes the registry
                field, detail = (
                    (ENTRA_ID, "the Entra tenant is registered for another tenant already")
                    if isinstance(exc, RegistryConflict)
                    else ("GATEKEEPER_DATA_BOUNDARY", "the tenant's data boundary does not fit this deployment")
                )  # fixed words: the health route is anonymous and names no tenant or identity
                log.error("first tenant bootstrap refused: %s: %s", field, exc.detail)
                self._refuse(table, record.tenant_id, etag, field, detail)
                return BootstrapResult(BootstrapState.REFUSED, field, detail)
        revision = self._policy(record.tenant_id)
        self._audit(record, revision)
        self._finish(table, record.tenant_id, etag, "imported")
        log.info("first tenant bootstrap done (data boundary %s)", self._boundary.value)
        return BootstrapResult(BootstrapState.DONE)

    def _import(self, record: TenantRecord) -> None:
        self._registry.check_boundaries([record])  # before a key is read or made
        jwk = self._kek_public(record.tenant_id)
        if jwk is not None:
            record = record.model_copy(update={"kek_public": jwk})
        self._registry.import_records([record])

    def _refuse(self, table: Any, tenant_id: str, etag: str, setting: str, detail: str) -> None:
        """Record why (the health route shows it); the next run tries again, in case the registry changed."""
        table.update_entity(
            {
                "PartitionKey": CLAIM_PARTITION,
                "RowKey": tenant_id,
                "state": BootstrapState.REFUSED.value,
                "setting": setting,
                "detail": detail[:500],
                "owner": self._owner,
                "lease_until": self._clock().isoformat(),
            },
            mode=UpdateMode.REPLACE,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )

    def _claim(self, table: Any, tenant_id: str) -> str | None:
        """The row's ETag when this run holds the claim; None when the work is done or someone else holds it."""
        now = self._clock()
        entity = {
            "PartitionKey": CLAIM_PARTITION,
            "RowKey": tenant_id,
            "state": "claimed",
            "owner": self._owner,
            "lease_until": (now + CLAIM_LEASE).isoformat(),
        }
        try:
            return str(table.create_entity(entity)["etag"])
        except ResourceExistsError:
            pass
        current = table.get_entity(CLAIM_PARTITION, tenant_id)
        if current.get("state") == BootstrapState.DONE.value:
            self._done = True
            return None
        lease = datetime.fromisoformat(str(current.get("lease_until")))
        if lease > now and current.get("owner") != self._owner:
            return None
        try:
            answer = table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return None
        return str(answer["etag"])

    def _policy(self, tenant_id: str) -> Any:
        """The tenant's current revision: the example policy published now unless it has one."""
        from gatekeeper.policy.store import NoPolicy

        store = self._policies(tenant_id)
        try:
            return store.current()
        except NoPolicy:
            return store.publish(POLICY_FILE.read_text(encoding="utf-8"), published_by=ACTOR)

    def _audit(self, record: TenantRecord, revision: Any) -> None:
        audit = self._audit_for(record.tenant_id)
        for entry in audit.entries(0, AUDIT_SCAN_LIMIT):
            if entry.get("instance_id") == AUDIT_INSTANCE:
                return  # a run that stopped before marking the row done wrote them already
        items: list[dict[str, Any]] = [
            {
                "kind": "tenant_changed",
                "actor": ACTOR,
                "instance_id": AUDIT_INSTANCE,
                "subject": "first tenant imported by the install",
                "data": {
                    "source": "bootstrap",
                    "data_boundary": record.data_boundary.value,
                    "deployment_data_boundary": self._boundary.value,
                    "entra_tenant_ids": list(record.entra_tenant_ids),
                    "operators": len(record.operators),
                    "secret_purposes": sorted(p.value for p in record.secrets),
                },
            }
        ]
        if revision.published_by == ACTOR:
            items.append(
                {
                    "kind": "policy_changed",
                    "actor": ACTOR,
                    "instance_id": AUDIT_INSTANCE,
                    "subject": f"policy revision {revision.revision}",
                    "data": {
                        "revision": revision.revision,
                        "fingerprint": revision.fingerprint,
                        "file": "examples/policy.yaml",
                    },
                }
            )
        audit.append_many(items)

    def _finish(self, table: Any, tenant_id: str, etag: str, outcome: str) -> None:
        table.update_entity(
            {
                "PartitionKey": CLAIM_PARTITION,
                "RowKey": tenant_id,
                "state": BootstrapState.DONE.value,
                "outcome": outcome,
                "owner": self._owner,
                "done_at": self._clock().isoformat(),
            },
            mode=UpdateMode.REPLACE,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )
        self._done = True
