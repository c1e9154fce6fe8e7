"""`python -m gatekeeper mcp-guard`: a proxy MCP server in front of another MCP server that holds privileged
tool calls until a person approves them through Gatekeeper (`POST /api/actions`).

The agent talks to the guard over stdio (the guard is one more local MCP server in the client's
configuration, started and stopped by the client: no port to open or protect, and its credential stays in
its environment); the guard talks to the upstream server over stdio (a command) or streamable HTTP (a URL)
with the official `mcp` SDK. Tool listings pass through untouched. Each call gets its level from the guard
policy (`guard_policy`):
- L0: forwarded as is;
- L1 and L2: Gatekeeper is asked with the exact tool name and arguments as the command; the tenant's policy
  decides (L1 answers at once and notifies people, L2 waits for a person, the guard holding the call up to
  `hold_seconds`). Approved: the guard forwards exactly the arguments it asked about (a private deep copy),
  after checking Gatekeeper's record of the approved command is the command it computed; it then reports
  `executed`. Denied, expired, cancelled, human only, still pending, or Gatekeeper unreachable: a tool result
  with `isError: true` that says so plainly, and the upstream tool is never called (fail closed);
- L3: refused at once ("human only"); Gatekeeper is told for the record, never waited for.
An approval covers one call: the idempotency key is (guard session, argument digest, use count), so a
repeated identical call while the first still waits finds the same request, and a call after an approved one
was forwarded needs a new approval. Changed arguments are a different command: they are never covered.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import secrets
import shlex
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gatekeeper import telemetry
from gatekeeper.mcp.guard_policy import (
    GuardPolicy,
    Verdict,
    arguments_digest,
    check_command_size,
    guarded_command,
)
from gatekeeper.policy.levels import GateLevel

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.types import CallToolResult, Tool

    from gatekeeper.client.api import ActionState

log = logging.getLogger("gatekeeper.mcp.guard")

DEFAULT_HOLD_SECONDS = 120
MAX_HOLD_SECONDS = 3600
MAX_TOOL_PAGES = 20


class Approvals(Protocol):
    """What the guard needs of Gatekeeper (`GatekeeperClient` satisfies it through `ClientApprovals`)."""

    def request(self, command: str, verdict: Verdict, key: str) -> ActionState: ...

    def wait(self, action_id: str, seconds: float) -> ActionState: ...

    def report(self, action_id: str, outcome: str, detail: str, exit_code: int | None) -> None: ...


class ClientApprovals:
    """`Approvals` over the typed client (requests + tenacity: backoff on 429/503, long polls)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def request(self, command: str, verdict: Verdict, key: str) -> ActionState:
        approval = self._client.request(
            command,
            verdict.action,
            verdict.environment,
            resource=verdict.resource,
            idempotency_key=key,
            timeout=verdict.timeout,
        )
        state: ActionState = approval.state
        if state.command is None:  # an immediate answer or a re-request: the record's command is in the state
            state = self._client.get(state.id)
        return state

    def wait(self, action_id: str, seconds: float) -> ActionState:
        from gatekeeper.client.api import Approval

        state = self._client.get(action_id)
        approval = Approval(self._client, state, "")
        return approval.wait(timeout=seconds)

    def report(self, action_id: str, outcome: str, detail: str, exit_code: int | None) -> None:
        self._client.report(action_id, outcome, exit_code=exit_code, detail=detail)


@dataclass(frozen=True)
class Interception:
    """One held call as the guard saw it (kept for the demo's transcript and tests)."""

    tool: str
    level: str
    decision: str
    action_id: str | None
    forwarded: bool
    message: str


def tool_error(text: str) -> CallToolResult:
    from mcp.types import CallToolResult, TextContent

    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


