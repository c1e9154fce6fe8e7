"""The gate's state in its tenant's Gates table, and the shared index from instance id to tenant.

Rows of one gate share one partition (the gate's instance id):
- `gate`: the gate record (sealed JSON: level, subject, requester, approval plan, current stage, deadline,
  outcome) plus plain `status` and `updated_at` columns for listing;
- `voter|<object id>`: one per person who voted (create-only, so one person counts once per chain), with
  the decision, the stage, the vote number and the sealed comment;
- `seq|<00000>`: one per vote number (create-only, so two concurrent votes never share a number);
- `audit|<seq, 20 digits>`: one per audit entry appended for this gate (create-only, kind and time), so
  the approval view lists the gate's audit entries without scanning the tenant's log.
A voter row and its seq row are written in one entity-group transaction: both or neither.
The voter row also carries the claim to deliver the vote (`claim_until`): the request that stored it raises
the event and audits it; an identical concurrent request never does, and takes over only when the claim was
handed back (delivery failed) or has expired (its request died), with an ETag-conditional write, so of
twenty identical requests exactly one delivers. Delivered means raised and audited (`raised`, `audited`): a vote
raised whose audit failed is handed back with `raised` set, and its retry only audits it.

The index (`gkGateIndex`, shared) maps an instance id to its tenant, so the decision route can find the
right tenant's table from the URL alone; the caller's Entra tenant is then checked against that tenant.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError
from pydantic import BaseModel, ConfigDict, Field

from gatekeeper.approvals.chain import ChainPlan, Decision, RecordedVote
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.policy.compliance import ComplianceMapping
from gatekeeper.security.requester import Requester
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.repository import TenantRepository, check_key
from gatekeeper.store.tables import StorageAccount, TablePurpose, validate_tenant_id

log = logging.getLogger(__name__)

GATE_INDEX_TABLE = "gkGateIndex"
GATE_ROW = "gate"
VOTER_PREFIX = "voter|"
SEQ_PREFIX = "seq|"
AUDIT_PREFIX = "audit|"
TICKET_PREFIX = "ticket|"  # PartitionKey of a ticket -> gate link row (no instance id starts so)
PSA_ROW = "psa"  # the PSA ticket Gatekeeper writes to for this gate (gatekeeper.gates.tickets)
PSA_TASK_ROW = "psa|task"  # the L3 task ticket opened for this gate (its time entries go there)
MAX_AUDIT_REFS = 500  # a gate's own entries: a handful per stage and vote; the view lists at most this many
MAX_VOTE_ATTEMPTS = 20

VOTE_CLAIM_LEASE = timedelta(minutes=2)
"""How long the request that stored a vote keeps the sole right to deliver it (raise the event, audit it).
Delivering is one raise_event call, bounded at 60 s by the Durable client gateway, and one audit append, so
two minutes is longer than its worst case: a concurrent identical request never delivers the vote a second
time. After it, a retry of a request that died between storing and delivering delivers the vote itself."""
_HANDED_BACK = datetime(1970, 1, 1, tzinfo=UTC)


class FailingObjective(BaseModel):
    """A quality objective that did not pass, as the approver reads it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(max_length=200)
    verdict: str = Field(default="fail", max_length=20)  # fail | warning
    detail: str = Field(default="", max_length=500)


class AuditRef(BaseModel):
    """One audit entry appended for a gate: its sequence number in the tenant's log, its kind and time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=0)
    kind: str
    at: datetime


class GateRecord(BaseModel):
    """Everything the approval page and the decision route need to know about one gate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_id: str
    tenant_id: str
    status: GateStatus
    level: str
    blocked: bool = False
    rule: str | None = None
    reasons: tuple[str, ...] = ()
    title: str = ""
    subject: dict[str, Any] = {}
    requester: tuple[str, ...] = ()  # every identity the requester is compared by (object id, addresses, ...)
    requested_by: Requester | None = None  # the resolved requester; None on gates evaluated before it existed
    extra_approver_stage: int | None = None  # unresolved requester, policy "raise": this stage needs one more
    created_at: datetime
    updated_at: datetime
    chain_instance_id: str | None = None
    plan: ChainPlan | None = None
    stage: int | None = None
    stage_started_at: datetime | None = None
    deadline: datetime | None = None
    decided_at: datetime | None = None
    outcome_reason: str | None = None
    callback_ok: bool | None = None
    # For telemetry (gatekeeper.telemetry): the automated quality verdict at evaluation, to tell a human
    # override, and when the first approval stage asked, to measure approval latency.
    quality: str | None = None
    quality_score: float | None = None
    approval_requested_at: datetime | None = None
    event_key: str | None = None  # the sealed triggering event in the tenant's Events table
    # What the approver sees besides `subject` (issue 12), written at evaluation; the defaults keep records
    # stored before these fields existed loading. Links are https only (the event model refuses others).
    repository_url: str | None = None
    commit_url: str | None = None
    run_url: str | None = None
    version_tags: tuple[str, ...] = ()
    artifact_ids: tuple[str, ...] = ()
    quality_failing: tuple[FailingObjective, ...] = ()
    compliance: tuple[ComplianceMapping, ...] = ()
    # The PSA change ticket linked to the gate (issue 15): its id and how it was named ("event": the
    # request's `ticket`; "label": a `change-ticket:<id>` label). A psa_change_approval stage waits for it.
    ticket: str | None = None
    ticket_via: str | None = None
    # The L2 recommendation (issue 16; gatekeeper.recommend): verdict, confidence, p_approve, model_version and
    # the top factors, as audited with the decision. Advice for the approvers; it never changes the level.
    recommendation: dict[str, Any] | None = None


