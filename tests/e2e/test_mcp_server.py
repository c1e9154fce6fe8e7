"""The MCP server for AI agents (issue 20) end to end: the official `mcp` SDK client (`ClientSession` over
`streamable_http_client`) against `POST /api/mcp` served over real HTTP by the local Functions host
(devstack/functions_host.py), with Azurite, the real queue, dispatcher and orchestrators in the local runner,
and Entra tokens from the local issuer checked by the real validator."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from devstack.functions_host import LocalFunctionsHost
from gatekeeper.tenancy.model import TenantRecord
from tests.e2e.test_action_flows import (  # noqa: F401 - fixtures
    AGENT,
    ANNA,
    ENTRA_AUDIENCE,
    PIET,
    World,
    entra,
    github,
    upn,
    world,
)
from tests.support.gatekeeper_env import ENTRA_TENANT, app_functions
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

AGENT_APP = "5e1f0c3a-0000-4000-8000-00000000a9e7"  # the agent's client application (azp)
OTHER_TID = "0b1f5f2e-0000-4000-8000-0000000f0b1f"
OTHER_AGENT = "0000000f-0000-4000-8000-0000000000ff"
TOOLS = {"request_approval", "get_approval", "list_my_pending_approvals", "report_outcome"}


@pytest.fixture
def rig(world: World) -> Iterator[Rig]:
    host = LocalFunctionsHost(app_functions(), durable_binding=world.durable.client_binding, run_async=run_on_worker)
    with host:
        yield Rig(world, host)


class Rig:
    def __init__(self, world: World, host: LocalFunctionsHost) -> None:
        self.world = world
        self.host = host

    @property
    def url(self) -> str:
        return f"{self.host.url}/api/mcp"

    def agent_token(self, oid: str = AGENT, tid: str = ENTRA_TENANT, audience: str = ENTRA_AUDIENCE) -> str:
        return self.world.entra.issue(oid, tid, audience, app_only=True, extra_claims={"azp": AGENT_APP})

    def call(self, token: str | None, *steps: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """One MCP session (initialize, then each tool call) with the official client; the structured results."""

        async def run() -> list[dict[str, Any]]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                streamable_http_client(self.url, http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                out: list[dict[str, Any]] = []
                for name, arguments in steps:
                    if name == "list_tools":
                        listed = await session.list_tools()
                        out.append({"tools": [t.model_dump(by_alias=True) for t in listed.tools]})
                        continue
                    result = await session.call_tool(name, arguments)
                    text = "".join(getattr(c, "text", "") for c in result.content)
                    out.append({"is_error": result.is_error, "structured": result.structured_content, "text": text})
                return out

        return asyncio.run(run())

    def one(self, name: str, arguments: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        return self.call(token or self.agent_token(), (name, arguments))[0]


def ask(environment: str = "production", action: str = "infrastructure_change", **extra: Any) -> dict[str, Any]:
    return {
        "command": "kubectl delete namespace prod-legacy",
        "action": action,
        "target": {"environment": environment, "resource": "aks-contoso-prod"},
        "wait_seconds": 0,
        **extra,
    }


def test_the_tools_are_listed_with_schemas_and_plain_instructions(rig):
    [listed] = rig.call(rig.agent_token(), ("list_tools", {}))
    tools = {t["name"]: t for t in listed["tools"]}
    assert set(tools) == TOOLS
    request = tools["request_approval"]
    schema = request["inputSchema"]
    assert {"command", "action", "target"} <= set(schema["required"])
    assert schema["properties"]["wait_seconds"]["maximum"] == 25
    assert "BEFORE running it" in request["description"] and "do not run it" in request["description"]
    assert tools["get_approval"]["annotations"]["readOnlyHint"] is True
    assert request["annotations"]["readOnlyHint"] is False


def test_each_level_is_answered_and_l2_is_approved_by_a_person_from_the_api(rig):
    l0 = rig.one("request_approval", ask("dev"))["structured"]
    assert (l0["status"], l0["level"]) == ("approved", "L0") and "run exactly this command" in l0["next_step"]
    l1 = rig.one("request_approval", ask("staging"))["structured"]
    assert (l1["status"], l1["level"]) == ("approved", "L1")
    l3 = rig.one("request_approval", ask(action="secret_access"))["structured"]
    assert (l3["status"], l3["level"]) == ("human_only", "L3") and "Do NOT run it" in l3["next_step"]
    l2 = rig.one("request_approval", ask())["structured"]
    assert (l2["status"], l2["level"]) == ("pending", "L2") and "Do NOT run the command yet" in l2["next_step"]
    assert l2["command"] == "kubectl delete namespace prod-legacy"
    rig.world.pump()
    assert rig.world.decide(l2["action_id"], ANNA, "approve")[0] == 202
    got = rig.one("get_approval", {"action_id": l2["action_id"], "wait_seconds": 0})["structured"]
    assert (got["status"], got["decided_by"]) == ("approved", upn(ANNA))
    done = rig.one("report_outcome", {"action_id": l2["action_id"], "outcome": "executed", "detail": "deleted"})
    assert done["is_error"] is False and done["structured"]["recorded"] is True
    audit = rig.world.audit(l2["action_id"])
    requested = next(r for r in audit if r.kind == "action_requested")
    assert requested.data["via"] == "mcp" and requested.data["agent"] == AGENT_APP
    assert requested.data["command"] == "kubectl delete namespace prod-legacy"
    assert requested.data["requester"] == [f"entra:oid:{AGENT}"]
    assert [r.data["outcome"] for r in audit if r.kind == "action_reported"] == ["executed"]


def test_a_denial_tells_the_agent_to_carry_on_and_executed_is_refused(rig):
    pending = rig.one("request_approval", ask())["structured"]
    rig.world.pump()
    assert rig.world.decide(pending["action_id"], PIET, "reject")[0] == 202
    got = rig.one("get_approval", {"action_id": pending["action_id"], "wait_seconds": 0})["structured"]
    assert got["status"] == "denied" and "carry on" in got["next_step"]
    refused = rig.one("report_outcome", {"action_id": pending["action_id"], "outcome": "executed"})
    assert refused["is_error"] is True and "not approved" in refused["text"]
    skipped = rig.one("report_outcome", {"action_id": pending["action_id"], "outcome": "skipped"})
    assert skipped["is_error"] is False
    reports = [r.data for r in rig.world.audit(pending["action_id"]) if r.kind == "action_reported"]
    assert [(r["outcome"], r["refused"], r["via"]) for r in reports] == [
        ("executed", True, "mcp"),
        ("skipped", False, "mcp"),
    ]


def test_an_agents_denial_is_counted_by_agent_and_tool_in_telemetry_and_the_report(rig, caplog):
    """Issue 20 item 4: the request, the denial, the refused `executed` and the `skipped` report are counted per
    agent and tool, in the events the workbook reads and in the report built from the real audit entries; the
    command's arguments reach neither."""
    import logging

    from gatekeeper import telemetry
    from gatekeeper.report.metrics import Entry, Window, build_report

    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    started = datetime.now(UTC) - timedelta(minutes=1)
    pending = rig.one("request_approval", ask())["structured"]
    rig.world.pump()
    assert rig.world.decide(pending["action_id"], PIET, "reject")[0] == 202
    assert rig.one("report_outcome", {"action_id": pending["action_id"], "outcome": "executed"})["is_error"]
    rig.one("report_outcome", {"action_id": pending["action_id"], "outcome": "skipped"})
    events = [e for e in (telemetry.parse(r.getMessage()) for r in caplog.records) if e]
    mine = [e for e in events if e.get("instance_id") == pending["action_id"]]
    (requested,) = [e for e in mine if e["name"] == "ActionRequested"]
    assert (requested["agent"], requested["tool"], requested["via"]) == (AGENT_APP, "kubectl", "mcp")
    resolved = [(e["status"], e["outcome"], e["refused"], e["agent"], e["tool"]) for e in mine
                if e["name"] == "ActionResolved"]  # fmt: skip
    assert resolved == [
        ("denied", "executed", True, AGENT_APP, "kubectl"),
        ("denied", "skipped", False, AGENT_APP, "kubectl"),
    ]
    assert "prod-legacy" not in json.dumps(events)

    log = rig.world.env.services.audit_for(rig.world.tenant_id)
    entries = [Entry(str(r.kind), r.at, r.instance_id, "", r.data) for r in log.records()]
    report = build_report(entries, Window(started, datetime.now(UTC)), tenant="t", generated_at=datetime.now(UTC))
    (agent,) = report["agents"]["by_agent"]
    assert agent == {"agent": AGENT_APP, "requests": 1, "approved": 0, "denied": 1, "expired_or_cancelled": 0,
                     "pending": 0, "executed_after_approval": 0, "executed_refused": 1}  # fmt: skip
    assert [t["tool"] for t in report["agents"]["by_tool"]] == ["kubectl"]
    assert "prod-legacy" not in json.dumps(report["agents"])


