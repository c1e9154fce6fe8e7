"""Post-deploy watches end to end through the local runner: the real dispatcher, orchestrator, activities and
SDK replay, Azurite tables, local tenant keys, the real audit log and outbox, the published policy, a local
health endpoint that turns unhealthy at a chosen probe, the local GitHub server (App tokens,
workflow_dispatch, run listing), and Entra tokens from a local issuer for the control routes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.azure_devops import LocalAzureDevOpsServer
from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.github import LocalGitHubServer
from devstack.health import LocalHealthServer
from devstack.log_analytics import LocalLogAnalyticsServer
from devstack.runner import ManualClock
from devstack.webhook import LocalWebhookReceiver
from functions.http import problem_body, status_of
from gatekeeper.audit.log import AuditLog
from gatekeeper.contracts.watch import rollback_gate_id
from gatekeeper.errors import GatekeeperError, IntegrityError
from gatekeeper.events.azure_devops import parse_service_hook
from gatekeeper.events.generic import parse_generic
from gatekeeper.events.github import parse_github
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.ingest.dispatcher import Disposition
from gatekeeper.ingest.edge import IncomingRequest
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.github_app import GitHubApp, GitHubWorkflows, rsa_jwk
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.policy.store import PolicyStore
from gatekeeper.rollback.alerts import AlertRouter
from gatekeeper.rollback.control import DeploymentControl
from gatekeeper.rollback.kql import KqlProbe
from gatekeeper.rollback.probes import HttpHealthProbe, Probes
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.settings import Settings
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry
from tests.conftest import load_fixture

pytestmark = pytest.mark.azurite


def load_fixture_local(relative: str) -> Any:
    return json.loads((Path(__file__).resolve().parents[1] / "fixtures" / relative).read_text())


TID = "3f6c2a8e-1b7d-4c9e-8a5f-0d2e4b6c8a10"
AUDIENCE = "api://gatekeeper-tests"
START = datetime(2031, 3, 3, 10, 0, tzinfo=UTC)
APP_ID = "424242"
INSTALLATION = 77
REPO = "contoso/webshop"
ANNA = str(uuid.UUID(int=0xA))
OPERATOR_OID = str(uuid.UUID(int=0x0B))
STRANGER = str(uuid.UUID(int=0x5))
OPERATOR = "ops@contoso.com"
PAT = "local-pipelines-pat"
API_KEY = "local-generic-api-key"
ALERTS = Path(__file__).resolve().parents[1] / "fixtures" / "azure-monitor"
FIRED = json.loads((ALERTS / "common-alert-schema.metric-static.fired.json").read_text())
RESOLVED = json.loads((ALERTS / "common-alert-schema.metric.resolved.json").read_text())
SHOP_RESOURCES = [FIRED["data"]["essentials"]["alertTargetIDs"][0], RESOLVED["data"]["essentials"]["alertTargetIDs"][0]]
HOOK_SECRET = b"rollback-webhook-signing-secret"


def kql_probe(workspace: str) -> dict[str, Any]:
    return {
        "type": "kql",
        "name": "failed requests",
        "workspace_id": workspace,
        "max_increase_percent": 50,
        "query": "requests | summarize value = countif(success == false) * 100.0 / count()",
    }


def watch_entry(environments: list[str], health_url: str, **over: Any) -> dict[str, Any]:
    return {
        "environments": environments,
        "window": "PT5M",
        "interval": "PT1M",
        "failure_limit": 1,
        "consecutive_error_limit": 2,
        "probes": [{"name": "health", "url": health_url, "json": {"path": "status", "equals": "ok"}}],
        "rollback": {
            "level": "L1",
            "target": {"type": "github", "workflow": "rollback.yml", "inputs": {"sha": "{commit}"}},
            "notify": [OPERATOR],
        },
    } | over


def policy_for(health_url: str, ado_org: str, hook: str, workspace: str) -> dict[str, Any]:
    def ado(organization: str) -> dict[str, Any]:
        target = {"type": "azure-devops", "organization": organization, "project": "web", "pipeline_id": 12}
        return {"level": "L1", "target": target | {"parameters": {"version": "{commit}"}}}

    stage = {"name": "cab", "approvers": [ANNA], "timeout": "PT1H"}
    return {
        "version": 1,
        "rules": [
            {
                "name": "eu rollbacks ask",
                "match": {"actions": ["rollback"], "environments": ["prod-eu"]},
                "level": "L2",
                "approval": {"stages": [stage]},
            },
        ],
        "watch": [
            watch_entry(["production", "prod-eu"], health_url, alert_resources=SHOP_RESOURCES),
            watch_entry(["canary"], health_url, failure_limit=0, rollback={"level": "L1"}),  # no target
            watch_entry(["ado-prod"], health_url, rollback=ado(ado_org)),
            watch_entry(["ado-foreign"], health_url, rollback=ado(ado_org.rsplit("/", 1)[0] + "/someoneelse")),
            watch_entry(["metrics-prod"], health_url, probes=[kql_probe(workspace)]),
            watch_entry(
                ["hook-prod"], health_url, rollback={"level": "L1", "target": {"type": "webhook", "url": hook}}
            ),
        ],
    }


@dataclass
class Env:
    gates: LocalGates
    github: LocalGitHubServer
    health: LocalHealthServer
    outbox: OutboxNotifier
    audit: AuditLog
    tenant_id: str
    control: DeploymentControl
    issuer: LocalEntraIssuer
    ado: LocalAzureDevOpsServer
    receiver: LocalWebhookReceiver
    alerts: AlertRouter
    logs: LocalLogAnalyticsServer

    def deployment(self, environment: str = "production", status: str = "success", **over: Any) -> PipelineEvent:
        run = over.pop("run_id", str(uuid.uuid4().int % 10**9))
        return PipelineEvent(
            tenant_id=self.tenant_id,
            source=EventSource.GITHUB,
            kind=EventKind.DEPLOYMENT_STATUS,
            environment=environment,
            repository=REPO,
            ref=over.pop("ref", "refs/heads/main"),
            commit=over.pop("commit", uuid.uuid4().hex[:12]),
            run_id=run,
            status=status,
            subject=f"deployments/{run}",
            **over,
        )

    def deploy(self, event: PipelineEvent) -> str:
        return self.gates.submit(event)

    def finish(self, watch_id: str) -> dict[str, Any]:
        status = self.gates.runner.run_until_complete(watch_id, horizon=timedelta(days=3))
        assert status.runtime_status == "Completed", status
        return status.output

    def kinds(self, watch_id: str) -> list[str]:
        return [r.kind for r in self.audit.records() if r.instance_id == watch_id]

    def entries(self, watch_id: str, kind: str) -> list[dict[str, Any]]:
        return [r.data for r in self.audit.records() if r.instance_id == watch_id and r.kind == kind]

    def notices(self, watch_id: str) -> list[dict[str, Any]]:
        return [
            n["notification"]
            for n in self.outbox.read_all(self.tenant_id)
            if n["notification"]["instance_id"] == watch_id
        ]

    def person(self, oid: str, **claims: Any) -> Any:
        token = self.issuer.issue(oid, TID, AUDIENCE, issued_at=datetime.now(UTC).timestamp(), **claims)
        return self.gates.identify({"Authorization": f"Bearer {token}"})

    def call(self, action: Any, *args: Any) -> tuple[int, dict[str, Any]]:
        try:
            result: tuple[int, dict[str, Any]] = action(*args)
        except GatekeeperError as problem:
            return status_of(problem), problem_body(problem)
        self.gates.runner.run_until_idle()
        return result

    def alert(self, document: Any, *, key: str = API_KEY, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        """POST /api/azure-monitor/alerts through the route logic, authenticated with the tenant's API key."""
        headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": self.tenant_id, "x-functions-key": key}
        body = raw if raw is not None else json.dumps(document).encode()
        request = IncomingRequest.of(body, headers, "/api/azure-monitor/alerts")
        return self.call(self.alerts.receive, request, self.gates.services.ingestion.generic_tenant)

    def good_then_bad(self, environment: str = "production") -> tuple[str, str, PipelineEvent]:
        """A deployment that passes its window (last known good), then one whose health fails from its
        second probe on."""
        good_event = self.deployment(environment, ref="refs/tags/v1", commit="c0ffee000001")
        good = self.deploy(good_event)
        assert self.finish(good)["outcome"] == "healthy"
        self.health.unhealthy_from = self.health.probes + 1
        bad = self.deploy(self.deployment(environment, ref="refs/tags/v2", commit="badbad000002"))
        return good, bad, good_event


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def shared(azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path_factory.mktemp("keys"))))
    with LocalEntraIssuer() as issuer:
        yield {"storage": storage, "cipher": cipher, "issuer": issuer, "clock": ManualClock(START)}


