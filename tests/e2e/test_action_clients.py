"""The drop-in clients end to end (issue 13): the GitHub Action's script, `python -m gatekeeper request` and the
Python client's `requires_approval`, over real HTTP to the real registered functions (tests/support/
functions_http_host.py), the event through the real queue (Azurite), dispatcher and orchestrators in the local
runner, approvers deciding through the real decision route, tokens from local Entra and GitHub OIDC issuers
checked by the real validators. Proves: denied + `on-deny: skip` ends the step green with approved=false and
the audit shows the denial and the skip; an approved step; an agent's L0 call executed and L3 quietly denied;
a retried step finds its action again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devstack.durable_api import DurableApiServer
from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.github_oidc import LocalGitHubOidcIssuer
from devstack.runner import ManualClock
from gatekeeper.client import Denied, GatekeeperClient, requires_approval
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.ingest.queue import decode_message
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.services import set_services
from tests.conftest import ROOT
from tests.support.actions_contract_double import GitHubIdTokenEndpoint
from tests.support.functions_http_host import FunctionsHttpHost
from tests.support.gatekeeper_env import API_KEY, ENTRA_TENANT, GatekeeperEnv, http_function, make_env

pytestmark = pytest.mark.azurite

SCRIPT = ROOT / "actions" / "request-approval" / "request.py"
ENTRA_AUDIENCE = "api://gatekeeper-client-tests"
GITHUB_AUDIENCE = "api://gatekeeper-client-tests/github-actions"
OWNER_ID = 4200001
ANNA, PIET = "0000000a-0000-4000-8000-00000000000a", "0000000b-0000-4000-8000-00000000000b"
UPN = {ANNA: "anna@contoso.com", PIET: "piet@contoso.com"}
AGENT = "0000000e-0000-4000-8000-0000000000ee"
REQUEST_TOKEN = "runner-request-token-e2e"
POLICY = {
    "version": 1,
    "defaults": {
        "level": "L2",
        "approval": {"stages": [{"name": "ops", "approvers": [ANNA, PIET], "quorum": 1, "timeout": "PT1H"}]},
    },
    "rules": [
        {"name": "dev", "match": {"environments": ["dev"]}, "level": "L0"},
        {"name": "secrets", "match": {"actions": ["secret_access"]}, "level": "L3"},
    ],
}
GITHUB_JOB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "contoso/infra",
    "GITHUB_RUN_ID": "9100001",
    "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_JOB": "deploy",
    "GITHUB_ACTION": "request",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_SHA": "a" * 40,
}


@dataclass
class Stack:
    env: GatekeeperEnv
    gates: LocalGates
    entra: LocalEntraIssuer
    github: LocalGitHubOidcIssuer
    host: FunctionsHttpHost
    token_endpoint: GitHubIdTokenEndpoint

    def pump_until_started(self, count: int = 1, timeout: float = 30) -> list[str]:
        """What the queue trigger and the host do once clients have asked: dispatch each queued event and run
        the orchestrations, until `count` actions have started; their ids."""
        started: list[str] = []
        deadline = time.monotonic() + timeout
        while len(started) < count and time.monotonic() < deadline:
            for text in self.env.drain():
                queued = decode_message(self.env.services.sealer, text, self.env.services.large_events)
                result = self.gates.dispatcher.dispatch(queued.event, queued.event_id)
                if result.instance_id and result.disposition.value == "started":
                    started.append(result.instance_id)
            self.gates.runner.run_until_idle()
            if len(started) < count:
                time.sleep(0.1)
        assert len(started) >= count, f"{len(started)} of {count} actions started"
        return started

    def decide(self, action_id: str, oid: str, decision: str) -> None:
        token = self.entra.issue(oid, ENTRA_TENANT, ENTRA_AUDIENCE, upn=UPN[oid])
        headers = {"Authorization": f"Bearer {token}"}
        status, _ = self.gates.decide(action_id, headers, decision)
        assert status == 202

    def audit(self, action_id: str) -> list[Any]:
        return [r for r in self.env.services.audit_for(self.env.tenant_id).records() if r.instance_id == action_id]

    def agent_token(self) -> str:
        return self.entra.issue(AGENT, ENTRA_TENANT, ENTRA_AUDIENCE, app_only=True)


@pytest.fixture(scope="module")
def issuers() -> Iterator[tuple[LocalEntraIssuer, LocalGitHubOidcIssuer]]:
    with LocalEntraIssuer() as entra, LocalGitHubOidcIssuer() as github:
        yield entra, github


@pytest.fixture
def stack(azurite, tmp_path, issuers) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    entra, github = issuers
    env = make_env(
        azurite.connection_string,
        tmp_path / "keys",
        extra_identities=(f"github:owner-id:{OWNER_ID}",),
        extra_environ={
            "GATEKEEPER_ENTRA_AUDIENCE": ENTRA_AUDIENCE,
            "GATEKEEPER_ENTRA_AUTHORITY_HOST": entra.authority_host,
            "GATEKEEPER_GITHUB_OIDC_AUDIENCE": GITHUB_AUDIENCE,
            "GATEKEEPER_GITHUB_OIDC_ISSUER": github.issuer,
        },
    )
    policy = load_policy(POLICY)
    decider = PolicyDecider(lambda _t: policy)
    env.services.decider = decider
    gates = local_gates(
        env.storage,
        env.services.sealer,
        decider=decider,
        audit_for=env.services.audit_for,
        notifier=OutboxNotifier(tmp_path / "outbox"),
        callbacks=PipelineCallbacks(
            webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
            webhook_secret=lambda _t: b"unused",
        ),
        entra_tenants_for=env.services.entra_tenants_for,
        token_validator=env.services.token_validator,
        clock=ManualClock(datetime.now(UTC)),
    )

    def mint(audience: str) -> str:  # the job's token as GitHub mints it for `id-token: write`
        return github.issue(audience, actor="dev-alice")

    with DurableApiServer() as durable, GitHubIdTokenEndpoint(REQUEST_TOKEN, mint) as endpoint:
        set_services(env.services)
        http_function("action_request")  # index the app once, before any thread looks a function up
        try:
            with FunctionsHttpHost(durable.client_binding) as host:
                yield Stack(env, gates, entra, github, host, endpoint)
        finally:
            set_services(None)


def start_step(stack: Stack, tmp_path: Path, **overrides: str) -> tuple[subprocess.Popen[str], Path, Path]:
    """The GitHub Action's script as the runner starts it (composite step env, OIDC request variables)."""
    output, summary = tmp_path / "github_output", tmp_path / "summary.md"
    output.touch()
    summary.touch()
    env = {
        "PATH": os.environ.get("PATH", ""),
        **GITHUB_JOB,
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "ACTIONS_ID_TOKEN_REQUEST_URL": stack.token_endpoint.request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN,
        "GATEKEEPER_URL": stack.host.url,
        "GATEKEEPER_AUDIENCE": GITHUB_AUDIENCE,
        "GATEKEEPER_COMMAND": "terraform apply -auto-approve plan.tfplan",
        "GATEKEEPER_ACTION": "infrastructure_change",
        "GATEKEEPER_ENVIRONMENT": "production",
        "GATEKEEPER_RESOURCE": "rg-contoso-prod",
        "GATEKEEPER_TIMEOUT": "PT30M",
        "GATEKEEPER_ON_DENY": "skip",
        **overrides,
    }
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return process, output, summary


