"""The gate's story written back into the tenant's PSA ticket (issue 15, outbound), end to end: the real
orchestrators replayed by the azure-functions-durable SDK in the local runner, Azurite, local keys, and the
product's ConnectWise client against the local ConnectWise server (devstack/connectwise.py), which checks
the API member's Basic auth and the clientId header and keeps every ticket and note."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from devstack.autotask import LocalAutotask
from devstack.connectwise import LocalConnectWise
from devstack.gates import local_gates
from devstack.psa_tickets import LocalTicket
from devstack.webhook import LocalWebhookReceiver
from gatekeeper.contracts.psa import PsaTicketInput, follow_up_instance_id
from gatekeeper.errors import DependencyUnavailable
from gatekeeper.events.model import ActionKind
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.gates.followup import FollowUpService
from gatekeeper.gates.tickets import ticket_key, write
from gatekeeper.ingest.edge import IncomingRequest
from gatekeeper.ingest.service import IngestionService
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.psa.systems import TicketSystems
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.security.principal import Principal
from gatekeeper.settings import Settings
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.psa_settings import AutotaskSettings
from gatekeeper.tenancy.secrets import SecretResolver
from tests.conftest import ROOT
from tests.e2e.test_gate_flows import ANNA, AUDIENCE, OPERATOR, TID, WEBHOOK_SECRET, Env, Shared, shared  # noqa: F401

pytestmark = pytest.mark.azurite

LOGIN_COMPANY, PUBLIC_KEY = "fabrikammsp", "pub-8d2f0c1e"
PRIVATE_KEY, CLIENT_ID = "priv-3b7e9a1c5d0f2468ace0", "6c1f4e2a-7b3d-4c5e-9f80-1a2b3c4d5e6f"
HOOK_SECRET = "connectwise-callback-secret-0123456789"
_KEYS = {"public_key": ("CW_PUBLIC", PUBLIC_KEY), "private_key": ("CW_PRIVATE", PRIVATE_KEY)}
_KEYS |= {"client_id": ("CW_CLIENT", CLIENT_ID)}


def credentials_for(tenant_id: str) -> dict[str, str]:
    """`psa.credentials`: references to the tenant's own app settings (`GK_<TENANT>_...`)."""
    return {field: f"env:GK_{tenant_id.upper()}_{name}" for field, (name, _) in _KEYS.items()}


def secrets_for(tenant_id: str) -> dict[str, str]:
    """The app settings those references name, with the local ConnectWise's keys."""
    return {f"GK_{tenant_id.upper()}_{name}": value for name, value in _KEYS.values()}


STATUSES = {"in_progress": "Awaiting CAB", "approved": "Change Approved", "rejected": "CAB Rejected"}
STATUSES |= {"rolled_back": "Rolled Back"}
CAB_APPROVED = json.loads((ROOT / "tests/fixtures/connectors/connectwise/ticket-approved.json").read_text())
POLICY = {
    "version": 1,
    "defaults": {"level": "L2", "approval": {"stages": [{"name": "team", "approvers": [ANNA], "timeout": "PT1H"}]}},
    "rules": [
        {"name": "dev", "match": {"environments": ["dev"]}, "level": "L0"},
        {"name": "secrets", "match": {"actions": ["secret_access"]}, "level": "L3"},
        {
            "name": "cab-in-the-psa",
            "match": {"environments": ["prod-cab"]},
            "level": "L2",
            "approval": {
                "stages": [{"name": "cab", "kind": "psa_change_approval", "sources": ["connectwise"], "timeout": "P2D"}]
            },
        },
    ],
}


class Captured:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def submit(self, event: Any, event_id: str) -> None:
        self.events.append(event)


@dataclass
class Rig:
    env: Env
    server: LocalConnectWise
    shared: Shared
    sleeps: list[float]
    account: str

    @property
    def runner(self) -> Any:
        return self.env.gates.runner

    def psa_audit(self, gate: str) -> list[Any]:
        return [r for r in self.shared.audit.records() if r.instance_id == gate and r.kind == "psa_ticket"]

    def order(self, gate: str) -> list[str]:
        """The gate's activities in the order they ran."""
        return [name for instance, name, _ in self.runner.activity_log if instance == gate]

    def cab_callback(self, ticket_id: int, company: str | None = "ContosoLtd") -> list[dict[str, Any]]:
        """ConnectWise's callback when the CAB approves the ticket, through the route's logic and the queue;
        the ticket's company as ConnectWise names it in the entity (None: the entity names none)."""
        body = json.loads(json.dumps(CAB_APPROVED))
        entity = json.loads(body["Entity"])
        entity["id"] = body["ID"] = ticket_id
        if company is None:
            del entity["company"]
        else:
            entity["company"]["identifier"] = company
        body["Entity"], body["CompanyId"] = json.dumps(entity), self.account
        sink = Captured()
        ingestion = IngestionService(
            self.env.gates.services.registry, SecretResolver({"E2E_CW_HOOK": HOOK_SECRET}), sink
        )
        url = f"https://gk.example/api/connectors/connectwise?tenant={self.shared.tenant_id}&secret={HOOK_SECRET}"
        raw = json.dumps(body).encode()
        request = IncomingRequest.of(raw, {"Content-Type": "application/json"}, url)
        outcome = ingestion.connector_webhook("connectwise", request)
        assert outcome.status == "accepted", outcome.body()
        return self.env.gates.connector_event(sink.events.pop())