@pytest.fixture
def env(shared: dict[str, Any], app_key: rsa.RSAPrivateKey, tmp_path) -> Iterator[Env]:
    storage, cipher, issuer, clock = shared["storage"], shared["cipher"], shared["issuer"], shared["clock"]
    clock.advance(timedelta(days=7))  # each test on a fresh week; the clock never goes back
    tenant_id = "t" + uuid.uuid4().hex[:12]  # a tenant per test: leases and last known good start empty
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    outbox = OutboxNotifier(tmp_path / "outbox")
    workspace = str(uuid.uuid4())  # a Log Analytics workspace per tenant (identities are unique across tenants)
    with (
        LocalGitHubServer(APP_ID, app_key.public_key(), installation_id=INSTALLATION) as github,
        LocalHealthServer() as health,
        LocalAzureDevOpsServer("check-token", organization=f"fabrikam{uuid.uuid4().hex[:8]}") as ado,
        LocalWebhookReceiver(HOOK_SECRET) as receiver,
        LocalLogAnalyticsServer({workspace}) as logs,
    ):
        ado.pipelines_pat = PAT
        ado_org, hook = f"{ado.url}/{ado.organization}", f"{receiver.url}/ci/rollback"
        text = json.dumps(policy_for(health.health_url, ado_org, hook, workspace))
        PolicyStore(storage, tenant_id).publish(text, published_by="tests")
        TenantRegistry(storage).import_records(
            [
                TenantRecord(
                    tenant_id=tenant_id,
                    display_name="Contoso",
                    identities=(f"azure-devops:org:{ado_org}", f"azure-monitor:workspace:{workspace}"),
                    secrets={
                        "azure_devops_pipelines": ("env:GK_PIPELINES_PAT",),
                        "callback_signing": ("env:GK_HOOK",),
                        "generic_api_key": ("env:GK_API_KEY",),
                    },
                    callback_url_prefixes=(f"{receiver.url}/ci/",),
                )
            ]
        )
        app = GitHubApp(
            APP_ID,
            CryptographyClient.from_jwk(rsa_jwk(app_key)),
            github.api_url,
            policy=RetryPolicy(max_attempts=1),
            allow_loopback_http=True,
            installations=lambda t: {INSTALLATION} if t == tenant_id else set(),
        )
        validator = EntraTokenValidator(
            AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda t: t == TID
        )
        gates = local_gates(
            storage,
            cipher,
            decider=None,  # type: ignore[arg-type]  (the services' own: the published policy)
            audit_for=lambda _t: audit,
            notifier=outbox,
            callbacks=PipelineCallbacks(),
            entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
            token_validator=validator,
            operators_for=lambda _t: (OPERATOR, OPERATOR_OID),
            clock=clock,
            settings=Settings(
                trust_easyauth_header=False,
                environ={"GK_PIPELINES_PAT": PAT, "GK_HOOK": HOOK_SECRET.decode(), "GK_API_KEY": API_KEY},
            ),
            health_probe=HttpHealthProbe(allow_loopback_http=True),
            github_workflows=GitHubWorkflows(app),
            allow_loopback_http=True,
        )
        gates.services.__dict__["decider"] = PolicyDecider(gates.services.policy_for)
        kql = KqlProbe(logs.credential, logs.endpoint, gates.services.owns_workspace, **logs.client_kwargs())
        gates.services.__dict__["health_probe"] = Probes(HttpHealthProbe(allow_loopback_http=True), kql)
        control = DeploymentControl(
            storage,
            cipher,
            gates.gateway,
            entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
            operators_for=lambda _t: (OPERATOR, OPERATOR_OID),
            policy_for=gates.services.policy_for,
            audit_for=lambda _t: audit,
            clock=clock.now,
        )
        alerts = AlertRouter(
            storage,
            cipher,
            gates.gateway,
            policy_for=gates.services.policy_for,
            audit_for=lambda _t: audit,
            clock=clock.now,
        )
        yield Env(gates, github, health, outbox, audit, tenant_id, control, issuer, ado, receiver, alerts, logs)


