"""mcp-guard end to end (issue 20): the official `mcp` client talks over stdio to `python -m gatekeeper
mcp-guard` (a subprocess), which forwards to a small upstream MCP server (the SDK's MCPServer over stdio,
tests/support/mcp_upstream.py, recording every call it receives) and asks Gatekeeper over real HTTP
(`POST /api/actions` on the local Functions host, Azurite, the real dispatcher and orchestrators) before
privileged calls. People decide through the decision route's logic with Entra tokens."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from devstack.functions_host import LocalFunctionsHost
from tests.e2e.test_action_flows import (  # noqa: F401 - fixtures
    AGENT,
    ANNA,
    ENTRA_AUDIENCE,
    PIET,
    World,
    entra,
    github,
    world,
)
from tests.support.gatekeeper_env import ENTRA_TENANT, app_functions
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

ROOT = Path(__file__).resolve().parents[2]
GUARD_APP = "7c2d9e40-0000-4000-8000-00000000b7a1"  # the client application the guard's token was issued to
UPSTREAM = f"{sys.executable} -m devstack.mcp_upstream"
GUARD_POLICY = """\
version: 1
defaults: {level: L0, environment: production}
rules:
  - name: delete-namespaces
    match: {tools: ["kubectl_delete_*"]}
    level: L2
    action: infrastructure_change
  - name: scale-staging
    match: {tools: ["kubectl_scale"], arguments: {namespace: "staging-*"}}
    level: L1
    environment: staging
  - name: scale-production
    match: {tools: ["kubectl_scale"], arguments: {namespace: "prod-*"}}
    level: L2
  - name: secrets
    match: {tools: ["read_secret"]}
    level: L3
    action: secret_access