def _settings(server: LocalConnectWise, tenant_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "vendor": "connectwise",
        "url": server.url,
        "login_company": LOGIN_COMPANY,
        "company": "ContosoLtd",
        "board": "Change Management",
        "statuses": STATUSES,
        "rollback_priority": "Priority 1 - Emergency Response",
        "production_environments": ["prod-cab"],
        "credentials": credentials_for(tenant_id),
        **extra,
    }


@pytest.fixture
def rig(shared: Shared, request: pytest.FixtureRequest) -> Iterator[Rig]:
    extra = getattr(request, "param", {})
    server = LocalConnectWise(LOGIN_COMPANY, PUBLIC_KEY, PRIVATE_KEY, CLIENT_ID).start()
    receiver = LocalWebhookReceiver(WEBHOOK_SECRET).start()
    policy = load_policy(POLICY)
    callbacks = PipelineCallbacks(
        webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
        webhook_secret=lambda _tenant: WEBHOOK_SECRET,
    )
    shared.clock.advance(timedelta(days=1))
    gates = local_gates(
        shared.storage,
        shared.cipher,
        decider=PolicyDecider(lambda _t: policy),
        audit_for=lambda _t: shared.audit,
        notifier=shared.outbox,
        callbacks=callbacks,
        entra_tenants_for=lambda t: (TID,) if t == shared.tenant_id else (),
        operators_for=lambda _t: (OPERATOR,),
        token_validator=EntraTokenValidator(
            AUDIENCE, authority_host=shared.issuer.authority_host, allowed_tenants=lambda tid: tid == TID
        ),
        clock=shared.clock,
        settings=Settings(trust_easyauth_header=False),
    )
    account = f"msp{uuid.uuid4().hex[:10]}"  # a ConnectWise company id is claimed by one tenant per Azurite
    gates.services.registry.import_records(
        [
            TenantRecord(
                tenant_id=shared.tenant_id,
                display_name="Contoso",
                identities=(f"connectwise:company:{account}",),
                secrets={SecretPurpose.CONNECTWISE_WEBHOOK: ("env:E2E_CW_HOOK",)},
                psa=_settings(server, shared.tenant_id, **extra),
            )
        ]
    )
    gates.services.registry.invalidate()
    sleeps: list[float] = []
    gates.services.tickets = TicketSystems(
        gates.services.registry.get,
        SecretResolver(secrets_for(shared.tenant_id)),
        policy=RetryPolicy(max_attempts=3, initial_wait=0.5, max_wait=2.0, jitter=0, sleep=sleeps.append),
        allow_loopback_http=True,
        clock=shared.clock.now,
    )
    env = Env(gates, shared.issuer, receiver, shared.outbox, shared.audit, shared.tenant_id)
    try:
        yield Rig(env, server, shared, sleeps, account)
    finally:
        receiver.stop()
        server.stop()


def _texts(ticket: LocalTicket) -> list[str]:
    return [note["text"] for note in ticket.notes]


def test_a_linked_ticket_gets_the_request_note_then_each_decision_and_the_approved_status(rig: Rig):
    ticket = rig.server.add_ticket("Deploy web-shop 2.4", company="ContosoLtd", board="Change Management", status="New")
    gate = rig.env.gates.submit(rig.env.event("production", ticket=f"connectwise:{ticket.id}"))
    assert rig.env.status(gate).runtime_status == "Running"  # waits for Anna; the PSA heard of it already
    [request_note] = _texts(ticket)
    assert "Gatekeeper: L2 gate requested" in request_note and "Level: L2" in request_note
    assert f"/api/approvals/{gate}/page" in request_note and "Reason:" in request_note
    assert ticket.status == "Awaiting CAB"
    assert rig.server.notes_of(ticket.id)[0]["internalAnalysisFlag"] is True

    assert rig.env.decide(gate, ANNA)[0] == 202
    assert rig.env.status(gate).output["status"] == "approved"
    vote_note, outcome_note = _texts(ticket)[1:]
    assert f"Approved by {ANNA} at " in vote_note and "(stage 1)" in vote_note
    assert "change approved" in outcome_note and "Approved by the approvers at" in outcome_note
    assert ticket.status == "Change Approved"
    order = rig.order(gate)  # the pipeline was answered before the decision was written to the PSA
    assert order.index("gate_callback") < len(order) - 1 - order[::-1].index("psa_ticket")
    audited = rig.psa_audit(gate)
    assert {(e.data["operation"], e.data["ok"]) for e in audited} >= {("add_note", True), ("set_status", True)}
    assert all(e.data["vendor"] == "connectwise" and e.data["ticket"] == str(ticket.id) for e in audited)


