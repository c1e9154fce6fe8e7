"""DORA lead time from the commit, end to end: a GitHub deployment protection rule (the published payload)
gated through the local runner with the product's own composition of the commit lookup (the GitHub App from
app settings, its key a local JWK, the tenant's registered installation), the local GitHub server answering
"Get a commit", Azurite and the real audit log; then the deployment finishes (a watch linked to the gate) and
the report reads the audit log as `python -m gatekeeper report` does."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.gates import LocalGates, local_gates
from devstack.github import LocalGitHubServer
from devstack.runner import ManualClock
from gatekeeper.audit.log import AuditLog
from gatekeeper.commands.report import read_entries
from gatekeeper.events.generic import parse_generic
from gatekeeper.events.github import parse_github
from gatekeeper.events.model import EventKind, PipelineEvent
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.github_app import GitHubApp, rsa_jwk
from gatekeeper.integrations.github_commits import GitHubCommitTimes
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.policy.store import PolicyStore
from gatekeeper.report.metrics import Window, build_report
from gatekeeper.settings import KeyMode, Settings
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.registry import TenantRegistry

pytestmark = pytest.mark.azurite

APP_ID = "424242"
SHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"  # the published payload's deployment sha
START = datetime(2032, 2, 2, 10, 0, tzinfo=UTC)
POLICY = {"version": 1, "rules": [{"name": "prod", "match": {"environments": ["production"]}, "level": "L0"}]}
PAYLOAD = Path(__file__).resolve().parents[1] / "fixtures" / "github" / "deployment_protection_rule.requested.json"


@dataclass
class Env:
    gates: LocalGates
    github: LocalGitHubServer
    audit: AuditLog
    tenant_id: str
    installation: int  # the tenant's own (registered identities are unique across tenants)

    @property
    def clock(self) -> ManualClock:
        return self.gates.clock

    def protection_rule(self) -> PipelineEvent:
        """The published payload as the GitHub route hands it over (received now, by the gate's clock)."""
        payload = json.loads(PAYLOAD.read_text())
        payload["installation"]["id"] = self.installation
        event = parse_github("deployment_protection_rule", payload, tenant_id=self.tenant_id, delivery_id="d-1")
        assert isinstance(event, PipelineEvent) and event.commit == SHA and event.commit_time is None
        return event.model_copy(update={"received_at": self.clock.now()})

    def gate(self) -> str:
        gate = self.gates.submit(self.protection_rule())
        assert self.gates.runner.status(gate).runtime_status == "Completed"
        (decision,) = self.github.decisions()  # the pipeline was answered whatever the lookup did
        assert decision["body"]["state"] == "approved" and decision["run_id"] == 289782451
        return gate

    def deployment_finished(self, gate: str) -> str:
        """GitHub reports the deployment done: its status event starts a watch linked to the gate."""
        done = self.protection_rule().model_copy(
            update={
                "kind": EventKind.DEPLOYMENT_STATUS,
                "status": "success",
                "run_id": "289782451",
                "subject": "deployments/145988746",
                "callback": None,
            }
        )
        watch = self.gates.submit(done)
        (finished,) = self.data(watch, "deployment_finished")
        assert finished["gate_id"] == gate
        return watch

    def data(self, instance_id: str, kind: str) -> list[dict[str, Any]]:
        return [dict(r.data) for r in self.audit.records() if r.instance_id == instance_id and r.kind == kind]

    def lead_time(self) -> dict[str, Any]:
        window = Window(self.clock.now() - timedelta(days=1), self.clock.now() + timedelta(minutes=1))
        entries, unreadable, truncated = read_entries(self.audit, window)
        report = build_report(entries, window, tenant=self.tenant_id, generated_at=self.clock.now())
        assert unreadable == 0 and not truncated
        return dict(report["dora"]["lead_time"])


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def env(azurite, app_key: rsa.RSAPrivateKey, tmp_path: Path) -> Iterator[Env]:
    storage = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(storage, LocalKeyProvider(str(tmp_path / "tenant-keys")))
    tenant_id = "t" + uuid.uuid4().hex[:12]
    installation = 10**8 + uuid.uuid4().int % 10**8
    audit = AuditLog(storage, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "github-app.jwk.json").write_text(jwt.algorithms.RSAAlgorithm.to_jwk(app_key))  # the App's key
    with LocalGitHubServer(APP_ID, app_key.public_key(), installation_id=installation) as github:
        PolicyStore(storage, tenant_id).publish(json.dumps(POLICY), published_by="tests")
        TenantRegistry(storage).import_records(
            [
                TenantRecord(
                    tenant_id=tenant_id,
                    display_name="Octo",
                    identities=(f"github:installation:{installation}",),
                )
            ]
        )
        answers = GitHubApp(
            APP_ID,
            CryptographyClient.from_jwk(rsa_jwk(app_key)),
            github.api_url,
            policy=RetryPolicy(max_attempts=1),
            allow_loopback_http=True,
            installations=lambda t: {installation} if t == tenant_id else set(),
        )
        settings = Settings(
            trust_easyauth_header=False,
            github_app_id=APP_ID,
            github_api_url=github.api_url,
            key_mode=KeyMode.LOCAL,
            local_key_dir=str(keys),
        )
        gates = local_gates(
            storage,
            cipher,
            decider=None,  # type: ignore[arg-type]  (the services' own: the published policy)
            audit_for=lambda _t: audit,
            notifier=OutboxNotifier(tmp_path / "outbox"),
            callbacks=PipelineCallbacks(github=answers),
            entra_tenants_for=lambda _t: (),
            operators_for=lambda _t: ("ops@octo.example",),
            clock=ManualClock(START),
            settings=settings,
            allow_loopback_http=True,
        )
        gates.services.__dict__["decider"] = PolicyDecider(gates.services.policy_for)
        assert isinstance(gates.services.commit_lookup, GitHubCommitTimes)  # composed from the app settings
        yield Env(gates, github, audit, tenant_id, installation)


def test_a_protection_rule_gate_records_the_commit_time_github_names_and_the_report_counts_its_lead_time(
    env: Env, caplog: pytest.LogCaptureFixture
):
    caplog.set_level("INFO", logger="gatekeeper.telemetry")
    committed = START - timedelta(hours=5)
    env.github.add_commit(SHA, committed.strftime("%Y-%m-%dT%H:%M:%SZ"), "2032-01-30T08:00:00Z")
    gate = env.gate()
    (received,) = env.data(gate, "event_received")
    assert received["commit_time"] == "2032-02-02T05:00:00+00:00"  # the committer date, not the author's
    (call,) = env.github.requests_to(f"/repos/octo-org/octo-repo/commits/{SHA}", "GET")
    assert call.status == 200 and call.headers["authorization"].removeprefix("Bearer ") in env.github.tokens
    (decision,) = [
        json.loads(r.getMessage().removeprefix("GATEKEEPER_EVENT "))
        for r in caplog.records
        if r.name == "gatekeeper.telemetry" and '"GateDecision"' in r.getMessage()
    ]
    assert decision["commit_time"] == "2032-02-02T05:00:00+00:00" and decision["commit_age_seconds"] == 18000.0

    env.clock.advance(timedelta(hours=1))
    env.deployment_finished(gate)
    assert env.lead_time() == {"unit": "hours", "n": 1, "p50": 6.0, "p95": 6.0, "without_commit_time": 0}


@pytest.mark.parametrize("failure", ["http 500", "timeout"])
def test_when_github_cannot_say_the_gate_goes_on_without_a_commit_time(env: Env, failure: str):
    env.github.add_commit(SHA, (START - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    if failure == "http 500":
        env.github.fail_next(5, 500, path_contains="/commits/")
    else:
        env.github.commit_delay_seconds = 4.0  # past the lookup's 3-second read timeout
    gate = env.gate()
    (received,) = env.data(gate, "event_received")
    assert received["commit_time"] is None
    deadline = time.monotonic() + 5  # a stalled answer is recorded once the server has given up on it
    while not env.github.requests_to("/commits/", "GET") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(env.github.requests_to("/commits/", "GET")) == 1  # one bounded attempt, no retry loop
    assert env.data(gate, "decision")[0]["level"] == "L0"  # the decision is the policy's, untouched

    env.clock.advance(timedelta(hours=1))
    env.deployment_finished(gate)
    assert env.lead_time() == {"unit": "hours", "n": 0, "p50": None, "p95": None, "without_commit_time": 1}


def test_a_deployment_whose_event_states_its_commit_time_counts_without_a_gate(env: Env):
    """A generic `deployment_status` with `commitTime` (no gate before it): the watch's `deployment_finished`
    carries the time, and the report counts the lead time from it."""
    body = {"kind": "deployment_status", "environment": "production", "runId": "5001", "status": "success"}
    event = parse_generic(body, tenant_id=env.tenant_id)  # as the route hands it over, clock aside:
    event = event.model_copy(update={"commit_time": START - timedelta(hours=30)})  # (the edge checks real now)
    watch = env.gates.submit(event)
    (finished,) = env.data(watch, "deployment_finished")
    assert finished["commit_time"] == "2032-02-01T04:00:00+00:00" and finished["gate_id"] is not None
    assert env.lead_time() == {"unit": "hours", "n": 1, "p50": 30.0, "p95": 30.0, "without_commit_time": 0}
