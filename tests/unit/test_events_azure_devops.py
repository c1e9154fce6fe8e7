"""Azure DevOps: the "Invoke Azure Function" check and service hooks, from the published samples."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from functions.http import problem_body
from gatekeeper.errors import InvalidInput
from gatekeeper.events.azure_devops import REQUIRED_HEADERS, parse_check_request, parse_service_hook
from gatekeeper.events.common import Ignored
from gatekeeper.events.model import ActionKind, AzureDevOpsCallback, EventKind, EventSource, PipelineEvent
from tests.conftest import SHARED_FIXTURES, load_fixture

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.super-secret-job-token"
BODY = {
    "environment": "production",
    "repository": "web-shop",
    "ref": "refs/heads/main",
    "commit": "600c52d2d5b655caa111abfd863e5a9bd304bb0e",
    "requestedBy": "d6245f20-2af8-44f4-9451-8107cb2767db",
    "runId": 4711,
    "stage": "Deploy_Prod",
    "action": "Deploy",
    "labels": ["pci"],
    "evidence": [{"kind": "tests", "uri": "https://dev.azure.com/fabrikam/web/_apis/test/runs/12"}],
}


def check_headers(**overrides: str) -> dict[str, str]:
    headers = dict(load_fixture("azure-devops/invoke-azure-function-check.request.json")["headers"])
    headers["AuthToken"] = TOKEN
    headers.update(overrides)
    return headers


def check(headers: dict[str, str] | None = None, body: Any = BODY) -> PipelineEvent:
    return parse_check_request(check_headers() if headers is None else headers, body, tenant_id="contoso")


def test_check_request_becomes_a_gate_request_with_callback() -> None:
    event = check()
    assert (event.source, event.kind, event.action) == (
        EventSource.AZURE_DEVOPS,
        EventKind.GATE_REQUEST,
        ActionKind.DEPLOY,
    )
    assert event.environment == "production"
    assert event.run_id == "4711/checks/a6b1c2d3-e4f5-4a7b-8c9d-0e1f2a3b4c5d"  # one gate per evaluation
    assert event.repository == "web-shop"
    assert event.actor == "d6245f20-2af8-44f4-9451-8107cb2767db"
    assert event.labels == ("pci",)
    assert event.evidence[0].kind == "tests"
    callback = event.callback
    assert isinstance(callback, AzureDevOpsCallback)
    assert callback.plan_url == "https://dev.azure.com/fabrikam/"
    assert callback.plan_id == "4c5b5d3a-9e1f-4a6b-8f0e-2f6d7a1b3c90"
    assert callback.task_instance_id == "a6b1c2d3-e4f5-4a7b-8c9d-0e1f2a3b4c5d"
    assert callback.auth_token.get_secret_value() == TOKEN


def test_the_auth_token_never_shows_in_reprs_or_dumps() -> None:
    event = check()
    assert TOKEN not in repr(event)
    assert TOKEN not in str(event)
    assert TOKEN not in event.model_dump_json()


def test_headers_are_case_insensitive() -> None:
    lowered = {key.lower(): value for key, value in check_headers().items()}
    assert check(lowered).callback == check().callback


def test_published_sample_with_its_empty_body_lacks_the_environment() -> None:
    sample = load_fixture("azure-devops/invoke-azure-function-check.request.json")
    with pytest.raises(InvalidInput) as caught:
        parse_check_request(sample["headers"], sample["body"], tenant_id="contoso")
    assert caught.value.field == "environment"
    assert caught.value.detail == "Invoke Azure Function check: field 'environment' is required"


@pytest.mark.parametrize("name", REQUIRED_HEADERS)
def test_each_missing_header_is_named(name: str) -> None:
    headers = check_headers()
    del headers[name]
    with pytest.raises(InvalidInput) as caught:
        check(headers)
    assert caught.value.field == f"header:{name}"
    assert f"'{name}'" in caught.value.detail


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PlanId", "../../../_apis/evil"),
        ("ProjectId", "$(system.TeamProjectId)"),
        ("HubName", "build/../x"),
        ("PlanUrl", "http://dev.azure.com/fabrikam/"),
        ("PlanUrl", "not a url"),
        ("JobId", "  "),
    ],
)
def test_bad_header_values_are_named(name: str, value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check(check_headers(**{name: value}))
    assert caught.value.field == f"header:{name}"


def test_problems_never_contain_the_token() -> None:
    headers = check_headers(PlanId="nope")
    with pytest.raises(InvalidInput) as caught:
        check(headers)
    assert TOKEN not in str(problem_body(caught.value))
    bad_body = {**BODY, "environment": TOKEN * 20}  # too long: the value itself must not be echoed
    with pytest.raises(InvalidInput) as caught:
        check(body=bad_body)
    assert TOKEN not in str(problem_body(caught.value))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "environment": "$(Environment.Name)"}, "environment"),
        ({**BODY, "runId": "$(Build.BuildId)"}, "runId"),
        ({**BODY, "action": "launch-missiles"}, "action"),
        ({**BODY, "evidence": [{"kind": "vibes", "uri": "x"}]}, "evidence[0].kind"),
        ({**BODY, "labels": ["ok", ""]}, "labels[1]"),
        ({**BODY, "environment": ""}, "environment"),
    ],
)
def test_bad_body_fields_are_named(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check(body=body)
    assert caught.value.field == field


def test_run_id_falls_back_to_build_id_header_then_plan_id() -> None:
    body = {"environment": "production"}
    evaluation = "/checks/a6b1c2d3-e4f5-4a7b-8c9d-0e1f2a3b4c5d"
    assert check(check_headers(BuildId="991"), body).run_id == "991" + evaluation
    assert (
        check(check_headers(BuildId="$(build.BuildId)"), body).run_id
        == "4c5b5d3a-9e1f-4a6b-8f0e-2f6d7a1b3c90" + evaluation
    )
    assert check(body=body).action is ActionKind.DEPLOY


def test_check_redelivery_same_key_other_evaluation_or_environment_other_key() -> None:
    first = check()
    redelivered = check()
    reevaluated = check(check_headers(TaskInstanceId="b6b1c2d3-e4f5-4a7b-8c9d-0e1f2a3b4c5d"))
    staging = check(body={**BODY, "environment": "staging"})
    assert first.business_key == redelivered.business_key
    # a re-run stage evaluates the check again (new task instance): it must get an answer of its own
    assert first.business_key != reevaluated.business_key
    assert first.business_key != staging.business_key


# --- service hooks -----------------------------------------------------------------------------------------

HOOKS: dict[str, tuple[EventKind | None, str | None, str | None, str | None]] = {
    # fixture: (kind or None for Ignored, status, run_id, environment)
    "build.complete.json": (EventKind.RUN_STATUS, "success", "2", None),
    "ms.vss-pipelines.run-state-changed-event.json": (EventKind.RUN_STATUS, "success", "11", None),
    "ms.vss-pipelines.stage-state-changed-event.json": (EventKind.STAGE_STATUS, "success", "2", "__default"),
    "ms.vss-pipelinechecks-events.approval-pending.json": (None, None, None, None),
    "ms.vss-pipelinechecks-events.approval-completed.json": (None, None, None, None),
}


def test_every_published_service_hook_sample_is_covered() -> None:
    samples = {p.name for p in (SHARED_FIXTURES / "azure-devops").glob("*.json")}
    assert samples - {"invoke-azure-function-check.request.json"} == set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_service_hook_sample_outcome(name: str) -> None:
    body = load_fixture(f"azure-devops/{name}")
    result = parse_service_hook(body, tenant_id="contoso")
    kind, status, run_id, environment = HOOKS[name]
    if kind is None:
        assert result == Ignored(f"Azure DevOps event '{body['eventType']}' is not handled")
        return
    assert isinstance(result, PipelineEvent)
    assert (result.kind, result.status, result.run_id, result.environment) == (kind, status, run_id, environment)
    assert result.delivery_id == body["id"]
    assert result.summary == body["message"]["text"]


def test_build_complete_reads_legacy_source_version_and_requester() -> None:
    event = parse_service_hook(load_fixture("azure-devops/build.complete.json"), tenant_id="contoso")
    assert isinstance(event, PipelineEvent)
    assert event.action is ActionKind.BUILD
    assert (event.ref, event.commit) == ("refs/heads/master", "600c52d2d5b655caa111abfd863e5a9bd304bb0e")
    assert event.actor == "fabrikamfiber16@hotmail.com"


def test_run_state_uses_state_when_no_result_yet() -> None:
    body = load_fixture("azure-devops/ms.vss-pipelines.run-state-changed-event.json")
    body["resource"]["run"]["state"] = "inProgress"
    body["resource"]["run"]["result"] = None
    event = parse_service_hook(body, tenant_id="contoso")
    assert isinstance(event, PipelineEvent)
    assert event.status == "in_progress"


@pytest.mark.parametrize(
    ("name", "path", "field"),
    [
        ("ms.vss-pipelines.run-state-changed-event.json", ("resource", "run", "state"), "resource.run.state"),
        ("ms.vss-pipelines.stage-state-changed-event.json", ("resource", "stage", "name"), "resource.stage.name"),
        ("ms.vss-pipelines.stage-state-changed-event.json", ("resource", "run"), "resource.run"),
        ("build.complete.json", ("resource", "id"), "resource.id"),
        ("build.complete.json", ("eventType",), "eventType"),
    ],
)
def test_service_hook_missing_field_is_named(name: str, path: tuple[str, ...], field: str) -> None:
    body = copy.deepcopy(load_fixture(f"azure-devops/{name}"))
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    with pytest.raises(InvalidInput) as caught:
        parse_service_hook(body, tenant_id="contoso")
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("name", "nulls", "reason"),
    [
        ("ms.vss-pipelines.run-state-changed-event.json", ("run",), "names no run"),
        ("ms.vss-pipelines.stage-state-changed-event.json", ("run",), "names no run"),
        ("ms.vss-pipelines.stage-state-changed-event.json", ("stage",), "names no stage"),
        ("ms.vss-pipelines.stage-state-changed-event.json", ("pipeline", "stage", "run"), "names no stage"),
    ],
)
def test_state_event_with_the_docs_null_run_or_stage_is_ignored_with_a_reason(
    name: str, nulls: tuple[str, ...], reason: str
) -> None:
    """The docs' approval samples carry `resource.pipeline/stage/run` as null; a state event shaped so names
    nothing to record: a 2xx with the reason, not a 422 (an absent key is still named, above)."""
    body = copy.deepcopy(load_fixture(f"azure-devops/{name}"))
    body["resource"].update(dict.fromkeys(nulls))
    outcome = parse_service_hook(body, tenant_id="contoso")
    assert isinstance(outcome, Ignored)
    assert reason in outcome.reason and body["eventType"] in outcome.reason


def test_build_complete_with_null_requests_is_read_as_none() -> None:
    """Every optional field the parser reads may be null; `requests` null is no requester, not a 422."""
    body = load_fixture("azure-devops/build.complete.json")
    body["resource"]["requests"] = None
    event = parse_service_hook(body, tenant_id="contoso")
    assert isinstance(event, PipelineEvent)
    assert event.run_id == str(body["resource"]["id"]) and event.actor == "fabrikamfiber16@hotmail.com"


def test_service_hook_keys_stage_vs_run_and_redelivery() -> None:
    run = parse_service_hook(load_fixture("azure-devops/ms.vss-pipelines.run-state-changed-event.json"), tenant_id="t")
    again = parse_service_hook(
        load_fixture("azure-devops/ms.vss-pipelines.run-state-changed-event.json"), tenant_id="t"
    )
    stage_body = load_fixture("azure-devops/ms.vss-pipelines.stage-state-changed-event.json")
    stage = parse_service_hook(stage_body, tenant_id="t")
    stage_body["resource"]["stage"]["name"] = "Deploy_Prod"
    other_stage = parse_service_hook(stage_body, tenant_id="t")
    assert isinstance(run, PipelineEvent) and isinstance(again, PipelineEvent)
    assert isinstance(stage, PipelineEvent) and isinstance(other_stage, PipelineEvent)
    assert run.business_key == again.business_key
    assert len({run.business_key, stage.business_key, other_stage.business_key}) == 3


def _local_fixture(name: str) -> dict[str, Any]:
    import json

    from tests.conftest import ROOT

    return json.loads((ROOT / "tests/fixtures/azure-devops" / name).read_text())


def test_run_state_without_run_id_takes_it_from_the_self_link() -> None:
    body = _local_fixture("ms.vss-pipelines.run-state-changed-event.without-run-id.json")
    event = parse_service_hook(body, tenant_id="contoso")
    assert isinstance(event, PipelineEvent) and event.run_id == "11" and event.status == "success"
    del body["resource"]["run"]["_links"]
    assert parse_service_hook(body, tenant_id="contoso").run_id == "11"  # type: ignore[union-attr]  # from `url`


def test_run_state_naming_no_run_at_all_is_ignored_with_a_reason() -> None:
    body = _local_fixture("ms.vss-pipelines.run-state-changed-event.without-run-id.json")
    del body["resource"]["run"]["_links"], body["resource"]["run"]["url"]
    result = parse_service_hook(body, tenant_id="contoso")
    assert isinstance(result, Ignored) and "names no run" in result.reason


def test_legacy_build_complete_without_result_is_ignored_with_a_reason() -> None:
    result = parse_service_hook(_local_fixture("build.complete.legacy.json"), tenant_id="contoso")
    assert isinstance(result, Ignored) and "neither result nor status" in result.reason


def test_check_with_only_the_documented_minimum_headers_is_a_gate_without_a_timeline() -> None:
    headers = check_headers()
    headers.pop("TimelineId")
    event = parse_check_request(headers, {"environment": "production"}, tenant_id="contoso")
    assert isinstance(event.callback, AzureDevOpsCallback) and event.callback.timeline_id is None
