"""The MCP server's tools (gatekeeper/mcp/server.py): cases a hand sweep of planted bugs found untested
(docs/mutation.md, third sweep). The rig is tests/e2e/test_mcp_server.py's: the official `mcp` client against
`POST /api/mcp` on the local Functions host, Azurite, the real queue, dispatcher and orchestrators."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from gatekeeper import telemetry
from gatekeeper.ingest.queue import QueueEventSink
from gatekeeper.mcp.resource import agent_caller
from tests.e2e.test_mcp_server import (  # noqa: F401 - fixtures
    PIET,
    Rig,
    _post,
    ask,
    entra,
    github,
    rig,
    world,
)

pytestmark = pytest.mark.azurite


def _tool_calls(caplog: pytest.LogCaptureFixture, tool: str) -> list[dict[str, Any]]:
    found = (telemetry.parse(r.getMessage()) for r in caplog.records if r.name == telemetry.LOGGER_NAME)
    return [e for e in found if e is not None and e["name"] == "McpToolCalled" and e["tool"] == tool]


def test_the_published_schemas_bound_the_action_id_and_the_report_detail(rig):
    """The bounds an agent is told in `tools/list` are the ones the tools enforce (the SDK validates the
    arguments against them before a tool runs)."""
    [listed] = rig.call(rig.agent_token(), ("list_tools", {}))
    schemas = {t["name"]: t["inputSchema"]["properties"] for t in listed["tools"]}
    assert schemas["get_approval"]["action_id"]["maxLength"] == 80
    assert schemas["report_outcome"]["action_id"]["maxLength"] == 80
    assert schemas["report_outcome"]["detail"]["maxLength"] == 500
    assert schemas["get_approval"]["wait_seconds"]["minimum"] == 0
    long_id = rig.one("get_approval", {"action_id": "gate-" + "0" * 76, "wait_seconds": 0})
    assert long_id["is_error"] is True and "action_id" in long_id["text"] and "80" in long_id["text"]


def test_request_approval_waits_up_to_wait_seconds_while_the_request_is_pending(rig):
    started = time.monotonic()
    pending = rig.one("request_approval", ask(wait_seconds=2))["structured"]
    assert pending["status"] == "pending" and 1.8 <= time.monotonic() - started < 15


def test_an_argv_command_is_asked_and_audited_as_one_shell_quoted_line(rig):
    """The approval binds the whole command: an argv list is joined shell-quoted, never cut to its program."""
    argv = ["kubectl", "delete", "namespace", "prod legacy"]
    pending = rig.one("request_approval", ask(command=argv))["structured"]
    assert pending["command"] == "kubectl delete namespace 'prod legacy'"
    requested = next(r for r in rig.world.audit(pending["action_id"]) if r.kind == "action_requested")
    assert requested.data["command"] == "kubectl delete namespace 'prod legacy'"


def test_the_requests_evidence_reaches_the_audited_request(rig):
    evidence = {"repository": "contoso/webshop", "ticket": "CHG-20261205", "plan_digest": "sha256:" + "ab" * 32}
    pending = rig.one("request_approval", ask(context=evidence))["structured"]
    requested = next(r for r in rig.world.audit(pending["action_id"]) if r.kind == "action_requested")
    assert (requested.data["ticket"], requested.data["plan_digest"]) == ("CHG-20261205", "sha256:" + "ab" * 32)


def test_report_outcome_answers_with_the_actions_own_status(rig):
    pending = rig.one("request_approval", ask())["structured"]
    rig.world.pump()
    assert rig.world.decide(pending["action_id"], PIET, "reject")[0] == 202
    skipped = rig.one("report_outcome", {"action_id": pending["action_id"], "outcome": "skipped"})
    assert skipped["is_error"] is False
    assert (skipped["structured"]["status"], skipped["structured"]["outcome"]) == ("denied", "skipped")


def test_a_refused_argument_names_its_field_and_is_counted_by_its_error_code(rig, caplog):
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    control = rig.one("request_approval", ask(command="rm -rf /tmp/x\x00"))
    assert control["is_error"] is True and "(field: command)" in control["text"]
    [counted] = _tool_calls(caplog, "request_approval")
    assert counted["status"] == "invalid-field"


def test_an_unexpected_failure_tells_the_agent_nothing_was_approved_and_nothing_of_the_internals(rig, caplog):
    """A failure that is neither a product error nor a dependency outage (a bug): the agent reads that nothing
    was approved, never the exception's text (which may hold paths, keys or connection strings)."""

    class Broken(QueueEventSink):
        def submit(self, event: Any, event_id: str) -> None:
            raise RuntimeError("internal: AccountKey=c2VjcmV0LWtleQ== at /home/site/wwwroot/gatekeeper")

    services = rig.world.env.services
    working = services.sink
    services.__dict__["sink"] = Broken(services.request_storage, services.sealer, services.queue_name)
    services.__dict__.pop("actions", None)
    caplog.set_level(logging.INFO, logger=telemetry.LOGGER_NAME)
    try:
        failed = rig.one("request_approval", ask())
    finally:
        services.__dict__["sink"] = working
        services.__dict__.pop("actions", None)
    assert failed["is_error"] is True and "nothing was approved" in failed["text"]
    assert (
        "AccountKey" not in failed["text"] and "RuntimeError" not in failed["text"] and "wwwroot" not in failed["text"]
    )
    assert [e["status"] for e in _tool_calls(caplog, "request_approval")] == ["internal-error"]


@pytest.mark.parametrize("action_id", ["abc/def", "gate-x#y", "../gate-0"])
def test_an_id_that_is_no_action_of_the_callers_tenant_is_no_such_action_whatever_it_holds(rig, action_id):
    for tool, arguments in (
        ("get_approval", {"action_id": action_id, "wait_seconds": 0}),
        ("report_outcome", {"action_id": action_id, "outcome": "skipped"}),
    ):
        answer = rig.one(tool, arguments)
        assert answer["is_error"] is True and answer["text"].endswith("No such action."), (tool, answer["text"])


def test_the_answer_is_one_json_body_never_an_event_stream(rig):
    """Stateless JSON mode: a POST is answered with one application/json body even when the client accepts a
    stream (a stream would hold the function until its timeout)."""
    response = _post(rig, rig.agent_token())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert response.json()["result"]["serverInfo"]["name"] == "gatekeeper"


def test_the_pending_list_is_bounded_at_fifty_newest_requests(rig: Rig):
    services = rig.world.env.services
    caller = agent_caller(services.actions_authenticator, f"Bearer {rig.agent_token()}")
    for n in range(51):
        document = {**ask(), "command": f"kubectl delete namespace old-{n}", "idempotency_key": f"bulk-{n}"}
        document.pop("wait_seconds")
        assert services.actions.request_for(caller, document).body["status"] == "pending"
    listed = rig.one("list_my_pending_approvals", {})["structured"]["pending"]
    assert len(listed) == 50
    assert json.dumps(listed).count("old-") == 50