def test_a_ticket_of_another_client_company_gets_no_note_no_status_and_no_link(rig: Rig):
    """Another client's change ticket in the MSP's PSA, named by this tenant's request: nothing is written to
    it at any moment (request, decisions, rollback), and the failed check is audited."""
    theirs = rig.server.add_ticket("Tailspin firewall change", company="Tailspin", board="Change Management")
    gate = rig.env.gates.submit(rig.env.event("production", ticket=f"connectwise:{theirs.id}"))
    assert rig.env.decide(gate, ANNA)[0] == 202
    assert rig.env.status(gate).output["status"] == "approved"
    told = PsaTicketInput(
        tenant_id=rig.shared.tenant_id, instance_id=gate, moment="rolled_back", reason="x", at=rig.shared.clock.now()
    )
    assert not write(rig.env.gates.services, told).ok
    assert theirs.notes == [] and theirs.status is None and theirs.priority is None
    assert [r.method for r in rig.server.requests] == ["GET"] * 3  # one check per moment, no write
    audited = rig.psa_audit(gate)
    assert audited and all(e.data["ok"] is False and e.data["operation"] == "find_or_open" for e in audited)
    assert all("not a ticket of the tenant's company" in e.data["detail"] for e in audited)


def test_a_rejection_moves_the_ticket_to_the_rejected_status(rig: Rig):
    ticket = rig.server.add_ticket("Deploy web-shop 2.5", company="ContosoLtd", board="Change Management")
    gate = rig.env.gates.submit(rig.env.event("production", ticket=str(ticket.id)))  # a bare id: the tenant's PSA
    assert rig.env.decide(gate, ANNA, "reject")[0] == 202
    assert rig.env.status(gate).output["status"] == "rejected"
    assert ticket.status == "CAB Rejected" and f"Rejected by {ANNA}" in _texts(ticket)[1]


def test_l3_opens_a_ticket_on_the_tenants_board_for_the_person_who_carries_it_out(rig: Rig):
    gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS))
    assert rig.env.status(gate).output["status"] == "human_task"
    [task] = rig.server.tickets.values()
    assert task.board == "Change Management" and task.company == "ContosoLtd"
    assert task.summary.startswith("Carry out by hand (L3)") and ticket_key(gate, "task") in task.summary
    assert "Automation was refused" in task.description
    order = rig.order(gate)
    assert order.index("gate_callback") < order.index("psa_ticket")  # the pipeline heard "no" first
    [opened] = [e for e in rig.psa_audit(gate) if e.data["operation"] == "find_or_open"]
    assert opened.data["ok"] and opened.data["opened"] and opened.data["ticket"] == str(task.id)


@pytest.mark.parametrize("rig", [{"open_change_ticket": "production"}], indirect=True)
def test_a_production_change_gets_a_change_ticket_whose_cab_approval_in_the_psa_completes_the_gate(rig: Rig):
    gate = rig.env.gates.submit(rig.env.event("prod-cab"))  # names no ticket; the tenant wants one per change
    assert rig.env.status(gate).runtime_status == "Running"
    [ticket] = rig.server.tickets.values()
    assert ticket.summary.startswith("Change: ") and ticket_key(gate, "change") in ticket.summary
    assert ticket.board == "Change Management" and ticket.status == "Awaiting CAB"
    assert "Gatekeeper: L2 gate requested" in _texts(ticket)[0]
    assert rig.env.callbacks() == []

    outcomes = rig.cab_callback(ticket.id)  # the CAB approves the ticket in ConnectWise
    [outcome] = [o for o in outcomes if o["instance_id"] == gate]  # (earlier tests' servers reused the number)
    assert outcome["status"] == "accepted"
    assert rig.env.status(gate).output["status"] == "approved"
    assert [c["state"] for c in rig.env.callbacks()] == ["approved"]
    assert any(f"the change approval in connectwise ticket {ticket.id}" in text for text in _texts(ticket))
    assert ticket.status == "Change Approved"
    assert len(rig.server.tickets) == 1  # found again by its key, never opened twice