"""


class GuardRig:
    def __init__(self, world: World, host: LocalFunctionsHost, tmp: Path) -> None:
        self.world = world
        self.host = host
        self.log = tmp / "upstream.jsonl"
        self.log.touch()
        self.policy = tmp / "guard.yaml"
        self.policy.write_text(GUARD_POLICY)
        self.base_url = host.url

    def upstream_calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def session(self, steps: Callable[[ClientSession], Any], hold: int = 30) -> Any:
        token = self.world.entra.issue(
            AGENT, ENTRA_TENANT, ENTRA_AUDIENCE, app_only=True, extra_claims={"azp": GUARD_APP}
        )
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "GATEKEEPER_URL": self.base_url,
            "GATEKEEPER_TOKEN": token,
            "GATEKEEPER_RETRY_SECONDS": "2",
            "MCP_UPSTREAM_LOG": str(self.log),
        }
        args = ["-m", "gatekeeper", "mcp-guard", "--upstream", UPSTREAM, "--policy", str(self.policy)]
        params = StdioServerParameters(command=sys.executable, args=[*args, "--hold", str(hold)], env=env, cwd=ROOT)

        async def run() -> Any:
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                return await steps(session)

        return asyncio.run(run())

    def decide_when_asked(self, decision: str, check: Callable[[], None] | None = None) -> threading.Thread:
        """In the background: wait for the guard's request to reach the gate, check the upstream was not
        called yet, then decide as a person."""

        def work() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                started = self.world.pump()
                if started:
                    if check is not None:
                        check()
                    self.world.decide(started[0], ANNA, decision)
                    return
                time.sleep(0.2)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        return thread


@pytest.fixture
def rig(world: World, tmp_path: Path) -> Iterator[GuardRig]:
    host = LocalFunctionsHost(app_functions(), durable_binding=world.durable.client_binding, run_async=run_on_worker)
    with host:
        yield GuardRig(world, host, tmp_path)


def text_of(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


def actions_asked(rig: GuardRig) -> list[Any]:
    return [r for r in rig.world.env.services.audit_for(rig.world.tenant_id).records() if r.kind == "action_requested"]


def test_unprivileged_tools_pass_through_untouched_and_listings_are_the_upstreams(rig):
    async def steps(session: ClientSession) -> Any:
        tools = await session.list_tools()
        return [t.name for t in tools.tools], await session.call_tool("list_pods", {"namespace": "prod-web"})

    names, result = rig.session(steps)
    assert set(names) == {"kubectl_delete_namespace", "kubectl_scale", "list_pods", "read_secret"}
    assert result.is_error is False and text_of(result) == "web-7d9f 1/1 Running (namespace prod-web)"
    assert rig.upstream_calls() == [{"tool": "list_pods", "arguments": {"namespace": "prod-web"}}]
    assert rig.host.requests_to("/api/actions") == []  # L0: Gatekeeper is not asked


def test_a_privileged_call_is_held_until_approved_then_forwarded_with_exactly_those_arguments(rig):
    seen_before_decision: list[list[dict[str, Any]]] = []
    thread = rig.decide_when_asked("approve", check=lambda: seen_before_decision.append(rig.upstream_calls()))

    async def steps(session: ClientSession) -> Any:
        return await session.call_tool("kubectl_delete_namespace", {"name": "prod-legacy"})

    result = rig.session(steps)
    thread.join(5)
    assert seen_before_decision == [[]]  # held: nothing reached the upstream while a person decided
    assert result.is_error is False and text_of(result) == 'namespace "prod-legacy" deleted'
    assert rig.upstream_calls() == [{"tool": "kubectl_delete_namespace", "arguments": {"name": "prod-legacy"}}]
    [asked] = actions_asked(rig)
    assert asked.data["command"] == 'mcp-tool kubectl_delete_namespace {"name":"prod-legacy"}'
    assert asked.data["level"] == "L2" and asked.data["requester"] == [f"entra:oid:{AGENT}"]
    assert asked.data["agent"] == GUARD_APP and "via" not in asked.data  # asked through /api/actions
    reported = [r.data for r in rig.world.audit(asked.instance_id) if r.kind == "action_reported"]
    assert [(r["outcome"], r["exit_code"]) for r in reported] == [("executed", 0)]


def test_a_denied_call_never_reaches_the_upstream_and_says_so_plainly(rig):
    thread = rig.decide_when_asked("reject")

    async def steps(session: ClientSession) -> Any:
        return await session.call_tool("kubectl_delete_namespace", {"name": "prod-legacy"})

    result = rig.session(steps)
    thread.join(5)
    assert result.is_error is True
    message = text_of(result)
    assert "was NOT run" in message and "denied" in message and "carry on" in message
    assert rig.upstream_calls() == []
    [asked] = actions_asked(rig)
    assert [r.data["outcome"] for r in rig.world.audit(asked.instance_id) if r.kind == "action_reported"] == ["skipped"]


def test_l1_passes_through_and_notifies_and_l3_is_refused_at_once(rig):
    async def steps(session: ClientSession) -> Any:
        scaled = await session.call_tool(
            "kubectl_scale", {"namespace": "staging-web", "deployment": "web", "replicas": 3}
        )
        started = time.monotonic()
        secret = await session.call_tool("read_secret", {"name": "db-password"})
        return scaled, secret, time.monotonic() - started

    scaled, secret, secret_seconds = rig.session(steps)
    assert scaled.is_error is False and "scaled to 3" in text_of(scaled)
    assert secret.is_error is True and "human only" in text_of(secret) and secret_seconds < 5
    assert rig.upstream_calls() == [
        {"tool": "kubectl_scale", "arguments": {"deployment": "web", "namespace": "staging-web", "replicas": 3}}
    ]
    levels = {r.data["command"].split()[1]: r.data["level"] for r in actions_asked(rig)}
    assert levels == {"kubectl_scale": "L1", "read_secret": "L3"}
    rig.world.pump()
    scale_id = next(r.instance_id for r in actions_asked(rig) if r.data["level"] == "L1")
    assert "notification" in [r.kind for r in rig.world.audit(scale_id)]  # L1: people are told afterwards


def test_no_decision_in_time_is_refused_and_changed_arguments_are_never_covered_by_an_approval(rig):
    async def first(session: ClientSession) -> Any:
        return await session.call_tool("kubectl_scale", {"namespace": "prod-web", "deployment": "web", "replicas": 2})

    async def later(session: ClientSession) -> Any:
        changed = await session.call_tool(
            "kubectl_scale", {"namespace": "prod-web", "deployment": "web", "replicas": 50}
        )
        return changed

    timed_out = rig.session(first, hold=2)
    assert timed_out.is_error is True and "no person approved it within 2 s" in text_of(timed_out)
    assert rig.upstream_calls() == []
    [asked] = actions_asked(rig)
    rig.world.pump()
    assert rig.world.decide(asked.instance_id, PIET, "approve")[0] == 202  # replicas=2 is approved
    changed = rig.session(later, hold=2)
    assert changed.is_error is True and "NOT run" in text_of(changed)
    assert rig.upstream_calls() == []  # replicas=50 was never approved: a new request, still waiting
    commands = sorted(r.data["command"] for r in actions_asked(rig))
    assert commands == [
        'mcp-tool kubectl_scale {"deployment":"web","namespace":"prod-web","replicas":2}',
        'mcp-tool kubectl_scale {"deployment":"web","namespace":"prod-web","replicas":50}',
    ]


def test_gatekeeper_unreachable_fails_closed(rig):
    rig.base_url = "http://127.0.0.1:9"  # nothing listens there

    async def steps(session: ClientSession) -> Any:
        return await session.call_tool("kubectl_delete_namespace", {"name": "prod-legacy"})

    result = rig.session(steps)
    assert result.is_error is True and "could not be asked" in text_of(result)
    assert rig.upstream_calls() == []
