"""`make demo`: the whole gate on this machine, printed as a timeline.

Everything that runs is the product's own code: the real trigger functions receive signed requests, the
real dispatcher dedupes them out of Azurite's queue, the real orchestrators run through the Durable SDK's
replay code in the local runner, approvers decide through the real decision route with Entra-style tokens,
and callbacks go to local stand-ins that speak GitHub's, Azure DevOps' and a CI's wire format. Only the
clock is ours, so an 8-hour approval timeout takes no time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from demo.actions import action_approvals
from demo.agents import agent_guard
from demo.psa import psa_write_back
from demo.recommend import policy_recommendations, seed_and_fit, show_recommendation
from demo.report import report
from demo.slack import DemoSlack, slack_approval, start_slack
from demo.teams import DemoTeams, start_teams, write_card
from devstack.azure_devops import LocalAzureDevOpsServer
from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.github import LocalGitHubServer
from devstack.runner import ManualClock
from devstack.stack import LocalStack, start_local_stack
from devstack.webhook import LocalWebhookReceiver
from functions.http import problem_body, status_of
from gatekeeper.cli import main as gatekeeper_cli
from gatekeeper.errors import GatekeeperError
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.ingest.queue import decode_message
from gatekeeper.ingest.service import sign_envelope
from gatekeeper.integrations.github_app import rsa_jwk
from gatekeeper.integrations.notify import FanOutNotifier
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.policy.store import PolicyStore
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import build_pipeline_callbacks, set_services
from gatekeeper.settings import Settings
from gatekeeper.tenancy.identities import IdentityLink, IdentityMap
from gatekeeper.tenancy.model import TenantRecord

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's, installed by make demo / make bootstrap
EXAMPLES = ROOT / "examples"
TENANT = "contoso"
ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUDIENCE = "api://gatekeeper-demo"
GITHUB_APP_ID = "424242"
JOB_TOKEN = "demo-job-access-token"  # noqa: S105 - the local Azure DevOps stand-in's job token
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # Monday 10:00 in Amsterdam: inside business hours

DEVELOPER_OID = "0c7f3a52-1d4e-4b8a-9f60-7e2d5c3b1a0d"  # Codertocat on GitHub
APPROVERS = {
    "lisa.devries@contoso.com": "0c7f3a52-1d4e-4b8a-9f60-7e2d5c3b1a01",
    "anna.jansen@contoso.com": "0c7f3a52-1d4e-4b8a-9f60-7e2d5c3b1a02",
    "sara.visser@contoso.com": "0c7f3a52-1d4e-4b8a-9f60-7e2d5c3b1a03",
}
SLACK_ONLY = ("piet.bakker@contoso.com", "tom.mulder@contoso.com")  # approvers the demo's Slack knows as well


@dataclass
class Timeline:
    """Prints each step as it happens and keeps a copy for demo-output/timeline.txt."""

    clock: ManualClock
    lines: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        self._emit("")
        self._emit(f"== {title}")

    def say(self, text: str, indent: int = 0) -> None:
        stamp = self.clock.now().strftime("%H:%M")
        self._emit(f"{stamp}  {'  ' * indent}{text}")

    def _emit(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)


@dataclass
class Demo:
    stack: LocalStack
    gates: LocalGates
    issuer: LocalEntraIssuer
    github: LocalGitHubServer
    devops: LocalAzureDevOpsServer
    receiver: LocalWebhookReceiver
    outbox: OutboxNotifier
    timeline: Timeline
    received: Counter[str] = field(default_factory=Counter)
    handlers: dict[str, Any] = field(default_factory=dict)
    functions: tuple[Any, ...] = ()
    out_dir: Path = Path("demo-output")
    webhooks_shown: int = 0
    seen_notifications: set[str] = field(default_factory=set)
    teams: DemoTeams | None = None
    history: tuple[int, int] | None = None  # seq range of the seeded history in the audit log

    # -- sending events the way the sources do --------------------------------------------------------

    def post(self, route: str, function: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        request = func.HttpRequest("POST", f"http://localhost:7071/api/{route}", headers=headers, body=body)
        response = self.handlers[function](request)
        answer = json.loads(response.get_body() or b"{}")
        self.received["rejected" if response.status_code >= 400 else answer.get("status", "accepted")] += 1
        return response.status_code, answer

    def github_event(self, event: str, payload: dict, *, delivery: str | None = None, forge: bool = False) -> tuple:
        body = json.dumps(payload).encode()
        secret = b"not-the-secret" if forge else self.stack.secret("env:GK_CONTOSO_GITHUB_SECRET").encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
        }
        return self.post("github/webhook", "github_webhook", body, headers)

    def generic_event(self, document: dict) -> tuple:
        headers = {
            "Content-Type": "application/json",
            "X-Gatekeeper-Tenant": TENANT,
            "x-functions-key": self.stack.secret("env:GK_CONTOSO_API_KEY"),
        }
        return self.post("events", "generic_events", json.dumps(document).encode(), headers)

    def dispatch(self) -> list[Any]:
        """What the queue trigger does for each waiting message, then let the orchestrations run."""
        queue = self.stack.services.sink.queue
        results = []
        for message in queue.receive_messages(max_messages=32):
            runtime = self.stack.services
            queued = decode_message(runtime.sealer, message.content.decode(), runtime.large_events)
            results.append(self.gates.dispatcher.dispatch(queued.event, queued.event_id))
            if queued.blob is not None:
                runtime.large_events.delete(queued.blob)
            queue.delete_message(message)
        self.gates.runner.run_until_idle()
        return results

    # -- people ------------------------------------------------------------------------------------------

    def decide(self, instance_id: str, upn: str, decision: str, comment: str) -> tuple[int, dict]:
        # Tokens are checked against the wall clock (as Entra's are); the gate's own clock is the manual one.
        token = self.issuer.issue(APPROVERS[upn], ENTRA_TENANT, AUDIENCE, upn=upn, name=upn.split("@")[0])
        try:
            return self.gates.decide(instance_id, {"Authorization": f"Bearer {token}"}, decision, comment)
        except GatekeeperError as problem:  # the route answers problem+json; the demo shows status and title
            return status_of(problem), problem_body(problem)

    def status(self, instance_id: str) -> str:
        status = self.gates.runner.status(instance_id)
        output = status.output if status else None
        if not isinstance(output, dict):
            return str(status.runtime_status if status else "unknown")
        callback = "pipeline called back" if output.get("callback_ok") else "CALLBACK FAILED (audited, alerted)"
        return f"{output.get('level')} {output.get('status')}: {output.get('reason')}; {callback}"

    def new_webhook_calls(self) -> list[str]:
        lines = []
        for delivery in self.receiver.deliveries[self.webhooks_shown :]:
            body = delivery["body"]
            lines.append(
                f"CI webhook called back, signature verified: {body.get('event')} {body.get('state')} "
                f"({body.get('comment')})"
            )
        self.webhooks_shown = len(self.receiver.deliveries)
        return lines


def run(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    stale_files = (
        "audit.bundle.json",
        "audit.oscal.json",
        "audit.jsonl",
        "checkpoint-public-key.pem",
        "approval-page.png",
        "teams-card.json",
        "slack-request.json",
        "slack-decided.json",
        "report.html",
        "report.json",
        "report.png",
        "health.json",
        "smoke-test.txt",
        "psa-tickets.json",
        "recommendation-model.json",
        "policy-recommendations.txt",
        "mcp-guard-exchange.json",
        "mcp-guard-policy.yaml",
    )
    for stale in ("outbox", *stale_files):
        target = out_dir / stale
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    key_dir = Path(tempfile.mkdtemp(prefix="gatekeeper-demo-keys-"))
    clock = ManualClock(START)
    timeline = Timeline(clock)
    timeline.section("Starting a local Gatekeeper: Azurite, local tenant keys, local GitHub / Azure DevOps / CI")
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    github = LocalGitHubServer(GITHUB_APP_ID, app_key.public_key(), installation_id=41273098).start()
    devops = LocalAzureDevOpsServer(JOB_TOKEN).start()
    stack = start_local_stack(EXAMPLES / "tenants.yaml", key_dir)
    try:
        receiver = LocalWebhookReceiver(stack.secret("env:GK_CONTOSO_CALLBACK_SECRET").encode()).start()
        with LocalEntraIssuer() as issuer, ExitStack() as local_teams:
            teams = start_teams(
                local_teams,
                users=APPROVERS,
                storage=stack.services.storage,
                cipher=stack.services.sealer,
                entra_tenant=ENTRA_TENANT,
                base_url="http://localhost:7071",
                not_installed=(APPROVERS["sara.visser@contoso.com"],),
            )
            slack = start_slack(local_teams, stack, [*APPROVERS, *SLACK_ONLY], teams.directory)
            demo = _assemble(
                stack, clock, timeline, issuer, github, devops, receiver, app_key, out_dir, teams, slack=slack
            )
            demo.history = seed_and_fit(demo, TENANT, clock.now())
            production_gate = _ingestion(demo)
            _gates(demo, production_gate)
            _rollback(demo, app_key)
            action_approvals(demo)
            sara = "sara.visser@contoso.com"
            slack_approval(
                demo,
                slack,
                lambda: _generic(demo, "export-2207", environment="reporting", action="data_export"),
                sara,
                APPROVERS[sara],
                "lisa.devries@contoso.com",
            )
            psa_write_back(demo)
            agent_guard(demo)
            _audit(demo, out_dir, key_dir)
            report(demo, TENANT)
        receiver.stop()
    finally:
        set_services(None)
        github.stop()
        devops.stop()
        stack.stop()
        shutil.rmtree(key_dir, ignore_errors=True)  # private keys never outlive the demo
    (out_dir / "timeline.txt").write_text("\n".join(timeline.lines) + "\n")
    written = (
        "timeline.txt, outbox/, audit.*, checkpoint-public-key.pem, approval-page.png, teams-card.json, "
        "psa-tickets.json, recommendation-model.json, policy-recommendations.txt, mcp-guard-exchange.json, "
        "mcp-guard-policy.yaml, slack-request.json, slack-decided.json, report.*"
    )
    print(f"\nEverything above is in {out_dir}/ ({written}).")
    from demo.install import install_check

    checked = install_check(out_dir)
    print(f"The install check is in {out_dir}/ (health.json, smoke-test.txt).")
    return checked


def _assemble(
    stack, clock, timeline, issuer, github, devops, receiver, app_key, out_dir, teams, *, slack: DemoSlack
) -> Demo:
    from devstack.functions_host import app_functions

    runtime = stack.services
    set_services(runtime)
    # The local Azure DevOps stand-in plays the organisation whose checks call us.
    record = runtime.registry.get(TENANT)
    assert record is not None
    runtime.registry.import_records(
        [
            TenantRecord.model_validate(
                {
                    **record.model_dump(),
                    "identities": (*record.identities, f"azure-devops:org:{devops.plan_url}"),
                    # The local CI receiver stands in for https://ci.contoso.com/hooks/ (loopback http).
                    "callback_url_prefixes": (*record.callback_url_prefixes, receiver.url + "/ci/"),
                }
            )
        ]
    )
    from gatekeeper.audit.signing import LocalCheckpointKey

    runtime.checkpoint_signer = LocalCheckpointKey(str(stack.key_dir), "audit-checkpoint").signer()
    revision = PolicyStore(runtime.storage, TENANT).publish(
        (EXAMPLES / "policy.yaml").read_text(), published_by="admin@contoso.com"
    )
    runtime.audit_for(TENANT).append(
        "policy_changed",
        "admin@contoso.com",
        "",
        f"policy revision {revision.revision}",
        {"revision": revision.revision, "fingerprint": revision.fingerprint},
        at=clock.now(),
    )
    # The developer who deploys from GitHub is a person in Entra too: the identity map says so (audited).
    IdentityMap(runtime.storage, TENANT, runtime.sealer).link(
        IdentityLink(external="github:login:Codertocat", oid=DEVELOPER_OID, note="demo developer"),
        runtime.audit_for(TENANT),
        by="admin@contoso.com",
    )
    outbox = OutboxNotifier(out_dir / "outbox", portal_url="http://localhost:7071")
    env = {
        "GATEKEEPER_GITHUB_APP_ID": GITHUB_APP_ID,
        "GATEKEEPER_GITHUB_API_URL": github.api_url,
        "GATEKEEPER_CALLBACK_MAX_ATTEMPTS": "3",
    }
    callbacks = build_pipeline_callbacks(
        Settings.from_environ(env),
        signer=CryptographyClient.from_jwk(rsa_jwk(app_key)),
        webhook_secret=runtime.callback_secret,
        allow_loopback_http=True,
        github_installations=runtime.github_installations,
        webhook_allowed=runtime.webhook_url_allowed,
    )
    validator = EntraTokenValidator(AUDIENCE, issuer.authority_host, allowed_tenants=runtime.is_registered_entra_tenant)
    gates = local_gates(
        runtime.storage,
        runtime.sealer,
        decider=PolicyDecider(runtime.policy_for),
        audit_for=runtime.audit_for,
        # the outbox stands in for the Graph feed and mail
        notifier=FanOutNotifier([outbox, teams.cards, slack.notifier]),
        callbacks=callbacks,
        entra_tenants_for=runtime.entra_tenants_for,
        token_validator=validator,
        operators_for=runtime.operators_for,
        clock=clock,
        settings=Settings(trust_easyauth_header=False),
    )
    timeline.say(
        f"tenant {TENANT}: policy revision {revision.revision} published "
        f"(fingerprint {revision.fingerprint[:12]}), {len(record.identities) + 1} source identities"
    )
    functions = app_functions()  # the host indexes the app once
    handlers = {f.get_function_name(): f.get_user_function() for f in functions}
    return Demo(
        stack,
        gates,
        issuer,
        github,
        devops,
        receiver,
        outbox,
        timeline,
        handlers=handlers,
        functions=functions,
        teams=teams,
        out_dir=out_dir,
    )


# -- act 1: ingestion ---------------------------------------------------------------------------------------


def _ingestion(demo: Demo) -> str:
    """Act 1; returns the production gate it started, which act 2 follows."""
    t = demo.timeline
    t.section("1. Events come in: authenticated, normalised, deduplicated")
    dpr = json.loads((EXAMPLES / "events/github-deployment-protection-rule.json").read_text())
    status, answer = demo.github_event("deployment_protection_rule", dpr, delivery="b1f7c0de-0001")
    t.say(
        f"GitHub deployment_protection_rule for {dpr['repository']['full_name']} -> production: {status} "
        f"{answer['status']} (gate {answer.get('instanceId')})"
    )
    production_gate = str(answer["instanceId"])
    status, answer = demo.github_event("deployment_protection_rule", dpr, delivery="b1f7c0de-0001")
    t.say(f"the same delivery redelivered from GitHub's UI: {status} {answer['status']} (dedupe happens next)")
    status, answer = demo.github_event("deployment_protection_rule", dpr, forge=True)
    t.say(f"the same payload with a forged X-Hub-Signature-256: {status} {answer.get('title')}")
    suite = json.loads((ROOT.parent / "shared/fixtures/github/check_suite.completed.payload.json").read_text())
    status, answer = demo.github_event("check_suite", suite)
    t.say(f"GitHub check_suite: {status} {answer['status']}: {answer.get('reason')}")
    run = json.loads((ROOT.parent / "shared/fixtures/github/workflow_run.completed.payload.json").read_text())
    status, answer = demo.github_event("workflow_run", run)
    t.say(f"GitHub workflow_run completed ({run['workflow_run']['conclusion']}): {status} {answer['status']}")
    hook = (ROOT.parent / "shared/fixtures/azure-devops/ms.vss-pipelines.run-state-changed-event.json").read_bytes()
    basic = base64.b64encode(b"gatekeeper:" + demo.stack.secret("env:GK_CONTOSO_ADO_HOOK_SECRET").encode()).decode()
    status, answer = demo.post(
        "azure-devops/service-hooks",
        "azure_devops_service_hook",
        hook,
        {"Content-Type": "application/json", "Authorization": f"Basic {basic}"},
    )
    t.say(f"Azure DevOps service hook run-state-changed: {status} {answer['status']}")
    for name in ("connectwise.ticket-approved.json", "ninjarmm.condition-triggered.json"):
        message = (ROOT / "tests/fixtures/connectors" / name).read_bytes()
        connector = json.loads(message)
        connector["account"] = {"connectwise": "contoso", "ninjarmm": "42"}[connector["connector"]]
        if connector["connector"] == "connectwise":
            connector["payload"]["CompanyId"] = "contoso"
        signed = sign_envelope(demo.stack.secret("env:GK_CONTOSO_CONNECTOR_SECRET").encode(), connector)
        demo.handlers["connector_events"](func.QueueMessage(id=name, body=json.dumps(signed).encode()))
        t.say(f"connector queue message from {connector['connector']}: accepted (signed over the whole envelope)")
        demo.received["accepted"] += 1
    stranger = {"connector": "autotask", "account": "99999999", "payload": {"Id": 1}}
    demo.handlers["connector_events"](func.QueueMessage(id="stranger", body=json.dumps(stranger).encode()))
    letters = demo.stack.services.dead_letters.list("connector-events")
    t.say(f"connector message from an unregistered Autotask account: dead-lettered ({letters[-1].reason})")
    demo.received["dead-lettered"] += 1
    results = demo.dispatch()
    outcome = Counter(r.disposition.value for r in results)
    t.say(f"dispatcher: {dict(outcome)} (the redelivery was recognised by its business key, not its delivery id)")
    t.say(f"received {sum(demo.received.values())}: {dict(demo.received)}")
    return production_gate


# -- act 2: the gates ---------------------------------------------------------------------------------------


def _gates(demo: Demo, gate: str) -> None:
    t = demo.timeline
    t.section("2. L2: a production deployment waits for two approval stages")
    _show_decision(demo, gate)
    _show_new_notifications(demo)
    status, _ = demo.decide(gate, "lisa.devries@contoso.com", "approve", "Release notes reviewed; go.")
    t.say(f"lisa.devries approves (release managers, 1 of 2 needed): {status}")
    _show_new_notifications(demo)
    _screenshot_page(demo, gate, "anna.jansen@contoso.com")
    demo.timeline.clock.advance(timedelta(minutes=25))
    status, _ = demo.decide(gate, "anna.jansen@contoso.com", "approve", "CAB: low risk, rollback plan attached.")
    t.say(f"anna.jansen approves (change advisory board, 2 of 3 needed): {status}")
    status, body = demo.decide(gate, "anna.jansen@contoso.com", "approve", "again")
    t.say(f"anna.jansen votes again: {status} {body.get('title')}")
    assert demo.teams is not None
    for line in demo.teams.sent():
        t.say(line, indent=1)
    names = {oid: upn.split("@")[0] for upn, oid in APPROVERS.items()}
    installed = ", ".join(sorted(names.get(oid, oid) for oid in demo.teams.graph.installed_apps))
    t.say(f"Teams app installed through Graph for {installed} (the bot could not open a chat before)", indent=1)
    sara = APPROVERS["sara.visser@contoso.com"]
    status, card = demo.teams.press(demo.gates.decisions, gate, sara, "Sara Visser", "approve")
    demo.gates.runner.run_until_idle()
    write_card(demo.out_dir / "teams-card.json", card)
    notice = re.sub(r"\\(.)", r"\1", card["body"][0]["items"][0]["text"])
    t.say(f"sara.visser approves from the Teams card (a signed adaptiveCard/action invoke): {status} '{notice}'")
    t.say(f"-> quorum reached; the card she now sees is in {demo.out_dir / 'teams-card.json'}", indent=1)
    for line in demo.github.report():
        t.say(line)
    t.say(f"gate outcome: {demo.status(gate)}")
    for line in demo.teams.sent():
        t.say(line, indent=1)

    t.section("3. L0: a CI build runs fully automated")
    build = _generic(demo, "build-1042", environment="ci", action="build")
    t.say(f"outcome: {demo.status(build)}")

    t.section("4. L1: a staging deployment from Azure DevOps runs, then people are told")
    check = json.loads((EXAMPLES / "events/azure-devops-check.request.json").read_text())
    headers = dict(check["headers"], PlanUrl=demo.devops.plan_url, AuthToken=JOB_TOKEN)
    headers["X-Gatekeeper-Check-Secret"] = demo.stack.secret("env:GK_CONTOSO_ADO_CHECK_SECRET")
    status, answer = demo.post("azure-devops/checks", "azure_devops_check", json.dumps(check["body"]).encode(), headers)
    t.say(f"Azure DevOps check for staging: {status} (acknowledged at once; the job token is sealed)")
    demo.dispatch()
    _show_decision(demo, answer["instanceId"])
    for line in demo.devops.report():
        t.say(line)
    _show_new_notifications(demo)
    t.say(f"outcome: {demo.status(answer['instanceId'])}")

    t.section("5. L3: a privilege escalation is refused to automation and handed to a person")
    pim = _generic(demo, "pim-77", environment="production", action="privilege_escalation")
    t.say(f"outcome: {demo.status(pim)}")

    t.section("6. L2 that nobody answers: the timeout denies and the pipeline is told")
    infra = _generic(demo, "tf-apply-311", environment="production", action="infrastructure_change")
    t.say("8 hours pass without a decision ...")
    demo.timeline.clock.advance(timedelta(hours=8, minutes=1))
    demo.gates.runner.run_until_idle()
    for line in demo.new_webhook_calls():
        t.say(line)
    t.say(f"outcome: {demo.status(infra)}")


def _screenshot_page(demo: Demo, gate: str, upn: str) -> None:
    """The approval page as `upn` sees it (GET /api/approvals/{id}/page through the registered function, served
    over HTTP on this machine), rendered by headless Chromium into demo-output/approval-page.png."""
    out = demo.out_dir / "approval-page.png"
    if not CHROMIUM.exists():
        demo.timeline.say(f"approval page screenshot skipped: {CHROMIUM} is missing (make demo installs it)")
        return
    from playwright.sync_api import sync_playwright

    from devstack.functions_host import LocalFunctionsHost
    from gatekeeper.gates.page import page_path

    token = demo.issuer.issue(APPROVERS[upn], ENTRA_TENANT, AUDIENCE, upn=upn, name=upn.split("@")[0])
    set_services(demo.gates.services)  # the gate's clock and the local token validator, for the host's threads
    try:
        with LocalFunctionsHost(demo.functions) as host, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
            context = browser.new_context(
                viewport={"width": 1100, "height": 900}, extra_http_headers={"Authorization": f"Bearer {token}"}
            )
            page = context.new_page()
            response = page.goto(host.url + page_path(gate))
            status = response.status if response else 0
            buttons = page.get_by_role("button").all_inner_texts()
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        set_services(demo.stack.services)
    demo.timeline.say(
        f"approval page for {upn.split('@')[0]} in headless Chromium: {status}, buttons {buttons} -> {out.name}",
        indent=1,
    )


def _generic(demo: Demo, run_id: str, *, environment: str, action: str) -> str:
    document = {
        "kind": "gate_request",
        "action": action,
        "environment": environment,
        "repository": "contoso/platform",
        "ref": "refs/heads/main",
        "commit": "4f2a9c1e8b7d",
        "actor": "dev@contoso.com",
        "runId": run_id,
        "callbackUrl": demo.receiver.url + "/ci/gatekeeper",
    }
    status, answer = demo.generic_event(document)
    demo.timeline.say(f"{action} of contoso/platform to {environment} via the generic API: {status}")
    demo.dispatch()
    _show_decision(demo, answer["instanceId"])
    _show_new_notifications(demo)
    for line in demo.new_webhook_calls():
        demo.timeline.say(line)
    return str(answer["instanceId"])


def _show_decision(demo: Demo, instance_id: str) -> None:
    """What the policy decided for this gate, read back from the audit log (where the decision lives)."""
    for record in demo.stack.services.audit_for(TENANT).records():
        if record.instance_id == instance_id and record.kind == "decision" and "quality" in record.data:
            data = record.data
            reason = (data.get("reasons") or [""])[0]
            demo.timeline.say(f"policy: {data['level']} by rule {data.get('rule')}: {reason}", indent=1)
            show_recommendation(demo, data)
            for stage in (data.get("approval") or {}).get("stages", []):
                demo.timeline.say(
                    f"stage {stage['name']}: {stage['quorum']} of {', '.join(stage['approvers'])}, "
                    f"timeout {stage['timeout']} then {stage['on_timeout']}",
                    indent=2,
                )


def _show_new_notifications(demo: Demo) -> None:
    for entry in demo.outbox.read_all(TENANT):
        note = entry["notification"]
        key = json.dumps(entry, sort_keys=True)
        if key in demo.seen_notifications:
            continue
        demo.seen_notifications.add(key)
        demo.timeline.say(f"outbox: {note['kind']} to {', '.join(note['recipients'])}: {note['title']}", indent=1)


# -- act 3: after the deployment: the watch and the rollback -------------------------------------------------


def _rollback(demo: Demo, app_key: rsa.RSAPrivateKey) -> None:
    """A production deployment is watched; the next one goes bad and is rolled back to the last good one."""
    from devstack.health import LocalHealthServer
    from gatekeeper.integrations.github_app import GitHubApp, GitHubWorkflows
    from gatekeeper.integrations.retry import RetryPolicy
    from gatekeeper.rollback.probes import HttpHealthProbe, Probes

    t = demo.timeline
    runtime, services = demo.stack.services, demo.gates.services
    t.section("7. After the deployment: watched, gone bad, rolled back (L1: roll back, then tell people)")
    health = LocalHealthServer().start()
    try:
        policy = (EXAMPLES / "policy.yaml").read_text() + ROLLBACK_POLICY.format(health=health.health_url)
        revision = PolicyStore(runtime.storage, TENANT).publish(policy, published_by="admin@contoso.com")
        t.say(f"policy revision {revision.revision}: production deployments are watched 10 minutes, probed each minute")
        services.health_probe = Probes(HttpHealthProbe(allow_loopback_http=True))  # the local service is http
        services.github_workflows = GitHubWorkflows(
            GitHubApp(
                GITHUB_APP_ID,
                CryptographyClient.from_jwk(rsa_jwk(app_key)),
                demo.github.api_url,
                policy=RetryPolicy(max_attempts=3),
                allow_loopback_http=True,
                installations=runtime.github_installations,
            )
        )
        template = json.loads((ROOT.parent / "shared/fixtures/github/deployment_status.payload.json").read_text())

        def deployed(run: int, ref: str, sha: str, state: str = "success") -> str:
            payload = json.loads(json.dumps(template))
            payload["deployment"].update(id=run, ref=ref, sha=sha, environment="production")
            payload["deployment_status"].update(state=state, environment="production")
            status, _ = demo.github_event("deployment_status", payload)
            (result,) = demo.dispatch()
            t.say(f"GitHub deployment_status {state} for {ref}: {status} -> watch {result.instance_id}")
            return str(result.instance_id)

        next_morning = datetime.combine(demo.timeline.clock.now().date() + timedelta(days=1), datetime.min.time(), UTC)
        demo.timeline.clock.advance(next_morning + timedelta(hours=8) - demo.timeline.clock.now())
        demo.gates.runner.run_until_idle()
        t.say("the next morning, inside business hours (after hours even a rollback would need approval)")
        good = deployed(7001, "v1.4.0", "1a2b3c4d5e6f")
        demo.timeline.clock.advance(timedelta(minutes=11))
        demo.gates.runner.run_until_idle()
        t.say(f"10 minutes of healthy probes: {_watch_outcome(demo, good)}; v1.4.0 is the last known good release")
        health.unhealthy_from = health.probes + 1  # v1.5.0 answers 503 from its second probe on
        bad = deployed(7002, "v1.5.0", "9f8e7d6c5b4a")
        for _ in range(4):
            demo.timeline.clock.advance(timedelta(minutes=1))
            demo.gates.runner.run_until_idle()
        for record in runtime.audit_for(TENANT).records():
            if record.instance_id == bad and record.kind in ("health_check", "rollback"):
                what = record.data.get("result") or record.data.get("verdict")
                extra = record.data.get("reason") or "; ".join(
                    f"{p['name']}: {p['detail']}" for p in record.data.get("probes", []) if p["outcome"] != "pass"
                )
                t.say(f"{record.kind}: {what}{' - ' + extra if extra else ''}"[:160], indent=1)
        for dispatch in demo.github.dispatches:
            t.say(
                f"GitHub was asked: workflow_dispatch {dispatch['workflow']} on {dispatch['owner']}/{dispatch['repo']} "
                f"ref {dispatch['body']['ref']} inputs {dispatch['body']['inputs']}"
            )
        _show_new_notifications(demo)
        t.say(f"watch outcome: {_watch_outcome(demo, bad)}")
    finally:
        health.stop()


def _watch_outcome(demo: Demo, watch: str) -> str:
    status = demo.gates.runner.status(watch)
    output = status.output if status else None
    return str(output.get("outcome")) if isinstance(output, dict) else str(status.runtime_status if status else "?")


ROLLBACK_POLICY = """
watch:
  - environments: [production]
    window: PT10M
    interval: PT1M
    failure_limit: 1
    probes:
      - name: health
        url: {health}
        json: {{path: status, equals: ok}}
    rollback:
      level: L1
      target: {{type: github, workflow: rollback.yml, inputs: {{version: "{{ref}}"}}}}
