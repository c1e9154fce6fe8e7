"""The MCP server agents call: four tools over the action-approval API (issue 13), served with the official
`mcp` SDK in stateless streamable-HTTP mode with JSON responses.

Why stateless JSON: on Flex Consumption any instance may take the next request (no session affinity), so no
MCP session state may live in one process; every request carries its bearer token and is answered with one
JSON body (no SSE stream to keep open on a function). The long poll is the action API's own (`watch`:
backoff between reads, bounded at MAX_WAIT_SECONDS, inside the Functions HTTP timeout).

Imported on the first MCP request only (the SDK and Starlette are not needed to index the app). The tools
authenticate again from the request's `Authorization` header (the route already refused a missing or invalid
token with the protocol's 401): the caller is the token's identity in the token's tenant, as for
`POST /api/actions`, and every call is audited by the action service with `via: mcp` and the agent.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import uuid4

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import Field

from gatekeeper import telemetry
from gatekeeper.actions.model import ActionContext, ActionTarget
from gatekeeper.actions.state import MAX_WAIT_SECONDS
from gatekeeper.errors import DependencyUnavailable, GatekeeperError
from gatekeeper.mcp.resource import MAX_MCP_BODY, MCP_PATH, agent_caller

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from gatekeeper.actions.caller import ActionAuthenticator, ActionCaller
    from gatekeeper.actions.service import ActionService, Gateway

DEFAULT_WAIT = 20
log = logging.getLogger("gatekeeper.mcp")
ActionName = Literal[
    "deploy",
    "rollback",
    "infrastructure_change",
    "privilege_escalation",
    "data_export",
    "secret_access",
    "build",
    "test",
]

GATEWAY: contextvars.ContextVar[Gateway | None] = contextvars.ContextVar("gatekeeper_mcp_gateway", default=None)
"""The Durable client of the request being served (ends an approval chain when a request's own timeout
passed while polling); set by the trigger around each request."""

INSTRUCTIONS = """\
Gatekeeper asks a person before you run a privileged command.
Rules:
1. Before any privileged command (deployments, infrastructure changes, deleting namespaces, databases or
   data, data exports, privilege escalation, reading secrets) call request_approval with the EXACT command you
   will run. Do not run it first.
2. Run the command only when the decision is "approved", and run exactly the approved command, nothing else.
3. Any other answer (denied, expired, cancelled, human_only) means: do NOT run it, do not look for another way
   to do the same thing, tell the user it was skipped, and carry on with the rest of your task.
