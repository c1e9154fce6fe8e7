"""`gatekeeper request`: ask Gatekeeper to approve one exact command, optionally wait, exit by the answer.

    python -m gatekeeper request --command "terraform apply plan.tfplan" --action infrastructure_change \\
        --environment production [--resource R] [--context-file F.json] [--plan-file plan.tfplan] [--plan-url U]
        [--idempotency-key K] [--wait [DURATION]] [--timeout PT30M] [--on-deny skip|fail] [--base-url URL] [--json]
    python -m gatekeeper request --action deploy --environment production --wait --argv ./deploy.sh --all

Exit codes (the contract every client shares): 0 approved; 4 denied, expired, cancelled or human only (with
`--on-deny skip` it is reported to Gatekeeper as skipped and printed as a notice; the code stays 4 so
`gatekeeper request ... && terraform apply` can never run a denied command); 2 bad input (the message names
the option or file and field); 3 Gatekeeper unavailable, or still pending when the local wait ended (the
request is then withdrawn); 5 still pending and `--wait` was not given; 1 anything unexpected.

Where Gatekeeper is and who asks come from the client's environment (gatekeeper/client/environment.py):
`GATEKEEPER_URL` (or `--base-url`); a credential from `GATEKEEPER_TOKEN`, `GATEKEEPER_API_KEY` with
`GATEKEEPER_TENANT`, or, in a GitHub Actions job with `id-token: write`, a GitHub OIDC token for
`GATEKEEPER_AUDIENCE` (default: the Gatekeeper URL). `GATEKEEPER_RETRY_SECONDS` (default 60) bounds how long
an unavailable Gatekeeper is retried before exit 3. Without `--idempotency-key`, a CI job's key derives from
the run attempt, job, step, command and target (a retried step finds its request again; a new run asks anew);
outside CI a random key is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatekeeper.client import ActionState, GatekeeperClient
    from gatekeeper.client.environment import ClientEnvironment

EXIT_APPROVED = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_DENIED = 4
EXIT_PENDING = 5
DEFAULT_LOCAL_WAIT = 6 * 3600  # GitHub's longest job; a wait without --timeout never outlives the runner
GRACE_SECONDS = 30  # past the action's own timeout (at most doubling it), so the server's "expired" is seen
MAX_PLAN_BYTES = 1 << 30

# Which option (or file) the user fixes for a field the client or server names.
OPTION_FOR_FIELD = {
    "command": "--command/--argv",
    "action": "--action",
    "target.environment": "--environment",
    "target.resource": "--resource",
    "idempotency_key": "--idempotency-key",
    "timeout": "--timeout",
    "wait": "--wait",
    "base_url": "--base-url (or GATEKEEPER_URL)",
    "credentials": "credentials (GATEKEEPER_TOKEN, GATEKEEPER_API_KEY + GATEKEEPER_TENANT, or GitHub OIDC)",
    "tenant": "GATEKEEPER_TENANT",
    "audience": "GATEKEEPER_AUDIENCE",
    "context.plan_url": "--plan-url",
    "context.plan_digest": "--plan-file",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "request",
        help="ask Gatekeeper to approve one exact command (exit 0 approved, 4 denied, 3 unavailable)",
        description="Request approval for one command; with --wait, wait for the decision. Exit 0 approved, "
        "4 denied/expired/cancelled, 2 bad input, 3 unavailable or timed out waiting, 5 pending, 1 unexpected.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--command", help="the exact command text the approver sees")
    what.add_argument(
        "--argv", nargs=argparse.REMAINDER, help="the command as arguments; must come last (takes the rest)"
    )
    parser.add_argument("--action", required=True, help="the action kind (policy vocabulary), e.g. data_export")
    parser.add_argument("--environment", required=True, help="the target environment, e.g. production")
    parser.add_argument("--resource", help="the target resource, e.g. a resource group")
    parser.add_argument("--context-file", type=Path, help="JSON object of context (version_tags, ticket, ...)")
    parser.add_argument("--plan-file", type=Path, help="the plan to approve; its sha256 becomes the plan digest")
    parser.add_argument("--plan-url", help="a link to the full plan")
    parser.add_argument("--idempotency-key", help="the same key asks for the same action again")
    parser.add_argument(
        "--wait",
        nargs="?",
        const="",
        metavar="DURATION",
        help="wait for the decision (long polling), at most DURATION if given (default: the timeout plus a "
        "grace, else 6 hours); still pending then: the request is withdrawn and the exit code is 3",
    )
    parser.add_argument("--timeout", help="how long approvers have (ISO 8601 like PT30M, or 30m); bounds --wait")
    parser.add_argument(
        "--on-deny",
        choices=("skip", "fail"),
        default="fail",
        help="skip: report the command as skipped and print a notice; fail: print an error (exit 4 either way)",
    )
    parser.add_argument("--base-url", help="Gatekeeper's URL (default: GATEKEEPER_URL)")
    parser.add_argument("--json", action="store_true", help="print the action's state as JSON")
    parser.set_defaults(handler=run, needs_services=False)  # a client: the app's services are not built


def _usage(message: str) -> Exception:
    from gatekeeper.commands.common import UsageError

    return UsageError(message)


def read_context_file(path: Path) -> dict[str, Any]:
    """The context object from a JSON file; errors name the file and the field."""
    from gatekeeper import json_bounded
    from gatekeeper.client import InvalidRequest
    from gatekeeper.client.api import check_context

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _usage(f"{path}: cannot be read: {exc.strerror}") from None
    if len(data) > 64 * 1024:
        raise _usage(f"{path}: $: the context file is over 64 KiB")
    try:
        document = json_bounded.loads(data)
    except json_bounded.JsonBoundsError as exc:
        raise _usage(f"{path}: {json_bounded.verdict(exc)}: {exc}") from None
    if not isinstance(document, dict):
        raise _usage(f"{path}: $: expected a JSON object of context fields")
    try:
        return check_context(document)
    except InvalidRequest as exc:
        raise _usage(f"{path}: {(exc.field or '$').removeprefix('context.')}: {exc.detail}") from None


def plan_digest(path: Path) -> str:
    """`sha256:<hex>` of the plan file, streamed (plans can be large); errors name --plan-file."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                size += len(chunk)
                if size > MAX_PLAN_BYTES:
                    raise _usage(f"--plan-file: {path}: over 1 GiB")
                digest.update(chunk)
    except OSError as exc:
        raise _usage(f"--plan-file: {path}: cannot be read: {exc.strerror}") from None
    return "sha256:" + digest.hexdigest()


