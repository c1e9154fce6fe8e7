"""A follow-up (acknowledge, flag for rollback, mark done) whose audit append meets an outage: nothing is left
half-recorded, so the person's retry records and audits it once, instead of "already recorded" forever over a
follow-up the audit log never heard of. Real Azurite tables and the tenant's real audit log."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatekeeper.contracts.gate import GateStatus
from gatekeeper.errors import Conflict, DependencyUnavailable
from gatekeeper.gates.followup import FollowUpService
from gatekeeper.gates.store import GateIndex, GateRecord
from gatekeeper.security.principal import Principal
from tests.support.gatekeeper_env import ENTRA_TENANT, GatekeeperEnv, make_env
from tests.support.outage import audit_down_once

pytestmark = pytest.mark.azurite

OPERATOR = "0000000c-0000-4000-8000-00000000000c"


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path) -> Iterator[GatekeeperEnv]:
    yield make_env(storage_connection_string, tmp_path / "keys")


def executed_l1_gate(env: GatekeeperEnv) -> str:
    now = datetime.now(UTC)
    gate_id = "gate-" + uuid.uuid4().hex
    env.services.gates(env.tenant_id).save(
        GateRecord(
            instance_id=gate_id,
            tenant_id=env.tenant_id,
            status=GateStatus.APPROVED,
            level="L1",
            title="deploy contoso/shop to production",
            created_at=now,
            updated_at=now,
        )
    )
    GateIndex(env.storage).put(gate_id, env.tenant_id)
    return gate_id


@pytest.mark.parametrize(
    ("verb", "kinds"), [("acknowledge", ["follow_up"]), ("flag_rollback", ["follow_up", "override"])]
)
def test_a_follow_up_whose_audit_failed_is_recorded_and_audited_once_by_the_retry(env, verb, kinds):
    gate_id = executed_l1_gate(env)
    service = FollowUpService(
        env.storage,
        env.services.cipher,
        entra_tenants_for=lambda _t: (ENTRA_TENANT,),
        operators_for=lambda _t: (OPERATOR,),
        audit_for=audit_down_once(env.services.audit_for),
    )
    person = Principal(oid=OPERATOR, tid=ENTRA_TENANT, auth="teams")
    with pytest.raises(DependencyUnavailable):
        service.act(gate_id, person, verb)
    assert service.act(gate_id, person, verb)["status"] == "recorded", "the retry records it"
    with pytest.raises(Conflict):
        service.act(gate_id, person, verb)  # and then it is recorded, once
    entries = [r.kind for r in env.services.audit_for(env.tenant_id).records() if r.instance_id == gate_id]
    assert entries == kinds, "audited once, the override with its follow-up"


class StartsRecorded:
    """The task hub for the PSA write-back: takes every start and records it."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, name: str, instance_id: str, data: str) -> None:
        self.started.append(instance_id)


def test_a_done_whose_psa_time_entry_started_but_whose_audit_failed_is_audited_once_by_the_retry(env):
    """Once the PSA time entry has been handed to its orchestration the row cannot be handed back (the retry
    would log the time twice), so it was kept, and the retry heard 409 "already recorded": a task marked done,
    with its time sent to the PSA, that the audit log never heard of. The kept row now notes where the log stood
    and the person's retry audits it, once, starting nothing again."""
    gate_id = executed_l1_gate(env)
    gates = env.services.gates(env.tenant_id)
    stored = gates.load(gate_id)
    assert stored is not None
    gates.save(stored.model_copy(update={"status": GateStatus.HUMAN_TASK, "level": "L3"}))
    hub = StartsRecorded()
    service = FollowUpService(
        env.storage,
        env.services.cipher,
        entra_tenants_for=lambda _t: (ENTRA_TENANT,),
        operators_for=lambda _t: (OPERATOR,),
        audit_for=audit_down_once(env.services.audit_for, "follow_up"),
        orchestrations=hub,
        psa_configured=lambda _t: True,
    )
    person = Principal(oid=OPERATOR, tid=ENTRA_TENANT, auth="teams")
    with pytest.raises(DependencyUnavailable):
        service.act(gate_id, person, "mark_done", "restarted the pool", minutes=15)
    assert len(hub.started) == 1, "the time entry went to the PSA write-back"
    assert service.act(gate_id, person, "mark_done", "restarted the pool", minutes=15)["status"] == "recorded"
    assert len(hub.started) == 1, "and is not started again"
    with pytest.raises(Conflict):
        service.act(gate_id, person, "mark_done", "restarted the pool", minutes=15)
    entries = [r for r in env.services.audit_for(env.tenant_id).records() if r.instance_id == gate_id]
    assert [(r.kind, r.data.get("minutes"), r.data.get("psa_time_entry")) for r in entries] == [
        ("follow_up", 15, True)
    ], "audited once, with its time entry"