def test_a_gate_without_a_ticket_and_no_change_ticket_policy_writes_nothing(rig: Rig):
    gate = rig.env.gates.submit(rig.env.event("dev"))
    assert rig.env.status(gate).output["status"] == "approved"
    assert rig.server.tickets == {} and rig.server.requests == [] and rig.psa_audit(gate) == []


def test_a_psa_outage_is_retried_audited_and_never_holds_the_gate(rig: Rig, caplog: pytest.LogCaptureFixture):
    ticket = rig.server.add_ticket("Deploy web-shop 2.6", company="ContosoLtd", board="Change Management")
    rig.server.outage(503)
    caplog.set_level(logging.DEBUG)
    gate = rig.env.gates.submit(rig.env.event("dev", ticket=f"connectwise:{ticket.id}"))  # L0
    output = rig.env.status(gate).output
    assert output["status"] == "approved" and output["callback_ok"] is True
    assert [c["state"] for c in rig.env.callbacks()] == ["approved"]
    order = rig.order(gate)
    assert order.index("gate_callback") < order.index("psa_ticket")  # the answer never waited on the PSA
    checked, noted = rig.psa_audit(gate)  # the request's check, then the decision's check; nothing after it
    for failed in (checked, noted):
        assert failed.data["ok"] is False and failed.data["attempts"] == 3 and failed.data["status_code"] == 503
        assert "retries exhausted" in failed.data["detail"]
    assert (checked.data["operation"], noted.data["operation"]) == ("find_or_open", "find_or_open")
    assert rig.sleeps[:2] == [0.5, 1.0]  # exponential backoff between the attempts
    assert len(rig.server.requests) == 6 and ticket.notes == [] and ticket.status is None
    everything = json.dumps([r.data for r in rig.shared.audit.records()]) + caplog.text
    for secret in (PRIVATE_KEY, PUBLIC_KEY, CLIENT_ID):
        assert secret not in everything


def test_a_429_with_retry_after_is_honoured_and_then_the_note_is_written(rig: Rig):
    ticket = rig.server.add_ticket("Deploy web-shop 2.7", company="ContosoLtd", board="Change Management")
    rig.server.fail_next(1, 429, retry_after=2, path_contains="/notes")
    gate = rig.env.gates.submit(rig.env.event("dev", ticket=f"connectwise:{ticket.id}"))
    assert rig.env.status(gate).output["status"] == "approved"
    assert 2.0 in rig.sleeps and "Gatekeeper: L0 gate requested" in _texts(ticket)[0]
    assert ticket.status == "Change Approved"


def test_a_rollback_adds_a_note_raises_the_priority_and_moves_the_status(rig: Rig):
    ticket = rig.server.add_ticket("Deploy web-shop 2.8", company="ContosoLtd", board="Change Management")
    gate = rig.env.gates.submit(rig.env.event("dev", ticket=f"connectwise:{ticket.id}"))
    told = PsaTicketInput(
        tenant_id=rig.shared.tenant_id,
        instance_id=gate,
        moment="rolled_back",
        watch_id="watch-1",
        reason="rolled_back: error rate 12% over 5%",
        at=rig.shared.clock.now(),
    )
    outcome = write(rig.env.gates.services, told)
    assert outcome.ok and outcome.writes == 3
    assert "deployment was rolled back: rolled_back: error rate 12%" in _texts(ticket)[-1]
    assert ticket.priority == "Priority 1 - Emergency Response" and ticket.status == "Rolled Back"
    assert {e.data["operation"] for e in rig.psa_audit(gate) if e.data["moment"] == "rolled_back"} == {
        "add_note",
        "raise_priority",
        "set_status",
    }


def test_a_tenant_without_a_psa_costs_one_activity_and_writes_nothing(rig: Rig):
    services = rig.env.gates.services
    record = services.registry.get(rig.shared.tenant_id)
    assert record is not None and record.psa is not None
    services.registry.import_records([record.model_copy(update={"psa": None})])
    services.registry.invalidate()
    gate = rig.env.gates.submit(rig.env.event("dev", ticket="connectwise:41000"))
    assert rig.env.status(gate).output["status"] == "approved"
    assert rig.order(gate).count("psa_ticket") == 1  # the request moment says "no PSA"; the decision is skipped
    assert rig.server.requests == [] and rig.psa_audit(gate) == []


