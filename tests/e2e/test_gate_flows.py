"""Whole gates through the local runner: real orchestrators and SDK replay, Azurite tables, local tenant keys,
the real audit log, the local outbox, a local webhook receiver, and Entra tokens from a local issuer
validated by the real validator. One test per behaviour the issue asks to see."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.history import EventType
from devstack.runner import ManualClock
from devstack.webhook import LocalWebhookReceiver
from functions.http import problem_body, status_of
from gatekeeper.audit.log import AuditLog
from gatekeeper.contracts.gate import chain_instance_id
from gatekeeper.errors import GatekeeperError
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent, WebhookCallback
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

pytestmark = pytest.mark.azurite

TID = "3f6c2a8e-1b7d-4c9e-8a5f-0d2e4b6c8a10"  # the customer's Entra tenant
OTHER_TID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"
AUDIENCE = "api://gatekeeper-tests"
WEBHOOK_SECRET = b"webhook-signing-secret-for-gate-tests"
START = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)  # a Monday

ANNA, PIET, SARA, TOM = (str(uuid.UUID(int=i)) for i in (0xA, 0xB, 0xC, 0xD))
OPS_GROUP = "5f0c7a52-3b8e-4c1d-9a6f-2e4b8d7c1a90"
DEV_OID = str(uuid.UUID(int=0xDE))
REQUESTER = "dev@contoso.com"
OPERATOR = "ops@contoso.com"


def stage(name: str, approvers: list[str], quorum: int = 1, timeout: str = "PT1H", on_timeout: str = "reject") -> dict:
    return {"name": name, "approvers": approvers, "quorum": quorum, "timeout": timeout, "on_timeout": on_timeout}


POLICY = {
    "version": 1,
    "defaults": {"level": "L2", "approval": {"stages": [stage("default", [ANNA])]}},
    "rules": [
        {"name": "dev", "match": {"environments": ["dev"]}, "level": "L0"},
        {"name": "staging", "match": {"environments": ["staging"]}, "level": "L1"},
        {"name": "secrets", "match": {"actions": ["secret_access"]}, "level": "L3"},
        {
            "name": "cab",
            "match": {"environments": ["production"]},
            "level": "L2",
            "approval": {"stages": [stage("cab", [ANNA, PIET, SARA, f"group:{OPS_GROUP}"], quorum=2)]},
        },
        {
            "name": "escalating",
            "match": {"environments": ["prod-eu"]},
            "level": "L2",
            "approval": {
                "stages": [stage("team", [ANNA], on_timeout="escalate"), stage("managers", [TOM], timeout="PT2H")]
            },
        },
        {
            "name": "two-stage",
            "match": {"environments": ["prod-us"]},
            "level": "L2",
            "approval": {"stages": [stage("leads", [ANNA, PIET]), stage("managers", [TOM])]},
        },
    ],
}


@dataclass
class Env:
    gates: LocalGates
    issuer: LocalEntraIssuer
    receiver: LocalWebhookReceiver
    outbox: OutboxNotifier
    audit: AuditLog
    tenant_id: str

    @property
    def clock(self) -> ManualClock:
        return self.gates.clock

    def event(self, environment: str, action: ActionKind = ActionKind.DEPLOY, **extra: Any) -> PipelineEvent:
        """A gate request as `POST /api/events` hands it over after a bearer token identified the requester."""
        extra.setdefault("requester_ids", (f"entra:oid:{DEV_OID}",))
        return PipelineEvent(
            tenant_id=self.tenant_id,
            source=EventSource.GENERIC,
            kind=EventKind.GATE_REQUEST,
            action=action,
            environment=environment,
            repository="contoso/webshop",
            ref="refs/heads/main",
            commit="a1b2c3d",
            actor=REQUESTER,
            run_id=uuid.uuid4().hex,
            callback=WebhookCallback(url=self.receiver.url + "/ci/hook"),
            **extra,
        )

    def headers(self, oid: str, *, tid: str = TID, upn: str | None = None, groups: tuple[str, ...] = ()) -> dict:
        token = self.issuer.issue(oid, tid, AUDIENCE, upn=upn, groups=groups, issued_at=datetime.now(UTC).timestamp())
        return {"Authorization": f"Bearer {token}"}

    def decide(self, gate_id: str, oid: str, decision: str = "approve", **who: Any) -> tuple[int, dict]:
        """The route's answer: (202, body) or (problem status, problem+json body)."""
        try:
            return self.gates.decide(gate_id, self.headers(oid, **who), decision, comment=f"{decision} by {oid[-2:]}")
        except GatekeeperError as problem:
            return status_of(problem), problem_body(problem)

    def status(self, instance_id: str) -> Any:
        return self.gates.runner.status(instance_id)

    def audit_kinds(self, instance_id: str) -> list[str]:
        return [r.kind for r in self.audit.records() if r.instance_id == instance_id]

    def callbacks(self) -> list[dict]:
        """Final answers to the pipeline (`gate.completed`); progress notes are `progress()`."""
        return [d["body"] for d in self.receiver.deliveries if d["body"].get("event") == "gate.completed"]

    def progress(self) -> list[dict]:
        return [d["body"] for d in self.receiver.deliveries if d["body"].get("event") == "gate.progress"]

    def notifications(self, kind: str) -> list[dict]:
        mine = set(self.gates.runner.instances())
        return [
            n["notification"]
            for n in self.outbox.read_all(self.tenant_id)
            if n["notification"]["kind"] == kind and n["notification"]["instance_id"] in mine
        ]


