"""The rollback runners against local servers speaking GitHub's, Azure DevOps' and a CI webhook's wire
format, through `RollbackRunners` as the watch's steps call it: what is refused before anything is sent
(no repository, no ref, a foreign or plain-http organization, no PAT, a URL outside the tenant's prefixes, no
signing secret, an installation not the tenant's), what a failing CI answers, and that a runner's bug is a
failed rollback, never an exception into the watch. Tokens never appear in a detail."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.keyvault.keys.crypto import CryptographyClient
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.azure_devops import LocalAzureDevOpsServer
from devstack.github import LocalGitHubServer
from devstack.webhook import LocalWebhookReceiver
from gatekeeper.integrations.github_app import GitHubApp, GitHubWorkflows, rsa_jwk
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.rollbacks import (
    AzureDevOpsRollbacks,
    GitHubRollbacks,
    RollbackRunners,
    WebhookRollbacks,
)
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.ports import RollbackOrder, RollbackRunner, RollbackStatus

TENANT = "tcontoso"
APP_ID = "424242"
INSTALLATION = 77
PAT = "local-pipelines-pat-0123456789"
HOOK_SECRET = b"rollback-webhook-secret-for-runner-tests"
ONE_TRY = RetryPolicy(max_attempts=1, initial_wait=0, jitter=0)


@dataclass
class Rig:
    runners: RollbackRunners
    github: LocalGitHubServer
    ado: LocalAzureDevOpsServer
    receiver: LocalWebhookReceiver
    org: str
    pats: dict[str, str]
    secrets: dict[str, bytes]
    installations: set[int]


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def rig(app_key: rsa.RSAPrivateKey) -> Iterator[Rig]:
    with (
        LocalGitHubServer(APP_ID, app_key.public_key(), installation_id=INSTALLATION) as github,
        LocalAzureDevOpsServer("check-token", organization="fabrikam") as ado,
        LocalWebhookReceiver(HOOK_SECRET) as receiver,
    ):
        ado.pipelines_pat = PAT
        org = f"{ado.url}/{ado.organization}"
        pats, secrets, installations = {TENANT: PAT}, {TENANT: HOOK_SECRET}, {INSTALLATION}

        def secret_for(tenant_id: str) -> bytes:
            if tenant_id not in secrets:
                raise LookupError(f"tenant {tenant_id} has no callback_signing secret")
            return secrets[tenant_id]

        app = GitHubApp(
            APP_ID,
            CryptographyClient.from_jwk(rsa_jwk(app_key)),
            github.api_url,
            policy=ONE_TRY,
            allow_loopback_http=True,
            installations=lambda t: set(installations) if t == TENANT else set(),
        )
        runners = RollbackRunners(
            {
                "github": GitHubRollbacks(GitHubWorkflows(app)),
                "azure-devops": AzureDevOpsRollbacks(
                    pats.get,
                    lambda t, o: t == TENANT and o.rstrip("/") in (org, "http://dev.azure.example/fabrikam"),
                    policy=ONE_TRY,
                    allow_loopback_http=True,
                ),
                "webhook": WebhookRollbacks(
                    WebhookSender(policy=ONE_TRY, allow_loopback_http=True),
                    secret_for,
                    lambda t, url: t == TENANT and url.startswith(f"{receiver.url}/ci/"),
                ),
            }
        )
        yield Rig(runners, github, ado, receiver, org, pats, secrets, installations)


def order(target: dict[str, Any], **over: Any) -> RollbackOrder:
    fields: dict[str, Any] = {
        "target": target,
        "watch_id": "watch-1",
        "repository": "contoso/webshop",
        "environment": "production",
        "to_ref": "refs/tags/v1",
        "to_commit": "c0ffee000001",
        "to_run_id": "41",
        "ordered_at": datetime.now(UTC),
    }
    return RollbackOrder(**{**fields, **over})


GITHUB = {"type": "github", "workflow": "rollback.yml", "inputs": {"sha": "{commit}", "run": "{run_id}"}}


# -- GitHub ----------------------------------------------------------------------------------------------


def test_github_dispatches_the_workflow_at_the_last_good_ref_and_follows_its_run(rig: Rig):
    rig.github.dispatch_conclusion = None  # the run stays in progress until finished below
    sent = rig.runners.dispatch(TENANT, order(GITHUB))
    assert sent.ok, sent
    [dispatch] = rig.github.dispatches
    assert dispatch["body"] == {"ref": "refs/tags/v1", "inputs": {"sha": "c0ffee000001", "run": "41"}}
    running = rig.runners.follow(TENANT, order(GITHUB), None)
    assert (running.ok, running.done, running.run_id, running.detail) == (
        True,
        False,
        "9000",
        "run 9000 is in_progress",
    )
    rig.github.finish_run(9000, "failure")
    finished = rig.runners.follow(TENANT, order(GITHUB), None)
    assert (finished.done, finished.conclusion, finished.url) == (True, "failure", running.url)


@pytest.mark.parametrize(
    ("over", "detail"),
    [
        ({"repository": None}, "github: the deployment names no owner/repository"),
        ({"repository": "webshop"}, "github: the deployment names no owner/repository"),
        ({"to_ref": None}, "github: no ref to roll back to"),
    ],
)
def test_github_refuses_before_sending_without_a_repository_or_a_ref(rig: Rig, over, detail):
    sent = rig.runners.dispatch(TENANT, order(GITHUB, **over))
    assert not sent.ok and sent.detail.startswith(detail)
    assert rig.github.dispatches == [] and rig.github.requests == []


def test_github_target_ref_wins_over_the_last_good_ref(rig: Rig):
    assert rig.runners.dispatch(TENANT, order({**GITHUB, "ref": "release/{commit}"}, to_ref=None)).ok
    assert rig.github.dispatches[0]["body"]["ref"] == "release/c0ffee000001"


def test_github_follow_before_any_dispatch_or_before_the_run_is_listed(rig: Rig):
    never = rig.runners.follow(TENANT, order(GITHUB, ordered_at=None), None)
    assert (never.ok, never.detail) == (False, "github: the rollback was never dispatched")
    waiting = rig.runners.follow(TENANT, order(GITHUB), None)  # nothing dispatched: no run listed yet
    assert (waiting.ok, waiting.done, waiting.detail) == (True, False, "the rollback run is not listed yet")


def test_github_follow_that_cannot_ask_is_a_failed_follow_naming_why(rig: Rig):
    rig.github.fail_next(1, 502, path_contains="/runs")
    failed = rig.runners.follow(TENANT, order(GITHUB), None)
    assert not failed.ok and "github workflow runs" in failed.detail and "502" in failed.detail


def test_github_with_several_installations_acts_only_as_the_one_github_names_for_the_repository(rig: Rig):
    rig.installations.add(12345)  # the tenant has two: GitHub is asked which one holds the repository
    assert rig.runners.dispatch(TENANT, order(GITHUB)).ok
    assert rig.github.requests_to("/repos/contoso/webshop/installation", "GET")
    rig.installations.discard(INSTALLATION)  # two others: GitHub's answer is not one of the tenant's
    rig.installations.add(12346)
    refused = rig.runners.dispatch(TENANT, order(GITHUB))
    assert not refused.ok and f"installation {INSTALLATION} is not registered" in refused.detail
    assert len(rig.github.dispatches) == 1


def test_github_for_a_tenant_without_the_installation_sends_nothing(rig: Rig):
    refused = rig.runners.dispatch("tsomeoneelse", order(GITHUB))
    assert not refused.ok and "is not registered for tenant tsomeoneelse; nothing was sent" in refused.detail
    assert rig.github.dispatches == []


# -- Azure DevOps ------------------------------------------------------------------------------------------


def ado_target(rig: Rig, **over: Any) -> dict[str, Any]:
    return {"type": "azure-devops", "organization": rig.org, "project": "web shop", "pipeline_id": 12, **over}


def test_azure_devops_queues_the_pipeline_at_the_last_good_commit_and_follows_the_run(rig: Rig):
    rig.ado.run_result = None  # the run stays in progress until finished below
    sent = rig.runners.dispatch(TENANT, order(ado_target(rig, parameters={"sha": "{commit}"})))
    assert sent.ok and sent.run_id == "500" and not sent.done
    [run] = rig.ado.pipeline_runs
    assert run["body"] == {
        "templateParameters": {"sha": "c0ffee000001"},
        "resources": {"repositories": {"self": {"refName": "refs/tags/v1", "version": "c0ffee000001"}}},
    }
    rig.ado.finish_run(500, "failed")
    followed = rig.runners.follow(TENANT, order(ado_target(rig)), "500")
    assert (followed.ok, followed.done, followed.conclusion, followed.detail) == (True, True, "failure", "run 500")


def test_azure_devops_without_a_last_good_deployment_queues_the_pipelines_default(rig: Rig):
    assert rig.runners.dispatch(TENANT, order(ado_target(rig), to_ref=None, to_commit=None)).ok
    assert rig.ado.pipeline_runs[0]["body"] == {"templateParameters": {}}


@pytest.mark.parametrize(
    ("case", "detail"),
    [
        ("foreign organization", "target.organization: not an Azure DevOps organization registered"),
        ("plain http", "target.organization"),
        ("no pat", "azure devops: the tenant has no azure_devops_pipelines secret"),
    ],
)
def test_azure_devops_refuses_before_sending(rig: Rig, case, detail):
    target = ado_target(rig)
    if case == "foreign organization":
        target["organization"] = rig.org + "-other"
    elif case == "plain http":  # registered, but plain http to a host that is not loopback
        target["organization"] = "http://dev.azure.example/fabrikam"
    else:
        rig.pats.clear()
    for answer in (rig.runners.dispatch(TENANT, order(target)), rig.runners.follow(TENANT, order(target), "500")):
        assert not answer.ok and answer.detail.startswith(detail), answer
    assert rig.ado.requests == []


def test_azure_devops_failures_are_failed_rollbacks_without_the_pat(rig: Rig):
    rig.ado.fail_next(2, 500, path_contains="/_apis/pipelines/")
    sent = rig.runners.dispatch(TENANT, order(ado_target(rig)))
    followed = rig.runners.follow(TENANT, order(ado_target(rig)), "500")
    for answer in (sent, followed):
        assert not answer.ok and "500" in answer.detail
        assert PAT not in answer.detail and base64.b64encode(f":{PAT}".encode()).decode() not in answer.detail
    assert rig.ado.pipeline_runs == []


@pytest.mark.parametrize("run_id", [None, "", "500/../1"])
def test_azure_devops_follow_without_a_run_id_asks_nobody(rig: Rig, run_id):
    answer = rig.runners.follow(TENANT, order(ado_target(rig)), run_id)
    assert (answer.ok, answer.detail) == (False, "azure devops: the rollback run has no id to follow")
    assert rig.ado.requests == []


# -- webhook ------------------------------------------------------------------------------------------------


def test_a_webhook_rollback_is_signed_and_acknowledged(rig: Rig):
    target = {"type": "webhook", "url": f"{rig.receiver.url}/ci/rollback"}
    sent = rig.runners.dispatch(TENANT, order(target))
    assert (sent.ok, sent.done, sent.conclusion) == (True, True, "success")
    [delivery] = rig.receiver.deliveries
    assert delivery["body"]["to"] == {"ref": "refs/tags/v1", "commit": "c0ffee000001", "run_id": "41"}
    followed = rig.runners.follow(TENANT, order(target), None)
    assert (followed.ok, followed.done, followed.detail) == (True, True, "acknowledged by the CI")


def test_a_webhook_outside_the_tenants_prefixes_or_without_a_secret_sends_nothing(rig: Rig):
    outside = rig.runners.dispatch(TENANT, order({"type": "webhook", "url": f"{rig.receiver.url}/elsewhere"}))
    assert not outside.ok and outside.detail.startswith("target.url: not under a callback URL prefix")
    rig.secrets.clear()
    unsigned = rig.runners.dispatch(TENANT, order({"type": "webhook", "url": f"{rig.receiver.url}/ci/rollback"}))
    assert (unsigned.ok, unsigned.detail) == (False, f"tenant {TENANT} has no callback_signing secret")
    assert rig.receiver.deliveries == []


# -- the table of runners ---------------------------------------------------------------------------------


def test_a_target_type_without_a_runner_names_what_is_missing():
    runners = RollbackRunners({})
    github = runners.dispatch(TENANT, order(GITHUB))
    assert (github.ok, github.detail) == (
        False,
        "github rollback: the GitHub App (GATEKEEPER_GITHUB_APP_ID) is not configured",
    )
    other = runners.follow(TENANT, order({"type": "jenkins"}), "1")
    assert (other.ok, other.detail) == (False, "jenkins rollback: a 'jenkins' runner is not configured")


class _Broken(RollbackRunner):
    def dispatch(self, tenant_id: str, order: RollbackOrder) -> RollbackStatus:
        raise KeyError("workflow")

    def follow(self, tenant_id: str, order: RollbackOrder, run_id: str | None) -> RollbackStatus:
        raise ZeroDivisionError


def test_a_runner_that_raises_is_a_failed_rollback_never_an_exception_into_the_watch():
    runners = RollbackRunners({"github": _Broken()})
    assert runners.dispatch(TENANT, order(GITHUB)) == RollbackStatus(
        ok=False, detail="rollback dispatch: unexpected KeyError"
    )
    assert runners.follow(TENANT, order(GITHUB), "1") == RollbackStatus(
        ok=False, detail="rollback follow: unexpected ZeroDivisionError"
    )