@pytest.mark.parametrize(
    ("company", "reason"), [("FabrikamInc", "ticket-of-another-company"), (None, "company-not-named")]
)
def test_a_cab_approval_of_another_client_companys_ticket_does_not_satisfy_the_stage(
    rig: Rig, company: str | None, reason: str
):
    """The MSP's ConnectWise holds every client's tickets. A gate of this tenant naming another client's
    ticket, and that ticket's CAB approval: not applied (audited with the reason, never the other company),
    and the gate keeps waiting. A callback that names no company is refused the same way (no opt-in)."""
    ticket = rig.server.add_ticket("Fabrikam change", company="FabrikamInc", board="Change Management", status="New")
    gate = rig.env.gates.submit(rig.env.event("prod-cab", ticket=f"connectwise:{ticket.id}"))
    assert rig.env.status(gate).runtime_status == "Running"

    outcomes = rig.cab_callback(ticket.id, company=company)
    [outcome] = [o for o in outcomes if o["instance_id"] == gate]
    assert outcome == {"instance_id": gate, "status": "not_applied", "reason": reason}
    assert rig.env.status(gate).runtime_status == "Running" and rig.env.callbacks() == []
    entries = [r for r in rig.shared.audit.records() if r.instance_id == gate]
    [refused] = [e for e in entries if e.data.get("action") == "change_decision_not_applied"]
    assert refused.data["reason"] == reason and refused.data["source"] == "connectwise"
    assert "FabrikamInc" not in json.dumps(refused.data)
    assert not [e for e in entries if e.kind == "approval_decided"]


def test_a_cab_approval_of_the_tenants_own_company_ticket_satisfies_the_stage(rig: Rig):
    ticket = rig.server.add_ticket("Contoso change", company="ContosoLtd", board="Change Management", status="New")
    gate = rig.env.gates.submit(rig.env.event("prod-cab", ticket=f"connectwise:{ticket.id}"))
    outcomes = rig.cab_callback(ticket.id, company="contosoltd")  # ConnectWise identifiers: case-insensitive
    [outcome] = [o for o in outcomes if o["instance_id"] == gate]
    assert outcome["status"] == "accepted" and outcome["decision"] == "approve"
    assert rig.env.status(gate).output["status"] == "approved"
    decided = [r for r in rig.shared.audit.records() if r.instance_id == gate and r.kind == "approval_decided"]
    assert decided[0].actor == f"psa:connectwise:{ticket.id}" and decided[0].data["source"] == "connectwise"


# --- time spent on an L3 task, logged when it is marked done (issues 15 and 19) -------------------------------

OPS_OID = str(uuid.UUID(int=0x0F))


def follow_ups(rig: Rig, orchestrations: Any = None) -> FollowUpService:
    """The follow-up service as the Teams and Slack triggers build it: with the Durable client (here the
    local runner's gateway) and whether the tenant has a PSA."""
    services = rig.env.gates.services
    return FollowUpService(
        rig.shared.storage,
        rig.shared.cipher,
        entra_tenants_for=lambda t: (TID,) if t == rig.shared.tenant_id else (),
        operators_for=lambda _t: (OPERATOR,),
        audit_for=lambda _t: rig.shared.audit,
        clock=rig.shared.clock.now,
        orchestrations=orchestrations or rig.env.gates.gateway,
        psa_configured=lambda tenant_id: services.tickets.settings_for(tenant_id) is not None,
    )


def operator() -> Principal:
    return Principal(oid=OPS_OID, tid=TID, upn=OPERATOR, auth="slack")


def done_audit(rig: Rig, gate: str) -> list[Any]:
    return [r.data for r in rig.shared.audit.records() if r.instance_id == gate and r.kind == "follow_up"]


