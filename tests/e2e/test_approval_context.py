"""What the approver sees (issue 12, section 3): real payloads through the real routes, the queue and the
dispatcher into the gate record, and from there into `GET /api/approvals/{id}`, the view every channel
renders, the fallback mail and the Teams activity notification (local outbox), the audit log and OSCAL.

The world is the one of tests/e2e/test_self_approval.py (Azurite, local keys, the local Entra issuer, the
local Graph server read through msgraph-sdk), with a policy whose production rule carries compliance
mappings and a quality objective that the evidence fails."""

from __future__ import annotations

import copy
import html
import json
import uuid
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.graph import LocalGraphServer
from devstack.runner import ManualClock
from devstack.server import StaticTokenCredential
from gatekeeper.audit.log import AuditLog
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import CachedUserDirectory, GraphUserDirectory
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.policy import load_policy
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import set_services
from gatekeeper.settings import Settings
from gatekeeper.tenancy.identities import IdentityMap
from tests.conftest import SHARED_FIXTURES
from tests.e2e.test_self_approval import (
    ANNA,
    AUDIENCE,
    DEV,
    DEV_UPN,
    DPR,
    GRAPH_TOKEN,
    PIET,
    START,
    USERS,
    World,
)
from tests.support.gatekeeper_env import ADO_CHECK_SECRET, ENTRA_TENANT, make_env

pytestmark = pytest.mark.azurite

BASE = "https://gk.contoso.example"
GHE = "https://ghe.contoso.example/octo-org/octo-repo"  # a GitHub Enterprise host, from the payload only
COMPLIANCE = [{"framework": "SOC2", "control": "CC8.1"}, {"framework": "FedRAMP", "control": "CM-3"}]
CONTEXT_USERS = {**USERS, DEV: {**USERS[DEV], "displayName": "Dev <b>Example</b>"}}

POLICY = {
    "version": 1,
    "defaults": {"level": "L2"},
    "rules": [
        {
            "name": "prod",
            "match": {"environments": ["production"]},
            "level": "L2",
            "compliance": COMPLIANCE,
            "approval": {"stages": [{"name": "cab", "approvers": [DEV, ANNA, PIET], "quorum": 1, "timeout": "PT1H"}]},
        }
    ],
    "quality": {
        "objectives": [{"name": "line-coverage", "sli": "coverage.line_percent", "pass": ">=80"}],
        "on_fail": "L2",
        "missing_evidence": "pass",
    },
}


@pytest.fixture
def world(storage_connection_string, tmp_path) -> Iterator[World]:
    from devstack.gates import local_gates

    env = make_env(storage_connection_string, tmp_path / "keys")
    document = load_policy(POLICY)
    with LocalEntraIssuer() as issuer, LocalGraphServer(GRAPH_TOKEN, users=CONTEXT_USERS) as graph:
        env.services.token_validator = EntraTokenValidator(
            AUDIENCE, issuer.authority_host, allowed_tenants=env.services.is_registered_entra_tenant
        )
        set_services(env.services)
        client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
        directory = CachedUserDirectory(GraphUserDirectory(client, http_client=http))
        audit = AuditLog(env.storage, env.services.sealer, None, env.tenant_id, checkpoint_every=10_000)
        gates = local_gates(
            env.storage,
            env.services.sealer,
            decider=PolicyDecider(lambda _t: document),
            audit_for=lambda _t: audit,
            notifier=OutboxNotifier(tmp_path / "outbox"),
            callbacks=PipelineCallbacks(),
            entra_tenants_for=lambda t: (ENTRA_TENANT,) if t == env.tenant_id else (),
            token_validator=env.services.token_validator,
            clock=ManualClock(START),
            settings=Settings(trust_easyauth_header=False),
            approval_base_url=BASE,
            directory=directory,
        )
        try:
            yield World(env, gates, issuer, graph, audit, IdentityMap(env.storage, env.tenant_id, env.services.sealer))
        finally:
            set_services(None)
            directory.close()


def outbox(world: World, gate: str, kind: str = "approval_request") -> list[dict[str, Any]]:
    notifier = world.gates.services.notifier
    assert isinstance(notifier, OutboxNotifier)
    return [
        n
        for n in notifier.read_all(world.env.tenant_id)
        if n["notification"]["instance_id"] == gate and n["notification"]["kind"] == kind
    ]


def github_gate(world: World, *, ref: str, payload: Any, html_url: str = GHE) -> str:
    from tests.support.gatekeeper_env import github_request

    body = copy.deepcopy(DPR)
    body["deployment"]["id"] = int(uuid.uuid4().int % 10**9)
    body["deployment"]["ref"] = ref
    body["deployment"]["payload"] = payload
    body["repository"]["html_url"] = html_url
    for user in (body["sender"], body["deployment"]["creator"]):
        user.update(login="dev-gh", id=4242)
    return world.ingest("github_webhook", github_request("deployment_protection_rule", body))


