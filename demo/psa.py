"""The demo's act on the PSA write-back (issue 15), in its own function so the story stays readable.

Contoso's MSP runs ConnectWise PSA. The admin gives the tenant its `psa` settings (an API member's keys by
reference, the Change Management board, the status names) and a policy rule whose approval stage is the CAB
in ConnectWise (`psa_change_approval`). A deployment names its change ticket; the ticket gets Gatekeeper's
request note and moves to "Awaiting CAB"; the CAB approves in ConnectWise, whose callback reaches the real
`POST /api/connectors/connectwise` function; the stage completes, the CI is called back, and only then the
ticket gets the decision notes and "Change Approved". What the local ConnectWise holds is written to
demo-output/psa-tickets.json.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import azure.functions as func
import yaml

from devstack.connectwise import LocalConnectWise
from gatekeeper.ingest.queue import decode_message
from gatekeeper.policy.store import PolicyStore
from gatekeeper.psa.systems import TicketSystems
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from gatekeeper.tenancy.secrets import SecretResolver

if TYPE_CHECKING:
    from demo.story import Demo

LOGIN_COMPANY = "fabrikammsp"  # the MSP's ConnectWise company id (its sign-in company)
CW_SECRETS = {
    "GK_CONTOSO_CW_PUBLIC": "demo-cw-public-key",
    "GK_CONTOSO_CW_PRIVATE": "demo-cw-private-key-4d5e6f7a8b9c",
    "GK_CONTOSO_CW_CLIENT_ID": "3b9e1c2d-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
    "GK_CONTOSO_CW_CALLBACK": "demo-cw-callback-secret-0123456789",
}
CAB_RULE = {
    "name": "cab-in-connectwise",
    "match": {"actions": ["deploy"], "environments": ["prod-psa"]},
    "level": "L2",
    "reason": "this environment's changes are approved by the CAB in ConnectWise",
    "approval": {
        "stages": [
            {"name": "cab-in-connectwise", "kind": "psa_change_approval", "sources": ["connectwise"], "timeout": "P2D"},
            {
                "name": "release-managers",
                "approvers": ["lisa.devries@contoso.com", "anna.jansen@contoso.com"],
                "quorum": 1,
                "timeout": "PT8H",
            },
        ]
    },
}


def psa_write_back(demo: Demo) -> None:
    from demo.story import EXAMPLES, TENANT, _show_decision, _show_new_notifications

    t = demo.timeline
    runtime = demo.stack.services
    t.section("PSA write-back: a ConnectWise ticket follows the gate; the CAB approves it in ConnectWise")
    secrets = SecretResolver({**demo.stack.local_secrets, **CW_SECRETS})
    with LocalConnectWise(
        LOGIN_COMPANY,
        CW_SECRETS["GK_CONTOSO_CW_PUBLIC"],
        CW_SECRETS["GK_CONTOSO_CW_PRIVATE"],
        CW_SECRETS["GK_CONTOSO_CW_CLIENT_ID"],
    ) as connectwise:
        record = runtime.registry.get(TENANT)
        assert record is not None
        settings = {
            "vendor": "connectwise",
            "url": connectwise.url,  # https://api-eu.myconnectwise.net in real life (loopback http locally)
            "login_company": LOGIN_COMPANY,
            "company": "ContosoLtd",
            "board": "Change Management",
            "statuses": {"in_progress": "Awaiting CAB", "approved": "Change Approved", "rejected": "CAB Rejected"},
            "rollback_priority": "Priority 1 - Emergency Response",
            "credentials": {
                "public_key": "env:GK_CONTOSO_CW_PUBLIC",
                "private_key": "env:GK_CONTOSO_CW_PRIVATE",
                "client_id": "env:GK_CONTOSO_CW_CLIENT_ID",
            },
        }
        hooks = {**record.secrets, SecretPurpose.CONNECTWISE_WEBHOOK: ("env:GK_CONTOSO_CW_CALLBACK",)}
        updated = TenantRecord.model_validate({**record.model_dump(), "psa": settings, "secrets": hooks})
        runtime.registry.import_records([updated])
        for services in (runtime, demo.gates.services):  # each process's registry cache hears of the change
            services.registry.invalidate()
        runtime.__dict__["secrets"] = secrets  # the app settings that hold the new references' values
        runtime.__dict__.pop("ingestion", None)
        for services in (runtime, demo.gates.services):
            services.__dict__["tickets"] = TicketSystems(
                services.registry.get, secrets, allow_loopback_http=True, clock=demo.timeline.clock.now
            )
        t.say(
            "tenant contoso: psa = ConnectWise (board Change Management; API member keys and clientId as "
            "env: references, never values)"
        )
        policy = yaml.safe_load((EXAMPLES / "policy.yaml").read_text())
        policy["rules"] = [CAB_RULE, *policy["rules"]]
        revision = PolicyStore(runtime.storage, TENANT).publish(
            yaml.safe_dump(policy), published_by="admin@contoso.com"
        )
        runtime.audit_for(TENANT).append(
            "policy_changed",
            "admin@contoso.com",
            "",
            f"policy revision {revision.revision}",
            {"revision": revision.revision, "fingerprint": revision.fingerprint},
            at=t.clock.now(),
        )
        t.say(f"policy revision {revision.revision}: rule cab-in-connectwise (stage kind psa_change_approval)")

        ticket = connectwise.add_ticket(
            "Upgrade contoso/platform to 3.2 on prod-psa", company="ContosoLtd", board="Change Management", status="New"
        )
        t.say(f"the service desk's change request in ConnectWise: ticket #{ticket.id} ({ticket.status})")
        document = {
            "kind": "gate_request",
            "action": "deploy",
            "environment": "prod-psa",
            "repository": "contoso/platform",
            "ref": "refs/heads/main",
            "commit": "9e1d4c7b2a5f",
            "actor": "dev@contoso.com",
            "runId": "psa-run-1",
            "labels": [f"change-ticket:connectwise:{ticket.id}"],  # a CI's `Change-Ticket:` trailer, as a label
            "callbackUrl": demo.receiver.url + "/ci/gatekeeper",
        }
        status, answer = demo.generic_event(document)
        t.say(f"deploy of contoso/platform to prod-psa naming ticket connectwise:{ticket.id}: {status}")
        if "instanceId" not in answer:
            t.say(f"refused: {answer.get('title')}: {answer.get('detail')}", indent=1)
            return
        gate = str(answer["instanceId"])
        demo.dispatch()
        _show_decision(demo, gate)
        _show_ticket(demo, ticket.id, connectwise)

        callback = _callback(ticket.id, approved=True, company_id="contoso")
        request = func.HttpRequest(
            "POST",
            f"http://localhost:7071/api/connectors/connectwise?tenant={TENANT}&secret={CW_SECRETS['GK_CONTOSO_CW_CALLBACK']}",
            headers={"Content-Type": "application/json"},
            body=json.dumps(callback).encode(),
            route_params={"vendor": "connectwise"},
            params={"tenant": TENANT, "secret": CW_SECRETS["GK_CONTOSO_CW_CALLBACK"]},
        )
        response = demo.handlers["connector_webhook"](request)
        t.say(
            f"the CAB sets ticket #{ticket.id} to 'Change Approved' in ConnectWise; its callback to "
            f"POST /api/connectors/connectwise: {response.status_code}"
        )
        for outcome in _dispatch_connector_events(demo):
            t.say(f"psa_change_approval stage: {outcome.get('status')} ({outcome.get('decision')})", indent=1)
        _show_new_notifications(demo)
        for upn in ("lisa.devries@contoso.com", "anna.jansen@contoso.com"):  # the unresolved requester's extra one
            code, _ = demo.decide(gate, upn, "approve", "CAB approved in ConnectWise; go.")
            t.say(f"{upn.split('@')[0]} (release managers) approves: {code}")
        t.say(demo.status(gate))
        for line in demo.new_webhook_calls():
            t.say(line)
        _show_ticket(demo, ticket.id, connectwise, since=1)
        written: list[Any] = []
        for entry in runtime.audit_for(TENANT).records():
            if entry.instance_id == gate and entry.kind == "psa_ticket":
                data = entry.data
                written.append(data)
                t.say(f"audit #{entry.seq}: psa_ticket {data['vendor']} {data['operation']} ok={data['ok']}", indent=1)
        sent = [[r.path, r.query, r.body.decode()] for r in connectwise.requests]  # what went over the wire
        seen = json.dumps([sent, written])  # (the keys travel only in the Authorization and clientId headers)
        leaked = any(value in seen for value in CW_SECRETS.values())
        t.say(f"credentials in ConnectWise's request log or the audit entries: {'YES' if leaked else 'none'}")
        _write(demo, connectwise)


def _callback(ticket_id: int, *, approved: bool, company_id: str) -> dict[str, Any]:
    """ConnectWise's callback body for a ticket update (the shape of tests/fixtures/connectors/connectwise/)."""
    status = {"id": 98, "name": "Change Approved"} if approved else {"id": 99, "name": "CAB Rejected"}
    entity = {
        "id": ticket_id,
        "summary": "Upgrade contoso/platform to 3.2 on prod-psa",
        "recordType": "ServiceTicket",
        "board": {"id": 12, "name": "Change Management"},
        "status": status,
        "company": {"id": 250, "identifier": "ContosoLtd", "name": "Contoso Ltd"},
        "approved": approved,
        "_info": {"lastUpdated": "2026-11-23T10:30:00Z", "updatedBy": "anna.jansen"},
    }
    return {
        "MessageId": "8d1c2b3a-4e5f-4a6b-9c7d-0e1f2a3b4c5d",
        "FromUrl": "https://eu.myconnectwise.net/",
        "CompanyId": company_id,
        "MemberId": "anna.jansen",
        "Action": "updated",
        "Type": "ticket",
        "ID": ticket_id,
        "Entity": json.dumps(entity),
    }