def build_client(args: argparse.Namespace, env: ClientEnvironment) -> GatekeeperClient:
    """The client for the URL and credential the options and the environment give (token first, then the
    API key, then GitHub OIDC)."""
    from gatekeeper.client import GatekeeperClient, InvalidRequest
    from gatekeeper.client.api import check_base_url
    from gatekeeper.client.oidc import GitHubOidcTokenProvider

    base_url = args.base_url or env.get("GATEKEEPER_URL") or ""
    if not base_url:
        raise InvalidRequest("base_url: no Gatekeeper URL; pass --base-url or set GATEKEEPER_URL", field="base_url")
    budget = env.retry_seconds()
    if env.get("GATEKEEPER_TOKEN"):
        return GatekeeperClient(base_url, token=env.get("GATEKEEPER_TOKEN"), retry_budget=budget)
    if env.get("GATEKEEPER_API_KEY"):
        key, tenant = env.get("GATEKEEPER_API_KEY"), env.get("GATEKEEPER_TENANT")
        return GatekeeperClient(base_url, api_key=key, tenant=tenant, retry_budget=budget)
    if env.get("ACTIONS_ID_TOKEN_REQUEST_URL"):
        provider = GitHubOidcTokenProvider(
            env.get("ACTIONS_ID_TOKEN_REQUEST_URL") or "",
            env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN") or "",
            env.get("GATEKEEPER_AUDIENCE") or check_base_url(base_url),
        )
        return GatekeeperClient(base_url, token_provider=provider, retry_budget=budget)
    raise InvalidRequest("credentials: none found", field="credentials")


