"""The audit record, its sealed form and the canonical bytes that are hashed.

An entry is hashed in its *sealed* form (the `data` field is the envelope-encrypted string), so the chain
and the Merkle tree never depend on a tenant key: rotating or destroying a key changes what can be read,
never what was recorded. Sequence numbers start at 0, so an entry's seq is also its Merkle leaf index and a
tree of size N covers seq 0..N-1.

Canonical bytes: the UTF-8 of `gatekeeper.audit/1`, seq (decimal), tenant, kind, at, actor, instance_id,
subject, sealed data and prev_hash joined by U+001F (unit separator), which no field may contain.
The entry hash is the RFC 6962 leaf hash of those bytes, `SHA-256(0x00 || canonical)`: one digest serves
as the chain link (the next entry's `prev_hash`) and as the Merkle leaf.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

RECORD_FORMAT = "gatekeeper.audit/1"
GENESIS_HASH = "0" * 64  # prev_hash of seq 0
SYSTEM_ACTOR = "system:gatekeeper"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PLAIN_ACTORS = frozenset({"gatekeeper", SYSTEM_ACTOR})


def actor_stays_plain(actor: str) -> bool:
    """Whether an actor is stored in plain text: an Entra object id (a pseudonymous GUID, the join key of
    separation-of-duties checks, readable as a person only with the customer's directory) or a system actor.
    Any other actor (a name, a login, a mail address) is sealed like the entry's data (docs/security.md,
    "Dependency outages and integrity errors")."""
    return bool(_GUID.fullmatch(actor)) or actor in _PLAIN_ACTORS or actor.startswith("system:")


HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_TEXT = 1024  # actor, instance id and subject: identifiers, not documents


class RecordKind(StrEnum):
    """What happened. Every step of a gate lands here; see docs/audit.md for the data each kind carries."""

    EVENT_RECEIVED = "event_received"
    EVENT_IGNORED = "event_ignored"
    DECISION = "decision"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
    APPROVAL_ESCALATED = "approval_escalated"
    APPROVAL_EXPIRED = "approval_expired"
    HUMAN_TASK_OPENED = "human_task_opened"
    FOLLOW_UP = "follow_up"  # a person acknowledged or flagged an L1 notice, or marked an L3 task done
    NOTIFICATION = "notification"
    CALLBACK = "callback"
    DEPLOYMENT_FINISHED = "deployment_finished"
    HEALTH_CHECK = "health_check"
    ROLLBACK = "rollback"
    POLICY_CHANGED = "policy_changed"
    TENANT_CHANGED = "tenant_changed"
    IDENTITY_LINKED = "identity_linked"
    KEY_ROTATED = "key_rotated"
    INTEGRITY_FAILURE = "integrity_failure"  # a sealed value did not open where it lies (moved, tampered)
    # Action-level approvals (issue 13): the request, its withdrawal, and whether the step then ran.
    ACTION_REQUESTED = "action_requested"
    ACTION_CANCELLED = "action_cancelled"
    ACTION_EXPIRED = "action_expired"
    ACTION_REPORTED = "action_reported"  # data.refused: `executed` reported for an action not approved
    APPROVAL_WITHDRAWN = "approval_withdrawn"  # the chain ended because its action was cancelled or expired
    EVENT_PUBLISH_FAILED = "event_publish_failed"  # the event mesh refused a lifecycle batch (the gate went on)
    # PSA/RMM connectors (issue 15): a ticket linked to a gate, a PSA change decision applied to a gate's
    # psa_change_approval stage (or why not), an RMM alert; data.source names the connector.
    CONNECTOR_EVENT = "connector_event"
    # Outbound PSA writes (issue 15): data.vendor, data.operation, data.ok, data.ticket, data.detail (no secret)
    PSA_TICKET = "psa_ticket"
    # Recommendations (issue 16): a person's decision (or a rollback) set the recommendation aside, both sides
    # recorded; and a tenant's recommendation model was refitted (gatekeeper.recommend).
    OVERRIDE = "override"
    MODEL_FITTED = "model_fitted"


def format_time(value: datetime) -> str:
    """The one time format in entries and checkpoints: UTC, microseconds, `Z` (RFC 3339)."""
    if value.tzinfo is None:
        raise ValueError("at: must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


SEPARATOR = "\x1f"  # U+001F UNIT SEPARATOR: never part of a field (the writer and the verifier enforce it)
LEAF_PREFIX = "\x00" + RECORD_FORMAT + SEPARATOR  # how every leaf-hash input starts, as text


# The one canonical list of an audit entry's fields, in canonical order: also the keys of an entry as read
# from the table and in an export bundle. Every other list (verify's columns, the table layout, the export
# view) is derived from it.
ENTRY_FIELDS = ("seq", "tenant", "kind", "at", "actor", "instance_id", "subject", "data", "prev_hash", "entry_hash")
HASHED_FIELDS = ENTRY_FIELDS[1:-1]
"""tenant .. prev_hash: the fields after `seq` in the canonical bytes, in their order."""


def canonical_bytes(
    tenant: str,
    seq: int,
    kind: str,
    at: str,
    actor: str,
    instance_id: str,
    subject: str,
    data: str,
    prev_hash: str,
) -> bytes:
    """UTF-8 of the ten fields `gatekeeper.audit/1`, seq (decimal), tenant, kind, at, actor, instance_id,
    subject, sealed data and prev_hash, joined by U+001F. No field may contain U+001F, so the split is
    unambiguous; ValueError names the field that does."""
    fields = (tenant, kind, at, actor, instance_id, subject, data, prev_hash)
    for name, value in zip(_FIELD_NAMES, fields, strict=True):
        if SEPARATOR in value:
            raise ValueError(f"{name}: must not contain the control character U+001F")
    return f"{RECORD_FORMAT}{SEPARATOR}{seq}{SEPARATOR}{SEPARATOR.join(fields)}".encode()


_FIELD_NAMES = HASHED_FIELDS


def entry_hash(canonical: bytes) -> bytes:
    """RFC 6962 leaf hash of the canonical bytes: chain link and Merkle leaf in one."""
    return hashlib.sha256(b"\x00" + canonical).digest()


def entry_canonical(entry: Mapping[str, Any]) -> bytes:
    return canonical_bytes(
        entry["tenant"],
        entry["seq"],
        entry["kind"],
        entry["at"],
        entry["actor"],
        entry["instance_id"],
        entry["subject"],
        entry["data"],
        entry["prev_hash"],
    )


class AuditInput(BaseModel):
    """What a caller hands to `AuditLog.append`: validated before anything is sealed or written."""

    model_config = ConfigDict(frozen=True)

    kind: RecordKind
    actor: str = Field(min_length=1, max_length=MAX_TEXT)
    instance_id: str = Field(default="", max_length=MAX_TEXT)
    subject: str = Field(default="", max_length=MAX_TEXT)
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime | None = None

    @field_validator("actor", "instance_id", "subject")
    @classmethod
    def _single_line(cls, value: str) -> str:
        if any(ord(ch) < 0x20 or ch == "\x7f" for ch in value):
            raise ValueError("must be a single line without control characters")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must be timezone-aware (UTC)")
        return value


class AuditRecord(BaseModel):
    """One committed entry with its data opened (as `append` returns it and the opened exports use it)."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    seq: int = Field(ge=0)
    kind: str
    at: datetime
    actor: str
    instance_id: str = ""
    subject: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    entry_hash: str

    def __repr__(self) -> str:  # data may hold comments and payload fragments: keep it out of reprs and logs
        return f"AuditRecord(tenant_id={self.tenant_id!r}, seq={self.seq}, kind={self.kind!r})"

    __str__ = __repr__


def sealed_entry(
    tenant: str,
    seq: int,
    kind: str,
    at: str,
    actor: str,
    instance_id: str,
    subject: str,
    data: str,
    prev_hash: str,
) -> dict[str, Any]:
    """A sealed entry as stored and exported, with its hash computed."""
    digest = entry_hash(canonical_bytes(tenant, seq, kind, at, actor, instance_id, subject, data, prev_hash))
    return {
        "seq": seq,
        "tenant": tenant,
        "kind": kind,
        "at": at,
        "actor": actor,
        "instance_id": instance_id,
        "subject": subject,
        "data": data,
        "prev_hash": prev_hash,
        "entry_hash": digest.hex(),
    }
