"""Recommendations through whole gates (issue 16): the local runner over the real orchestrators, Azurite, the
real audit log. An L2 gate's decision entry, record, page and API view carry the recommendation of the
tenant's model, the level stays the policy's, and approvers who decide against it leave an `override` entry
with both sides; a rollback of an approved change leaves one too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.recommend_history import Kind, generate, write
from devstack.runner import ManualClock
from gatekeeper.audit.log import AuditLog
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.recommend.store import refit
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.settings import Settings
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount

pytestmark = pytest.mark.azurite

TID = "3f6c2a8e-1b7d-4c9e-8a5f-0d2e4b6c8a10"
AUDIENCE = "api://gatekeeper-tests"
START = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)
ANNA, PIET = (str(uuid.UUID(int=i)) for i in (0xA, 0xB))
DEV_OID = str(uuid.UUID(int=0xDE))


def stage(name: str, approvers: list[str]) -> dict:
    return {"name": name, "approvers": approvers, "quorum": 1, "timeout": "PT1H", "on_timeout": "reject"}


POLICY = {
    "version": 1,
    "defaults": {"level": "L2", "approval": {"stages": [stage("default", [ANNA])]}},
    "rules": [
        {
            "name": "cab",
            "match": {"environments": ["production"]},
            "level": "L2",
            "approval": {"stages": [stage("cab", [ANNA, PIET])]},
        },
        {
            "name": "staging",
            "match": {"environments": ["staging"]},
            "level": "L2",
            "approval": {"stages": [stage("leads", [ANNA, PIET])]},
        },
        {"name": "dev", "match": {"environments": ["dev"]}, "level": "L0"},
    ],
}
# production deployments of the webshop were mostly rolled back; staging ones always went well
HISTORY = [
    Kind("cab", "production", "contoso/webshop", 30, rolled_back=27),
    Kind("staging", "staging", "contoso/webshop", 40),
]


@dataclass
class Env:
    gates: LocalGates
    audit: AuditLog
    tenant_id: str
    issuer: LocalEntraIssuer

    def event(self, environment: str) -> PipelineEvent:
        return PipelineEvent(
            tenant_id=self.tenant_id,
            source=EventSource.GENERIC,
            kind=EventKind.GATE_REQUEST,
            action=ActionKind.DEPLOY,
            environment=environment,
            repository="contoso/webshop",
            ref="refs/heads/main",
            commit="a1b2c3d",
            actor="dev@contoso.com",
            run_id=uuid.uuid4().hex,
            requester_ids=(f"entra:oid:{DEV_OID}",),
        )

    def decide(self, gate: str, oid: str, decision: str) -> int:
        token = self.issuer.issue(oid, TID, AUDIENCE, issued_at=datetime.now(UTC).timestamp())
        status, _ = self.gates.decide(gate, {"Authorization": f"Bearer {token}"}, decision, comment=f"{decision}!")
        return status

    def entries(self, gate: str, kind: str) -> list[Any]:
        return [r for r in self.audit.records() if r.instance_id == gate and r.kind == kind]


@pytest.fixture(scope="module")
def env(azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path_factory.mktemp("keys"))))
    tenant_id = "t" + uuid.uuid4().hex[:12]
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    write(audit, generate(HISTORY, START))
    policy = load_policy(POLICY)
    with LocalEntraIssuer() as issuer:
        gates = local_gates(
            storage,
            cipher,
            decider=PolicyDecider(lambda _t: policy),
            audit_for=lambda _t: audit,
            notifier=OutboxNotifier(tmp_path_factory.mktemp("outbox")),
            callbacks=PipelineCallbacks(  # the events name no callback: nothing is ever sent
                webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1)), webhook_secret=lambda _t: b"unused"
            ),
            entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
            token_validator=EntraTokenValidator(
                AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: tid == TID
            ),
            operators_for=lambda _t: ("ops@contoso.com",),
            clock=ManualClock(START),
            settings=Settings(trust_easyauth_header=False),
        )
        recommender = gates.services.recommender
        model = refit(tenant_id, audit, recommender.store(tenant_id), START)
        assert model is not None and model.samples == 70
        yield Env(gates, audit, tenant_id, issuer)


def test_an_l2_decision_carries_the_recommendation_and_the_level_stays_the_policys(env: Env):
    gate = env.gates.submit(env.event("production"))
    (decision,) = [e for e in env.entries(gate, "decision") if not e.data.get("final")]
    advice = decision.data["recommendation"]
    assert decision.data["level"] == "L2" and decision.data["rule"] == "cab"  # advice never changes the level
    assert advice["verdict"] == "reject" and 0 < advice["p_approve"] < 0.35 and 0 < advice["confidence"] <= 1
    assert advice["model_version"] == env.gates.services.recommender.model(env.tenant_id).version  # type: ignore[union-attr]
    assert 1 <= len(advice["factors"]) <= 5 and advice["factors"][0]["weight"] < 0
    assert set(advice["factors"][0]) == {"name", "weight", "detail"}
    assert any(
        f["name"] == "rule=cab" and "3 approved and kept, 27 rejected or rolled back" in f["detail"]
        for f in advice["factors"]
    )
    record = env.gates.services.gates(env.tenant_id).load(gate)
    assert record is not None and record.recommendation == advice and record.level == "L2"
    view = env.gates.decisions.state(gate, env.gates.identify(_headers(env, ANNA)))[1]
    assert view["recommendation"]["verdict"] == "reject" and view["recommendation"]["reasons"]


def _headers(env: Env, oid: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + env.issuer.issue(oid, TID, AUDIENCE, issued_at=datetime.now(UTC).timestamp())}


def test_approving_against_a_reject_recommendation_is_an_override_with_both_sides(env: Env):
    gate = env.gates.submit(env.event("production"))
    assert env.decide(gate, ANNA, "approve") == 202
    assert env.gates.runner.status(gate).output["status"] == "approved"
    (override,) = env.entries(gate, "override")
    advice = next(e for e in env.entries(gate, "decision") if not e.data.get("final")).data["recommendation"]
    assert override.data == {
        "kind": "approved_against_reject",
        "rule": "cab",
        "recommended": "reject",
        "decided": "approved",
        "model_version": advice["model_version"],
        "gate": gate,
    }


def test_deciding_as_recommended_is_no_override_and_below_l2_nothing_is_recommended(env: Env):
    gate = env.gates.submit(env.event("staging"))
    advice = next(e for e in env.entries(gate, "decision") if not e.data.get("final")).data["recommendation"]
    assert advice["verdict"] == "approve"
    assert env.decide(gate, PIET, "approve") == 202
    assert env.entries(gate, "override") == []
    quiet = env.gates.submit(env.event("dev"))
    (decision,) = [e for e in env.entries(quiet, "decision") if not e.data.get("final")]
    assert decision.data["level"] == "L0" and "recommendation" not in decision.data
