"""The decision route's logic, free of azure.functions: may this person decide, record, raise.

The caller arrives authenticated, as a `Principal` (the channel's trigger identified it once, see
`gatekeeper.approvals.authenticate`), so every approval channel shares these rules.

    POST /api/approvals/{instance_id}/decisions  {"decision": "approve"|"reject", "comment": "..."}
    GET  /api/approvals/{instance_id}

Order of checks, so nothing is revealed to a stranger: authenticate (401) -> find the gate's tenant from the
shared index (404) -> the caller's Entra tenant must be one of the gate tenant's (403 wrong-tenant) -> the
body (422) -> the gate must be waiting for approval (410 when decided, 409 before it asks) -> the pure state
machine (`chain.check`: 410 past deadline, 403 self-approval or not an approver, 409 second vote) -> the vote
is stored create-only under the next vote number (409 on a race with the same person) -> the vote is raised
to the chain orchestration as event `approval-vote-<n>` -> 202.

If raising fails after the vote was stored, the same person's retry raises it again instead of answering
409, so a vote is never stored but silently lost. Only one request delivers a stored vote (raises it and
audits it): the one that stored it, or the one that wins the ETag-conditional claim once the first handed
it back or its claim expired (`GateStore.claim_delivery`), so twenty identical concurrent votes give one
202, nineteen 409s, one raised event and one audit entry. A vote raised whose audit append then failed is
marked raised, not audited: the same voter's retry (or the PSA event's redelivery) audits it without raising
it again, also once the vote has decided the gate. Before the append the voter row records where the audit log
stood (`audit_from`), so a delivery whose last write (`mark_raised`) failed after the append is finished by the
retry without a second `approval_decided`: it finds the entry instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gatekeeper import json_bounded
from gatekeeper.approvals import chain
from gatekeeper.approvals.authenticate import require_person
from gatekeeper.audit.lookup import find_entry
from gatekeeper.contracts.gate import GateStatus, VoteEvent, vote_event_name
from gatekeeper.errors import (
    Conflict,
    DependencyUnavailable,
    Forbidden,
    GatekeeperError,
    Gone,
    InvalidInput,
    NotFound,
)
from gatekeeper.events.model import PipelineEvent
from gatekeeper.gates.psa import change_decision, company_refusal, ticket_matches
from gatekeeper.gates.store import GateIndex, GateRecord, GateStore, StoredVote, VoteExists
from gatekeeper.gates.view import ApprovalView, build_view
from gatekeeper.security.groups import GroupLookupUnavailable, GroupMembership
from gatekeeper.security.principal import Principal, wrong_tenant
from gatekeeper.security.requester import GUID, DirectoryUnavailable, UserDirectory, normalise_address
from gatekeeper.store.envelope import EnvelopeCipher
from gatekeeper.store.tables import StorageAccount

if TYPE_CHECKING:
    from gatekeeper.tenancy.model import TenantRecord

logger = logging.getLogger(__name__)

INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,199}$")
MAX_BODY_BYTES = 16 * 1024


class OrchestrationGateway(Protocol):
    """Raises events to orchestrations: the Durable client in Azure, the local runner in development.
    Raises on failure; an exception whose text says the instance is gone/not running maps to 410."""

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None: ...


class DecisionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    decision: chain.Decision
    comment: str = Field(default="", max_length=1000)


def not_found() -> NotFound:
    return NotFound("No gate with this instance id exists.", code="gate-not-found", title="Gate not found")


_UNREADABLE_DIRECTORY = (
    " (the token lists too many groups, and this service cannot read your directory to check membership; "
    "ask to be named directly)"
)


def _identities(principal: Principal) -> frozenset[str]:
    """The ids a stage may name a person by: object id and UPN, lower case."""
    return frozenset({principal.oid.lower(), *((principal.upn.lower(),) if principal.upn else ())})


def _groups_to_ask(principal: Principal, stages: Iterable[Any]) -> frozenset[str]:
    """The groups of the stages that do not name the caller directly: a person named in a stage never
    depends on the directory there, so a directory outage cannot lock them out."""
    if not principal.groups_overage:
        return frozenset()
    identities = _identities(principal)
    return frozenset(g for stage in stages if not stage.admits(identities, frozenset()) for g in stage.groups)


def _refusal_problem(refusal: chain.Refusal) -> GatekeeperError:
    return refusal.kind(refusal.detail, code=refusal.slug, title=refusal.title)


class DecisionService:
    def __init__(
        self,
        storage: StorageAccount,
        cipher: EnvelopeCipher,
        gateway: OrchestrationGateway,
        *,
        entra_tenants_for: Callable[[str], Iterable[str]],
        audit_for: Callable[[str], Any] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        group_membership: GroupMembership | None = None,
        directory: UserDirectory | None = None,
        base_url: str | None = None,
        tenant_for: Callable[[str], TenantRecord | None] | None = None,
    ):
        self._base_url = base_url
        self._tenant_for = tenant_for  # the tenant record (its `psa.company`) for PSA change decisions
        self._storage = storage
        self._directory = directory
        self._groups = group_membership
        self._cipher = cipher
        self._gateway = gateway
        self._entra_tenants_for = entra_tenants_for
        self._audit_for = audit_for
        self._clock = clock
        self._index = GateIndex(storage)
        self._stores: dict[str, GateStore] = {}

    # ----- the two routes ------------------------------------------------------------------------------

    def decide(self, instance_id: str, principal: Principal, body: bytes) -> tuple[int, dict[str, Any]]:
        """A vote by `principal` (authenticated by the channel's trigger, see `approvals.authenticate`)."""
        principal = require_person(principal)
        store, record = self._gate(instance_id, principal)
        request = _parse(body)
        now = self._clock()
        unaudited = self._unaudited(store, record, principal.oid, now)
        if unaudited is not None:  # this person's vote went to the chain, its audit failed: finish that first
            return self._raise(store, record, unaudited, principal, unaudited.comment, self._aliases(principal, record))
        self._state(store, record, [], fold=False)  # 410 when decided, 409 when not waiting for approval
        stage = record.stage  # _state() made sure the gate waits at a stage of its plan
        current = record.plan.stages[stage : stage + 1] if record.plan and stage is not None else ()
        principal = self._with_directory_groups(principal, _groups_to_ask(principal, current))
        aliases = self._aliases(principal, record)
        vote = chain.Vote(
            voter_id=principal.oid,
            decision=request.decision,
            at=now,
            stage=record.stage,
            groups=principal.groups,
            aliases=aliases,
        )
        refusal = self._check(store, record, vote)
        if isinstance(refusal, chain.DuplicateVote):
            # stored earlier but not delivered (raising failed, or its request died): finish the job, if
            # this request wins the claim to deliver it and no vote stored before it decided the stage;
            # an identical concurrent request never does
            stored = store.claim_delivery(instance_id, principal.oid, now)
            if stored is not None:
                outrun = self._outrun(store, record, stored)
                if outrun is not None:
                    store.release_delivery(instance_id, stored.voter_id)
                    raise _refusal_problem(outrun)
                return self._raise(store, record, stored, principal, request.comment, aliases)
        if refusal is not None:
            problem = _refusal_problem(refusal)
            if isinstance(refusal, chain.NotAnApprover) and _groups_to_ask(principal, current):
                problem.detail += _UNREADABLE_DIRECTORY
            raise problem
        try:
            stored = store.record_vote(
                instance_id, principal.oid, request.decision, int(record.stage or 0), now, request.comment
            )
        except VoteExists:
            claimed = store.claim_delivery(instance_id, principal.oid, now)
            if claimed is not None:
                return self._raise(store, record, claimed, principal, request.comment, aliases)
            raise _refusal_problem(chain.DuplicateVote("one person counts once per approval chain")) from None
        outrun = self._outrun(store, record, stored)
        if outrun is not None:  # a retry hears the same (the claim is handed back, then refused again)
            store.release_delivery(instance_id, stored.voter_id)
            raise _refusal_problem(outrun)
        return self._raise(store, record, stored, principal, request.comment, aliases)

    def psa_change(self, event: PipelineEvent) -> list[dict[str, Any]]:
        """A PSA change decision (a connector event) applied to every gate of the event's tenant linked to
        that ticket and waiting at a `psa_change_approval` stage: counted through the chain like a vote
        (`psa:<source>:<ticket>`), raised to the chain, audited with its source. A gate that is not waiting
        there is left alone and the reason audited. Returns one outcome per linked gate."""
        decided = change_decision(event)
        if decided is None:
            return []
        source, ticket, approved = decided
        store = self._store(event.tenant_id)
        refusal: str | None = None
        checked = False
        outcomes: list[dict[str, Any]] = []
        for instance_id in store.gates_for_ticket(ticket):
            record = store.load(instance_id)
            linked = record.ticket or _opened_ticket(store, instance_id) if record is not None else None
            if record is None or not ticket_matches(linked, source, ticket):
                continue
            if not checked:  # the ticket must be the tenant's client company's (gatekeeper.gates.psa)
                tenant = self._tenant_for(event.tenant_id) if self._tenant_for is not None else None
                refusal, checked = company_refusal(event, tenant), True
            if refusal is not None:
                facts = _psa_facts(source, ticket, approved, event)
                voter = chain.psa_voter(source, ticket)
                outcomes.append(self._psa_not_applied(record, voter, facts, refusal, self._clock()))
                continue
            outcomes.append(self._psa_vote(store, record, source, ticket, approved, event))
        return outcomes

    def _psa_vote(
        self, store: GateStore, record: GateRecord, source: str, ticket: str, approved: bool, event: PipelineEvent
    ) -> dict[str, Any]:
        now = self._clock()
        voter = chain.psa_voter(source, ticket)
        decision = chain.Decision.APPROVE if approved else chain.Decision.REJECT
        facts = _psa_facts(source, ticket, approved, event)
        unaudited = self._unaudited(store, record, voter, now)
        if unaudited is not None:  # raised by an earlier delivery of this event whose audit failed
            data = {"psa": True, **facts}
            return self._raise(store, record, unaudited, None, unaudited.comment, audit_data=data)[1]
        vote = chain.Vote(voter_id=voter, decision=decision, at=now, stage=record.stage)
        try:
            refusal = self._check(store, record, vote)
        except GatekeeperError as not_waiting:
            return self._psa_not_applied(record, voter, facts, not_waiting.code, now)
        if isinstance(refusal, chain.DuplicateVote):
            stored = store.claim_delivery(record.instance_id, voter, now)  # stored, not yet raised: finish it
            if stored is None:
                return {"instance_id": record.instance_id, "status": "duplicate"}
            outrun = self._outrun(store, record, stored)
            if outrun is not None:
                store.release_delivery(record.instance_id, voter)
                return self._psa_not_applied(record, voter, facts, outrun.slug, now)
        elif refusal is not None:
            return self._psa_not_applied(record, voter, facts, refusal.slug, now)
        else:
            comment = _psa_note(source, ticket, approved, event.received_at)
            try:
                stored = store.record_vote(record.instance_id, voter, decision, int(record.stage or 0), now, comment)
            except VoteExists:
                return {"instance_id": record.instance_id, "status": "duplicate"}
            outrun = self._outrun(store, record, stored)
            if outrun is not None:
                return self._psa_not_applied(record, voter, facts, outrun.slug, now)
        data = {"psa": True, **facts}
        try:
            _, answer = self._raise(store, record, stored, None, stored.comment, audit_data=data)
        except Gone:  # the chain ended meanwhile (timeout, another decision): nothing left to decide
            return self._psa_not_applied(record, voter, facts, "gate-decided", now)
        return answer

    def _psa_not_applied(
        self, record: GateRecord, voter: str, facts: dict[str, Any], reason: str, now: datetime
    ) -> dict[str, Any]:
        if self._audit_for is not None:
            data = {"action": "change_decision_not_applied", "reason": reason, "stage": record.stage, **facts}
            self._audit_for(record.tenant_id).append(
                "connector_event", voter, record.instance_id, record.title[:1000], data, at=now
            )
        return {"instance_id": record.instance_id, "status": "not_applied", "reason": reason}

    def state(self, instance_id: str, principal: Principal) -> tuple[int, dict[str, Any]]:
        """The gate as `principal` may see it, and whether they may decide now."""
        principal = require_person(principal)
        store, record = self._gate(instance_id, principal)
        stages = record.plan.stages if record.plan else ()
        identities = _identities(principal)
        named = any(s.admits(identities, frozenset()) for s in stages)
        principal = self._with_directory_groups(principal, _groups_to_ask(principal, stages), required=not named)
        groups = frozenset(g.lower() for g in principal.groups)
        if stages and not any(s.admits(identities, groups) for s in stages):  # no chain: any tenant user
            unreadable = _UNREADABLE_DIRECTORY if _groups_to_ask(principal, stages) else ""
            raise Forbidden(
                "Only the approvers named in this gate's approval chain may see it." + unreadable,
                code="not-an-approver",
                title="Not an approver of this gate",
            )
        votes = store.votes(instance_id)
        can_decide = False
        if record.status is GateStatus.AWAITING_APPROVAL and record.stage is not None:
            try:
                aliases = identities | self._aliases(principal, record)
            except DependencyUnavailable:  # the directory is down: the page still shows, without offering a decision
                aliases = None
            probe = chain.Vote(
                voter_id=principal.oid,
                decision=chain.Decision.APPROVE,
                at=self._clock(),
                stage=record.stage,
                groups=groups,
                aliases=aliases or identities,
            )
            can_decide = aliases is not None and chain.check(self._state(store, record, votes), probe) is None
        view = build_view(
            record, votes, can_decide=can_decide, base_url=self._base_url, audit=store.audit_refs(instance_id)
        )
        return 200, view.to_api()

    def view(self, instance_id: str, principal: Principal) -> ApprovalView:
        """The gate as `principal` may see it (same checks as `state`), for the card and the page."""
        _, document = self.state(instance_id, principal)
        return self.system_view(instance_id, can_decide=bool(document["can_decide"]))

    def system_view(self, instance_id: str, *, can_decide: bool = False) -> ApprovalView:
        """The gate as the system shows it to everyone it asks (a card sent to each approver, the read-only
        summary after the decision). No caller checks: never answer a request with this directly."""
        if not INSTANCE_ID.match(instance_id or ""):
            raise not_found()
        tenant_id = self._index.tenant_of(instance_id)
        if tenant_id is None:
            raise not_found()
        store = self._store(tenant_id)
        record = store.load(instance_id)
        if record is None:
            raise not_found()
        return build_view(
            record,
            store.votes(instance_id),
            can_decide=can_decide,
            base_url=self._base_url,
            audit=store.audit_refs(instance_id),
        )

    # ----- steps ---------------------------------------------------------------------------------------

    def _aliases(self, principal: Principal, record: GateRecord) -> frozenset[str]:
        """The caller's names besides the object id, for matching named approvers and the requester: the
        token's UPN and, where the requester is known by name or address only, every address the directory
        has for the caller (`mail`, `userPrincipalName`, `proxyAddresses`). A directory that cannot answer is
        503 when the requester has no object id: a vote is never counted on a comparison that could not be
        made. With a resolved requester the object ids decide, and the addresses only add certainty."""
        found = {a for a in (principal.upn.strip().lower() if principal.upn else None,) if a}
        found |= {a for a in (normalise_address(principal.upn),) if a}
        if self._directory is None or not _needs_names(record):
            return frozenset(found)
        try:
            user = self._directory.user(principal.oid)
        except DirectoryUnavailable:
            if record.requested_by is not None and record.requested_by.resolved:
                return frozenset(found)  # the requester's object id is known: comparing it is enough
            raise DependencyUnavailable(
                "This gate's requester is known by name only, and the directory could not be asked for your "
                "addresses to rule out self-approval. Try again in a minute.",
                code="identity-lookup-unavailable",
                title="Your identity cannot be checked now",
            ) from None
        if user is not None and user.oid.lower() == principal.oid.lower():
            found |= user.addresses
        return frozenset(found)

    def _with_directory_groups(
        self, principal: Principal, groups_to_ask: frozenset[str], *, required: bool = True
    ) -> Principal:
        """A caller whose token could not list its groups, with its memberships among `groups_to_ask`, read
        from the directory. Unchanged when nothing needs asking or nobody can answer (the refusal then says
        why). When the directory cannot answer now: 503 if the answer decides whether the caller may act
        (`required`), so nobody is refused by mistake; otherwise the caller goes on without it."""
        if not principal.groups_overage or not groups_to_ask or self._groups is None:
            return principal
        if not self._groups.serves(principal.tid):
            return principal
        try:
            found = self._groups.member_groups(principal.tid, principal.oid, groups_to_ask)
        except GroupLookupUnavailable:
            if not required:
                return principal
            raise DependencyUnavailable(
                "Your token lists too many groups, and the directory could not be asked which of this "
                "chain's approver groups you belong to. Try again in a minute.",
                code="group-lookup-unavailable",
                title="Group membership cannot be checked now",
            ) from None
        return principal.model_copy(update={"groups": principal.groups | found, "groups_overage": False})

    def _gate(self, instance_id: str, principal: Principal) -> tuple[GateStore, GateRecord]:
        if not INSTANCE_ID.match(instance_id or ""):
            raise not_found()
        tenant_id = self._index.tenant_of(instance_id)
        if tenant_id is None:
            raise not_found()
        allowed = {t.strip().lower() for t in self._entra_tenants_for(tenant_id)}
        if principal.tid.lower() not in allowed:
            raise wrong_tenant()
        store = self._store(tenant_id)
        record = store.load(instance_id)
        if record is None:
            raise not_found()
        return store, record

    def _store(self, tenant_id: str) -> GateStore:
        store = self._stores.get(tenant_id)
        if store is None:
            store = self._stores[tenant_id] = GateStore(self._storage, tenant_id, self._cipher)
        return store

    def _state(
        self, store: GateStore, record: GateRecord, votes: list[StoredVote] | None = None, *, fold: bool = True
    ) -> chain.ChainState:
        """The chain as the route sees it, from the gate record and the stored votes (`settled` by them
        unless `fold` is False)."""
        if record.status in (GateStatus.APPROVED, GateStatus.REJECTED, GateStatus.HUMAN_TASK):
            raise Gone(
                f"The gate was {record.status.value} at "
                f"{record.decided_at.isoformat() if record.decided_at else 'an earlier time'}.",
                code="gate-decided",
                title="The gate has already been decided",
            )
        if (
            record.status is not GateStatus.AWAITING_APPROVAL
            or record.plan is None
            or record.stage is None
            or record.stage_started_at is None
        ):
            raise Conflict(
                "This gate has not asked for approval (yet); try again when it has.",
                code="not-awaiting-approval",
                title="The gate is not waiting for approval",
            )
        recorded = tuple(v.recorded() for v in (votes if votes is not None else store.votes(record.instance_id)))
        state = chain.ChainState(
            plan=record.plan,
            requester=frozenset(record.requester),
            stage=record.stage,
            stage_started_at=record.stage_started_at,
            votes=recorded,
        )
        return settled(state) if fold else state

    def _check(self, store: GateStore, record: GateRecord, vote: chain.Vote) -> chain.Refusal | None:
        """Why `vote` cannot count. The chain's own rules first, over the stored votes as they are (so a
        person who already voted hears that, and a stored vote whose delivery failed can still be finished);
        then whether the stored votes have already decided the stage (`settled`)."""
        state = self._state(store, record, fold=False)
        return chain.check(state, vote) or chain.check(settled(state), vote)

    @staticmethod
    def _unaudited(store: GateStore, record: GateRecord, voter_id: str, now: datetime) -> StoredVote | None:
        """This voter's vote if it was raised to the chain but its `approval_decided` entry could not be
        written (an outage between the two), and this request won the claim to finish it. Asked before the
        gate's state, because the vote may have decided the gate meanwhile: it counted, so it is audited."""
        if record.chain_instance_id is None or record.plan is None:
            return None
        mine = store.vote_of(record.instance_id, voter_id)
        if mine is None or not mine.raised or mine.audited:
            return None
        return store.claim_delivery(record.instance_id, voter_id, now)

    @staticmethod
    def _audited_entry(log: Any, record: GateRecord, stored: StoredVote) -> int | None:
        """The `approval_decided` entry an earlier delivery of this vote appended (it recorded where the log
        stood first, `audit_from`), or None: found, the vote is not audited again."""
        if stored.audit_from is None:
            return None
        return find_entry(
            log, stored.audit_from, "approval_decided", record.instance_id, lambda data: data.get("vote") == stored.seq
        )

    def _outrun(self, store: GateStore, record: GateRecord, stored: StoredVote) -> chain.Refusal | None:
        """Why a vote just stored cannot count: votes stored before it (lower sequence numbers) already
        rejected its stage or met its quorum while both requests were checking (quorum 1, two approvers at
        once). The chain counts votes in that order, so this one would be ignored: its voter is told so
        instead of "accepted", and it is never raised nor audited as a decision."""
        before = [v for v in store.votes(record.instance_id) if v.seq < stored.seq]
        state = self._state(store, record, before)
        if state.closed:
            return chain.closed_refusal(state)
        if state.stage != stored.stage:
            return chain.PastDeadline(f"stage {stored.stage} already has its decision; the chain has moved on")
        return None

    def _raise(
        self,
        store: GateStore,
        record: GateRecord,
        stored: StoredVote,
        principal: Principal | None,
        comment: str,
        aliases: frozenset[str] = frozenset(),
        audit_data: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Raise a stored vote to the chain and audit it. `principal` None: a PSA change decision, whose voter
        id (`psa:<source>:<ticket>`) is the actor and whose `audit_data` names the source."""
        assert record.chain_instance_id is not None and record.plan is not None
        named_groups = frozenset(g for s in record.plan.stages for g in s.groups)
        groups = principal.groups if principal is not None else frozenset()
        upn = principal.upn if principal is not None else None
        event = VoteEvent(
            seq=stored.seq,
            voter_id=stored.voter_id,
            decision=stored.decision,
            at=stored.at,
            stage=stored.stage,
            groups=tuple(sorted(g for g in (x.lower() for x in groups) if g in named_groups)),
            aliases=tuple(sorted({a.lower() for a in (upn,) if a} | aliases)),
        )
        try:
            if not stored.raised:  # raised by an earlier request whose audit append failed: audit only
                self._gateway.raise_event(
                    record.chain_instance_id, vote_event_name(stored.seq), event.model_dump(mode="json")
                )
        except Exception as exc:
            store.release_delivery(record.instance_id, stored.voter_id)  # the person's retry delivers it
            text = str(exc).lower()
            if any(word in text for word in ("gone", "not running", "completed", "failed", "no instance")):
                raise Gone(
                    "The approval is no longer waiting for decisions.",
                    code="gate-decided",
                    title="The gate has already been decided",
                ) from None
            raise DependencyUnavailable(
                "The vote was stored but could not be delivered yet; send it again.",
                code="orchestration-unavailable",
                title="Try again",
            ) from None
        if self._audit_for is not None:
            log = self._audit_for(record.tenant_id)
            try:  # an earlier delivery may have appended the entry and failed only to say so (mark_raised)
                found = self._audited_entry(log, record, stored)
                if found is None:
                    if stored.audit_from is None:
                        store.mark_auditing(record.instance_id, stored.voter_id, log.head().size)
                    entry = log.append(
                        "approval_decided",
                        principal.oid if principal is not None else stored.voter_id,
                        record.instance_id,
                        record.title[:1000],
                        {
                            "vote": stored.seq,
                            "stage": stored.stage,
                            "decision": stored.decision.value,
                            "comment": comment[:1000],
                            "upn": upn,
                            **(audit_data or {}),
                        },
                        at=stored.at,
                    )
            except Exception:  # raised, not audited: the person's retry audits it (and raises nothing again)
                store.release_delivery(record.instance_id, stored.voter_id, raised=True)
                raise
            seq = getattr(entry, "seq", None) if found is None else None
            if isinstance(seq, int):  # the gate's view lists its audit entries (GateStore.note_audit)
                store.note_audit(record.instance_id, seq, "approval_decided", stored.at)
        try:
            store.mark_raised(record.instance_id, stored.voter_id)
        except Exception:  # raised and audited: delivered; a retry after the claim finds the entry, adds none
            logger.warning("gate %s: a delivered vote could not be marked delivered", record.instance_id)
        return 202, {
            "instance_id": record.instance_id,
            "status": "accepted",
            "vote": stored.seq,
            "stage": stored.stage,
            "decision": stored.decision.value,
        }


def settled(state: chain.ChainState) -> chain.ChainState:
    """The chain as its stored votes leave it, in the order the chain counts them (sequence numbers): a
    stage whose stored votes already hold a rejection or meet its quorum is over, even while the
    orchestration has not counted them yet. A vote checked against this state cannot be told "accepted"
    and then be ignored by the chain. Stored votes were admitted when they were stored, so only their
    decisions are counted here."""
    if state.closed:
        return state
    approvals: set[str] = set()
    for vote in state.votes:
        if vote.stage != state.stage:
            continue
        if vote.decision is chain.Decision.REJECT:
            update = {"status": chain.ChainStatus.REJECTED, "decided_at": vote.at, "reason": "rejected"}
            return state.model_copy(update=update)
        approvals.add(vote.voter_id.lower())
        if len(approvals) >= state.current.quorum:
            if state.stage + 1 < len(state.plan.stages):
                return state.model_copy(update={"stage": state.stage + 1, "stage_started_at": vote.at})
            update = {"status": chain.ChainStatus.APPROVED, "decided_at": vote.at, "reason": "quorum"}
            return state.model_copy(update=update)
    return state


def _opened_ticket(store: GateStore, instance_id: str) -> str | None:
    """The change ticket Gatekeeper opened for a gate that named none (`gatekeeper.gates.tickets`)."""
    found = store.psa_ticket(instance_id)
    return f"{found[0]}:{found[1]}" if found is not None and found[2] else None


def _psa_facts(source: str, ticket: str, approved: bool, event: PipelineEvent) -> dict[str, Any]:
    """What a PSA change decision's audit entries say about it (never the company it named)."""
    decision = chain.Decision.APPROVE if approved else chain.Decision.REJECT
    return {"source": source, "ticket": ticket, "decision": decision.value, "delivery_id": event.delivery_id}


def _psa_note(source: str, ticket: str, approved: bool, event_at: datetime) -> str:
    verb = "approved" if approved else "rejected"
    return f"{source} change ticket {ticket} {verb} in the PSA ({event_at.isoformat()})"


def _needs_names(record: GateRecord) -> bool:
    """True when the requester is (also) known by something other than an object id."""
    if record.requested_by is not None:
        return record.requested_by.needs_names()
    return any(not GUID.match(r) for r in record.requester)


def _parse(body: bytes) -> DecisionRequest:
    data = json_bounded.body_object(body, max_bytes=MAX_BODY_BYTES)
    try:
        return DecisionRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        detail = "must be 'approve' or 'reject'" if field == "decision" and first["type"] == "enum" else first["msg"]
        raise InvalidInput(f"{field}: {detail}", field=field, errors=[{"field": field, "message": detail}]) from None