class StoredVote(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    voter_id: str
    decision: Decision
    stage: int
    at: datetime
    seq: int
    raised: bool = False
    audited: bool = False  # its `approval_decided` entry is written: the delivery is finished
    # The audit log's size before its `approval_decided` append was tried: a retry looks for the entry from
    # there, so a delivery whose flag write failed after the append is not audited twice.
    audit_from: int | None = None
    comment: str = ""

    def recorded(self) -> RecordedVote:
        return RecordedVote(voter_id=self.voter_id, decision=self.decision, stage=self.stage, at=self.at)


class VoteExists(Exception):
    """This person already has a vote on this gate."""

    def __init__(self, vote: StoredVote):
        super().__init__(f"voter already voted (vote {vote.seq})")
        self.vote = vote


class GateRepository(TenantRepository):
    purpose = TablePurpose.GATES
    sealed_properties = frozenset({"record", "comment"})


class GateStore:
    """One tenant's gates."""

    def __init__(self, storage: StorageAccount, tenant_id: str, cipher: EnvelopeCipher):
        self._repo = GateRepository(storage, validate_tenant_id(tenant_id), cipher)

    @property
    def tenant_id(self) -> str:
        return self._repo.tenant_id

    def _ready(self) -> GateRepository:
        return self._repo.ready()

    # gate record ---------------------------------------------------------------------------------
    def save(self, record: GateRecord) -> None:
        self._ready().upsert(
            {
                "PartitionKey": check_key("instance_id", record.instance_id),
                "RowKey": GATE_ROW,
                "status": record.status.value,
                "level": record.level,
                "updated_at": record.updated_at,
                "record": record.model_dump(mode="json"),
            }
        )

    def load(self, instance_id: str) -> GateRecord | None:
        entity = self._ready().get(check_key("instance_id", instance_id), GATE_ROW)
        return None if entity is None else GateRecord.model_validate(entity["record"])

    # linked PSA tickets (gatekeeper.gates.psa) ---------------------------------------------------
    def link_ticket(self, ticket: str, instance_id: str) -> None:
        """Remember that the gate waits on this PSA ticket, so the ticket's change decision finds it."""
        self._ready().upsert(
            {
                "PartitionKey": check_key("ticket", TICKET_PREFIX + ticket.strip().lower()),
                "RowKey": check_key("instance_id", instance_id),
            }
        )

    def gates_for_ticket(self, ticket: str, limit: int = 20) -> list[str]:
        """The gates linked to this ticket (at most `limit`: one ticket rarely covers more than a few)."""
        key = check_key("ticket", TICKET_PREFIX + ticket.strip().lower())
        found: list[str] = []
        for row in self._ready().query("PartitionKey eq @pk", {"pk": key}):
            found.append(str(row["RowKey"]))
            if len(found) >= limit:
                break
        return found

    def save_psa_ticket(self, instance_id: str, vendor: str, ticket_id: str, opened: bool) -> None:
        """Remember the PSA ticket this gate's notes and statuses go to (its own row, so writing it never
        races the gate record). Ids only: vendor, ticket number, whether Gatekeeper opened it."""
        self._ready().upsert(
            {
                "PartitionKey": check_key("instance_id", instance_id),
                "RowKey": PSA_ROW,
                "vendor": vendor,
                "ticket_id": check_key("ticket", ticket_id),
                "opened": opened,
            }
        )

    def save_psa_task(self, instance_id: str, vendor: str, ticket_id: str) -> None:
        """Remember the L3 task ticket Gatekeeper opened for this gate, where "done" logs the time spent."""
        self._ready().upsert(
            {
                "PartitionKey": check_key("instance_id", instance_id),
                "RowKey": PSA_TASK_ROW,
                "vendor": vendor,
                "ticket_id": check_key("ticket", ticket_id),
            }
        )

    def psa_task(self, instance_id: str) -> tuple[str, str] | None:
        """(vendor, ticket id) of the gate's L3 task ticket, or None (no PSA, not L3, or not opened)."""
        row = self._ready().get(check_key("instance_id", instance_id), PSA_TASK_ROW)
        return None if row is None else (str(row["vendor"]), str(row["ticket_id"]))

    def psa_ticket(self, instance_id: str) -> tuple[str, str, bool] | None:
        """(vendor, ticket id, opened by Gatekeeper) of the gate's PSA ticket, or None."""
        row = self._ready().get(check_key("instance_id", instance_id), PSA_ROW)
        if row is None:
            return None
        return str(row["vendor"]), str(row["ticket_id"]), bool(row.get("opened"))

    # audit entries -------------------------------------------------------------------------------
    def note_audit(self, instance_id: str, seq: int, kind: str, at: datetime) -> None:
        """Remember that audit entry `seq` belongs to this gate. Best effort: the entry itself is what counts,
        so a failure here is logged, never raised into the step that audited."""
        try:
            self._ready().upsert(
                {
                    "PartitionKey": check_key("instance_id", instance_id),
                    "RowKey": f"{AUDIT_PREFIX}{seq:020d}",
                    "seq": seq,
                    "kind": kind,
                    "at": at,
                }
            )
        except Exception:
            log.warning("gate %s: could not note audit entry %s", instance_id, seq)

    def audit_refs(self, instance_id: str) -> list[AuditRef]:
        """The audit entries noted for this gate, oldest first (at most MAX_AUDIT_REFS)."""
        rows = self._ready().query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": check_key("instance_id", instance_id), "lo": AUDIT_PREFIX, "hi": AUDIT_PREFIX[:-1] + "}"},
        )
        refs = []
        for row in rows:
            refs.append(AuditRef(seq=int(row["seq"]), kind=str(row["kind"]), at=row["at"]))
            if len(refs) >= MAX_AUDIT_REFS:
                break
        return sorted(refs, key=lambda r: r.seq)

    # votes ---------------------------------------------------------------------------------------
    def votes(self, instance_id: str) -> list[StoredVote]:
        rows = self._ready().query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": check_key("instance_id", instance_id), "lo": VOTER_PREFIX, "hi": VOTER_PREFIX[:-1] + "}"},
        )
        votes = [_vote(row) for row in rows]
        return sorted(votes, key=lambda v: v.seq)

    def vote_of(self, instance_id: str, voter_id: str) -> StoredVote | None:
        row = self._ready().get(instance_id, VOTER_PREFIX + check_key("voter_id", voter_id.lower()))
        return None if row is None else _vote(row)

    def record_vote(
        self, instance_id: str, voter_id: str, decision: Decision, stage: int, at: datetime, comment: str
    ) -> StoredVote:
        """Store a vote under the next free vote number, atomically with the voter's once-only row.
        Raises VoteExists when this person already voted on this gate."""
        repo = self._ready()
        voter = voter_id.lower()
        existing = self.vote_of(instance_id, voter)
        if existing is not None:
            raise VoteExists(existing)
        seq = len(self.votes(instance_id))
        for _ in range(MAX_VOTE_ATTEMPTS):
            vote = StoredVote(voter_id=voter, decision=decision, stage=stage, at=at, seq=seq, comment=comment)
            try:
                row: dict[str, Any] = {
                    "PartitionKey": instance_id,
                    "RowKey": VOTER_PREFIX + voter,
                    "voter_id": voter,
                    "decision": decision.value,
                    "stage": stage,
                    "at": at,
                    "seq": seq,
                    "raised": False,
                    "audited": False,
                    "claim_until": at + VOTE_CLAIM_LEASE,
                }
                if comment:
                    row["comment"] = comment
                repo.batch(
                    [
                        row,
                        {"PartitionKey": instance_id, "RowKey": f"{SEQ_PREFIX}{seq:05d}", "voter_id": voter},
                    ]
                )
                return vote
            except (TableTransactionError, ResourceExistsError):
                again = self.vote_of(instance_id, voter)
                if again is not None:
                    raise VoteExists(again) from None
                seq += 1  # another person took this number first
        raise RuntimeError(f"could not allocate a vote number for gate {instance_id}")

    def claim_delivery(self, instance_id: str, voter_id: str, now: datetime) -> StoredVote | None:
        """This person's stored vote if this request may deliver it: not delivered yet (not raised, or raised
        but not audited: an outage between the two), and the claim of the request that stored it handed back
        or expired. Taken with an ETag-conditional write, so of several identical requests at most one gets
        it; None for the others (they answer 409)."""
        repo = self._ready()
        row = repo.get(check_key("instance_id", instance_id), VOTER_PREFIX + check_key("voter_id", voter_id.lower()))
        if row is None or _audited(row):
            return None
        until, etag = row.get("claim_until"), row.metadata.get("etag")
        if (isinstance(until, datetime) and until > now) or not etag:
            return None
        try:
            repo.replace({**row, "claim_until": now + VOTE_CLAIM_LEASE}, etag)
        except ResourceModifiedError:
            return None
        return _vote(row)

    def release_delivery(self, instance_id: str, voter_id: str, *, raised: bool = False) -> None:
        """Hand the claim back after a failed delivery, so the same person's retry delivers at once (`raised`:
        the event went out and only the audit failed, so the retry audits without raising again). Best
        effort: if the table cannot be written either, the claim expires after VOTE_CLAIM_LEASE."""
        row: dict[str, Any] = {
            "PartitionKey": instance_id,
            "RowKey": VOTER_PREFIX + voter_id.lower(),
            "claim_until": _HANDED_BACK,
        }
        try:
            self._ready().upsert(row | ({"raised": True} if raised else {}), merge=True)
        except Exception:  # the delivery's own failure is the one the caller reports
            log.warning("gate %s: could not hand back a vote's delivery claim; it expires", instance_id)

    def mark_auditing(self, instance_id: str, voter_id: str, audit_from: int) -> None:
        """The vote went to the chain and its `approval_decided` entry is about to be appended at or after
        `audit_from`: written before the append, so any retry raises nothing again and finds the entry."""
        self._ready().upsert(
            {
                "PartitionKey": instance_id,
                "RowKey": VOTER_PREFIX + voter_id.lower(),
                "raised": True,
                "audit_from": audit_from,
            },
            merge=True,
        )

    def mark_raised(self, instance_id: str, voter_id: str) -> None:
        """The vote is delivered: raised to the chain and audited."""
        self._ready().upsert(
            {"PartitionKey": instance_id, "RowKey": VOTER_PREFIX + voter_id.lower(), "raised": True, "audited": True},
            merge=True,
        )


