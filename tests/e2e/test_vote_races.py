"""Two approvers of one gate at once, quorum 1: the votes go through the decision service concurrently (as two
route invocations would), then the real approval chain and gate orchestrations run in the local runner.
The gate is decided once (one counted vote, one callback, one decision entry), the loser's vote is audited as
not counted, and a vote after the decision is refused with 410 `gate-decided`."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.runner import ManualClock
from devstack.webhook import LocalWebhookReceiver
from functions.http import problem_body, status_of
from gatekeeper.approvals.chain import Decision
from gatekeeper.audit.log import AuditLog
from gatekeeper.contracts.gate import WITHDRAW_EVENT, chain_instance_id, vote_event_name
from gatekeeper.errors import GatekeeperError
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent, WebhookCallback
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.settings import Settings
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from tests.support.outage import AuditDownOnce

pytestmark = pytest.mark.azurite

TID = "3f6c2a8e-1b7d-4c9e-8a5f-0d2e4b6c8a10"
AUDIENCE = "api://gatekeeper-vote-races"
SECRET = b"webhook-signing-secret-for-vote-races"
ANNA, PIET, SARA, DEV_OID = (str(uuid.UUID(int=i)) for i in (0xA, 0xB, 0xC, 0xDE))
POLICY = {
    "version": 1,
    "defaults": {
        "level": "L2",
        "approval": {"stages": [{"name": "leads", "approvers": [ANNA, PIET, SARA], "quorum": 1, "timeout": "PT1H"}]},
    },
}


Rig = tuple[LocalGates, LocalEntraIssuer, LocalWebhookReceiver, AuditLog, str]


@pytest.fixture
def rig(azurite, tmp_path) -> Iterator[Rig]:
    yield from rig_with(azurite, tmp_path, POLICY)


def rig_with(
    azurite: Any,
    tmp_path: Any,
    document: dict[str, Any],
    audit_as: Callable[[AuditLog], Any] = lambda log: log,
    gate_storage: StorageAccount | None = None,
) -> Iterator[Rig]:
    """The gate rig; `gate_storage` (default: Azurite directly) is the storage the gates' tables go through,
    the audit log and the data keys always reach Azurite directly."""
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path / "keys")))
    tenant_id = "t" + uuid.uuid4().hex[:12]
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    policy = load_policy(document)
    receiver = LocalWebhookReceiver(SECRET).start()
    with LocalEntraIssuer() as issuer:
        gates = local_gates(
            gate_storage or storage,
            cipher,
            decider=PolicyDecider(lambda _t: policy),
            audit_for=lambda _t: audit_as(audit),
            notifier=OutboxNotifier(tmp_path / "outbox"),
            callbacks=PipelineCallbacks(
                webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
                webhook_secret=lambda _tenant: SECRET,
            ),
            entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
            token_validator=EntraTokenValidator(
                AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: tid == TID
            ),
            operators_for=lambda _t: ("ops@contoso.com",),
            clock=ManualClock(datetime(2030, 6, 3, 10, 0, tzinfo=UTC)),
            settings=Settings(trust_easyauth_header=False),
        )
        try:
            yield gates, issuer, receiver, audit, tenant_id
        finally:
            receiver.stop()


def vote(gates: LocalGates, issuer: LocalEntraIssuer, gate: str, oid: str, decision: str) -> tuple[int, dict]:
    """The decision route's answer for one person, without running the orchestrations (a request's view)."""
    token = issuer.issue(oid, TID, AUDIENCE, issued_at=datetime.now(UTC).timestamp())
    body = json.dumps({"decision": decision, "comment": f"{decision} by {oid[-1]}"}).encode()
    try:
        return gates.decisions.decide(gate, gates.identify({"Authorization": f"Bearer {token}"}), body)
    except GatekeeperError as problem:
        return status_of(problem), problem_body(problem)


def open_gate(gates: LocalGates, receiver: LocalWebhookReceiver, tenant_id: str) -> str:
    event = PipelineEvent(
        tenant_id=tenant_id,
        source=EventSource.GENERIC,
        kind=EventKind.GATE_REQUEST,
        environment="production",
        repository="contoso/webshop",
        actor="dev@contoso.com",
        requester_ids=(f"entra:oid:{DEV_OID}",),  # resolved, so the policy keeps the quorum at one
        run_id=uuid.uuid4().hex,
        callback=WebhookCallback(url=receiver.url + "/ci/hook"),
    )
    gate = gates.submit(event)
    assert gates.runner.status(gate).runtime_status == "Running"
    return gate


def both_at_once(gates: LocalGates, issuer: LocalEntraIssuer, gate: str, decisions: tuple[str, str]) -> list[Any]:
    barrier = threading.Barrier(2, timeout=30)

    def one(who: tuple[str, str]) -> tuple[int, dict]:
        barrier.wait()
        return vote(gates, issuer, gate, *who)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, zip((ANNA, PIET), decisions, strict=True), timeout=120))


@pytest.mark.parametrize("decisions", [("approve", "approve"), ("approve", "reject"), ("reject", "approve")])
def test_two_approvers_at_once_with_a_quorum_of_one_decide_the_gate_once(rig, decisions):
    gates, issuer, receiver, audit, tenant_id = rig
    gate = open_gate(gates, receiver, tenant_id)
    answers = both_at_once(gates, issuer, gate, decisions)
    assert {status for status, _ in answers} <= {202, 409, 410}, answers
    gates.runner.run_until_idle()

    output = gates.runner.status(gate).output
    [counted] = output["chain"]["votes"]  # quorum 1: the first vote delivered decides, nobody else counts
    assert output["status"] == ("approved" if counted["decision"] == "approve" else "rejected")
    finals = [d["body"] for d in receiver.deliveries if d["body"].get("event") == "gate.completed"]
    assert [c["state"] for c in finals] == [output["status"]], "the pipeline is told once"
    assert gates.runner.status(chain_instance_id(gate)).runtime_status == "Completed"
    [final] = [r for r in audit.records() if r.instance_id == gate and r.kind == "decision" and r.data.get("final")]
    assert final.data["chain"]["votes"] == [counted]

    late_status, late = vote(gates, issuer, gate, SARA, "approve")  # after the decision
    assert (late_status, late["type"].rsplit("/", 1)[-1]) == (410, "gate-decided")
    assert len([d for d in receiver.deliveries if d["body"].get("event") == "gate.completed"]) == 1


def decisions_of(audit: AuditLog, gate: str) -> list[Any]:
    return [r for r in audit.records() if r.instance_id == gate and r.kind == "approval_decided"]


def test_the_vote_that_loses_the_race_is_told_it_did_not_count(rig):
    gates, issuer, receiver, audit, tenant_id = rig
    gate = open_gate(gates, receiver, tenant_id)
    first = vote(gates, issuer, gate, ANNA, "approve")  # stored and raised; the chain has not run yet
    second = vote(gates, issuer, gate, PIET, "reject")  # the stage is already decided by the stored vote
    assert first[0] == 202
    assert (second[0], second[1]["type"].rsplit("/", 1)[-1]) == (410, "gate-decided"), second
    assert [r.actor for r in decisions_of(audit, gate)] == [ANNA]  # the loser's vote is never audited as one
    assert vote(gates, issuer, gate, PIET, "reject")[0] == 410  # asked again: the same answer
    gates.runner.run_until_idle()
    output = gates.runner.status(gate).output
    assert output["status"] == "approved" and [v["voter_id"] for v in output["chain"]["votes"]] == [ANNA]
    finals = [d["body"] for d in receiver.deliveries if d["body"].get("event") == "gate.completed"]
    assert [c["state"] for c in finals] == ["approved"]


def test_a_vote_stored_while_an_earlier_one_was_being_stored_is_refused_and_never_raised(rig, monkeypatch):
    """The interleaving the check before storing cannot see: both requests found the stage open, then the other
    approver's vote was stored first (a lower sequence number). The chain counts in that order and would ignore
    this vote, so its voter hears 410; it is not raised and not audited as a decision. The first approver's
    vote is then delivered and decides the gate."""
    gates, issuer, receiver, audit, tenant_id = rig
    gate = open_gate(gates, receiver, tenant_id)
    service = gates.decisions
    build_store = service._store

    def racing_store(tenant: str) -> Any:
        store = build_store(tenant)
        record_vote = store.record_vote

        def anna_stores_first(instance_id, voter_id, decision, stage, at, comment):
            if voter_id == PIET and store.vote_of(instance_id, ANNA) is None:
                record_vote(instance_id, ANNA, Decision.APPROVE, stage, at, "approve by a")  # her request, meanwhile
                store.release_delivery(instance_id, ANNA)  # ... whose delivery is finished by her retry below
            return record_vote(instance_id, voter_id, decision, stage, at, comment)

        store.record_vote = anna_stores_first
        return store

    monkeypatch.setattr(service, "_store", racing_store)
    status, body = vote(gates, issuer, gate, PIET, "reject")
    assert (status, body["type"].rsplit("/", 1)[-1]) == (410, "gate-decided"), body
    assert decisions_of(audit, gate) == []
    monkeypatch.undo()
    status, body = vote(gates, issuer, gate, ANNA, "approve")
    assert status == 202 and body["decision"] == "approve", body
    assert vote(gates, issuer, gate, PIET, "reject")[0] == 410
    gates.runner.run_until_idle()
    output = gates.runner.status(gate).output
    assert output["status"] == "approved" and [v["voter_id"] for v in output["chain"]["votes"]] == [ANNA]
    assert PIET not in {r.actor for r in decisions_of(audit, gate)}  # the people's: ANNA's; then the chain's own
    assert decisions_of(audit, gate)[0].actor == ANNA


@pytest.mark.parametrize("chain_ran", [False, True])
def test_a_vote_raised_whose_audit_failed_is_audited_by_the_same_persons_retry_once(azurite, tmp_path, chain_ran):
    """The vote reached the chain, then its `approval_decided` append met an outage (503). The vote counts, so
    it must be audited: the retry used to hear 409 (already voted) or, once the chain had decided, 410, and
    the counted vote was never audited. Now the retry audits it, once, and raises nothing again."""
    flaky: dict[int, AuditDownOnce] = {}  # one wrapper for the one log, so it fails once in all
    rigs = rig_with(
        azurite, tmp_path, POLICY, lambda log: flaky.setdefault(id(log), AuditDownOnce(log, "approval_decided"))
    )
    gates, issuer, receiver, audit, tenant_id = next(rigs)
    try:
        gate = open_gate(gates, receiver, tenant_id)
        status, body = vote(gates, issuer, gate, ANNA, "approve")
        assert status == 503, body
        if chain_ran:
            gates.runner.run_until_idle()  # the raised vote decides the gate before the retry
            assert gates.runner.status(gate).output["status"] == "approved"
        status, body = vote(gates, issuer, gate, ANNA, "approve")
        assert (status, body.get("vote")) == (202, 0), body
        assert vote(gates, issuer, gate, ANNA, "approve")[0] in (409, 410), "delivered: asked again, refused"
        gates.runner.run_until_idle()
        output = gates.runner.status(gate).output
        assert output["status"] == "approved" and [v["voter_id"] for v in output["chain"]["votes"]] == [ANNA]
        people = [r for r in decisions_of(audit, gate) if "vote" in r.data]
        assert [(r.actor, r.data["vote"]) for r in people] == [(ANNA, 0)], "audited once"
    finally:
        rigs.close()


# -- what the chain and the gate do with what no route would have let through ----------------------------


def raised_vote(gates: LocalGates, gate: str, seq: int, voter: str, decision: str = "approve") -> None:
    """A vote event straight into the chain, as a caller of the Durable API could raise it past the route."""
    event = {"seq": seq, "voter_id": voter, "decision": decision, "at": gates.clock.now().isoformat(), "stage": 0}
    gates.runner.raise_event(chain_instance_id(gate), vote_event_name(seq), event)
    gates.runner.run_until_idle()


def test_a_vote_raised_past_the_route_by_someone_not_an_approver_is_audited_as_not_counted(rig):
    gates, _issuer, receiver, audit, tenant_id = rig
    gate = open_gate(gates, receiver, tenant_id)
    stranger = str(uuid.UUID(int=0xEE))
    raised_vote(gates, gate, 0, stranger)
    assert gates.runner.status(gate).runtime_status == "Running"  # still waiting: nothing was counted
    [refused] = decisions_of(audit, gate)
    assert refused.actor == stranger
    assert refused.data == {"stage": 0, "vote": 0, "counted": False, "refusal": "not-an-approver"}
    raised_vote(gates, gate, 1, PIET, "reject")
    output = gates.runner.status(gate).output
    assert output["status"] == "rejected" and [v["voter_id"] for v in output["chain"]["votes"]] == [PIET]


def test_a_withdrawal_whose_payload_does_not_parse_still_withdraws_the_request_as_cancelled(rig):
    gates, _issuer, receiver, _audit, tenant_id = rig
    gate = open_gate(gates, receiver, tenant_id)
    gates.runner.raise_event(chain_instance_id(gate), WITHDRAW_EVENT, {"reason": "because", "extra": 1})
    gates.runner.run_until_idle()
    chain = gates.runner.status(chain_instance_id(gate)).output
    assert (chain["status"], chain["reason"]) == ("rejected", "cancelled")
    finals = [d["body"] for d in receiver.deliveries if d["body"].get("event") == "gate.completed"]
    assert [c["state"] for c in finals] == ["rejected"]


def test_a_chain_that_fails_denies_the_gate_and_still_answers_the_pipeline(rig):
    gates, _issuer, receiver, audit, tenant_id = rig
    gate = open_gate(gates, receiver, tenant_id)
    gates.runner.raise_event(chain_instance_id(gate), vote_event_name(0), {"seq": 0, "voter_id": ANNA})  # no decision
    gates.runner.run_until_idle()
    assert gates.runner.status(chain_instance_id(gate)).runtime_status == "Failed"
    output = gates.runner.status(gate).output
    assert output["status"] == "rejected" and output["reason"].startswith("approval chain failed: ")
    finals = [d["body"] for d in receiver.deliveries if d["body"].get("event") == "gate.completed"]
    assert [c["state"] for c in finals] == ["rejected"]
    [final] = [r for r in audit.records() if r.instance_id == gate and r.kind == "decision" and r.data.get("final")]
    assert final.data["status"] == "rejected"


def test_an_l2_rule_without_an_approval_chain_is_rejected_not_waved_through(azurite, tmp_path):
    rig = rig_with(azurite, tmp_path, {"version": 1, "defaults": {"level": "L2"}})
    gates, _issuer, receiver, _audit, tenant_id = next(rig)
    try:
        event = PipelineEvent(
            tenant_id=tenant_id,
            source=EventSource.GENERIC,
            kind=EventKind.GATE_REQUEST,
            environment="production",
            repository="contoso/webshop",
            actor="dev@contoso.com",
            requester_ids=(f"entra:oid:{DEV_OID}",),
            run_id=uuid.uuid4().hex,
            callback=WebhookCallback(url=receiver.url + "/ci/hook"),
        )
        gate = gates.submit(event)
        output = gates.runner.status(gate).output
        assert (output["level"], output["status"]) == ("L2", "rejected")
        assert output["reason"] == "L2 without an approval chain in the policy"
        assert gates.runner.status(chain_instance_id(gate)) is None  # no chain was started
        finals = [d["body"] for d in receiver.deliveries if d["body"].get("event") == "gate.completed"]
        assert [c["state"] for c in finals] == ["rejected"]
    finally:
        rig.close()
