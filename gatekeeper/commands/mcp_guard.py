"""`gatekeeper mcp-guard`: an MCP proxy that holds privileged tool calls until a person approves them
(gatekeeper/mcp/guard.py; docs/guard-an-ai-agent.md). A client command: it needs Gatekeeper's URL and a
credential from the environment (GATEKEEPER_URL, GATEKEEPER_TOKEN or GATEKEEPER_API_KEY with
GATEKEEPER_TENANT), never the app's services. Bad input (the policy file, the options, missing credentials)
is refused before anything starts, naming the file and field (exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gatekeeper.commands.common import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mcp-guard",
        help="serve an MCP proxy (stdio) that asks Gatekeeper before privileged tools of another server run",
        description="Forward tool calls to an upstream MCP server; calls the policy marks privileged are held "
        "until approved through Gatekeeper (L0 pass, L1 pass and notify, L2 a person approves, L3 refused).",
    )
    parser.add_argument("--upstream", required=True, help="the upstream MCP server: an http(s) URL or a command")
    parser.add_argument("--policy", required=True, type=Path, help="the guard policy (YAML or JSON)")
    parser.add_argument(
        "--hold",
        type=int,
        default=120,
        help="seconds a privileged call is held waiting for a person (1..3600; default 120)",
    )
    parser.add_argument("--base-url", help="Gatekeeper's URL (default: GATEKEEPER_URL)")
    parser.set_defaults(handler=run, needs_services=False)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from gatekeeper.client import ClientError
    from gatekeeper.client.environment import ClientEnvironment
    from gatekeeper.commands.request import _client_error, build_client
    from gatekeeper.mcp.guard import ClientApprovals, Guard, serve_stdio
    from gatekeeper.mcp.guard_policy import load_guard_policy

    if not 1 <= args.hold <= 3600:
        raise UsageError("--hold: expected whole seconds from 1 to 3600")
    upstream = str(args.upstream).strip()
    if not upstream or len(upstream) > 4096 or any(ord(c) < 32 for c in upstream):
        raise UsageError("--upstream: expected a URL or a command line")
    if upstream.startswith("http://") and not _loopback(upstream):
        raise UsageError("--upstream: plain http only to localhost; use https")
    policy = load_guard_policy(args.policy)
    try:
        approvals = ClientApprovals(build_client(args, ClientEnvironment.from_environ()))
    except ClientError as exc:
        return _client_error(exc)
    asyncio.run(
        serve_stdio(
            lambda session: Guard(policy, approvals, session, hold_seconds=args.hold),
            upstream,
            ClientEnvironment.for_child_process(),
        )
    )
    return 0


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")
