"""A tenant's identity map: external identities (GitHub, Azure DevOps, PSA members) -> Entra object ids.

One per-tenant table (`gk<tenant>Identities`). The row key is the SHA-256 of the normalised external
identity, so a login or address never appears in a key; the entry itself (external identity, object id,
who linked it and when) is sealed with the tenant's data key like every other customer record. Every
change is appended to the tenant's audit log (`identity_linked`) before the command reports success, and a
change that cannot be audited is not made: the audit log is opened first by the command.
"""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gatekeeper import json_bounded
from gatekeeper.errors import Conflict, InvalidInput
from gatekeeper.security.requester import GUID, parse_external
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.repository import TenantRepository
from gatekeeper.store.tables import StorageAccount, TablePurpose, validate_tenant_id

PARTITION = "identity"
MAX_IMPORT = 5000


class AuditTrail(Protocol):
    def append(
        self, kind: str, actor: str, instance_id: str | None, subject: str | None, data: dict[str, Any], at: Any = None
    ) -> Any: ...


class IdentityLink(BaseModel):
    """One external identity linked to one Entra object id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    external: str
    oid: str
    note: str = Field(default="", max_length=200)
    linked_by: str = ""
    linked_at: datetime | None = None

    @field_validator("external")
    @classmethod
    def _external(cls, value: str) -> str:
        return parse_external(value)

    @field_validator("oid")
    @classmethod
    def _oid(cls, value: str) -> str:
        text = value.strip().lower() if isinstance(value, str) else ""
        if not GUID.match(text):
            raise ValueError("must be an Entra object id (a GUID)")
        return text


class IdentityFileError(InvalidInput, ValueError):
    """An import file that is not valid; `field` is the first bad field's path."""

    def __init__(self, field: str, detail: str):
        super().__init__(detail, field, code="invalid-identity-file", title="The identity file is not valid")
        self.field: str = field

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"


def row_key(external: str) -> str:
    return hashlib.sha256(external.encode("utf-8")).hexdigest()


class _IdentityRepository(TenantRepository):
    purpose = TablePurpose.IDENTITIES
    sealed_properties = frozenset({"entry"})


class IdentityMap:
    """One tenant's identity map. Lookups go by the exact normalised external identity."""

    def __init__(self, storage: StorageAccount, tenant_id: str, cipher: EnvelopeCipher):
        self._repo = _IdentityRepository(storage, validate_tenant_id(tenant_id), cipher)

    @property
    def tenant_id(self) -> str:
        return self._repo.tenant_id

    def _ready(self) -> _IdentityRepository:
        return self._repo.ready()

    def oid_of(self, external: str) -> str | None:
        entity = self._ready().get(PARTITION, row_key(external))
        return None if entity is None else str(entity["entry"]["oid"])

    def links(self) -> list[IdentityLink]:
        rows = self._ready().partition(PARTITION)
        return sorted((IdentityLink.model_validate(r["entry"]) for r in rows), key=lambda link: link.external)

    def link(self, link: IdentityLink, audit: AuditTrail, *, by: str, how: str = "link") -> str | None:
        """Link (or re-link) one external identity; audited. Returns the object id it was linked to before.

        The row is written create-only (a new link) or ETag-conditionally (a re-link), so of identical
        concurrent links (two Slack clicks of a new user) one writes and audits and the others find it done.
        When the audit append fails the row is put back as it was, so the retry links and audits it again."""
        at = datetime.now(UTC)
        stored = link.model_copy(update={"linked_by": by, "linked_at": at})
        repo, key = self._ready(), row_key(link.external)
        for _ in range(3):
            current = repo.get(PARTITION, key)
            previous = None if current is None else str(current["entry"]["oid"])
            if previous == stored.oid:
                return previous
            entity = {"PartitionKey": PARTITION, "RowKey": key, "entry": _dump(stored)}
            try:
                etag = repo.create(entity) if current is None else repo.replace(entity, str(current.metadata["etag"]))
            except (ResourceExistsError, ResourceModifiedError):
                continue  # another linker wrote it first: read it again
            try:
                audit.append(
                    "identity_linked",
                    by,
                    "",
                    "identity map",
                    {"external": link.external, "oid": stored.oid, "previous_oid": previous, "how": how}
                    | {"note": link.note},
                    at=at,
                )
            except Exception:
                self._put_back(key, current, etag)
                raise
            return previous
        raise Conflict(f"{link.external}: linked to another object id at the same time; try again", field="external")

    def _put_back(self, key: str, before: Any, etag: str) -> None:
        """Undo a link whose audit failed, unless somebody changed the row since. Best effort."""
        repo = self._ready()
        with contextlib.suppress(Exception):
            if before is None:
                repo.delete(PARTITION, key, etag)  # created by this call, unless re-linked since
            else:
                repo.replace({"PartitionKey": PARTITION, "RowKey": key, "entry": before["entry"]}, etag)


def _dump(link: IdentityLink) -> dict[str, Any]:
    return link.model_dump(mode="json")


def load_identity_file(text: str) -> list[IdentityLink]:
    """Parse an import file: JSON, either a list of links or `{"identities": [...]}`, each
    `{"external": "github:login:octocat", "oid": "<guid>", "note": "..."}`. Raises IdentityFileError naming
    the first bad field; nothing is returned (so nothing is written) unless every entry is valid."""
    try:
        data = json_bounded.loads(text)
    except json_bounded.JsonBoundsError as exc:
        where = json_bounded.field_of(exc, "(document)")
        raise IdentityFileError(where, f"{json_bounded.verdict(exc)}: {exc.message}") from None
    prefix = ""
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"identities"})
        if unknown:
            raise IdentityFileError(unknown[0], "unknown field (expected 'identities')")
        data, prefix = data.get("identities"), "identities"
    if not isinstance(data, list):
        raise IdentityFileError(prefix or "(document)", "must be a list of {external, oid}")
    if len(data) > MAX_IMPORT:
        raise IdentityFileError(prefix or "(document)", f"at most {MAX_IMPORT} identities per file")
    links: list[IdentityLink] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(data):
        where = f"{prefix}[{index}]"
        if not isinstance(item, dict):
            raise IdentityFileError(where, "must be an object with external and oid")
        allowed = {"external", "oid", "note"}
        for name in ("external", "oid"):
            if name not in item:
                raise IdentityFileError(f"{where}.{name}", "is required")
        extra = sorted(set(item) - allowed)
        if extra:
            raise IdentityFileError(f"{where}.{extra[0]}", "unknown field")
        try:
            link = IdentityLink.model_validate({k: item[k] for k in allowed if k in item})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "external"
            raise IdentityFileError(f"{where}.{name}", str(first["msg"]).removeprefix("Value error, ")) from None
        if link.external in seen:
            raise IdentityFileError(f"{where}.external", f"duplicate of {prefix}[{seen[link.external]}]")
        seen[link.external] = index
        links.append(link)
    return links