# ----- the window -------------------------------------------------------------------------------------


def test_a_clean_window_ends_quietly_and_records_last_known_good(env: Env):
    event = env.deployment(commit="c0ffee000001")
    watch = env.deploy(event)
    assert watch.startswith("watch-") and env.gates.runner.status(watch).runtime_status == "Running"
    assert env.finish(watch)["outcome"] == "healthy"
    assert env.health.probes == 6  # rounds at 0..5 minutes of a 5-minute window, one a minute
    good = env.gates.services.watches(env.tenant_id).last_good(REPO, "production")
    assert good is not None and good.commit == "c0ffee000001"
    kinds = env.kinds(watch)
    assert kinds[0] == "deployment_finished" and kinds.count("health_check") == 7  # 6 rounds + the verdict
    assert "rollback" not in kinds and env.notices(watch) == []  # quiet
    first = env.entries(watch, "health_check")[0]
    assert first["result"] == "pass" and first["probes"][0]["status_code"] == 200
    assert env.github.dispatches == []
    assert env.gates.runner.replay(watch) == env.gates.runner.episodes(watch)[-1]


def test_a_deployment_to_an_unwatched_environment_is_recorded_only(env: Env):
    watch = env.deploy(env.deployment("dev"))
    assert env.finish(watch)["outcome"] == "not_watched"
    assert env.kinds(watch) == ["deployment_finished"] and env.health.probes == 0


def test_an_in_progress_deployment_status_starts_nothing(env: Env):
    result = env.gates.dispatcher.dispatch(env.deployment(status="in_progress"), event_id="e1")
    assert result.disposition.value == "recorded" and env.gates.runner.instances() == []


