"""Per-tenant policy documents, versioned in the tenant's Policy table.

Every publish is a new revision row (create-only, so history is never overwritten) plus a `current`
pointer moved under an ETag guard, so two admins publishing at once cannot lose one another's change
silently: the loser retries on top of the winner's revision. Gates record which revision and
fingerprint decided them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from gatekeeper.errors import NotFound
from gatekeeper.policy.document import PolicyDocument, load_policy
from gatekeeper.store.repository import TenantRepository
from gatekeeper.store.tables import TablePurpose

REVISION_PARTITION = "revision"
POINTER_PARTITION = "pointer"
CURRENT = "current"


class NoPolicy(NotFound, LookupError):
    """The tenant has no published policy (gates then refuse to automate: L2 safe default applies)."""

    default_code = "no-policy"
    default_title = "No published policy"

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class PolicyRevision:
    revision: int
    document: PolicyDocument
    text: str
    fingerprint: str
    published_by: str
    published_at: datetime


class PolicyStore(TenantRepository):
    purpose: ClassVar[TablePurpose] = TablePurpose.POLICY

    def publish(self, text: str, *, published_by: str, attempts: int = 5) -> PolicyRevision:
        """Validate and store a new revision; raises PolicyError (naming the field) before writing."""
        document = load_policy(text, name=f"policy for {self.tenant_id}")
        self.ensure_table()
        for _ in range(attempts):
            pointer = self._client_pointer()
            revision = (int(pointer["revision"]) if pointer else 0) + 1
            now = datetime.now(UTC)
            try:
                self.create(
                    {
                        "PartitionKey": REVISION_PARTITION,
                        "RowKey": f"{revision:010d}",
                        "revision": revision,
                        "text": text,
                        "fingerprint": document.fingerprint(),
                        "published_by": published_by,
                        "published_at": now,
                    }
                )
            except ResourceExistsError:
                # Someone published this revision first and may not have moved the pointer yet: move it for
                # them (same ETag guard), so the next attempt builds on theirs instead of re-reading the stale
                # pointer and losing the same race again. Each lost attempt is then another publisher's
                # revision, which bounds the attempts by the number of concurrent publishers.
                self._move_pointer(pointer, revision)
                continue
            if self._move_pointer(pointer, revision) or self._pointer_reached(revision):
                return PolicyRevision(revision, document, text, document.fingerprint(), published_by, now)
        raise RuntimeError(f"could not publish a policy for {self.tenant_id}: too many concurrent publishers")

    def current(self) -> PolicyRevision:
        pointer = self._client_pointer()
        if pointer is None:
            raise NoPolicy(f"tenant {self.tenant_id} has no published policy")
        return self.revision(int(pointer["revision"]))

    def revision(self, revision: int) -> PolicyRevision:
        entity = self.get(REVISION_PARTITION, f"{revision:010d}")
        if entity is None:
            raise NoPolicy(f"tenant {self.tenant_id} has no policy revision {revision}")
        return PolicyRevision(
            revision,
            load_policy(entity["text"], name=f"policy revision {revision}"),
            entity["text"],
            entity["fingerprint"],
            entity["published_by"],
            entity["published_at"],
        )

    def history(self) -> list[tuple[int, str, str, datetime]]:
        """(revision, fingerprint, published_by, published_at), oldest first."""
        return [
            (int(e["revision"]), e["fingerprint"], e["published_by"], e["published_at"])
            for e in self.partition(REVISION_PARTITION)
        ]

    def _client_pointer(self):
        try:
            return self._client.get_entity(POINTER_PARTITION, CURRENT)
        except ResourceNotFoundError:
            return None

    def _pointer_reached(self, revision: int) -> bool:
        """Our revision row is stored but our pointer move lost: another publisher moved the pointer to it
        (or past it) for us."""
        pointer = self._client_pointer()
        return pointer is not None and int(pointer["revision"]) >= revision

    def _move_pointer(self, pointer, revision: int) -> bool:
        entity = {"PartitionKey": POINTER_PARTITION, "RowKey": CURRENT, "revision": revision}
        try:
            if pointer is None:
                self._client.create_entity(entity)
            else:
                self._client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=pointer.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            return True
        except (ResourceExistsError, ResourceModifiedError):
            return False