def test_an_l3_task_marked_done_with_minutes_logs_the_time_on_its_connectwise_ticket(rig: Rig):
    linked = rig.server.add_ticket("Rotate the vault secret", company="ContosoLtd", board="Change Management")
    gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS, ticket=str(linked.id)))
    assert rig.env.status(gate).output["status"] == "human_task"
    [task] = [t for t in rig.server.tickets.values() if t.id != linked.id]  # the L3 ticket Gatekeeper opened

    follow_ups(rig).act(gate, operator(), "mark_done", "secret rotated by hand", 45)
    assert task.time == []  # the trigger never calls the vendor: the orchestration does
    rig.runner.run_until_idle()

    [entry] = task.time
    assert entry["chargeToId"] == task.id and entry["chargeToType"] == "ServiceTicket"
    started = datetime.fromisoformat(entry["timeStart"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(entry["timeEnd"].replace("Z", "+00:00"))
    assert ended - started == timedelta(minutes=45) and ended == rig.shared.clock.now().replace(microsecond=0)
    assert f"by {OPERATOR}: secret rotated by hand" in entry["notes"] and gate in entry["notes"]
    assert linked.time == []  # the linked change ticket got the L3 note, not the time
    status = rig.runner.status(follow_up_instance_id(gate, OPS_OID))
    assert status.runtime_status == "Completed" and status.output["writes"] == 1
    logged = [e.data for e in rig.psa_audit(gate) if e.data["moment"] == "done"]
    assert [(d["operation"], d["ok"], d["ticket"]) for d in logged] == [("log_time", True, str(task.id))]
    assert "45 min" in logged[0]["detail"]
    [done] = done_audit(rig, gate)
    assert (done["action"], done["minutes"], done["psa_time_entry"]) == ("mark_done", 45, True)
    everything = json.dumps([r.data for r in rig.shared.audit.records()])
    for secret in (PRIVATE_KEY, PUBLIC_KEY, CLIENT_ID):
        assert secret not in everything


def test_an_l3_task_marked_done_without_minutes_logs_no_time(rig: Rig):
    gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS))
    [task] = rig.server.tickets.values()
    calls = len(rig.server.requests)
    follow_ups(rig).act(gate, operator(), "mark_done", "secret rotated by hand")
    rig.runner.run_until_idle()
    assert task.time == [] and len(rig.server.requests) == calls  # no call to the PSA at all
    assert rig.runner.status(follow_up_instance_id(gate, OPS_OID)) is None  # nothing started
    assert [e for e in rig.psa_audit(gate) if e.data["moment"] == "done"] == []
    [done] = done_audit(rig, gate)
    assert done["action"] == "mark_done" and "minutes" not in done and "psa_time_entry" not in done


def test_when_the_write_back_cannot_start_nothing_is_recorded_and_the_retry_logs_the_time_once(rig: Rig):
    gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS))
    [task] = rig.server.tickets.values()

    class Down:
        def start(self, orchestrator: str, instance_id: str, payload: dict[str, Any]) -> None:
            raise ConnectionError("the Durable API is unreachable")

    with pytest.raises(DependencyUnavailable):
        follow_ups(rig, Down()).act(gate, operator(), "mark_done", "rotated", 30)
    assert done_audit(rig, gate) == []  # not half-recorded: no audit entry and the row was handed back
    follow_ups(rig).act(gate, operator(), "mark_done", "rotated", 30)  # the retry (Slack's queue, Teams' click)
    rig.runner.run_until_idle()
    assert [e["timeEnd"] != e["timeStart"] for e in task.time] == [True]
    assert [d["minutes"] for d in done_audit(rig, gate)] == [30]


def test_a_tenant_without_a_psa_records_the_minutes_in_the_audit_only(rig: Rig):
    services = rig.env.gates.services
    record = services.registry.get(rig.shared.tenant_id)
    assert record is not None
    services.registry.import_records([record.model_copy(update={"psa": None})])
    services.registry.invalidate()
    gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS))
    follow_ups(rig).act(gate, operator(), "mark_done", "rotated", 20)
    rig.runner.run_until_idle()
    assert rig.server.requests == [] and rig.runner.status(follow_up_instance_id(gate, OPS_OID)) is None
    [done] = done_audit(rig, gate)
    assert (done["minutes"], done["psa_time_entry"]) == (20, False)


def test_an_l3_task_marked_done_with_minutes_logs_an_autotask_time_entry(rig: Rig):
    """The same flow on Autotask: the L3 ticket opened there gets a TimeEntries item with the hours worked."""
    tenant_id, services = rig.shared.tenant_id, rig.env.gates.services
    own = f"GK_{tenant_id.upper()}_"
    user, secret, code = "gk-api@contoso-msp.example", "at-secret-9f8e7d6c5b4a", "AT-INTEGRATION-CODE-0123456"
    with LocalAutotask(user, secret, code) as server:
        autotask = AutotaskSettings.model_validate(
            {
                "vendor": "autotask",
                "url": f"{server.url}/atservicesrest",
                "company": "174",
                "board": "29682833",
                "time_resource_id": "29682885",
                "credentials": {
                    "username": f"env:{own}AT_USER",
                    "secret": f"env:{own}AT_SECRET",
                    "integration_code": f"env:{own}AT_CODE",
                },
            }
        )
        record = services.registry.get(tenant_id)
        assert record is not None
        services.registry.import_records([record.model_copy(update={"psa": autotask})])
        services.registry.invalidate()
        resolver = SecretResolver({f"{own}AT_USER": user, f"{own}AT_SECRET": secret, f"{own}AT_CODE": code})
        services.tickets = TicketSystems(
            services.registry.get,
            resolver,
            policy=RetryPolicy(max_attempts=1),
            allow_loopback_http=True,
            clock=rig.shared.clock.now,
        )
        gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS))
        [task] = server.tickets.values()
        follow_ups(rig).act(gate, operator(), "mark_done", "rotated by hand", 90)
        rig.runner.run_until_idle()
        [entry] = task.time
        assert entry["ticketID"] == task.id and entry["hoursWorked"] == 1.5 and entry["resourceID"] == 29682885
        assert f"by {OPERATOR}: rotated by hand" in entry["summaryNotes"]
        logged = [e.data for e in rig.psa_audit(gate) if e.data["moment"] == "done"]
        assert [(d["vendor"], d["operation"], d["ok"]) for d in logged] == [("autotask", "log_time", True)]


