"""The demo's act on AI agents (issue 20): an ops agent reaches a cluster's MCP tools through
`python -m gatekeeper mcp-guard`; it lists pods (passes straight through), asks to run
`kubectl delete namespace prod-legacy` (held: the change advisory board is asked and denies it), gets a quiet
"not run, carry on" tool result, and carries on. The agent is the official `mcp` client over stdio, the guard
a real subprocess asking the registered `/api/actions` functions over HTTP (the local Functions host), the
cluster a small MCP server (devstack/mcp_upstream.py). The exchange is written to
demo-output/mcp-guard-exchange.json and the guard's policy to demo-output/mcp-guard-policy.yaml.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.durable_api import DurableApiServer
from devstack.functions_host import LocalFunctionsHost
from gatekeeper.services import set_services

if TYPE_CHECKING:
    from mcp import ClientSession

    from demo.story import Demo

ROOT = Path(__file__).resolve().parents[1]
OPS_AGENT = "3d0c9b1e-7a52-4f0e-9c1d-2b8e6f4a7c31"  # the ops agent's managed identity (object id)
OPS_AGENT_APP = "9a4e2c71-0b3d-4e5f-8a6b-1c2d3e4f5a6b"  # its client application (azp)
DENY_REASON = "prod-legacy still serves the billing export until the migration on Friday."


def agent_guard(demo: Demo) -> None:
    from demo.story import AUDIENCE, ENTRA_TENANT, TENANT, _show_decision

    t = demo.timeline
    t.section("AI agents: an agent's privileged MCP tool call is held by mcp-guard, denied, and the agent carries on")
    policy_file = demo.out_dir / "mcp-guard-policy.yaml"
    policy_file.write_text((ROOT / "examples" / "mcp-guard.yaml").read_text())
    token = demo.issuer.issue(OPS_AGENT, ENTRA_TENANT, AUDIENCE, app_only=True, extra_claims={"azp": OPS_AGENT_APP})
    exchange: list[dict[str, Any]] = []
    decided: dict[str, Any] = {}

    def decide_when_asked() -> None:
        """The change advisory board, meanwhile: the guard's request reaches the gate; anna denies it."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            started = [r.instance_id for r in demo.dispatch() if r.instance_id]
            if started:
                decided["id"] = started[0]
                _show_decision(demo, started[0])
                decided["status"] = demo.decide(started[0], "anna.jansen@contoso.com", "reject", DENY_REASON)[0]
                return
            time.sleep(0.2)

    async def agent(session: ClientSession) -> None:
        tools = await session.list_tools()
        names = [tool.name for tool in tools.tools]
        t.say(f"the agent connects to mcp-guard (stdio) in front of cluster-tools: tools {names}")
        for name, arguments, why in (
            ("list_pods", {"namespace": "prod-legacy"}, "checks what still runs in prod-legacy"),
            ("kubectl_delete_namespace", {"name": "prod-legacy"}, "asks to run `kubectl delete namespace prod-legacy`"),
            ("list_pods", {"namespace": "prod-web"}, "carries on with the rest of its task"),
        ):
            result = await session.call_tool(name, arguments)
            text = "".join(getattr(c, "text", "") for c in result.content)
            exchange.append({"tool": name, "arguments": arguments, "is_error": result.is_error, "result": text})
            outcome = "isError: " + text if result.is_error else text
            t.say(f"the agent {why}: {name}({json.dumps(arguments)}) -> {outcome}")

    durable = DurableApiServer()
    with durable, LocalFunctionsHost(demo.functions, durable_binding=durable.client_binding) as host:
        set_services(demo.stack.services)  # the host's threads serve /api/actions with the demo's services
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "GATEKEEPER_URL": host.url,
            "GATEKEEPER_TOKEN": token,
            "GATEKEEPER_RETRY_SECONDS": "5",
        }
        upstream_log = demo.out_dir / ".mcp-upstream-calls.jsonl"
        upstream_log.unlink(missing_ok=True)
        env["MCP_UPSTREAM_LOG"] = str(upstream_log)  # what reached the cluster tools, to show it
        command = [
            "-m",
            "gatekeeper",
            "mcp-guard",
            "--upstream",
            f"{sys.executable} -m devstack.mcp_upstream",
            "--policy",
            str(policy_file),
            "--hold",
            "60",
        ]
        t.say(f"mcp-guard --upstream 'python -m devstack.mcp_upstream' --policy {policy_file.name} (hold 60 s)")
        board = threading.Thread(target=decide_when_asked, daemon=True)
        board.start()
        asyncio.run(_as_agent(command, env, agent))
        board.join(10)
    received = [json.loads(line) for line in upstream_log.read_text().splitlines()] if upstream_log.exists() else []
    upstream_log.unlink(missing_ok=True)
    action_id = decided.get("id")
    t.say(f"anna.jansen (change advisory board) rejected it meanwhile ({DENY_REASON!r}): {decided.get('status')}")
    audit = [r for r in demo.stack.services.audit_for(TENANT).records() if r.instance_id == action_id]
    for record in audit:
        t.say(f"audit #{record.seq}: {record.kind} by {record.actor[:40]}", indent=1)
    requested = next((r.data for r in audit if r.kind == "action_requested"), {})
    state = demo.stack.services.actions.current(TENANT, action_id, None) if action_id else {}
    document = {
        "agent": {"object_id": OPS_AGENT, "client_application": OPS_AGENT_APP},
        "guard_policy": policy_file.name,
        "exchange": exchange,
        "upstream_received": received,
        "gatekeeper_action": {
            "id": action_id,
            "command": requested.get("command"),
            "level": requested.get("level"),
            "requested_by": requested.get("requested_by"),
            "status": state.get("status"),
            "decided_by": state.get("decided_by"),
            "reason": state.get("reason"),
            "approver_comment": DENY_REASON,
            "audit": [{"seq": r.seq, "kind": r.kind, "actor": r.actor} for r in audit],
        },
    }
    (demo.out_dir / "mcp-guard-exchange.json").write_text(json.dumps(document, indent=2) + "\n")
    deletes = [c for c in received if c["tool"] == "kubectl_delete_namespace"]
    t.say(
        f"cluster-tools received {len(received)} calls ({', '.join(c['tool'] for c in received)}), "
        f"{len(deletes)} deletes; the exchange is in mcp-guard-exchange.json"
    )


async def _as_agent(command: list[str], env: dict[str, str], agent: Any) -> None:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=command, env=env, cwd=ROOT)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await agent(session)
