"""A gate whose approval stage is `psa_change_approval`, end to end: the gate request names its change
ticket, the PSA's own webhook (Autotask, signed as Autotask signs) approves or rejects the change through
`POST /api/connectors/{vendor}`'s logic, the decision reaches the chain as an event, and the gate completes
(or is rejected), audited with its source. Real orchestrators in the local runner, Azurite, local keys."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from devstack.gates import LocalGates, local_gates
from devstack.webhook import LocalWebhookReceiver
from gatekeeper.errors import DependencyUnavailable
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent, WebhookCallback
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.ingest.connector_webhooks import autotask_signature
from gatekeeper.ingest.edge import IncomingRequest
from gatekeeper.ingest.service import IngestionService
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.settings import Settings
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.secrets import SecretResolver
from tests.conftest import ROOT
from tests.e2e.test_gate_flows import ANNA, DEV_OID, OPERATOR, TID, WEBHOOK_SECRET, Shared, shared  # noqa: F401
from tests.support.outage import AuditDownOnce

pytestmark = pytest.mark.azurite

AUTOTASK_SECRET = "autotask-secret-key-for-e2e-0123456789"
APPROVED = json.loads((ROOT / "tests/fixtures/connectors/autotask/ticket-change-approved.json").read_text())
REJECTED = json.loads((ROOT / "tests/fixtures/connectors/autotask/ticket-change-rejected.json").read_text())
POLICY = {
    "version": 1,
    "defaults": {"level": "L2", "approval": {"stages": [{"name": "default", "approvers": [ANNA], "timeout": "PT1H"}]}},
    "rules": [
        {
            "name": "cab-in-the-psa",
            "match": {"environments": ["production"]},
            "level": "L2",
            "approval": {
                "stages": [
                    {"name": "cab", "kind": "psa_change_approval", "sources": ["autotask"], "timeout": "P2D"},
                ]
            },
        }
    ],
}


class Captured:
    """The ingestion sink: the `pipeline-events` queue's place; the test hands events on as the trigger does."""

    def __init__(self) -> None:
        self.events: list[PipelineEvent] = []

    def submit(self, event: PipelineEvent, event_id: str) -> None:
        self.events.append(event)


class PsaEnv:
    def __init__(self, gates: LocalGates, receiver: LocalWebhookReceiver, shared: Shared, account: int):
        self.gates, self.receiver, self.shared, self.account = gates, receiver, shared, account
        self.sink = Captured()
        self.ingestion = IngestionService(
            gates.services.registry, SecretResolver({"E2E_AUTOTASK": AUTOTASK_SECRET}), self.sink
        )

    def gate(self, ticket: str) -> str:
        event = PipelineEvent(
            tenant_id=self.shared.tenant_id,
            source=EventSource.GENERIC,
            kind=EventKind.GATE_REQUEST,
            action=ActionKind.DEPLOY,
            environment="production",
            repository="contoso/webshop",
            ref="refs/heads/main",
            commit="a1b2c3d",
            actor="dev@contoso.com",
            requester_ids=(f"entra:oid:{DEV_OID}",),
            run_id=uuid.uuid4().hex,
            ticket=ticket,
            callback=WebhookCallback(url=self.receiver.url + "/ci/hook"),
        )
        return self.gates.submit(event)

    def autotask_webhook(self, body: dict[str, Any], ticket_id: int) -> list[dict[str, Any]]:
        """What Autotask posts when the CAB decides, through the route's logic, then the dispatcher's."""
        document = json.loads(json.dumps(body))
        document["Id"] = ticket_id
        document["Fields"]["CompanyID"] = self.account
        raw = json.dumps(document).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hook-Signature": autotask_signature(AUTOTASK_SECRET.encode(), raw),
        }
        url = f"https://gk.example/api/connectors/autotask?tenant={self.shared.tenant_id}"
        outcome = self.ingestion.connector_webhook("autotask", IncomingRequest.of(raw, headers, url))
        assert outcome.status == "accepted", outcome.body()
        return self.gates.connector_event(self.sink.events.pop())

    def completed(self) -> list[dict]:
        return [d["body"] for d in self.receiver.deliveries if d["body"].get("event") == "gate.completed"]

    def audit(self, gate: str) -> list[Any]:
        return [r for r in self.shared.audit.records() if r.instance_id == gate]


@pytest.fixture
def psa(shared: Shared) -> Iterator[PsaEnv]:
    with psa_env(shared) as env:
        yield env


@contextlib.contextmanager
def psa_env(shared: Shared, audit_as: Callable[[Any], Any] = lambda log: log) -> Iterator[PsaEnv]:
    """The gates with the tenant's PSA connector (`audit_as` wraps the audit log the gates append to)."""
    policy = load_policy(POLICY)
    receiver = LocalWebhookReceiver(WEBHOOK_SECRET).start()
    callbacks = PipelineCallbacks(
        webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
        webhook_secret=lambda _tenant: WEBHOOK_SECRET,
    )
    shared.clock.advance(timedelta(days=1))
    gates = local_gates(
        shared.storage,
        shared.cipher,
        decider=PolicyDecider(lambda _t: policy),
        audit_for=lambda _t: audit_as(shared.audit),
        notifier=shared.outbox,
        callbacks=callbacks,
        entra_tenants_for=lambda t: (TID,) if t == shared.tenant_id else (),
        operators_for=lambda _t: (OPERATOR,),
        clock=shared.clock,
        settings=Settings(trust_easyauth_header=False),
    )
    account = 70_000_000 + uuid.uuid4().int % 9_999_999  # identities are claimed by one tenant per Azurite
    gates.services.registry.import_records(
        [
            TenantRecord(
                tenant_id=shared.tenant_id,
                display_name="Contoso",
                identities=(f"autotask:account:{account}",),
                secrets={SecretPurpose.AUTOTASK_WEBHOOK: ("env:E2E_AUTOTASK",)},
                # no `psa:` settings here, so no company to compare the ticket's with: the tenant opts in
                psa_decisions_without_company=True,
            )
        ]
    )
    try:
        yield PsaEnv(gates, receiver, shared, account)
    finally:
        receiver.stop()