# -- what is not written, and why -------------------------------------------------------------------------


def _moment_ops(rig: Rig, gate: str, moment: str) -> list[tuple[str, bool]]:
    return [(e.data["operation"], e.data["ok"]) for e in rig.psa_audit(gate) if e.data["moment"] == moment]


def test_psa_settings_that_cannot_be_used_are_audited_and_never_hold_the_gate(rig: Rig):
    rig.env.gates.services.tickets = TicketSystems(
        rig.env.gates.services.registry.get,
        SecretResolver({}),  # the credential references name app settings that are not set
        policy=RetryPolicy(max_attempts=1),
        allow_loopback_http=True,
        clock=rig.shared.clock.now,
    )
    gate = rig.env.gates.submit(rig.env.event("dev", ticket="connectwise:41001"))
    assert rig.env.status(gate).output["status"] == "approved"
    audited = rig.psa_audit(gate)
    assert audited and all(e.data["operation"] == "configure" and e.data["ok"] is False for e in audited)
    assert all(e.data["detail"].startswith("psa.credentials.") for e in audited)
    assert all(e.subject == "psa settings unusable" for e in audited)
    assert rig.server.requests == []


def test_a_note_that_fails_for_good_stops_that_moments_other_writes(rig: Rig):
    ticket = rig.server.add_ticket("Deploy web-shop 3.0", company="ContosoLtd", board="Change Management")
    rig.server.fail_next(3, 500, path_contains="/notes")  # the request note: every retry fails
    gate = rig.env.gates.submit(rig.env.event("dev", ticket=f"connectwise:{ticket.id}"))
    assert rig.env.status(gate).output["status"] == "approved"
    assert _moment_ops(rig, gate, "requested") == [("find_or_open", True), ("add_note", False)]  # no status
    assert ("set_status", True) in _moment_ops(rig, gate, "decided")  # the next moment tries again
    assert ticket.status == "Change Approved"


@pytest.mark.parametrize("rig", [{"rollback_priority": None}], indirect=True)
def test_a_rollback_without_a_priority_to_raise_skips_it_unaudited(rig: Rig):
    ticket = rig.server.add_ticket("Deploy web-shop 3.1", company="ContosoLtd", board="Change Management")
    gate = rig.env.gates.submit(rig.env.event("dev", ticket=f"connectwise:{ticket.id}"))
    told = PsaTicketInput(
        tenant_id=rig.shared.tenant_id, instance_id=gate, moment="rolled_back", reason="x", at=rig.shared.clock.now()
    )
    outcome = write(rig.env.gates.services, told)
    assert outcome.ok and outcome.writes == 2 and ticket.priority is None and ticket.status == "Rolled Back"
    assert _moment_ops(rig, gate, "rolled_back") == [("add_note", True), ("set_status", True)]


def test_a_write_for_a_gate_that_does_not_exist_or_has_no_task_asks_the_psa_nothing(rig: Rig):
    services, now = rig.env.gates.services, rig.shared.clock.now()
    missing = PsaTicketInput(tenant_id=rig.shared.tenant_id, instance_id="gate-" + "0" * 40, moment="decided", at=now)
    assert write(services, missing).model_dump(include={"ok", "skipped", "detail"}) == {
        "ok": True,
        "skipped": True,
        "detail": "no such gate",
    }
    gate = rig.env.gates.submit(rig.env.event("dev"))
    done = PsaTicketInput(tenant_id=rig.shared.tenant_id, instance_id=gate, moment="done", minutes=30, by=ANNA, at=now)
    outcome = write(services, done)
    assert (outcome.skipped, outcome.detail) == (True, "no L3 task ticket or no time to log")
    assert rig.server.requests == []