def _dispatch_connector_events(demo: Demo) -> list[dict[str, Any]]:
    """What the queue trigger does with a connector event: record it, then apply a PSA change decision."""
    runtime = demo.stack.services
    queue = runtime.sink.queue
    outcomes: list[dict[str, Any]] = []
    for message in queue.receive_messages(max_messages=32):
        queued = decode_message(runtime.sealer, message.content.decode(), runtime.large_events)
        outcomes += demo.gates.connector_event(queued.event)
        queue.delete_message(message)
    return outcomes


def _show_ticket(demo: Demo, ticket_id: int, connectwise: LocalConnectWise, since: int = 0) -> None:
    ticket = connectwise.tickets[ticket_id]
    for note in ticket.notes[since:]:
        first = note["text"].splitlines()[0]
        demo.timeline.say(f"ConnectWise ticket #{ticket_id} note: {first}", indent=1)
    demo.timeline.say(f"ConnectWise ticket #{ticket_id} status: {ticket.status}", indent=1)


def _write(demo: Demo, connectwise: LocalConnectWise) -> None:
    tickets = [
        {
            "id": ticket.id,
            "summary": ticket.summary,
            "board": ticket.board,
            "company": ticket.company,
            "status": ticket.status,
            "priority": ticket.priority,
            "notes": [{"text": n["text"], "internal": n.get("internalAnalysisFlag")} for n in ticket.notes],
        }
        for ticket in connectwise.tickets.values()
    ]
    document = {
        "psa": "ConnectWise PSA (local server, devstack/connectwise.py)",
        "tickets": tickets,
        "requests": connectwise.report(),
    }
    (demo.out_dir / "psa-tickets.json").write_text(json.dumps(document, indent=2) + "\n")