@dataclass
class Shared:
    """One tenant (one key pair, one audit log) for the module: tenant keys are slow to generate."""

    storage: StorageAccount
    cipher: Any
    tenant_id: str
    audit: AuditLog
    issuer: LocalEntraIssuer
    outbox: OutboxNotifier
    clock: ManualClock


@pytest.fixture(scope="module")
def shared(azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path_factory.mktemp("keys"))))
    tenant_id = "t" + uuid.uuid4().hex[:12]
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    with LocalEntraIssuer() as issuer:
        yield Shared(
            storage,
            cipher,
            tenant_id,
            audit,
            issuer,
            OutboxNotifier(tmp_path_factory.mktemp("outbox")),
            ManualClock(START),
        )


@pytest.fixture
def env(shared: Shared) -> Iterator[Env]:
    policy = load_policy(POLICY)
    receiver = LocalWebhookReceiver(WEBHOOK_SECRET).start()
    callbacks = PipelineCallbacks(
        webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
        webhook_secret=lambda _tenant: WEBHOOK_SECRET,
    )
    validator = EntraTokenValidator(
        AUDIENCE, authority_host=shared.issuer.authority_host, allowed_tenants=lambda tid: tid in (TID, OTHER_TID)
    )
    shared.clock.advance(timedelta(days=1))  # each test starts on a fresh day; the clock never goes back
    gates = local_gates(
        shared.storage,
        shared.cipher,
        decider=PolicyDecider(lambda _t: policy),
        audit_for=lambda _t: shared.audit,
        notifier=shared.outbox,
        callbacks=callbacks,
        entra_tenants_for=lambda t: (TID,) if t == shared.tenant_id else (),
        token_validator=validator,
        operators_for=lambda _t: (OPERATOR,),
        clock=shared.clock,
        settings=Settings(trust_easyauth_header=False),
    )
    try:
        yield Env(gates, shared.issuer, receiver, shared.outbox, shared.audit, shared.tenant_id)
    finally:
        receiver.stop()


# ----- levels -----------------------------------------------------------------------------------------


def test_l0_proceeds_calls_back_and_logs(env: Env):
    gate = env.gates.submit(env.event("dev"))
    status = env.status(gate)
    assert status.runtime_status == "Completed"
    assert status.output["level"] == "L0" and status.output["status"] == "approved" and status.output["callback_ok"]
    assert [c["state"] for c in env.callbacks()] == ["approved"]
    assert env.audit_kinds(gate) == ["event_received", "decision", "callback", "decision"]
    assert env.notifications("info") == []


def test_l1_proceeds_then_notifies(env: Env):
    gate = env.gates.submit(env.event("staging"))
    assert env.status(gate).output["status"] == "approved"
    assert [c["state"] for c in env.callbacks()] == ["approved"]
    (info,) = env.notifications("info")
    assert info["recipients"] == [OPERATOR] and info["instance_id"] == gate
    kinds = env.audit_kinds(gate)
    assert kinds.index("callback") < kinds.index("notification")  # proceed first, then tell


def test_l2_waits_for_approval_then_proceeds(env: Env):
    gate = env.gates.submit(env.event("production"))
    assert env.status(gate).runtime_status == "Running" and env.callbacks() == []
    (note,) = env.progress()  # the waiting pipeline is told what it waits for, and where to decide
    assert "waiting for approval" in note["comment"] and gate in note["comment"]
    (request,) = env.notifications("approval_request")
    assert request["link"].endswith(f"/api/approvals/{gate}/page") and ANNA in request["recipients"]
    assert env.decide(gate, ANNA)[0] == 202
    assert env.decide(gate, PIET)[0] == 202
    output = env.status(gate).output
    assert output["status"] == "approved" and output["chain"]["votes"][1]["voter_id"] == PIET
    assert [c["state"] for c in env.callbacks()] == ["approved"]
    assert env.gates.runner.cancelled_timers(chain_instance_id(gate)) != []  # the decision beat the timer