"""


# -- act 4: the audit trail ---------------------------------------------------------------------------------


def _audit(demo: Demo, out_dir: Path, key_dir: Path) -> None:
    t = demo.timeline
    t.section("8. The audit trail: exported, and verified offline")
    log = demo.stack.services.audit_for(TENANT)
    log.checkpoint(force=True)
    first, last = demo.history or (-1, -1)
    for record in log.records():
        if first <= record.seq <= last:  # the seeded history (act 0): one line, not hundreds
            if record.seq == first:
                t.say(f"#{first}-#{last} the two months of history from act 0 ({last - first + 1} entries)", indent=1)
            continue
        t.say(f"#{record.seq:<3} {record.kind:<20} {record.actor[:36]:<36} {record.subject or ''}"[:150], indent=1)
    os.environ.update(
        {
            "GATEKEEPER_STORAGE_CONNECTION": demo.stack.azurite.connection_string,
            "GATEKEEPER_KEY_MODE": "local",
            "GATEKEEPER_LOCAL_KEY_DIR": str(key_dir),
        }
    )
    for fmt, name in (("bundle", "audit.bundle.json"), ("oscal", "audit.oscal.json"), ("jsonl", "audit.jsonl")):
        code = gatekeeper_cli(["audit", "export", "--tenant", TENANT, "--format", fmt, "--out", str(out_dir / name)])
        t.say(f"gatekeeper audit export --format {fmt} -> {out_dir / name} (exit {code})")
    code = gatekeeper_cli(["audit", "public-key", "--out", str(out_dir / "checkpoint-public-key.pem")])
    t.say(f"checkpoint public key -> {out_dir / 'checkpoint-public-key.pem'} (exit {code})")
    code = gatekeeper_cli(
        [
            "audit",
            "verify",
            str(out_dir / "audit.bundle.json"),
            "--public-key",
            str(out_dir / "checkpoint-public-key.pem"),
        ]
    )
    t.say(f"gatekeeper audit verify (offline): exit {code}")
    if code != 0:
        raise SystemExit(code)
    policy_recommendations(demo, TENANT, out_dir)
