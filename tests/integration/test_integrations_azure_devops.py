"""Azure DevOps check callbacks against the local Azure DevOps stand-in (real requests over loopback).

The callback handle is built from the documented "Invoke Azure Function" check headers
(fixture azure-devops/invoke-azure-function-check.request.json); the expected callback body is the
fixture's, so the wire format is the documented one."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from devstack.azure_devops import LocalAzureDevOpsServer
from gatekeeper.events.model import AzureDevOpsCallback
from gatekeeper.integrations.azure_devops import AzureDevOpsClient, task_completed_url
from gatekeeper.integrations.retry import RetryPolicy
from tests.support.adapter_logs import adapter_lines

FIXTURE = "azure-devops/invoke-azure-function-check.request.json"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.job-access-token-for-tests"


@pytest.fixture
def ado():
    with LocalAzureDevOpsServer(TOKEN, organization="fabrikam") as server:
        yield server


@pytest.fixture
def check(shared_fixture) -> dict:
    return shared_fixture(FIXTURE)


def callback_from_check(check: dict, plan_url: str, token: str = TOKEN) -> AzureDevOpsCallback:
    """What the ingestion route extracts from the check's request headers."""
    headers = check["headers"]
    return AzureDevOpsCallback(
        plan_url=plan_url,
        project_id=headers["ProjectId"],
        hub_name=headers["HubName"],
        plan_id=headers["PlanId"],
        job_id=headers["JobId"],
        timeline_id=headers["TimelineId"],
        task_instance_id=headers["TaskInstanceId"],
        auth_token=SecretStr(token),
    )


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(waits) -> AzureDevOpsClient:
    policy = RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=waits.append)
    return AzureDevOpsClient(policy=policy, allow_loopback_http=True)


def test_approval_sends_task_completed_exactly_as_documented(client, ado, check):
    callback = callback_from_check(check, ado.plan_url)
    result = client.complete(callback, approved=True)

    assert result.ok and result.attempts == 1 and result.target == "azure-devops"
    [completion] = ado.completions
    assert completion["body"] == check["callback"]["body"]  # {"name": "TaskCompleted", ..., "succeeded"}
    assert completion["auth_scheme"] == "bearer"
    assert (completion["project"], completion["hub"], completion["plan"]) == (
        check["headers"]["ProjectId"],
        "build",
        check["headers"]["PlanId"],
    )
    [request] = ado.requests_to("/events")
    assert request.query == {"api-version": ["2.0-preview.1"]}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


def test_the_url_has_the_documented_shape_without_double_slashes(ado, check):
    with_slash = task_completed_url(callback_from_check(check, "https://dev.azure.com/fabrikam/"))
    without = task_completed_url(callback_from_check(check, "https://dev.azure.com/fabrikam"))
    assert with_slash == without == check["callback"]["url"]


def test_plan_url_without_a_trailing_slash_still_reaches_the_endpoint(client, ado, check):
    result = client.complete(callback_from_check(check, ado.plan_url.rstrip("/")), approved=True)
    assert result.ok and len(ado.completions) == 1


def test_rejection_fails_the_check(client, ado, check):
    assert client.complete(callback_from_check(check, ado.plan_url), approved=False).ok
    assert ado.completions[0]["body"]["result"] == "failed"


def test_basic_authentication_with_the_token_as_password_also_works(ado, check):
    client = AzureDevOpsClient(auth_scheme="basic", allow_loopback_http=True)
    assert client.complete(callback_from_check(check, ado.plan_url), approved=True).ok
    assert ado.completions[0]["auth_scheme"] == "basic"


def test_service_unavailable_twice_then_success_takes_three_attempts(client, ado, check, waits):
    ado.fail_next(2, 503, path_contains="/events")
    result = client.complete(callback_from_check(check, ado.plan_url), approved=True)
    assert result.ok and result.attempts == 3 and len(waits) == 2
    assert len(ado.completions) == 1


def test_a_wrong_token_is_not_retried_and_never_leaks(client, ado, check, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-value-that-must-not-leak"
    result = client.complete(callback_from_check(check, ado.plan_url, token=wrong), approved=True)
    assert not result.ok and result.status_code == 401 and result.attempts == 1
    assert "TF400813" in result.detail
    assert wrong not in caplog.text and wrong not in result.detail and wrong not in repr(result)
    assert ado.completions == []


def test_final_failure_is_returned_with_every_attempt_counted(client, ado, check):
    ado.fail_next(10, 500, path_contains="/events")
    result = client.complete(callback_from_check(check, ado.plan_url), approved=True)
    assert not result.ok and result.attempts == 4 and result.status_code == 500


def test_the_callback_refuses_plain_http_to_a_remote_host(ado, check):
    client = AzureDevOpsClient(allow_loopback_http=False)
    result = client.complete(callback_from_check(check, "http://dev.azure.com/fabrikam/"), approved=True)
    assert not result.ok and result.attempts == 0
    assert result.detail.startswith("callback.plan_url:") and "https" in result.detail
    local = client.complete(callback_from_check(check, ado.plan_url), approved=True)
    assert not local.ok and "callback.plan_url" in local.detail  # loopback only when allowed
    assert ado.requests == []


def test_progress_goes_to_the_check_console_feed(client, ado, check):
    callback = callback_from_check(check, ado.plan_url)
    result = client.progress(callback, "Waiting for approval from ops-leads\nStage 1 of 2")
    assert result.ok and result.action == "progress"
    [entry] = ado.feed
    assert entry["lines"] == ["Waiting for approval from ops-leads", "Stage 1 of 2"]
    assert entry["timeline"] == check["headers"]["TimelineId"] and entry["record"] == check["headers"]["JobId"]
    assert ado.requests_to("/feed")[0].query == {"api-version": ["4.1"]}


def test_the_secret_is_hidden_in_the_callback_handle(check, ado):
    callback = callback_from_check(check, ado.plan_url)
    assert TOKEN not in repr(callback) and TOKEN not in str(callback.model_dump())


def test_each_callback_logs_its_result_detail_once_on_the_azure_devops_logger(client, ado, check, caplog):
    """The log line is the result's detail: info when Azure DevOps acknowledged, error when it did not."""
    caplog.set_level(logging.DEBUG, logger="gatekeeper.integrations.azure_devops")
    callback = callback_from_check(check, ado.plan_url)
    ok = client.progress(callback, "waiting for approval")
    ado.fail_next(10, 500, path_contains="/events")
    failed = client.complete(callback, approved=False)
    lines = adapter_lines(caplog, "gatekeeper.integrations.azure_devops", "azure_devops.py")
    assert lines == [(logging.INFO, ok.detail), (logging.ERROR, failed.detail)]
    assert ok.detail.startswith(f"azure devops progress feed plan {callback.plan_id}: HTTP 200")
    assert failed.detail.startswith(f"azure devops TaskCompleted failed plan {callback.plan_id}: HTTP 500")
    assert (ok.ok, ok.attempts, ok.target, ok.action) == (True, 1, "azure-devops", "progress")
    assert (failed.ok, failed.status_code, failed.attempts, failed.action) == (False, 500, 4, "complete")
    assert TOKEN not in caplog.text
