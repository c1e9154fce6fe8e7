"""`gatekeeper evaluate`: the gate decision for one event, printed as one JSON object.

    python -m gatekeeper evaluate --policy POLICY --event EVENT [--source github|azure-devops|generic]
        [--event-name NAME] [--evidence EVIDENCE] [--at ISO8601] [--tenant TENANT]

`--event` is the raw payload as the source sends it. Without `--source` the source is told from the
payload's shape: an object with `headers` and `body` is an Azure DevOps "Invoke Azure Function" check
request, one with `publisherId` and `eventType` an Azure DevOps service hook, one with `repository` and
`sender` a GitHub webhook; anything else is a generic API body. For GitHub the event name (the
`X-GitHub-Event` header, which a saved payload lacks) is `--event-name`, else inferred: a
`deployment_callback_url` with action `requested` is `deployment_protection_rule`, then the keys
`deployment_status`, `workflow_run`, `workflow_job` name their events. Without `--evidence`, evidence
inlined in the event (generic API, Azure DevOps check body) is used. The tenant is `--tenant`, else
the policy's `tenant`, else `local`. Exit 0 with a decision; 2 on bad input, naming the file and field.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SOURCES = ("github", "azure-devops", "generic")
_TENANT = re.compile(r"^[a-z][a-z0-9]{2,31}$")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="print the gate decision (level, approval chain, quality) for one event",
        description="Evaluate a policy for one raw event payload and print the decision as JSON.",
    )
    parser.add_argument("--policy", required=True, type=Path, help="policy document (YAML or JSON)")
    parser.add_argument("--event", required=True, type=Path, help="raw event payload as the source sends it")
    parser.add_argument("--source", choices=SOURCES, help="where the event comes from (default: from its shape)")
    parser.add_argument("--event-name", help="GitHub event name (X-GitHub-Event); default: from the payload")
    parser.add_argument("--evidence", type=Path, help="quality evidence JSON (tests, coverage, sarif, slo)")
    parser.add_argument("--at", help="evaluate at this ISO 8601 instant with offset (default: now)")
    parser.add_argument("--tenant", help="tenant id (default: the policy's tenant, else 'local')")
    parser.set_defaults(handler=run)


def _usage(message: str) -> Exception:
    from gatekeeper.commands.common import UsageError

    return UsageError(message)


def _read_json(path: Path) -> Any:
    from gatekeeper import json_bounded

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _usage(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        return json_bounded.loads(data)
    except json_bounded.JsonBoundsError as exc:
        raise _usage(f"{path}: {json_bounded.verdict(exc)}: {exc}") from None


def parse_at(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise _usage(f"--at: {value!r} is not an ISO 8601 date and time") from None
    if at.tzinfo is None:
        raise _usage(f"--at: {value!r} has no UTC offset; add one, e.g. Z or +02:00")
    return at


def detect_source(payload: Any) -> str:
    if isinstance(payload, Mapping):
        if "headers" in payload and "body" in payload:
            return "azure-devops"
        if "publisherId" in payload and "eventType" in payload:
            return "azure-devops"
        if "repository" in payload and "sender" in payload:
            return "github"
    return "generic"


def github_event_name(payload: Mapping[str, Any]) -> str | None:
    """The X-GitHub-Event a saved payload was delivered with, told from its keys."""
    if "deployment_callback_url" in payload and payload.get("action") == "requested":
        return "deployment_protection_rule"
    for key in ("deployment_status", "workflow_run", "workflow_job"):
        if key in payload:
            return key
    if "zen" in payload and "hook_id" in payload:
        return "ping"
    return None


def _parse_event(args: argparse.Namespace, payload: Any, source: str, tenant_id: str) -> Any:
    """A PipelineEvent (or Ignored) from the source's parser."""
    from gatekeeper.events.azure_devops import parse_check_request, parse_service_hook
    from gatekeeper.events.generic import parse_generic
    from gatekeeper.events.github import parse_github

    path = args.event
    if not isinstance(payload, Mapping):
        raise _usage(f"{path}: $: the event must be a JSON object")
    if source == "github":
        name = args.event_name or github_event_name(payload)
        if name is None:
            raise _usage(f"{path}: cannot tell which GitHub event this is; pass --event-name (X-GitHub-Event)")
        return parse_github(name, payload, tenant_id=tenant_id, delivery_id=None)
    if source == "azure-devops":
        if "headers" in payload and "body" in payload:
            headers = payload["headers"]
            if not isinstance(headers, Mapping):
                raise _usage(f"{path}: headers: must be an object of header names and values")
            return parse_check_request(headers, payload["body"], tenant_id=tenant_id)
        return parse_service_hook(payload, tenant_id=tenant_id)
    return parse_generic(payload, tenant_id=tenant_id)


def run(args: argparse.Namespace) -> int:
    from gatekeeper.commands.common import UsageError
    from gatekeeper.errors import GatekeeperError
    from gatekeeper.events.common import Ignored
    from gatekeeper.policy import PolicyError, evaluate, load_policy
    from gatekeeper.quality import EvidenceError, QualityEvidence, load_evidence

    at = parse_at(args.at)
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        raise _usage(f"{args.policy}: {exc.field}: {exc.detail}") from None

    if args.tenant is not None and not _TENANT.match(args.tenant):
        raise _usage(f"--tenant: {args.tenant!r} is not a tenant id (3-32 lower-case letters and digits)")
    if args.tenant is not None and policy.tenant is not None and args.tenant != policy.tenant:
        raise _usage(f"{args.policy}: tenant: the policy is for {policy.tenant!r}, not {args.tenant!r}")
    tenant_id = args.tenant or policy.tenant or "local"

    payload = _read_json(args.event)
    source = args.source or detect_source(payload)
    try:
        event = _parse_event(args, payload, source, tenant_id)
    except UsageError:
        raise  # already names the file and field
    except GatekeeperError as exc:
        raise _usage(f"{args.event}: {exc.field or '$'}: {exc.detail or exc.title}") from None
    if isinstance(event, Ignored):
        raise _usage(f"{args.event}: {event.reason}; there is nothing to evaluate")

    evidence: QualityEvidence | None
    try:
        if args.evidence is not None:
            evidence = load_evidence(args.evidence)
        else:
            evidence = QualityEvidence.from_refs(event.evidence)
    except EvidenceError as exc:
        where = args.evidence if args.evidence is not None else args.event
        raise _usage(f"{where}: {exc.field}: {exc.detail}") from None

    decision = evaluate(policy, event, evidence, at)
    json.dump(decision.to_public_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