# ----- rolling back -----------------------------------------------------------------------------------


def test_failures_past_the_limit_roll_back_through_github_and_notify(env: Env):
    _, bad, good_event = env.good_then_bad()
    output = env.finish(bad)
    assert output["outcome"] == "rolled_back", output
    (dispatch,) = env.github.dispatches
    assert dispatch["owner"] == "contoso" and dispatch["repo"] == "webshop" and dispatch["workflow"] == "rollback.yml"
    assert dispatch["body"] == {"ref": "refs/tags/v1", "inputs": {"sha": good_event.commit}}
    checks = env.entries(bad, "health_check")
    assert [c["result"] for c in checks] == ["pass", "fail", "fail"]  # failure_limit 1: the second failure acts
    steps = [e["step"] for e in env.entries(bad, "rollback")]
    assert steps == ["decided", "dispatched", "finished"]
    assert env.entries(bad, "rollback")[0]["level"] == "L1"
    assert env.entries(bad, "rollback")[2]["conclusion"] == "success"
    (notice,) = env.notices(bad)
    assert notice["kind"] == "info" and notice["title"].startswith("Rolled back")
    assert "health: status 503" in notice["text"] and "refs/tags/v1" in notice["text"]
    assert OPERATOR in notice["recipients"]
    state = env.gates.services.watches(env.tenant_id).load(bad)
    assert state.state.value == "rolled_back" and state.rollback.conclusion == "success"
    assert env.gates.runner.replay(bad) == env.gates.runner.episodes(bad)[-1]


def test_a_rollback_of_an_approved_change_is_an_override_on_its_gate_with_both_sides(env: Env):
    from gatekeeper.contracts.gate import GateStatus
    from gatekeeper.gates.store import GateRecord

    _, bad, _ = env.good_then_bad()
    gate_id = env.gates.services.watches(env.tenant_id).load(bad).gate_id
    assert gate_id is not None
    advice = {"verdict": "approve", "confidence": 0.9, "p_approve": 0.95, "model_version": "m-1", "factors": []}
    at = env.gates.services.clock()
    env.gates.services.gates(env.tenant_id).save(  # the gate that approved this deployment, as evaluate left it
        GateRecord(
            instance_id=gate_id,
            tenant_id=env.tenant_id,
            status=GateStatus.APPROVED,
            level="L2",
            rule="cab",
            title="deploy contoso/webshop to production",
            created_at=at,
            updated_at=at,
            recommendation=advice,
        )
    )
    assert env.finish(bad)["outcome"] == "rolled_back"
    overrides = [r for r in env.audit.records() if r.kind == "override" and r.instance_id == gate_id]
    assert [o.data for o in overrides] == [
        {
            "kind": "rolled_back_after_approval",
            "rule": "cab",
            "recommended": "approve",
            "decided": "rolled_back",
            "model_version": "m-1",
            "gate": gate_id,
        }
    ]


def test_a_psa_note_that_fails_outright_after_a_rollback_never_fails_the_watch(env: Env):
    from gatekeeper.psa.systems import TicketSystems
    from gatekeeper.tenancy.registry import TenantRegistry
    from gatekeeper.tenancy.secrets import SecretResolver
    from tests.support.outage import dead_port, storage_connection_string

    port = dead_port()  # the registry behind the PSA write-back cannot be read
    down = StorageAccount(connection_string=storage_connection_string(blob=port, queue=port, table=port))
    env.gates.services.tickets = TicketSystems(TenantRegistry(down).get, SecretResolver({}))
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back" and len(env.github.dispatches) == 1
    assert [name for instance, name, _ in env.gates.runner.activity_log if instance == bad].count("psa_ticket") == 1


def test_failures_past_the_limit_roll_back_through_azure_devops(env: Env):
    env.ado.run_result = None  # the run is queued and still running when first asked
    _, bad, good_event = env.good_then_bad("ado-prod")
    env.gates.runner.advance(timedelta(minutes=3))
    (run,) = env.ado.pipeline_runs
    assert run["project"] == "web" and run["pipeline"] == 12
    assert run["body"] == {
        "templateParameters": {"version": good_event.commit},
        "resources": {"repositories": {"self": {"refName": "refs/tags/v1", "version": good_event.commit}}},
    }
    assert env.gates.services.watches(env.tenant_id).load(bad).state.value == "rolling_back"
    env.ado.finish_run(run["id"], "succeeded")
    assert env.finish(bad)["outcome"] == "rolled_back"
    finished = env.entries(bad, "rollback")[-1]
    assert finished["conclusion"] == "success" and finished["run_id"] == str(run["id"])
    assert "_build/results?buildId=" in finished["url"]
    assert all(r.headers["authorization"].startswith("Basic ") for r in env.ado.requests_to("/_apis/pipelines/"))