@pytest.mark.parametrize("rig", [{"human_task_tickets": False}], indirect=True)
def test_l3_opens_no_task_ticket_when_the_tenant_does_not_want_them(rig: Rig):
    gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS))
    assert rig.env.status(gate).output["status"] == "human_task"
    assert rig.server.tickets == {} and rig.server.requests == []


def test_l3_with_a_linked_ticket_notes_the_task_on_it_and_a_psa_down_opens_nothing(rig: Rig):
    linked = rig.server.add_ticket("Rotate the vault", company="ContosoLtd", board="Change Management")
    gate = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS, ticket=str(linked.id)))
    [task] = [t for t in rig.server.tickets.values() if t.id != linked.id]
    assert f"A person carries this change out: ticket {task.id}." in _texts(linked)[-1]
    rig.server.outage(503)
    down = rig.env.gates.submit(rig.env.event("production", ActionKind.SECRET_ACCESS))
    assert rig.env.status(down).output["status"] == "human_task"
    assert len(rig.server.tickets) == 2  # nothing opened while the PSA is down
    assert _moment_ops(rig, down, "human_task") == [("find_or_open", False)]
    again = PsaTicketInput(
        tenant_id=rig.shared.tenant_id, instance_id=down, moment="human_task", at=rig.shared.clock.now()
    )
    outcome = write(rig.env.gates.services, again)  # a result, never an exception into the flow
    assert (outcome.ok, outcome.failures) == (False, 1)
    assert rig.env.gates.services.gates(rig.shared.tenant_id).psa_task(down) is None
    assert rig.env.status(gate).output["status"] == "human_task"


@pytest.mark.parametrize("rig", [{"open_change_ticket": "production"}], indirect=True)
def test_a_change_ticket_that_cannot_be_opened_leaves_the_gate_waiting_and_links_nothing(rig: Rig):
    rig.server.outage(503)
    gate = rig.env.gates.submit(rig.env.event("prod-cab"))
    assert rig.env.status(gate).runtime_status == "Running" and rig.server.tickets == {}
    assert _moment_ops(rig, gate, "requested") == [("find_or_open", False)]
    assert rig.env.gates.services.gates(rig.shared.tenant_id).psa_ticket(gate) is None
    again = PsaTicketInput(
        tenant_id=rig.shared.tenant_id, instance_id=gate, moment="requested", at=rig.shared.clock.now()
    )
    outcome = write(rig.env.gates.services, again)  # a result, never an exception into the flow
    assert (outcome.ok, outcome.failures, outcome.ticket) == (False, 1, None)


def _registry_down() -> TicketSystems:
    """The PSA write-back of a process whose registry cannot be read (storage refusing connections)."""
    from gatekeeper.store.tables import StorageAccount
    from gatekeeper.tenancy.registry import TenantRegistry
    from tests.support.outage import dead_port, storage_connection_string

    port = dead_port()
    down = StorageAccount(connection_string=storage_connection_string(blob=port, queue=port, table=port))
    return TicketSystems(TenantRegistry(down).get, SecretResolver({}), policy=RetryPolicy(max_attempts=1))


def test_a_psa_write_back_that_fails_outright_never_fails_the_gate_or_its_answer(rig: Rig):
    rig.env.gates.services.tickets = _registry_down()
    ticket = rig.server.add_ticket("Deploy web-shop 3.2", company="ContosoLtd", board="Change Management")
    gate = rig.env.gates.submit(rig.env.event("dev", ticket=f"connectwise:{ticket.id}"))
    status = rig.env.status(gate)
    assert status.runtime_status == "Completed" and status.output["status"] == "approved"
    assert [c["state"] for c in rig.env.callbacks()] == ["approved"]
    assert status.custom_status["phase"] == "done" and status.custom_status.get("psa")  # the failure, said
    assert rig.order(gate).count("psa_ticket") == 2  # the request note and the decision were both tried
    assert ticket.notes == [] and rig.server.requests == []


def test_a_decision_the_pipeline_could_not_hear_says_so_on_the_ticket(rig: Rig):
    ticket = rig.server.add_ticket("Deploy web-shop 3.3", company="ContosoLtd", board="Change Management")
    rig.env.receiver.fail_next(100, 503, path_contains="/ci/hook")  # the pipeline's callback URL is down
    gate = rig.env.gates.submit(rig.env.event("dev", ticket=f"connectwise:{ticket.id}"))
    rig.runner.run_until_complete(gate, horizon=timedelta(days=1))  # through the callback's retries
    output = rig.env.status(gate).output
    assert output["status"] == "approved" and output["callback_ok"] is False
    assert "The pipeline could not be told; operators were alerted." in _texts(ticket)[-1]
    assert ticket.status == "Change Approved"