def test_a_github_gate_shows_links_tags_artifacts_requester_compliance_and_audit_on_every_channel(world: World):
    world.link("github:login:dev-gh", DEV)
    artifact = "ghcr.io/octo-org/octo-repo@sha256:" + "ab" * 32
    gate = github_gate(world, ref="refs/tags/v2.4.1", payload={"artifacts": [artifact]})
    sha = DPR["deployment"]["sha"]
    run = "289782451"

    document = world.view(gate)  # GET /api/approvals/{id}: the old keys, plus the context
    assert document["subject"]["repository"] == "octo-org/octo-repo" and document["status"] == "awaiting_approval"
    assert document["repository_url"] == GHE
    assert document["commit_url"] == f"{GHE}/commit/{sha}"
    assert document["run_url"] == f"{GHE}/actions/runs/{run}"
    assert document["version_tags"] == ["v2.4.1"] and document["artifact_ids"] == [artifact]
    requester = document["requester"]
    assert requester["resolved"] is True and requester["oid"] == DEV
    assert requester["display_name"] == "Dev <b>Example</b>" and requester["upn"] == DEV_UPN
    assert {"github:login:dev-gh", "github:id:4242"} <= set(requester["seen_as"])
    assert document["compliance"] == COMPLIANCE
    assert document["quality"]["result"] == "pass"  # no evidence: missing_evidence pass

    # the audit entries of this gate, exactly the log's, and where to prove them
    mine = [r for r in world.audit.records() if r.instance_id == gate]
    assert document["audit"]["entry_ids"] == [str(r.seq) for r in mine]
    assert [e["kind"] for e in document["audit"]["entries"]] == [r.kind for r in mine]
    assert {"event_received", "decision", "notification", "approval_requested"} <= {r.kind for r in mine}
    assert document["audit"]["proof_endpoint"].startswith(
        f"{BASE}/api/tenants/{world.env.tenant_id}/audit/export?format=bundle&from="
    )
    decision = next(r for r in mine if r.kind == "decision")
    assert decision.data["compliance"] == COMPLIANCE  # the audit decision entry carries the mappings

    # the notification: the gate's own title, deep links to the page, the view's context in the mail
    (sent,) = outbox(world, gate)
    notification = sent["notification"]
    page = f"{BASE}/api/approvals/{gate}/page"
    assert notification["link"] == page and not notification["title"].lower().startswith("approval needed")
    request = sent["graph_requests"][0]  # one per approver, the same content
    assert request["teams"]["body"]["topic"]["webUrl"] == page
    mail = request["mail_fallback"]["body"]["message"]
    assert mail["subject"] == f"[Gatekeeper] Approval needed: {notification['title']}"
    assert mail["subject"].count("Approval needed") == 1
    content = mail["body"]["content"]
    assert f'href="{page}"' in content and f'href="{GHE}/commit/{sha}"' in content
    assert "v2.4.1" in content and html.escape(artifact) in content and "SOC2 CC8.1" in content
    assert "Dev &lt;b&gt;Example&lt;/b&gt;" in content and "<b>Example</b>" not in content  # escaped HTML
    assert f"{DEV_UPN}" in content

    # a vote appends its entry, and the view lists it
    assert world.decide(gate, ANNA)[0] == 202
    after = world.gates.decisions.system_view(gate)
    decided = [r for r in world.audit.records() if r.instance_id == gate and r.kind == "approval_decided"]
    assert decided and str(decided[0].seq) in after.audit.entry_ids


def test_failing_objectives_and_an_unresolved_requester_are_shown_from_an_azure_devops_check(world: World):
    sample = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())
    headers = dict(sample["headers"], AuthToken="job-token-0123456789", TaskInstanceId=str(uuid.uuid4()))
    headers.update({"X-Gatekeeper-Check-Secret": ADO_CHECK_SECRET, "BuildId": "77"})
    body = {
        "environment": "production",
        "runId": "77",
        "commit": "600c52d2d5b655caa111abfd863e5a9bd304bb0e",
        "requestedBy": "Some Display Name",
        "repositoryUrl": "https://dev.azure.com/fabrikam/web/_git/shop",
        "versionTags": ["1.4.0", "**bold**"],
        "artifacts": ["drop <script>"],
        "evidence": [{"kind": "coverage", "data": {"line_percent": 61.5}}],
    }
    request = func.HttpRequest(
        "POST", "http://localhost/api/azure-devops/checks", headers=headers, body=json.dumps(body).encode()
    )
    gate = world.ingest("azure_devops_check", request)
    view = world.gates.decisions.system_view(gate)
    assert view.run_url == f"https://dev.azure.com/fabrikam/{headers['ProjectId']}/_build/results?buildId=77"
    assert view.commit_url == "https://dev.azure.com/fabrikam/web/_git/shop/commit/" + body["commit"]
    assert view.version_tags == ("1.4.0", "**bold**") and view.artifact_ids == ("drop <script>",)
    assert view.quality is not None and view.quality.result == "fail"
    (objective,) = view.quality.failing
    assert objective.name == "line-coverage" and objective.verdict == "fail" and "61.5" in objective.detail
    assert view.requester.resolved is False and view.requester.describe().startswith("unresolved")
    (sent,) = outbox(world, gate)
    content = sent["graph_requests"][0]["mail_fallback"]["body"]["message"]["body"]["content"]
    assert "drop &lt;script&gt;" in content and "<script>" not in content
    assert "line-coverage (fail" in content and "unresolved" in content


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"repositoryUrl": "javascript:alert(1)"}, "repositoryUrl"),
        ({"runUrl": "http://ci.contoso.com/run/1"}, "runUrl"),
        ({"versionTags": [f"v{i}" for i in range(21)]}, "versionTags"),
        ({"versionTags": ["has space"]}, "versionTags[0]"),
        ({"artifacts": ["x" * 201]}, "artifacts[0]"),
    ],
)
def test_hostile_context_in_the_generic_api_is_refused_naming_the_field(world: World, extra: dict, field: str):
    from tests.support.gatekeeper_env import API_KEY, http_function

    document = {"kind": "gate_request", "environment": "production", "runId": uuid.uuid4().hex, **extra}
    headers = {
        "Content-Type": "application/json",
        "X-Gatekeeper-Tenant": world.env.tenant_id,
        "x-functions-key": API_KEY,
    }
    request = func.HttpRequest(
        "POST", "http://localhost/api/events", headers=headers, body=json.dumps(document).encode()
    )
    response = http_function("generic_events")(request)
    assert response.status_code == 422
    assert json.loads(response.get_body())["field"] == field
    assert world.env.drain() == []  # nothing queued