def outputs(path: Path) -> dict[str, str]:
    from tests.integration.test_action_step import read_github_output

    return read_github_output(path)


def test_a_denied_step_with_skip_ends_green_and_the_audit_shows_denied_and_skipped(
    stack: Stack, tmp_path: Path
) -> None:
    process, output, summary = start_step(stack, tmp_path)
    try:
        (action_id,) = stack.pump_until_started()
        stack.decide(action_id, PIET, "reject")
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stdout + stderr
    got = outputs(output)
    assert got["approved"] == "false" and got["decision"] == "denied" and got["action-id"] == action_id
    assert got["approval-url"].endswith(f"/api/approvals/{action_id}/page") and got["level"] == "L2"
    assert "::warning::Gatekeeper: denied (level L2)" in stdout
    assert "terraform apply -auto-approve plan.tfplan" in summary.read_text()
    records = stack.audit(action_id)
    kinds = [r.kind for r in records]
    assert kinds[0] == "action_requested" and "approval_decided" in kinds
    reports = [r.data for r in records if r.kind == "action_reported"]
    assert [(r["outcome"], r["refused"]) for r in reports] == [("skipped", False)]
    received = next(r.data for r in records if r.kind == "event_received")
    assert received["requester"] == ["github:login:dev-alice"]  # the job's OIDC token named the requester


