"""The demo's act on action-level approvals (issue 13), in its own function so the story stays readable.

A GitHub Actions job asks, with its OIDC token (no stored secret), to run one `terraform apply` with a plan
digest; the change advisory board denies it; the step is skipped quietly and the workflow stays green; a
script that claims it ran anyway is refused and audited. Then an automation agent, as an Entra workload
identity, asks for a data export from the reporting copy; the data protection officer approves it; it runs
and reports back. Every request goes through the real registered functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
from typing import TYPE_CHECKING, Any

import azure.functions as func

from devstack.durable_api import DurableApiServer
from devstack.github_oidc import LocalGitHubOidcIssuer
from gatekeeper.cli import main as gatekeeper_cli
from gatekeeper.security.github_oidc import GitHubOidcValidator

if TYPE_CHECKING:
    from demo.story import Demo

GITHUB_AUDIENCE = "api://gatekeeper-demo/github-actions"
OCTO_ORG_ID = 6_811_672  # the numeric id GitHub gives the octo-org organisation (repository_owner_id)
REPORTING_AGENT = "0c7f3a52-1d4e-4b8a-9f60-7e2d5c3b1aa7"  # the agent's managed identity (object id)


class _Client:
    """What a step's client sends: the routes of the real function app, with one credential."""

    def __init__(self, demo: Demo, durable: DurableApiServer, headers: dict[str, str]):
        self._demo, self._durable, self._headers = demo, durable, headers

    def _request(self, method: str, path: str, body: Any = None, **extra: Any) -> func.HttpRequest:
        raw = json.dumps(body).encode() if body is not None else b""
        headers = {**self._headers, **({"Content-Type": "application/json"} if body is not None else {})}
        return func.HttpRequest(method, f"http://localhost:7071/api/{path}", headers=headers, body=raw, **extra)

    def request(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = self._demo.handlers["action_request"](self._request("POST", "actions", body))
        return response.status_code, json.loads(response.get_body())

    def status(self, action_id: str, wait: int = 0) -> dict[str, Any]:
        request = self._request(
            "GET", f"actions/{action_id}", params={"wait": str(wait)}, route_params={"action_id": action_id}
        )
        handler = self._demo.handlers["action_status"]
        response = asyncio.run(handler(req=request, client=self._durable.client_binding))
        return dict(json.loads(response.get_body()))

    def report(self, action_id: str, outcome: str, **more: Any) -> tuple[int, dict[str, Any]]:
        request = self._request(
            "POST", f"actions/{action_id}/report", {"outcome": outcome, **more}, route_params={"action_id": action_id}
        )
        response = self._demo.handlers["action_report"](request)
        return response.status_code, json.loads(response.get_body())


def action_approvals(demo: Demo) -> None:
    from demo.story import ENTRA_TENANT, TENANT, _show_decision, _show_new_notifications

    t = demo.timeline
    runtime = demo.stack.services
    t.section("Action approvals: a step asks for one exact command and skips it quietly when denied")
    with LocalGitHubOidcIssuer() as github_oidc, DurableApiServer() as durable:
        # The deployment's settings, as GATEKEEPER_GITHUB_OIDC_AUDIENCE/_ISSUER and GATEKEEPER_ENTRA_AUDIENCE
        # would give them; the action service is (re)built over them and the demo's clock.
        runtime.github_oidc = GitHubOidcValidator(GITHUB_AUDIENCE, github_oidc.issuer)
        runtime.token_validator = demo.gates.services.token_validator
        runtime.clock = demo.timeline.clock.now
        runtime.__dict__.pop("actions", None)
        conn = ["--storage-connection", demo.stack.azurite.connection_string]
        with contextlib.redirect_stdout(io.StringIO()):  # the timeline says it once
            code = gatekeeper_cli(["tenants", "github-oidc", TENANT, "--owner-id", str(OCTO_ORG_ID), *conn])
        runtime.registry.invalidate()
        t.say(f"gatekeeper tenants github-oidc {TENANT} --owner-id {OCTO_ORG_ID} (octo-org): exit {code}")

        job = _Client(
            demo,
            durable,
            {
                "Authorization": "Bearer "
                + github_oidc.issue(
                    GITHUB_AUDIENCE,
                    repository="octo-org/infra",
                    repository_owner_id=OCTO_ORG_ID,
                    actor="Codertocat",
                    environment="production",
                    run_id=5123,
                )
            },
        )
        plan = hashlib.sha256(b"terraform plan: 3 to add, 1 to change, 2 to destroy").hexdigest()
        ask = {
            "command": "terraform apply -auto-approve plan.tfplan",
            "action": "infrastructure_change",
            "target": {"environment": "production", "resource": "rg-contoso-prod"},
            "context": {
                "repository": "octo-org/infra",
                "ref": "refs/heads/main",
                "commit": "4f2a9c1e8b7d",
                "run_url": "https://github.com/octo-org/infra/actions/runs/5123",
                "ticket": "CHG0012345",
                "plan_digest": f"sha256:{plan}",
                "plan_url": "https://github.com/octo-org/infra/actions/runs/5123/artifacts/plan",
            },
            "idempotency_key": "octo-org.infra:5123:apply",
            "timeout": "PT30M",
        }
        status, answer = job.request(ask)
        action_id = answer["id"]
        t.say(
            f"GitHub Actions job (OIDC token, actor Codertocat) asks to run `{ask['command']}` "
            f"with plan sha256:{plan[:12]}...: {status} {answer['status']} {answer['level']}"
        )
        again, repeated = job.request(ask)
        t.say(f"the step retries with the same idempotency key: {again}, same action: {repeated['id'] == action_id}")
        demo.dispatch()
        _show_decision(demo, action_id)
        _show_new_notifications(demo)
        waited = job.status(action_id, wait=1)
        t.say(f"the step long-polls GET /api/actions/{{id}}?wait=1: {waited['status']}")
        status, _ = demo.decide(
            action_id, "anna.jansen@contoso.com", "reject", "Plan destroys two subnets; not in the change request."
        )
        t.say(f"anna.jansen (change advisory board) rejects the exact command: {status}")
        final = job.status(action_id, wait=5)
        t.say(f"the step's poll returns at once: {final['status']} ({final['reason']})")
        t.say("on-deny: skip -> action denied: step skipped, exit 0; the workflow carries on green")
        code, _ = job.report(action_id, "skipped", detail="denied by the change advisory board")
        t.say(f"the step reports `skipped`: {code}")
        code, refused = job.report(action_id, "executed", exit_code=0)
        t.say(f"a script that claims it ran the denied command anyway: {code} {refused.get('title')} (audited)")

        agent = _Client(
            demo,
            durable,
            {
                "Authorization": "Bearer "
                + demo.issuer.issue(REPORTING_AGENT, ENTRA_TENANT, "api://gatekeeper-demo", app_only=True)
            },
        )
        export = {
            "command": ["pg_dump", "--table=orders", "--file=/exports/orders-2026-11.sql", "reporting-db"],
            "action": "data_export",
            "target": {"environment": "reporting", "resource": "reporting-db"},
            "context": {"ticket": "REQ-8812"},
            "idempotency_key": "reporting-agent.orders-2026-11",
        }
        status, answer = agent.request(export)
        export_id = answer["id"]
        t.say(
            "reporting agent (Entra workload identity) asks for a data export: "
            f"{status} {answer['status']} {answer['level']}"
        )
        demo.dispatch()
        _show_decision(demo, export_id)
        _show_new_notifications(demo)
        status, _ = demo.decide(export_id, "sara.visser@contoso.com", "approve", "Orders only, no personal data.")
        t.say(f"sara.visser (data protection) approves: {status}")
        final = agent.status(export_id, wait=5)
        t.say(f"the agent's poll: action {final['status']} by {final['decided_by']}; it runs the export")
        code, _ = agent.report(export_id, "executed", exit_code=0)
        t.say(f"the agent reports `executed` (exit 0): {code}")
        for record in runtime.audit_for(TENANT).records():
            if record.instance_id in (action_id, export_id) and record.kind.startswith(("action_", "approval_")):
                t.say(f"audit #{record.seq}: {record.kind} by {record.actor[:40]}", indent=1)