def test_the_long_poll_answers_when_a_person_decides_and_ends_at_the_bound(rig):
    pending = rig.one("request_approval", ask())["structured"]
    rig.world.pump()
    started = time.monotonic()
    timed_out = rig.one("get_approval", {"action_id": pending["action_id"], "wait_seconds": 2})["structured"]
    assert timed_out["status"] == "pending" and 1.8 <= time.monotonic() - started < 10
    threading.Timer(1.0, lambda: rig.world.decide(pending["action_id"], ANNA, "approve")).start()
    started = time.monotonic()
    decided = rig.one("get_approval", {"action_id": pending["action_id"], "wait_seconds": 20})["structured"]
    assert decided["status"] == "approved" and time.monotonic() - started < 8
    too_long = rig.one("get_approval", {"action_id": pending["action_id"], "wait_seconds": 26})
    assert too_long["is_error"] is True and "wait_seconds" in too_long["text"]


def test_an_action_past_its_own_timeout_expires_while_polled(rig):
    """The poll withdraws an action past its own timeout through the request's Durable client (the trigger
    hands it to the tools): without it the action would still read "pending"."""
    pending = rig.one("request_approval", ask(timeout="PT1M"))["structured"]
    rig.world.pump()
    store = rig.world.env.services.actions._actions(rig.world.tenant_id)  # age the request
    record, etag = store.load(pending["action_id"])
    assert store.replace(record.model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)}), etag)
    expired = rig.one("get_approval", {"action_id": pending["action_id"], "wait_seconds": 0})["structured"]
    assert expired["status"] == "expired" and "Do NOT run" in expired["next_step"]
    assert "action_expired" in [r.kind for r in rig.world.audit(pending["action_id"])]