def test_an_azure_devops_run_that_fails_escalates(env: Env):
    env.ado.run_result = "failed"
    _, bad, _ = env.good_then_bad("ado-prod")
    assert env.finish(bad)["outcome"] == "rollback_failed"
    assert [e["step"] for e in env.entries(bad, "rollback")][-2:] == ["finished", "escalated"]


def test_failures_past_the_limit_roll_back_through_a_signed_webhook(env: Env):
    _, bad, good_event = env.good_then_bad("hook-prod")
    assert env.finish(bad)["outcome"] == "rolled_back"
    (delivery,) = [d["body"] for d in env.receiver.deliveries if d["body"].get("event") == "rollback.requested"]
    assert delivery["watch_id"] == bad and delivery["labels"] == ["rollback"]
    assert delivery["to"] == {"ref": "refs/tags/v1", "commit": good_event.commit, "run_id": good_event.run_id}
    assert delivery["environment"] == "hook-prod" and delivery["repository"] == REPO


def test_a_rollback_target_outside_the_tenant_is_never_called(env: Env):
    _, bad, _ = env.good_then_bad("ado-foreign")
    assert env.finish(bad)["outcome"] == "rollback_failed"
    assert env.ado.pipeline_runs == [] and env.ado.requests_to("/_apis/pipelines/") == []
    assert "not an Azure DevOps organization registered for the tenant" in env.entries(bad, "rollback")[1]["detail"]


def test_a_failing_rollback_escalates_to_l3_at_once(env: Env):
    env.github.dispatch_conclusion = "failure"
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rollback_failed"
    steps = [(e["step"], e.get("level")) for e in env.entries(bad, "rollback")]
    assert steps[-1] == ("escalated", "L3") and len(env.github.dispatches) == 1  # no retry loop
    (alert,) = env.notices(bad)
    assert alert["kind"] == "alert" and "FAILED" in alert["title"]


def test_no_rollback_of_a_rollback(env: Env):
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back"
    run_id = env.gates.services.watches(env.tenant_id).load(bad).rollback.run_id
    # the rollback run deploys and fails: its watch asks people instead of rolling back again
    again = env.deploy(env.deployment(status="failure", run_id=run_id, commit="c0ffee000001"))
    output = env.gates.runner.run_until_complete(again, horizon=timedelta(hours=1))
    assert output.runtime_status == "Running" and output.custom_status["phase"] == "asked"
    record = env.gates.services.watches(env.tenant_id).load(again)
    assert record.is_rollback and "no rollback of a rollback" in " ".join(record.reasons)
    assert len(env.github.dispatches) == 1
    code, problem = env.call(env.control.rollback, again, env.person(OPERATOR_OID), b"{}")
    assert code == 409 and problem["type"].endswith("/rollback-of-rollback") and len(env.github.dispatches) == 1


def test_one_rollback_per_environment_at_a_time(env: Env):
    env.github.dispatch_conclusion = None  # the first rollback keeps running
    _, first, _ = env.good_then_bad()
    env.gates.runner.advance(timedelta(minutes=3))
    assert env.gates.services.watches(env.tenant_id).load(first).state.value == "rolling_back"
    env.health.unhealthy_from = 0
    second = env.deploy(env.deployment(status="failure"))
    assert env.finish(second)["outcome"] == "human_task"
    assert "another rollback of this environment" in env.entries(second, "rollback")[0]["reason"]
    assert len(env.github.dispatches) == 1


def test_a_failed_deployment_goes_straight_to_the_rollback(env: Env):
    env.deploy(env.deployment(commit="c0ffee000001"))
    env.gates.runner.run_until_complete(env.gates.runner.instances()[0], horizon=timedelta(days=1))
    before = env.health.probes
    bad = env.deploy(env.deployment(status="failure"))
    assert env.finish(bad)["outcome"] == "rolled_back" and env.health.probes == before  # no probing first


def test_without_a_target_people_are_told_to_roll_back(env: Env):
    env.health.unhealthy_from = 0
    watch = env.deploy(env.deployment("canary"))
    assert env.finish(watch)["outcome"] == "human_task"
    (task,) = env.notices(watch)
    assert task["kind"] == "human_task" and "no rollback target configured" in task["text"]


def test_a_first_deployment_that_fails_has_nothing_to_roll_back_to_and_people_decide(env: Env):
    env.health.unhealthy_from = 0
    watch = env.deploy(env.deployment())  # no earlier deployment passed its watch here
    assert env.finish(watch)["outcome"] == "human_task"
    assert "no last known good deployment recorded" in env.entries(watch, "rollback")[0]["reason"]
    assert env.github.dispatches == []