def summary(state: ActionState, command: str) -> str:
    """One line a person reads in a log: the outcome, level, who decided, the command, where to look."""
    shown = command if len(command) <= 120 else command[:117] + "..."
    by = f" by {state.decided_by}" if state.decided_by else ""
    why = f": {state.reason}" if state.reason else ""
    where = f" {state.approval_url}" if state.pending and state.approval_url else ""
    return f"{state.status} ({state.level or '?'}){by}: {shown}{why} [action {state.id}]{where}"


def _print(args: argparse.Namespace, state: ActionState, command: str, code: int, *, error: bool = False) -> None:
    if args.json:
        json.dump({**state.to_json(), "exit_code": code}, sys.stdout)
        sys.stdout.write("\n")
        return
    print(
        ("gatekeeper: error: " if error else "gatekeeper: ") + summary(state, command),
        file=sys.stderr if error else sys.stdout,
    )


def _client_error(exc: Exception) -> int:
    from gatekeeper.client import ClientError

    assert isinstance(exc, ClientError)
    option = OPTION_FOR_FIELD.get(exc.field or "", exc.field)
    where = f" ({option})" if option else ""
    print(f"gatekeeper: error: {exc.detail}{where}", file=sys.stderr)
    return exc.exit_code


def run(args: argparse.Namespace) -> int:
    from gatekeeper.client import ClientError, derive_idempotency_key, parse_duration
    from gatekeeper.client.api import MIN_TIMEOUT_SECONDS
    from gatekeeper.client.environment import ClientEnvironment

    env = ClientEnvironment.from_environ()
    command: str | list[str] = args.command if args.command is not None else list(args.argv or [])
    if args.argv is not None and not args.argv:
        raise _usage("--argv: give the command's arguments after it")
    context: dict[str, Any] = env.context()
    if args.context_file is not None:
        context.update(read_context_file(args.context_file))
    if args.plan_file is not None:
        context["plan_digest"] = plan_digest(args.plan_file)
    if args.plan_url:
        context["plan_url"] = args.plan_url
    shown = command if isinstance(command, str) else " ".join(command)
    try:
        timeout = parse_duration(args.timeout, minimum=MIN_TIMEOUT_SECONDS) if args.timeout else None
        local_wait = parse_duration(args.wait, field="wait") if args.wait else None
        client = build_client(args, env)
        key = args.idempotency_key
        if key is None and (ci_run := env.run()) is not None:
            key = derive_idempotency_key(command, args.action, args.environment, args.resource, ci_run)
        approval = client.request(
            command,
            args.action,
            args.environment,
            resource=args.resource,
            context=context,
            idempotency_key=key,
            timeout=timeout,
        )
        if approval.state.pending and args.wait is not None:
            if local_wait is None:
                local_wait = timeout + min(GRACE_SECONDS, timeout) if timeout else DEFAULT_LOCAL_WAIT
            try:
                approval.wait(local_wait)
            except KeyboardInterrupt:
                approval.cancel()
                _print(args, approval.state, shown, 130, error=True)
                return 130
            if approval.state.pending:
                approval.cancel()  # nobody waits for it any more; a decision that won the race still counts
                if approval.state.pending or approval.state.status == "cancelled":
                    _print(args, approval.state, shown, EXIT_UNAVAILABLE, error=True)
                    return EXIT_UNAVAILABLE
    except ClientError as exc:
        return _client_error(exc)
    state = approval.state
    if state.approved:
        _print(args, state, shown, EXIT_APPROVED)
        return EXIT_APPROVED
    if state.pending:
        _print(args, state, shown, EXIT_PENDING)
        return EXIT_PENDING
    if args.on_deny == "skip":
        from gatekeeper.client.guard import report_quietly

        report_quietly(approval, "skipped", None, f"not run: {state.status} (on-deny: skip)")
    _print(args, state, shown, EXIT_DENIED, error=args.on_deny == "fail")
    return EXIT_DENIED