def test_an_approved_step_sets_approved_true_and_a_retried_step_finds_the_same_action(
    stack: Stack, tmp_path: Path
) -> None:
    (tmp_path / "first").mkdir()
    process, output, _ = start_step(stack, tmp_path / "first", GATEKEEPER_ON_DENY="fail")
    try:
        (action_id,) = stack.pump_until_started()
        stack.decide(action_id, ANNA, "approve")
        # dev-alice (the job's actor) is in no identity map: an unresolved requester raises the quorum by one
        stack.decide(action_id, PIET, "approve")
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stdout + stderr
    assert outputs(output)["approved"] == "true" and outputs(output)["action-id"] == action_id
    (tmp_path / "again").mkdir()
    again, output_again, _ = start_step(stack, tmp_path / "again", GATEKEEPER_ON_DENY="fail")
    again.communicate(timeout=60)
    assert again.returncode == 0 and outputs(output_again)["action-id"] == action_id
    assert [r.kind for r in stack.audit(action_id)].count("action_requested") == 1
    # the guarded step ran: actions/report-outcome (the same script in report mode) says so
    (tmp_path / "report").mkdir()
    report = {"GATEKEEPER_REPORT": "executed", "GATEKEEPER_ACTION_ID": action_id, "GATEKEEPER_EXIT_CODE": "0"}
    reporter, _, _ = start_step(stack, tmp_path / "report", **report)
    reporter.communicate(timeout=60)
    assert reporter.returncode == 0
    reports = [r.data for r in stack.audit(action_id) if r.kind == "action_reported"]
    assert [(r["outcome"], r["exit_code"], r["refused"]) for r in reports] == [("executed", 0, False)]


def test_the_cli_waits_for_a_person_with_the_api_key(stack: Stack) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GATEKEEPER_URL": stack.host.url,
        "GATEKEEPER_API_KEY": API_KEY,
        "GATEKEEPER_TENANT": stack.env.tenant_id,
    }
    argv = [sys.executable, "-m", "gatekeeper", "request", "--action", "data_export", "--environment", "production"]
    argv += ["--idempotency-key", "export-2026-12", "--wait", "--json", "--argv", "pg_dump", "--table", "customers"]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        (action_id,) = stack.pump_until_started()
        stack.decide(action_id, ANNA, "approve")
        stack.decide(action_id, PIET, "approve")  # an API key names no person: the quorum is raised by one
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    printed = json.loads(stdout)
    assert printed["id"] == action_id and printed["status"] == "approved" and printed["decided_by"] in UPN.values()
    assert printed["command"] == "pg_dump --table customers" and printed["exit_code"] == 0


def test_an_agent_runs_an_l0_call_and_is_quietly_denied_an_l3_one(stack: Stack) -> None:
    client = GatekeeperClient(stack.host.url, token_provider=stack.agent_token)
    ran: list[str] = []

    @requires_approval(client, action="deploy", environment="dev", command=lambda name: f"deploy {name}")
    def deploy(name: str) -> str:
        ran.append(name)
        return f"deployed {name}"

    @requires_approval(client, action="secret_access", environment="production", command="vault read prod/db")
    def read_secret() -> str:
        ran.append("secret")
        return "s3cret"

    assert deploy("web") == "deployed web"
    denied = read_secret()
    assert isinstance(denied, Denied) and denied.status == "human_only" and not denied
    assert ran == ["web"]
    started = stack.pump_until_started(count=2)
    outcomes = {}
    for action_id in started:
        reports = [r.data for r in stack.audit(action_id) if r.kind == "action_reported"]
        assert len(reports) == 1 and not reports[0]["refused"]
        state = client.get(action_id)
        outcomes[state.status] = (state.outcome, reports[0]["outcome"])
    assert outcomes == {"approved": ("executed", "executed"), "human_only": ("skipped", "skipped")}