4. "pending" means a person has not decided yet: call get_approval with the action_id to wait again.
5. Afterwards call report_outcome (executed or skipped) so the audit trail is complete.
You can never approve anything yourself; only people can.
"""

ADVICE = {
    "approved": "Approved. You may run exactly this command now, then call report_outcome with 'executed'.",
    "pending": "Waiting for a person. Do NOT run the command yet; call get_approval with this action_id.",
    "denied": "Denied. Do NOT run this command or any workaround. Tell the user it was skipped and carry on "
    "with the rest of your task; call report_outcome with 'skipped'.",
    "expired": "Not approved in time. Do NOT run this command. Tell the user it was skipped and carry on; call "
    "report_outcome with 'skipped'.",
    "cancelled": "Withdrawn. Do NOT run this command; carry on with the rest of your task.",
    "human_only": "Human only (L3): automation may not run this. Do NOT run it; a person was given a task. "
    "Carry on with the rest of your task and call report_outcome with 'skipped'.",
}

Wait = Annotated[
    int,
    Field(ge=0, le=MAX_WAIT_SECONDS, description=f"Seconds to wait for a decision (0 to {MAX_WAIT_SECONDS})."),
]


def answer(view: dict[str, Any]) -> dict[str, Any]:
    """A tool's structured result: the action's state and, in plain words, what the agent must do next."""
    status = str(view.get("status"))
    keys = ("status", "decision", "level", "reason", "decided_by", "approval_url", "command", "outcome")
    return {"action_id": view.get("id"), **{k: view.get(k) for k in keys}, "next_step": ADVICE.get(status, "")}


class ApprovalTools:
    """The four tools, bound to the process's action service (looked up per call, so tests and the host
    share one composition root)."""

    def __init__(self, actions: Callable[[], ActionService], authenticator: Callable[[], ActionAuthenticator]):
        self._actions = actions
        self._authenticator = authenticator

    async def _caller(self, ctx: Context) -> ActionCaller:
        headers = ctx.headers or {}
        authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        return await asyncio.to_thread(agent_caller, self._authenticator(), authorization)

    async def _run(self, tool: str, ctx: Context, work: Callable[[ActionCaller], Any]) -> Any:
        """Run one tool: product errors become a tool error naming the field (the model reads it), counted."""
        caller = await self._caller(ctx)
        try:
            result = await work(caller)
        except DependencyUnavailable as exc:
            self._count(tool, caller, "unavailable")
            raise ToolError(f"Gatekeeper is unavailable right now ({exc.detail}); try again shortly.") from None
        except GatekeeperError as exc:
            self._count(tool, caller, exc.code)
            where = f" (field: {exc.field})" if getattr(exc, "field", None) else ""
            raise ToolError(f"{exc.title}: {exc.detail}{where}") from None
        except Exception as exc:  # an SDK failure: outages are named, anything else says nothing of internals
            from gatekeeper.failures import as_error

            known = as_error(exc)
            self._count(tool, caller, known.code if known is not None else "internal-error")
            if isinstance(known, DependencyUnavailable):
                raise ToolError("Gatekeeper is unavailable right now; try again shortly.") from None
            log.exception("MCP tool %s failed", tool)
            raise ToolError("Gatekeeper could not answer this call; nothing was approved.") from None
        status = result.get("status") if isinstance(result, dict) else "listed"
        self._count(tool, caller, str(status))
        return result

    @staticmethod
    def _count(tool: str, caller: ActionCaller, status: str) -> None:
        telemetry.emit(
            telemetry.Event.MCP_TOOL_CALLED,
            tenant=caller.tenant.tenant_id,
            tool=tool,
            status=status,
            agent=caller.agent,
        )

    async def request_approval(
        self,
        ctx: Context,
        command: Annotated[
            str | list[str],
            Field(description="The EXACT command you will run: one command line, or its argv list."),
        ],
        action: Annotated[ActionName, Field(description="What kind of change the command makes.")],
        target: Annotated[ActionTarget, Field(description="Where it runs: environment (and resource).")],
        context: Annotated[
            ActionContext | None,
            Field(description="Optional evidence for the approver: repository, ref, commit, ticket, plan."),
        ] = None,
        wait_seconds: Wait = DEFAULT_WAIT,
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "command": command,
            "action": action,
            "target": target.model_dump(exclude_none=True),
            "idempotency_key": f"mcp:{uuid4().hex}",
        }
        if context is not None:
            document["context"] = context.model_dump(mode="json", exclude_none=True, exclude_defaults=True)

        async def work(caller: ActionCaller) -> dict[str, Any]:
            actions = self._actions()
            first = await asyncio.to_thread(actions.request_for, caller, document)
            action_id = str(first.body["id"])
            seconds = wait_seconds if first.body.get("status") == "pending" else 0
            view = await actions.watch(caller.tenant.tenant_id, action_id, seconds, GATEWAY.get(), asyncio.to_thread)
            return answer(view)

        return await self._run("request_approval", ctx, work)

    async def get_approval(
        self,
        ctx: Context,
        action_id: Annotated[str, Field(max_length=80, description="The action_id request_approval returned.")],
        wait_seconds: Wait = DEFAULT_WAIT,
    ) -> dict[str, Any]:
        async def work(caller: ActionCaller) -> dict[str, Any]:
            actions = self._actions()
            tenant_id = await asyncio.to_thread(actions.tenant_of, caller, action_id)
            view = await actions.watch(tenant_id, action_id, wait_seconds, GATEWAY.get(), asyncio.to_thread)
            return answer(view)

        return await self._run("get_approval", ctx, work)

    async def list_my_pending_approvals(self, ctx: Context) -> dict[str, Any]:
        async def work(caller: ActionCaller) -> dict[str, Any]:
            views = await asyncio.to_thread(self._actions().pending_for, caller)
            return {"pending": [answer(v) for v in views]}

        return await self._run("list_my_pending_approvals", ctx, work)

    async def report_outcome(
        self,
        ctx: Context,
        action_id: Annotated[str, Field(max_length=80, description="The action_id request_approval returned.")],
        outcome: Annotated[
            Literal["executed", "skipped"],
            Field(description="'executed' if you ran the approved command, 'skipped' if you did not."),
        ],
        detail: Annotated[str, Field(max_length=500, description="One line on what happened.")] = "",
    ) -> dict[str, Any]:
        async def work(caller: ActionCaller) -> dict[str, Any]:
            told = {"outcome": outcome, "detail": detail}
            done = await asyncio.to_thread(self._actions().report_for, caller, action_id, told)
            return {"action_id": action_id, "status": done.body["status"], "outcome": outcome, "recorded": True}

        return await self._run("report_outcome", ctx, work)


def build_server(tools: ApprovalTools) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer(
        "gatekeeper",
        title="Gatekeeper approvals",
        instructions=INSTRUCTIONS,
        version="1",
    )
    server.add_tool(
        tools.request_approval,
        name="request_approval",
        title="Ask a person before a privileged command",
        description=(
            "Ask for approval of ONE exact privileged command BEFORE running it. Returns the decision if it "
            f"arrives within wait_seconds (at most {MAX_WAIT_SECONDS}), else status 'pending' and an action_id "
            "to poll with get_approval. Run the command only if status is 'approved'. Any other status means do "
            "not run it and carry on with the rest of your task."
        ),
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
    )
    server.add_tool(
        tools.get_approval,
        name="get_approval",
        title="Wait for a decision",
        description=(
            "Wait (long poll, up to wait_seconds) for the decision on an approval you requested. 'approved': run "
            "exactly that command. 'denied', 'expired', 'cancelled', 'human_only': do not run it; carry on."
        ),
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True),
    )
    server.add_tool(
        tools.list_my_pending_approvals,
        name="list_my_pending_approvals",
        title="My pending approvals",
        description="Your own approval requests still waiting for a person. Do not run any of these commands yet.",
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True),
    )
    server.add_tool(
        tools.report_outcome,
        name="report_outcome",
        title="Report whether the command ran",
        description=(
            "After a decision, report whether you ran the command ('executed', only for an approved action) or "
            "not ('skipped'). Reporting 'executed' for an action that was not approved is refused and recorded."
        ),
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False),
    )
    return server


def build_asgi_app(tools: ApprovalTools) -> Starlette:
    """The Starlette app of the SDK's streamable-HTTP transport at /api/mcp: stateless, JSON responses.
    DNS-rebinding checks are for servers on a user's machine reached by a browser with ambient credentials;
    this one is a public endpoint that only accepts bearer tokens, so they are off."""
    return build_server(tools).streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=True,
        stateless_http=True,
        max_request_body_size=MAX_MCP_BODY,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