def test_list_my_pending_approvals_shows_only_the_callers_open_requests(rig):
    mine = rig.one("request_approval", ask())["structured"]
    rig.one("request_approval", ask("dev"))  # approved at once: not pending
    other = rig.one("request_approval", ask(), token=rig.agent_token(oid=ANNA))["structured"]
    listed = rig.one("list_my_pending_approvals", {})["structured"]["pending"]
    assert [p["action_id"] for p in listed] == [mine["action_id"]]
    assert other["action_id"] not in [p["action_id"] for p in listed]


def test_hostile_arguments_are_refused_naming_the_field(rig):
    oversize = rig.one("request_approval", ask(command="x" * 9000))
    assert oversize["is_error"] is True and "command" in oversize["text"]
    control = rig.one("request_approval", ask(command="rm -rf /\x00"))
    assert control["is_error"] is True and "command" in control["text"]
    unknown = rig.one("request_approval", ask(action="launch_missiles"))
    assert unknown["is_error"] is True
    nothing = rig.one("get_approval", {"action_id": "gate-" + "0" * 40, "wait_seconds": 0})
    assert nothing["is_error"] is True and "No such action" in nothing["text"]


# -- authentication ---------------------------------------------------------------------------------


def _post(rig: Rig, token: str | None) -> httpx2.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(rig.url, json=body, headers=headers, timeout=30)


