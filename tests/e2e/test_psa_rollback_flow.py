"""A rollback reaches the PSA ticket of the gate that let the deployment through (issue 15, outbound): the
real `post_deploy_watch` replayed by the azure-functions-durable SDK in the local runner rolls back through
a signed webhook, closes the watch, then `psa_ticket` adds a note, raises the priority and moves the
ticket to the tenant's rolled-back status on the local ConnectWise server."""

from __future__ import annotations

import pytest

from devstack.connectwise import LocalConnectWise
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.gates.store import GateRecord
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.psa.systems import TicketSystems
from gatekeeper.tenancy.psa_settings import ConnectWiseSettings
from gatekeeper.tenancy.secrets import SecretResolver
from tests.e2e.test_psa_ticket_flows import CLIENT_ID, LOGIN_COMPANY, PRIVATE_KEY, PUBLIC_KEY, _settings, secrets_for
from tests.e2e.test_rollback_flows import Env, app_key, env, shared  # noqa: F401

pytestmark = pytest.mark.azurite


def test_a_rollback_adds_a_note_raises_the_priority_and_moves_the_gates_ticket(env: Env):
    with LocalConnectWise(LOGIN_COMPANY, PUBLIC_KEY, PRIVATE_KEY, CLIENT_ID) as server:
        services = env.gates.services
        record = services.registry.get(env.tenant_id)
        assert record is not None
        psa = ConnectWiseSettings.model_validate(_settings(server, env.tenant_id))
        services.registry.import_records([record.model_copy(update={"psa": psa})])
        services.registry.invalidate()
        services.tickets = TicketSystems(
            services.registry.get,
            SecretResolver(secrets_for(env.tenant_id)),
            policy=RetryPolicy(max_attempts=1),
            allow_loopback_http=True,
        )
        ticket = server.add_ticket("Deploy web-shop v2 to hook-prod", company="ContosoLtd", board="Change Management")

        _, bad, _ = env.good_then_bad("hook-prod")
        gate_id = services.watches(env.tenant_id).load(bad).gate_id
        assert gate_id is not None
        now = env.gates.clock.now()
        services.gates(env.tenant_id).save(  # the gate that let v2 through, linked to the ticket
            GateRecord(
                instance_id=gate_id,
                tenant_id=env.tenant_id,
                status=GateStatus.APPROVED,
                level="L1",
                created_at=now,
                updated_at=now,
                ticket=f"connectwise:{ticket.id}",
            )
        )
        assert env.finish(bad)["outcome"] == "rolled_back"

        [note] = ticket.notes
        assert "Gatekeeper: deployment rolled back" in note["text"] and f"Watch: {bad}" in note["text"]
        assert ticket.priority == "Priority 1 - Emergency Response" and ticket.status == "Rolled Back"
        ran = [name for instance, name, _ in env.gates.runner.activity_log if instance == bad]
        assert ran.index("watch_close") < ran.index("psa_ticket")  # the watch closed before the PSA write
        audited = [r.data for r in env.audit.records() if r.instance_id == gate_id and r.kind == "psa_ticket"]
        assert [(a["operation"], a["ok"]) for a in audited] == [
            ("find_or_open", True),  # the linked ticket was never checked: it is the tenant's company's
            ("add_note", True),
            ("raise_priority", True),
            ("set_status", True),
        ]