def test_a_policy_that_cannot_be_evaluated_for_the_rollback_leaves_it_to_people(env: Env):
    class Unavailable(PolicyDecider):
        def decide(self, event, at):  # type: ignore[no-untyped-def]
            raise IntegrityError("the policy did not open")

    _, bad, _ = env.good_then_bad()
    env.gates.services.__dict__["decider"] = Unavailable(env.gates.services.policy_for)
    assert env.finish(bad)["outcome"] == "human_task"
    [planned] = [e for e in env.entries(bad, "rollback") if e.get("level")][:1]
    assert planned["level"] == "L3" and "policy unavailable (IntegrityError)" in planned["reason"]
    assert env.github.dispatches == []


def test_an_l2_rollback_without_any_approval_chain_is_left_to_people(env: Env):
    document = {
        "version": 1,
        "rules": [{"name": "rollbacks ask", "match": {"actions": ["rollback"]}, "level": "L2"}],  # no chain
        "watch": [watch_entry(["production"], env.health.health_url)],  # nor one of its own, nor a default
    }
    PolicyStore(env.gates.services.storage, env.tenant_id).publish(json.dumps(document), published_by="tests")
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "human_task"
    [planned] = [e for e in env.entries(bad, "rollback") if e.get("level")][:1]
    assert planned["level"] == "L3" and "without an approval chain" in planned["reason"]
    assert env.github.dispatches == []


def test_probe_errors_past_the_limit_are_inconclusive_and_notify(env: Env):
    env.health.garbled_from = 1
    watch = env.deploy(env.deployment())
    status = env.gates.runner.run_until_complete(watch, horizon=timedelta(minutes=30))
    assert status.runtime_status == "Running" and status.custom_status["phase"] == "asked"
    assert [c["result"] for c in env.entries(watch, "health_check")] == ["pass", "error", "error", "error"]
    (notice,) = env.notices(watch)
    assert notice["kind"] == "alert" and notice["title"].startswith("Your call")
    assert "could not be evaluated" in notice["text"] and env.github.dispatches == []


# ----- L2 and people ----------------------------------------------------------------------------------


def test_an_l2_rollback_waits_for_approval(env: Env):
    _, bad, _ = env.good_then_bad("prod-eu")
    env.gates.runner.advance(timedelta(minutes=3))
    gate = rollback_gate_id(bad)
    assert env.gates.services.watches(env.tenant_id).load(bad).state.value == "awaiting_approval"
    assert env.github.dispatches == []
    (request,) = [n for n in env.notices(gate) if n["kind"] == "approval_request"]
    assert ANNA in request["recipients"] and request["link"].endswith(f"/api/approvals/{gate}/page")
    body = json.dumps({"decision": "approve"}).encode()
    assert env.gates.decisions.decide(gate, env.person(ANNA), body)[0] == 202
    assert env.finish(bad)["outcome"] == "rolled_back" and len(env.github.dispatches) == 1
    assert env.entries(bad, "rollback")[0]["level"] == "L2"


def test_a_failed_rollback_approval_chain_never_rolls_back_on_its_own(env: Env):
    from gatekeeper.contracts.gate import chain_instance_id, vote_event_name

    _, bad, _ = env.good_then_bad("prod-eu")
    env.gates.runner.advance(timedelta(minutes=3))
    gate = rollback_gate_id(bad)
    # A vote event no route would send (no decision): the chain fails on it.
    env.gates.runner.raise_event(chain_instance_id(gate), vote_event_name(0), {"seq": 0, "voter_id": ANNA})
    output = env.finish(bad)
    assert output["outcome"] == "human_task" and output["reason"].startswith("approval chain failed: ")
    assert env.github.dispatches == []


def test_a_hold_stops_the_automatic_rollback_and_a_person_rolls_back(env: Env):
    _, bad, _ = env.good_then_bad()
    env.gates.runner.run_until_idle()
    assert env.call(env.control.hold, bad, env.person(OPERATOR_OID), b'{"reason": "investigating"}')[0] == 200
    status = env.gates.runner.run_until_complete(bad, horizon=timedelta(minutes=10))
    assert status.custom_status["phase"] == "asked" and env.github.dispatches == []
    assert "on hold" in " ".join(env.gates.services.watches(env.tenant_id).load(bad).reasons)
    code, view = env.call(env.control.rollback, bad, env.person(OPERATOR_OID), b'{"reason": "confirmed bad"}')
    assert code == 202 and view["state"] == "unhealthy"
    assert env.finish(bad)["outcome"] == "rolled_back" and len(env.github.dispatches) == 1
    steps = [(e["step"], e.get("by")) for e in env.entries(bad, "rollback")]
    assert steps[:2] == [("hold", OPERATOR_OID), ("requested", OPERATOR_OID)]