def test_missing_and_wrong_audience_tokens_get_the_protocols_401_challenge(rig):
    metadata = f"{rig.world.env.services.approval_base_url.rstrip('/')}/api/.well-known/oauth-protected-resource"
    missing = _post(rig, None)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == f'Bearer resource_metadata="{metadata}"'
    wrong = _post(rig, rig.agent_token(audience="api://some-other-api"))
    assert wrong.status_code == 401
    challenge = wrong.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer resource_metadata="{metadata}"') and 'error="invalid_token"' in challenge
    github_token = rig.world.workflow()["Authorization"].split(" ", 1)[1]
    assert _post(rig, github_token).status_code == 401  # only Entra tokens: a workflow is not an MCP client
    assert rig.host.requests_to("/api/mcp", "POST")[-1][2] == 401
    # and the official client (without an OAuth provider) fails at initialize: no tool is ever reached
    before = len(rig.host.requests_to("/api/mcp"))
    with pytest.raises(Exception, match="unhandled errors"):  # the SDK's task group carries its MCPError
        rig.call(None, ("list_my_pending_approvals", {}))
    assert [r[2] for r in rig.host.requests_to("/api/mcp")[before:]] == [401]


def test_the_protected_resource_metadata_points_at_entra(rig):
    response = httpx2.get(f"{rig.host.url}/api/.well-known/oauth-protected-resource", timeout=30)
    assert response.status_code == 200
    document = response.json()
    assert document["resource"].endswith("/api/mcp")
    assert document["authorization_servers"] == [f"{rig.world.entra.authority_host}/organizations/v2.0"]
    assert document["scopes_supported"] == [f"{ENTRA_AUDIENCE}/.default"]
    assert document["bearer_methods_supported"] == ["header"]


def test_another_tenants_token_cannot_read_or_report_on_the_request(rig):
    registry = rig.world.env.services.registry
    registry.import_records(
        [TenantRecord(tenant_id="tfabrikam01", display_name="Fabrikam", entra_tenant_ids=(OTHER_TID,))]
    )
    pending = rig.one("request_approval", ask())["structured"]
    stranger = rig.agent_token(oid=OTHER_AGENT, tid=OTHER_TID)
    read = rig.one("get_approval", {"action_id": pending["action_id"], "wait_seconds": 0}, token=stranger)
    assert read["is_error"] is True and "No such action" in read["text"]
    report = rig.one("report_outcome", {"action_id": pending["action_id"], "outcome": "skipped"}, token=stranger)
    assert report["is_error"] is True and "No such action" in report["text"]
    assert rig.one("list_my_pending_approvals", {}, token=stranger)["structured"]["pending"] == []


def test_an_agent_can_never_approve_even_with_a_valid_token(rig):
    """An approver's own workload identity (app-only token, same object id as a listed approver) is refused
    by the decision service: agents only ever request."""
    pending = rig.one("request_approval", ask())["structured"]
    rig.world.pump()
    url = f"{rig.host.url}/api/approvals/{pending['action_id']}/decisions"
    refused = httpx2.post(url, json={"decision": "approve"}, headers=rig.world.agent(PIET), timeout=30)
    assert refused.status_code == 403, refused.text
    assert rig.world.durable.requests_to("/raiseEvent/", "POST") == []
    state = rig.one("get_approval", {"action_id": pending["action_id"], "wait_seconds": 0})["structured"]
    assert state["status"] == "pending"