def _audited(row: Any) -> bool:
    """Rows stored before the `audited` flag existed were audited right after they were raised."""
    return bool(row.get("audited", row.get("raised")))


def _vote(row: Any) -> StoredVote:
    return StoredVote(
        voter_id=row["voter_id"],
        decision=Decision(row["decision"]),
        stage=int(row["stage"]),
        at=row["at"],
        seq=int(row["seq"]),
        raised=bool(row.get("raised")),
        audited=_audited(row),
        audit_from=row["audit_from"] if isinstance(row.get("audit_from"), int) else None,
        comment=row.get("comment") or "",
    )


class GateIndex:
    """Shared: instance id -> tenant id. Written when a gate is evaluated; read by the decision route."""

    def __init__(self, storage: StorageAccount):
        self._storage = storage
        self._ensured = False

    def _table(self) -> Any:
        if not self._ensured:
            self._storage.ensure_table(GATE_INDEX_TABLE)
            self._ensured = True
        return self._storage.table(GATE_INDEX_TABLE)

    def put(self, instance_id: str, tenant_id: str) -> None:
        entity = {
            "PartitionKey": check_key("instance_id", instance_id),
            "RowKey": "tenant",
            "tenant_id": validate_tenant_id(tenant_id),
        }
        try:
            self._table().create_entity(entity)
        except ResourceExistsError:
            current = self.tenant_of(instance_id)
            if current != tenant_id:  # an instance id belongs to one tenant, forever
                raise ValueError(f"gate {instance_id} is already indexed for another tenant") from None

    def tenant_of(self, instance_id: str) -> str | None:
        try:
            check_key("instance_id", instance_id)
            entity = self._table().get_entity(instance_id, "tenant")
        except (ResourceNotFoundError, ValueError):
            return None
        return str(entity["tenant_id"])