class Guard:
    """The decisions of the proxy, independent of how the agent reaches it."""

    def __init__(
        self,
        policy: GuardPolicy,
        approvals: Approvals,
        upstream: ClientSession,
        *,
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
        session: str | None = None,
        on_intercept: Callable[[Interception], None] | None = None,
    ) -> None:
        self._policy = policy
        self._approvals = approvals
        self._upstream = upstream
        self._hold = max(0.0, min(float(hold_seconds), MAX_HOLD_SECONDS))
        self._session = session or secrets.token_hex(8)
        self._uses: dict[str, int] = {}
        self._on_intercept = on_intercept

    async def list_tools(self) -> list[Tool]:
        """The upstream's tools, every page, untouched."""
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(MAX_TOOL_PAGES):
            from mcp.types import PaginatedRequestParams

            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self._upstream.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any] | None) -> CallToolResult:
        given = dict(arguments or {})
        frozen = copy.deepcopy(given)  # what is asked about is exactly what is forwarded
        try:
            verdict = self._policy.verdict(name, frozen)
            command = guarded_command(name, frozen)
        except ValueError:  # arguments that are not JSON (NaN): nothing can be approved for them
            return self._refuse(name, "L2", "invalid", None, "its arguments cannot be written down exactly")
        if verdict.level is GateLevel.L0:
            return await self._upstream.call_tool(name, given)
        if not check_command_size(command):
            return self._refuse(name, verdict.level, "invalid", None, "its arguments are too long to be approved")
        digest = arguments_digest(name, frozen)
        key = f"mcp-guard:{self._session}:{digest[:40]}:{self._uses.get(digest, 0)}"
        if verdict.level is GateLevel.L3:
            action_id = None
            with contextlib.suppress(Exception):  # for the record only; the answer is "no" either way
                action_id = (await asyncio.to_thread(self._approvals.request, command, verdict, key)).id
            return self._refuse(name, verdict.level, "human_only", action_id, "it is human only (L3)")
        try:
            state = await asyncio.to_thread(self._approvals.request, command, verdict, key)
            if state.pending and self._hold > 0:
                state = await asyncio.to_thread(self._approvals.wait, state.id, self._hold)
        except Exception as exc:  # unreachable, refused, unexpected: fail closed
            from gatekeeper.client.errors import ClientError

            reason = exc.detail if isinstance(exc, ClientError) else type(exc).__name__
            return self._refuse(name, verdict.level, "unavailable", None, f"Gatekeeper could not be asked ({reason})")
        if state.pending:
            return self._refuse(
                name,
                verdict.level,
                "timeout",
                state.id,
                f"no person approved it within {int(self._hold)} s (it is still waiting; calling the tool again "
                "with the same arguments checks again)",
            )
        if not state.approved:
            why = f"{state.status}" + (f": {state.reason}" if state.reason else "")
            self._report(state.id, "skipped", f"guard: {state.status}", None)
            return self._refuse(name, verdict.level, state.status, state.id, f"it was {why}")
        if state.command != command:  # Gatekeeper's record of what was approved must be this very call
            self._report(state.id, "skipped", "guard: approved command differs from the call", None)
            return self._refuse(name, verdict.level, "mismatch", state.id, "the approved arguments differ from these")
        self._uses[digest] = self._uses.get(digest, 0) + 1  # this approval is spent
        result = await self._upstream.call_tool(name, frozen)
        self._record(name, verdict.level, "approved", state.id, True, "forwarded")
        self._report(state.id, "executed", f"guard: forwarded {name}", 1 if result.is_error else 0)
        return result

    def _refuse(self, tool: str, level: str, decision: str, action_id: str | None, why: str) -> CallToolResult:
        where = f" (Gatekeeper action {action_id})" if action_id else ""
        text = (
            f"Gatekeeper did not allow this call: {tool} was NOT run because {why}{where}. Do not try to do the "
            "same thing another way; tell the user it was skipped and carry on with the rest of your task."
        )
        self._record(tool, level, decision, action_id, False, text)
        return tool_error(text)

    def _record(self, tool: str, level: str, decision: str, action_id: str | None, forwarded: bool, text: str) -> None:
        telemetry.emit(
            telemetry.Event.MCP_GUARD_INTERCEPTED, tool=tool, level=str(level), decision=decision, instance_id=action_id
        )
        if self._on_intercept is not None:
            self._on_intercept(Interception(tool, str(level), decision, action_id, forwarded, text))

    def _report(self, action_id: str, outcome: str, detail: str, exit_code: int | None) -> None:
        """Close the loop in the audit trail; best effort (the call's fate is already settled)."""
        try:
            self._approvals.report(action_id, outcome, detail, exit_code)
        except Exception as exc:
            log.warning("could not report %s for %s (%s)", outcome, action_id, type(exc).__name__)


@contextlib.asynccontextmanager
async def upstream_session(upstream: str, environ: Mapping[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """A session with the upstream MCP server: a streamable HTTP URL, or a command started over stdio with
    `environ` (`ClientEnvironment.for_child_process()`: never Gatekeeper's credential)."""
    from mcp import ClientSession

    async with contextlib.AsyncExitStack() as stack:
        if upstream.startswith(("https://", "http://")):
            from mcp.client.streamable_http import streamable_http_client

            read, write = await stack.enter_async_context(streamable_http_client(upstream))
        else:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            words = shlex.split(upstream)
            params = StdioServerParameters(
                command=words[0], args=words[1:], env=None if environ is None else dict(environ)
            )
            read, write = await stack.enter_async_context(stdio_client(params))
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        yield session


async def serve_stdio(
    guard_factory: Callable[[ClientSession], Guard], upstream: str, environ: Mapping[str, str] | None = None
) -> None:
    """Serve the guard to the agent over stdio until the agent closes it."""
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server

    async with upstream_session(upstream, environ) as session:
        guard = guard_factory(session)

        async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(tools=await guard.list_tools())

        async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            return await guard.call_tool(params.name, params.arguments)

        server: Server[Any] = Server(
            "gatekeeper-mcp-guard",
            version="1",
            instructions="Privileged tools are held until a person approves them through Gatekeeper. A tool result "
            "that says it was not allowed means: the tool did not run; do not retry it another way, carry on.",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
        )
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