def test_importing_the_function_app_does_not_import_the_mcp_sdk():
    code = (
        "import sys, function_app; bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('mcp', 'mcp_types', 'starlette', 'sse_starlette', 'uvicorn', 'httpx2') or m == 'gatekeeper.mcp.server'); "
        "print(json.dumps(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"[" * 200 + b"]" * 200, 400, -32700),  # deeper than the bounded reader allows
        (b'{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}', 400, -32700),  # duplicate keys
        (b'{"jsonrpc":"2.0","id":1e999999,"method":"tools/list"}', 400, -32700),  # a number out of range
        (b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"' + b"a" * 70_000 + b'"}}', 413, -32600),
        (b"\xff\xfe not utf-8", 400, -32700),
        (b'"just a string"', 400, -32600),
    ],
)
def test_hostile_bodies_are_refused_by_the_bounded_reader_before_the_sdk(rig, raw, status, code):
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {rig.agent_token()}",
    }
    response = httpx2.post(rig.url, content=raw, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["jsonrpc"] == "2.0" and error["id"] is None and error["error"]["code"] == code


def test_oversize_headers_are_refused_naming_the_header(rig):
    headers = {"Authorization": f"Bearer {rig.agent_token()}", "X-Padding": "p" * 9_000}
    response = httpx2.post(rig.url, json={}, headers=headers, timeout=30)
    assert response.status_code == 431 and response.json()["field"].lower() == "header:x-padding"


def test_stateless_json_mode_opens_no_event_stream(rig):
    """GET would open a server-to-client SSE stream: there is none to keep open on a function."""
    headers = {"Authorization": f"Bearer {rig.agent_token()}", "Accept": "text/event-stream"}
    response = httpx2.get(rig.url, headers=headers, timeout=30)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert httpx2.delete(rig.url, headers=headers, timeout=30).status_code == 405  # no session to end
    assert httpx2.get(rig.url, timeout=30).status_code == 401  # still authenticated first


def test_an_agents_request_is_approved_from_the_teams_card_and_the_agent_sees_it(rig):
    """The Teams card path (issue 12): an `adaptiveCard/action` invoke signed as the Teams service signs it,
    through the real Agents SDK host and the same decision service; the agent's next poll says approved."""
    from devstack.bot_connector import LocalBotConnector
    from devstack.botframework import LocalBotFrameworkIssuer, LocalClientCredential, card_action_activity
    from gatekeeper.teams.auth import BotTokenValidator
    from gatekeeper.teams.bot import BotHost

    app_id, secret = "6b5a1f1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "local-bot-secret"
    pending = rig.one("request_approval", ask())["structured"]
    rig.world.pump()
    with LocalBotFrameworkIssuer() as issuer:
        issuer.client_secrets[app_id] = secret
        with LocalBotConnector(lambda token: issuer.verify_bot_token(token, app_id)) as connector:
            activity = card_action_activity(
                service_url=connector.url + "/",
                app_id=app_id,
                user_oid=PIET,
                tenant_id=ENTRA_TENANT,
                verb="approve",
                instance_id=pending["action_id"],
                inputs={},
            )
            token = issuer.sign_activity(app_id, activity["serviceUrl"])
            claims = BotTokenValidator(app_id, issuer.metadata_url).validate(f"Bearer {token}", activity["serviceUrl"])
            host = BotHost(LocalClientCredential(issuer.token_url, app_id, secret), app_id, ENTRA_TENANT)
            status, answer = asyncio.run(
                host.process(activity, {"Authorization": f"Bearer {token}"}, claims, rig.world.gates.decisions)
            )
    assert status == 200 and answer["statusCode"] == 200, answer
    rig.world.gates.runner.run_until_idle()
    state = rig.one("get_approval", {"action_id": pending["action_id"], "wait_seconds": 0})["structured"]
    assert state["status"] == "approved" and "run exactly this command" in state["next_step"]


def test_a_queue_outage_is_a_plain_unavailable_tool_error_without_internals(rig, azurite):
    from gatekeeper.ingest.queue import QueueEventSink
    from gatekeeper.store.tables import StorageAccount
    from tests.support.outage import dead_port, storage_connection_string

    services = rig.world.env.services
    working = services.sink
    port = dead_port()
    down = StorageAccount(
        connection_string=storage_connection_string(blob=azurite.blob_port, queue=port, table=azurite.table_port)
    )
    services.__dict__["sink"] = QueueEventSink(down.bounded(), services.sealer, services.queue_name)
    services.__dict__.pop("actions", None)
    try:
        started = time.monotonic()
        failed = rig.one("request_approval", ask())
        assert time.monotonic() - started < 10
    finally:
        services.__dict__["sink"] = working
        services.__dict__.pop("actions", None)
    assert failed["is_error"] is True and "unavailable" in failed["text"]
    assert str(port) not in failed["text"] and "127.0.0.1" not in failed["text"]