def test_l3_refuses_opens_a_human_task_and_notifies(env: Env):
    gate = env.gates.submit(env.event("production", ActionKind.SECRET_ACCESS))
    output = env.status(gate).output
    assert output["level"] == "L3" and output["status"] == "human_task"
    assert [c["state"] for c in env.callbacks()] == ["rejected"]  # automation refuses to execute
    (task,) = env.notifications("human_task")
    assert task["recipients"] == [OPERATOR]
    assert "human_task_opened" in env.audit_kinds(gate)
    status, body = env.gates.decisions.state(gate, env.gates.identify(env.headers(ANNA)))
    assert status == 200 and body["status"] == "human_task"


# ----- approval chains --------------------------------------------------------------------------------


def test_timeout_denies_and_calls_back(env: Env):
    gate = env.gates.submit(env.event("production"))
    env.gates.runner.advance(timedelta(minutes=59))
    assert env.status(gate).runtime_status == "Running"
    env.gates.runner.advance(timedelta(minutes=2))
    output = env.status(gate).output
    assert output["status"] == "rejected" and output["chain"]["reason"] == "timeout"
    assert [c["state"] for c in env.callbacks()] == ["rejected"]
    assert "approval_expired" in env.audit_kinds(gate)


def test_timeout_escalates_to_the_second_stage(env: Env):
    gate = env.gates.submit(env.event("prod-eu"))
    env.gates.runner.advance(timedelta(hours=1))
    assert env.status(gate).runtime_status == "Running"
    assert "approval_escalated" in env.audit_kinds(gate)
    requests = env.notifications("approval_request")
    assert [r["recipients"] for r in requests] == [[ANNA], [TOM]]
    assert env.decide(gate, ANNA)[0] == 403  # the first stage is over; Anna is not a manager
    assert env.decide(gate, TOM)[0] == 202
    output = env.status(gate).output
    assert output["status"] == "approved" and output["chain"]["escalations"] == [0]


def test_two_of_three_quorum_with_group_members(env: Env):
    gate = env.gates.submit(env.event("production"))
    assert env.decide(gate, ANNA)[0] == 202
    _, state = env.gates.decisions.state(gate, env.gates.identify(env.headers(SARA)))
    assert state["status"] == "awaiting_approval" and [v["voter_id"] for v in state["votes"]] == [ANNA]
    assert state["can_decide"] is True and state["stage"]["quorum"] == 2
    assert env.status(gate).runtime_status == "Running"  # one of two
    member = str(uuid.uuid4())
    assert env.decide(gate, member, groups=(OPS_GROUP,))[0] == 202  # counted through the group
    assert env.status(gate).output["status"] == "approved"


def test_self_approval_is_refused(env: Env):
    gate = env.gates.submit(env.event("production"))
    status, body = env.decide(gate, DEV_OID, upn=REQUESTER, groups=(OPS_GROUP,))  # an ops member, but the requester
    assert status == 403 and body["type"].endswith("/self-approval")
    assert env.status(gate).runtime_status == "Running"
    assert env.gates.decisions.state(gate, env.gates.identify(env.headers(ANNA)))[1]["votes"] == []


def test_duplicate_vote_is_refused(env: Env):
    gate = env.gates.submit(env.event("production"))
    assert env.decide(gate, ANNA)[0] == 202
    problem = refused(env, gate, ANNA, "reject")
    assert (status_of(problem), problem.code) == (409, "duplicate-vote")
    _, state = env.gates.decisions.state(gate, env.gates.identify(env.headers(ANNA)))
    assert len(state["votes"]) == 1 and state["can_decide"] is False


def test_late_decision_is_refused(env: Env):
    gate = env.gates.submit(env.event("production"))
    env.clock.advance(timedelta(hours=1, seconds=1))  # past the deadline, before the timer is processed
    problem = refused(env, gate, ANNA)
    assert (status_of(problem), problem.code) == (410, "past-deadline")
    env.gates.runner.run_until_idle()
    problem = refused(env, gate, PIET)
    assert (status_of(problem), problem.code) == (410, "gate-decided")


def test_rejection_ends_the_chain(env: Env):
    gate = env.gates.submit(env.event("prod-us"))
    assert env.decide(gate, PIET, "reject")[0] == 202
    output = env.status(gate).output
    assert output["status"] == "rejected" and output["chain"]["stage"] == 0
    assert [r["recipients"] for r in env.notifications("approval_request")] == [[ANNA, PIET]]  # no stage 2
    assert [c["state"] for c in env.callbacks()] == ["rejected"]
    assert env.status(chain_instance_id(gate)).runtime_status == "Completed"