def test_control_routes_check_the_person_and_answer_problems(env: Env):
    watch = env.deploy(env.deployment())
    code, body = env.call(env.control.state, watch, env.person(OPERATOR_OID))
    assert code == 200 and body["state"] == "watching" and body["deployment"]["repository"] == REPO
    assert env.call(env.control.state, watch, env.person(STRANGER))[0] == 403
    assert env.call(env.control.state, "watch-" + "0" * 40, env.person(OPERATOR_OID))[0] == 404
    assert env.call(env.control.state, "../gate-x", env.person(OPERATOR_OID))[0] == 404
    bad_body = env.call(env.control.hold, watch, env.person(OPERATOR_OID), b'{"hold": "yes please"}')
    assert bad_body[0] == 422 and bad_body[1]["field"] == "hold"
    unknown = env.call(env.control.hold, watch, env.person(OPERATOR_OID), b'{"hodl": true}')
    assert unknown[0] == 422 and unknown[1]["field"] == "hodl"
    assert env.call(env.control.hold, watch, env.person(OPERATOR_OID), b'{"a":1,"a":2}')[0] in (400, 422)
    assert env.call(env.control.hold, watch, env.person(OPERATOR_OID), b"[" * 200)[0] in (400, 422)
    assert env.call(env.control.hold, watch, env.person(OPERATOR_OID), b"x" * 5000)[0] == 413
    assert env.finish(watch)["outcome"] == "healthy"
    code, problem = env.call(env.control.rollback, watch, env.person(OPERATOR_OID), b"{}")
    assert code == 410 and problem["type"].endswith("/watch-ended")


# ----- Azure Monitor alerts ---------------------------------------------------------------------------


def test_a_fired_common_schema_alert_rolls_back_the_affected_watch(env: Env):
    good = env.deploy(env.deployment(ref="refs/tags/v1", commit="c0ffee000001"))
    assert env.finish(good)["outcome"] == "healthy"
    watch = env.deploy(env.deployment(ref="refs/tags/v2"))
    env.gates.runner.advance(timedelta(minutes=1))  # probes still pass
    code, body = env.alert(FIRED)
    assert code == 202 and body == {"status": "accepted", "watches": [watch], "condition": "Fired"}
    assert env.finish(watch)["outcome"] == "rolled_back"
    (alert,) = [e for e in env.entries(watch, "health_check") if e.get("source") == "azure-monitor"]
    assert alert["alert_rule"] == "test-metricAlertRule" and alert["result"] == "fail"
    assert "Azure Monitor alert fired: test-metricAlertRule (Sev3) fired" in env.entries(watch, "rollback")[0]["cause"]
    assert [d["body"]["ref"] for d in env.github.dispatches] == ["refs/tags/v1"]


def test_a_resolved_alert_is_recorded_and_changes_nothing(env: Env):
    watch = env.deploy(env.deployment())
    code, body = env.alert(RESOLVED)
    assert code == 202 and body["condition"] == "Resolved"
    assert env.finish(watch)["outcome"] == "healthy" and env.github.dispatches == []
    assert [e["condition"] for e in env.entries(watch, "health_check") if e.get("source")] == ["Resolved"]


def test_an_alert_on_unregistered_resources_is_ignored_with_a_reason(env: Env):
    watch = env.deploy(env.deployment())
    other = json.loads(json.dumps(FIRED))
    other["data"]["essentials"]["alertTargetIDs"] = ["/subscriptions/x/resourcegroups/y/providers/z/other"]
    code, body = env.alert(other)
    assert code == 202 and body["status"] == "ignored" and "no running watch" in body["reason"]
    assert env.finish(watch)["outcome"] == "healthy"


def test_alerts_are_authenticated_per_tenant_and_bounded(env: Env):
    env.deploy(env.deployment())
    assert env.alert(FIRED, key="wrong")[0] == 401
    wrong_schema = dict(FIRED, schemaId="Microsoft.Insights/activityLogs")
    code, problem = env.alert(wrong_schema)
    assert code == 422 and problem["field"] == "schemaId" and "common alert schema" in problem["detail"]
    no_targets = json.loads(json.dumps(FIRED))
    no_targets["data"]["essentials"]["alertTargetIDs"] = []
    code, problem = env.alert(no_targets)
    assert code == 422 and problem["field"] == "data.essentials.alertTargetIDs"
    assert env.alert(None, raw=b'{"schemaId": 1, "schemaId": 2}')[0] in (400, 422)  # duplicate keys
    assert env.alert(None, raw=b"[" * 500)[0] in (400, 422)  # depth
    assert env.alert(None, raw=b'{"n": ' + b"9" * 500 + b"}")[0] in (400, 422)  # huge number
    assert env.alert(None, raw=b" " * 300_000)[0] == 413
    assert env.github.dispatches == []


# ----- KQL --------------------------------------------------------------------------------------------