def test_a_cab_approval_in_the_psa_completes_the_gate(psa: PsaEnv):
    ticket = 7000 + uuid.uuid4().int % 999
    gate = psa.gate(f"autotask:{ticket}")
    status = psa.gates.runner.status(gate)
    assert status.runtime_status == "Running" and psa.completed() == [], status.output
    record = psa.gates.services.gates(psa.shared.tenant_id).load(gate)
    assert record is not None and record.ticket == f"autotask:{ticket}" and record.ticket_via == "event"

    [outcome] = psa.autotask_webhook(APPROVED, ticket)
    assert outcome["status"] == "accepted" and outcome["decision"] == "approve"

    output = psa.gates.runner.status(gate).output
    assert output["status"] == "approved"
    assert output["chain"]["votes"] == [{"voter_id": f"psa:autotask:{ticket}", "decision": "approve", "stage": 0}]
    assert [c["state"] for c in psa.completed()] == ["approved"]
    entries = psa.audit(gate)
    linked = next(e for e in entries if e.kind == "connector_event")
    assert linked.data["action"] == "ticket_linked" and linked.data["source"] == "autotask"
    decided = next(e for e in entries if e.kind == "approval_decided" and e.data.get("psa"))
    assert decided.actor == f"psa:autotask:{ticket}" and decided.data["source"] == "autotask"


def test_a_cab_rejection_in_the_psa_rejects_the_gate(psa: PsaEnv):
    ticket = 8000 + uuid.uuid4().int % 999
    gate = psa.gate(str(ticket))  # a bare id: any PSA the stage allows
    [outcome] = psa.autotask_webhook(REJECTED, ticket)
    assert outcome["decision"] == "reject"
    assert psa.gates.runner.status(gate).output["status"] == "rejected"
    assert [c["state"] for c in psa.completed()] == ["rejected"]


def test_a_redelivered_approval_is_applied_once_and_another_ticket_decides_nothing(psa: PsaEnv):
    ticket = 9000 + uuid.uuid4().int % 999
    gate = psa.gate(f"autotask:{ticket}")
    assert psa.autotask_webhook(APPROVED, ticket + 1) == []  # not this gate's ticket
    assert psa.gates.runner.status(gate).runtime_status == "Running"
    psa.autotask_webhook(APPROVED, ticket)
    again = psa.autotask_webhook(APPROVED, ticket)  # Autotask retries the callout
    assert [o["status"] for o in again] in (["duplicate"], ["not_applied"])
    assert [c["state"] for c in psa.completed()] == ["approved"]
    decided = [e for e in psa.audit(gate) if e.kind == "approval_decided" and e.data.get("psa")]
    assert len(decided) == 1


def test_a_cab_approval_raised_whose_audit_failed_is_audited_by_its_redelivery_once(shared: Shared):
    """The CAB's approval reached the chain and decided the gate, then its `approval_decided` append met an
    outage. The redelivered event used to find the gate decided and audit "not applied": the approval that
    counted was never audited. Now the redelivery audits it, once."""
    flaky: dict[int, AuditDownOnce] = {}
    with psa_env(shared, lambda log: flaky.setdefault(id(log), AuditDownOnce(log, "approval_decided"))) as psa:
        ticket = 6000 + uuid.uuid4().int % 999
        gate = psa.gate(f"autotask:{ticket}")
        with pytest.raises(DependencyUnavailable):
            psa.autotask_webhook(APPROVED, ticket)
        psa.gates.runner.run_until_idle()
        assert psa.gates.runner.status(gate).output["status"] == "approved"  # the raised vote counted
        [again] = psa.autotask_webhook(APPROVED, ticket)  # the queue's redelivery
        assert again["status"] == "accepted", again
        decided = [e for e in psa.audit(gate) if e.kind == "approval_decided" and e.data.get("psa")]
        assert len(decided) == 1 and decided[0].actor == f"psa:autotask:{ticket}"
        assert [c["state"] for c in psa.completed()] == ["approved"]


def test_without_psa_settings_or_the_opt_in_a_cab_approval_is_not_applied_and_audited_why(psa: PsaEnv):
    """The MSP's PSA holds every client's tickets: with no `psa.company` to compare the ticket's company with
    and no opt-in, the decision is refused for the linked gate and the reason audited."""
    registry = psa.gates.services.registry
    record = registry.get(psa.shared.tenant_id)
    assert record is not None
    registry.import_records([record.model_copy(update={"psa_decisions_without_company": False})])
    registry.invalidate()
    ticket = 6000 + uuid.uuid4().int % 999
    gate = psa.gate(f"autotask:{ticket}")
    [outcome] = psa.autotask_webhook(APPROVED, ticket)
    assert outcome == {"instance_id": gate, "status": "not_applied", "reason": "no-psa-company-configured"}
    assert psa.gates.runner.status(gate).runtime_status == "Running" and psa.completed() == []
    [refused] = [e for e in psa.audit(gate) if e.data.get("action") == "change_decision_not_applied"]
    assert refused.data["reason"] == "no-psa-company-configured" and refused.actor == f"psa:autotask:{ticket}"
    assert not [e for e in psa.audit(gate) if e.kind == "approval_decided"]