def test_two_stages_pass_in_order(env: Env):
    gate = env.gates.submit(env.event("prod-us"))
    assert env.decide(gate, ANNA)[0] == 202
    assert env.status(gate).runtime_status == "Running"
    assert status_of(refused(env, gate, PIET)) == 403  # stage one passed; Piet is not a manager
    assert env.decide(gate, TOM)[0] == 202
    assert env.status(gate).output["status"] == "approved"


# ----- identity ---------------------------------------------------------------------------------------


def test_unauthenticated_wrong_tenant_and_stranger_are_refused(env: Env):
    gate = env.gates.submit(env.event("production"))
    body = json.dumps({"decision": "approve"}).encode()
    with pytest.raises(GatekeeperError) as info:
        env.gates.decisions.decide(gate, env.gates.identify({}), body)
    assert status_of(info.value) == 401
    with pytest.raises(GatekeeperError) as info:
        env.gates.decisions.decide(gate, env.gates.identify(env.headers(ANNA, tid=OTHER_TID)), body)
    assert (status_of(info.value), info.value.code) == (403, "wrong-tenant")
    assert refused(env, gate, str(uuid.uuid4())).code == "not-an-approver"
    with pytest.raises(GatekeeperError) as info:
        env.gates.decisions.decide(gate, env.gates.identify(env.headers(ANNA)), b'{"decision": "maybe"}')
    assert (status_of(info.value), info.value.field) == (422, "decision")
    with pytest.raises(GatekeeperError) as info:
        env.gates.decisions.decide("gate-unknown", env.gates.identify(env.headers(ANNA)), body)
    assert status_of(info.value) == 404


# ----- callbacks --------------------------------------------------------------------------------------


def test_callback_that_fails_twice_then_succeeds(env: Env):
    env.receiver.fail_next(2, status=503)
    gate = env.gates.submit(env.event("dev"))
    assert env.status(gate).runtime_status == "Running"  # waiting on the durable retry timer
    env.gates.runner.advance(timedelta(minutes=1))
    output = env.status(gate).output
    assert output["status"] == "approved" and output["callback_ok"] is True
    assert [r.status for r in env.receiver.requests] == [503, 503, 200]
    callbacks = [r for r in env.audit.records() if r.instance_id == gate and r.kind == "callback"]
    assert [r.data["ok"] for r in callbacks] == [False, False, True]
    assert env.notifications("alert") == []


def test_callback_that_never_succeeds_is_audited_and_alerted(env: Env):
    env.receiver.fail_next(99, status=502)
    gate = env.gates.submit(env.event("dev"))
    env.gates.runner.run_until_complete(gate, horizon=timedelta(hours=1))
    output = env.status(gate).output
    assert output["status"] == "approved" and output["callback_ok"] is False
    (alert,) = env.notifications("alert")
    assert alert["recipients"] == [OPERATOR] and "callback failed" in alert["text"]
    final = [r for r in env.audit.records() if r.instance_id == gate and r.kind == "callback"][-1]
    assert final.data["final"] is True and final.data["ok"] is False


# ----- replay -----------------------------------------------------------------------------------------


def test_replaying_finished_gates_yields_the_same_actions(env: Env):
    gate = env.gates.submit(env.event("prod-eu"))
    env.gates.runner.advance(timedelta(hours=1))
    env.decide(gate, TOM)
    for instance in (gate, chain_instance_id(gate)):
        assert env.gates.runner.replay(instance) == env.gates.runner.episodes(instance)[-1]
    history = env.gates.runner.history(chain_instance_id(gate))
    raised = [e for e in history if e["EventType"] == EventType.EVENT_RAISED]
    assert [e["Name"] for e in raised] == ["approval-vote-0"]
    payload = json.loads(json.loads(raised[0]["Input"]))  # the Durable client posts the data JSON-encoded
    assert set(payload) == {"seq", "voter_id", "decision", "at", "stage", "groups", "aliases"}  # no comment


def refused(env: Env, gate: str, oid: str, decision: str = "approve", **who: Any) -> GatekeeperError:
    with pytest.raises(GatekeeperError) as info:
        env.gates.decisions.decide(
            gate, env.gates.identify(env.headers(oid, **who)), json.dumps({"decision": decision}).encode()
        )
    return info.value


def test_a_summary_with_line_breaks_and_control_characters_still_gates_with_a_one_line_title(env: Env):
    """Titles become audit subjects and notification titles, which are single lines: an event's summary with
    line breaks, tabs or C1 controls is folded to one line instead of failing the evaluation."""
    gate = env.gates.submit(env.event("dev", summary="deploy\nweb\r\n\tto dev\x00\x85now"))
    status = env.status(gate)
    assert status.runtime_status == "Completed" and status.output["status"] == "approved"
    records = [r for r in env.gates.services.audit_for(env.tenant_id).records() if r.instance_id == gate]
    assert {r.subject for r in records} == {"deploy web to dev now"}