def test_a_kql_probe_against_the_pre_deploy_baseline_rolls_back(env: Env):
    env.logs.current = env.logs.baseline = 2.0  # failed-request rate in percent, as before the deployment
    good = env.deploy(env.deployment("metrics-prod", ref="refs/tags/v1", commit="c0ffee000001"))
    assert env.finish(good)["outcome"] == "healthy"
    watch = env.deploy(env.deployment("metrics-prod", ref="refs/tags/v2"))
    env.gates.runner.advance(timedelta(minutes=1))
    env.logs.current = 9.5  # the new version fails far more requests than the baseline allows
    assert env.finish(watch)["outcome"] == "rolled_back"
    checks = env.entries(watch, "health_check")
    assert [c["result"] for c in checks[:4]] == ["pass", "pass", "fail", "fail"]
    assert checks[2]["probes"][0]["detail"] == "9.5 is more than 50% above the baseline 2"
    assert {q["workspace"] for q in env.logs.queries} == env.logs.workspaces


# ----- what starts a watch ----------------------------------------------------------------------------


def test_a_github_deployment_status_starts_one_watch_linked_to_its_gate(env: Env):
    payload = load_fixture("github/deployment_status.payload.json")  # state success, environment production
    event = parse_github("deployment_status", payload, tenant_id=env.tenant_id, delivery_id="delivery-1")
    result = env.gates.dispatcher.dispatch(event, "e1")
    assert result.disposition is Disposition.STARTED and result.instance_id.startswith("watch-")
    env.gates.runner.run_until_idle()
    record = env.gates.services.watches(env.tenant_id).load(result.instance_id)
    gate = event.model_copy(
        update={"kind": EventKind.GATE_REQUEST, "status": None, "run_id": f"{event.run_id}/deployments/145988746"}
    )
    assert record.gate_id == gate.instance_id  # the gate a protection rule for this deployment started
    assert record.deployment.repository == "Codertocat/Hello-World" and record.deployment.status == "success"
    again = env.gates.dispatcher.dispatch(event, "e2")  # a redelivery
    failed = env.gates.dispatcher.dispatch(event.model_copy(update={"status": "failure"}), "e3")
    assert again.disposition is Disposition.DUPLICATE and failed.disposition is Disposition.DUPLICATE
    assert [i for i in env.gates.runner.instances() if i.startswith("watch-")] == [result.instance_id]
    assert env.kinds(result.instance_id)[0] == "deployment_finished"


def test_a_generic_deployment_status_starts_a_watch_linked_to_its_gate(env: Env):
    event = parse_generic(load_fixture_local("generic/deployment-status.json"), tenant_id=env.tenant_id)
    result = env.gates.dispatcher.dispatch(event, "e1")
    assert result.disposition is Disposition.STARTED
    env.gates.runner.run_until_idle()
    gate = event.model_copy(update={"kind": EventKind.GATE_REQUEST, "status": None})
    assert env.gates.services.watches(env.tenant_id).load(result.instance_id).gate_id == gate.instance_id


def test_a_completed_azure_devops_stage_starts_a_watch_and_an_unwatched_stage_leaves_no_trace(env: Env):
    hook = load_fixture("azure-devops/ms.vss-pipelines.stage-state-changed-event.json")  # stage __default
    event = parse_service_hook(hook, tenant_id=env.tenant_id)
    assert event.kind is EventKind.STAGE_STATUS and event.status == "success"
    result = env.gates.dispatcher.dispatch(event, "e1")
    assert result.disposition is Disposition.STARTED
    env.gates.runner.run_until_idle()
    assert env.gates.runner.status(result.instance_id).output["outcome"] == "not_watched"
    assert env.kinds(result.instance_id) == []  # a build stage is not a deployment: no audit noise
    watched = event.model_copy(update={"environment": "production", "run_id": "77"})
    started = env.gates.dispatcher.dispatch(watched, "e2")
    env.gates.runner.run_until_idle()
    assert env.kinds(started.instance_id)[0] == "deployment_finished"
    assert env.gates.services.watches(env.tenant_id).load(started.instance_id).gate_id is None  # no link


def test_watch_outcomes_feed_change_failure_rate_and_time_to_restore(env: Env, caplog):
    caplog.set_level("INFO", logger="gatekeeper.telemetry")
    good, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back"
    events = [
        json.loads(r.getMessage().removeprefix("GATEKEEPER_EVENT "))
        for r in caplog.records
        if r.name == "gatekeeper.telemetry" and "WatchOutcome" in r.getMessage()
    ]
    by_id = {e["instance_id"]: e for e in events}
    assert by_id[good]["outcome"] == "healthy" and by_id[good]["change_failed"] is False
    assert by_id[good]["time_to_restore_seconds"] is None
    restored = by_id[bad]
    assert restored["change_failed"] is True and restored["rolled_back"] is True
    assert restored["time_to_restore_seconds"] == 30.0  # unhealthy at minute 2, rollback seen done 30 s later
    assert restored["environment"] == "production"
