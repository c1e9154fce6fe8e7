"""GitHub webhook parser: every published fixture, the protection-rule gate, missing fields, business keys."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from functions.http import status_of
from gatekeeper.errors import InvalidInput
from gatekeeper.events.common import Ignored
from gatekeeper.events.github import parse_github
from gatekeeper.events.model import ActionKind, EventKind, EventSource, GitHubCallback, PipelineEvent
from tests.conftest import SHARED_FIXTURES, load_fixture

SCHEMAS = SHARED_FIXTURES / "github" / "schemas"
RUN_ID = 7001234567
CALLBACK_URL = f"https://api.github.com/repos/Codertocat/Hello-World/actions/runs/{RUN_ID}/deployment_protection_rule"


def protection_rule_payload() -> dict[str, Any]:
    """A `deployment_protection_rule.requested` body built from published parts (GitHub publishes no example)."""
    base = load_fixture("github/deployment.with-installation.payload.json")
    return {
        "action": "requested",
        "environment": "production",
        "event": "push",
        "deployment_callback_url": CALLBACK_URL,
        "deployment": base["deployment"],
        "pull_requests": [],
        "repository": base["repository"],
        "sender": base["sender"],
        "installation": base["installation"],
    }


def schema_validator() -> Draft7Validator:
    resources = []
    for path in [*SCHEMAS.glob("common/*.schema.json"), SCHEMAS / "deployment_protection_rule.requested.schema.json"]:
        document = json.loads(path.read_text())
        resources.append((document["$id"], Resource.from_contents(document, default_specification=DRAFT7)))
    schema = json.loads((SCHEMAS / "deployment_protection_rule.requested.schema.json").read_text())
    return Draft7Validator(schema, registry=Registry().with_resources(resources))


def parse(event: str, payload: Any, delivery: str | None = "d-1") -> PipelineEvent | Ignored:
    return parse_github(event, payload, tenant_id="contoso", delivery_id=delivery)


def test_built_protection_rule_payload_matches_the_published_schema() -> None:
    validator = schema_validator()
    assert list(validator.iter_errors(protection_rule_payload())) == []
    broken = protection_rule_payload()
    broken["environment"] = 5
    assert list(validator.iter_errors(broken)), "the validator must be able to reject a payload"


def test_protection_rule_becomes_a_gate_request_with_a_callback() -> None:
    event = parse("deployment_protection_rule", protection_rule_payload())
    assert isinstance(event, PipelineEvent)
    assert (event.source, event.kind, event.action) == (EventSource.GITHUB, EventKind.GATE_REQUEST, ActionKind.DEPLOY)
    assert event.environment == "production"
    assert event.repository == "Codertocat/Hello-World"
    assert event.ref == "master"
    assert event.commit == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    assert event.actor == "Codertocat"
    assert event.run_id == f"{RUN_ID}/deployments/145988746"  # a job re-run brings a new deployment
    assert event.callback == GitHubCallback(
        owner="Codertocat",
        repo="Hello-World",
        run_id=RUN_ID,
        environment_name="production",
        installation_id=1,
        deployment_callback_url=CALLBACK_URL,
    )
    assert event.labels == ()
    assert event.delivery_id == "d-1"


def test_protection_rule_actor_falls_back_to_sender_without_deployment() -> None:
    payload = protection_rule_payload()
    del payload["deployment"]
    payload["sender"] = {**payload["sender"], "login": "octocat"}
    event = parse("deployment_protection_rule", payload)
    assert isinstance(event, PipelineEvent)
    assert event.actor == "octocat"
    assert event.commit is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.update(environment=5), "environment"),
        (lambda p: p.update(deployment_callback_url=["x"]), "deployment_callback_url"),
        (lambda p: p.pop("repository"), "repository"),
        (lambda p: p["repository"].pop("full_name"), "repository.full_name"),
        (lambda p: p["repository"]["owner"].pop("login"), "repository.owner.login"),
        (lambda p: p["installation"].update(id="1"), "installation.id"),
        (lambda p: p["deployment"]["creator"].update(login=None), "deployment.creator.login"),
        (lambda p: p.pop("action"), "action"),
    ],
)
def test_protection_rule_missing_or_wrong_field_is_named(mutate: Any, field: str) -> None:
    payload = copy.deepcopy(protection_rule_payload())
    mutate(payload)
    with pytest.raises(InvalidInput) as caught:
        parse("deployment_protection_rule", payload)
    assert caught.value.field == field
    assert status_of(caught.value) == 422
    assert f"field '{field}'" in caught.value.detail


@pytest.mark.parametrize("missing", ["environment", "deployment_callback_url"])
def test_legacy_protection_rule_without_what_a_gate_needs_is_ignored_with_a_reason(missing: str) -> None:
    """GitHub's schema requires neither field; an older payload without them cannot be answered (2xx, not 422)."""
    payload = protection_rule_payload()
    del payload[missing]
    result = parse("deployment_protection_rule", payload)
    assert isinstance(result, Ignored) and missing in result.reason


def test_protection_rule_with_null_deployment_takes_sha_and_ref_from_the_top_level() -> None:
    payload = protection_rule_payload()
    payload["deployment"] = None
    payload["sha"], payload["ref"] = "3484a3fb816e0859fd6e1cea078d76385ff50625", "refs/heads/main"
    first = parse_github("deployment_protection_rule", payload, tenant_id="contoso", delivery_id="d-1")
    again = parse_github("deployment_protection_rule", payload, tenant_id="contoso", delivery_id="d-1")
    rerun = parse_github("deployment_protection_rule", payload, tenant_id="contoso", delivery_id="d-2")
    assert isinstance(first, PipelineEvent) and isinstance(again, PipelineEvent) and isinstance(rerun, PipelineEvent)
    assert (first.commit, first.ref) == ("3484a3fb816e0859fd6e1cea078d76385ff50625", "refs/heads/main")
    assert first.business_key == again.business_key  # a redelivery keeps its delivery id: still one gate
    assert first.business_key != rerun.business_key  # a re-run's request is a new delivery: a new gate


@pytest.mark.parametrize(
    "url",
    [
        "https://api.github.com/repos/Codertocat/Hello-World/actions/runs/abc/deployment_protection_rule",
        "https://api.github.com/repos/Codertocat/Hello-World/deployments/1",
        "http://api.github.com/repos/Codertocat/Hello-World/actions/runs/1/deployment_protection_rule",
        "https://api.github.com/repos/evil/other/actions/runs/1/deployment_protection_rule",
    ],
)
def test_callback_url_must_name_a_run_of_this_repository_over_https(url: str) -> None:
    payload = protection_rule_payload()
    payload["deployment_callback_url"] = url
    with pytest.raises(InvalidInput) as caught:
        parse("deployment_protection_rule", payload)
    assert caught.value.field == "deployment_callback_url"


def test_ghes_callback_url_is_accepted() -> None:
    payload = protection_rule_payload()
    payload["deployment_callback_url"] = (
        "https://github.contoso.com/api/v3/repos/codertocat/hello-world/actions/runs/42/deployment_protection_rule"
    )
    event = parse("deployment_protection_rule", payload)
    assert isinstance(event, PipelineEvent)
    assert event.run_id == "42/deployments/145988746"


def test_unhandled_protection_rule_action_is_ignored() -> None:
    payload = protection_rule_payload()
    payload["action"] = "completed"
    assert parse("deployment_protection_rule", payload) == Ignored(
        "GitHub event 'deployment_protection_rule' with action 'completed' is not handled"
    )


# Every published GitHub payload goes through the parser with the expected outcome.
EXPECTED: dict[str, tuple[EventKind | None, str | None, str | None, str | None]] = {
    # fixture: (kind or None for Ignored, status, run_id, environment)
    "check_suite.completed.payload.json": (None, None, None, None),
    "deployment.payload.json": (None, None, None, None),
    "deployment.with-installation.payload.json": (None, None, None, None),
    "deployment_review.requested.payload.json": (None, None, None, None),
    "deployment_status.payload.json": (EventKind.DEPLOYMENT_STATUS, "success", "145988746", "production"),
    "deployment_status.with-installation.payload.json": (
        EventKind.DEPLOYMENT_STATUS,
        "success",
        "145988746",
        "production",
    ),
    "workflow_job.completed.failure.with-organization.payload.json": (
        EventKind.JOB_STATUS,
        "failure",
        "2202229078/jobs/289782451",
        None,
    ),
    "workflow_job.queued.with-deployment.payload.json": (
        EventKind.JOB_STATUS,
        "waiting",
        "4747967848/jobs/12877621891",
        "Test",
    ),
    "workflow_run.completed.payload.json": (EventKind.RUN_STATUS, "success", "289782451", None),
    "workflow_run.requested.payload.json": (EventKind.RUN_STATUS, "queued", "289782451", None),
}


def test_every_published_fixture_is_covered() -> None:
    published = {p.name for p in (SHARED_FIXTURES / "github").glob("*.payload.json")}
    assert published == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_published_fixture_outcome(name: str) -> None:
    event_name = name.split(".")[0]
    result = parse(event_name, load_fixture(f"github/{name}"))
    kind, status, run_id, environment = EXPECTED[name]
    if kind is None:
        assert isinstance(result, Ignored)
        assert result.reason == f"GitHub event '{event_name}' is not handled"
        return
    assert isinstance(result, PipelineEvent)
    assert (result.kind, result.status, result.run_id, result.environment) == (kind, status, run_id, environment)
    assert result.tenant_id == "contoso"
    assert result.repository


def test_deployment_status_prefers_the_workflow_run_id() -> None:
    payload = load_fixture("github/deployment_status.payload.json")
    payload["workflow_run"] = {"id": RUN_ID}
    event = parse("deployment_status", payload)
    assert isinstance(event, PipelineEvent)
    assert event.run_id == str(RUN_ID)
    assert event.actor == "Codertocat"
    assert event.commit == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"


def test_deployment_status_without_any_environment_is_refused() -> None:
    payload = load_fixture("github/deployment_status.payload.json")
    del payload["deployment_status"]["environment"]
    del payload["deployment"]["environment"]
    with pytest.raises(InvalidInput) as caught:
        parse("deployment_status", payload)
    assert caught.value.field == "deployment.environment"


def test_deployment_status_with_empty_environments_is_ignored_with_a_reason() -> None:
    """GitHub's schema allows both environments empty: a 2xx with the reason, not a 422 (schema conformance)."""
    payload = load_fixture("github/deployment_status.payload.json")
    payload["deployment_status"]["environment"] = ""
    payload["deployment"]["environment"] = ""
    outcome = parse("deployment_status", payload)
    assert isinstance(outcome, Ignored)
    assert "deployment_status.environment" in outcome.reason and "deployment.environment" in outcome.reason
    payload["deployment"]["environment"] = "production"  # either one names the environment
    event = parse("deployment_status", payload)
    assert isinstance(event, PipelineEvent) and event.environment == "production"


def test_deployment_status_missing_state_is_named() -> None:
    payload = load_fixture("github/deployment_status.payload.json")
    del payload["deployment_status"]["state"]
    with pytest.raises(InvalidInput) as caught:
        parse("deployment_status", payload)
    assert caught.value.field == "deployment_status.state"


def test_workflow_run_missing_id_is_named() -> None:
    payload = load_fixture("github/workflow_run.completed.payload.json")
    del payload["workflow_run"]["id"]
    with pytest.raises(InvalidInput) as caught:
        parse("workflow_run", payload)
    assert caught.value.field == "workflow_run.id"


def test_workflow_run_build_action_and_completed_without_conclusion() -> None:
    payload = load_fixture("github/workflow_run.completed.payload.json")
    payload["workflow_run"]["conclusion"] = None
    event = parse("workflow_run", payload)
    assert isinstance(event, PipelineEvent)
    assert event.action is ActionKind.BUILD
    assert event.status == "completed"


def test_workflow_job_keeps_runner_labels() -> None:
    event = parse("workflow_job", load_fixture("github/workflow_job.completed.failure.with-organization.payload.json"))
    assert isinstance(event, PipelineEvent)
    assert event.labels and all(label.startswith("runner:") for label in event.labels)


def test_unhandled_workflow_job_action_is_ignored() -> None:
    payload = load_fixture("github/workflow_job.queued.with-deployment.payload.json")
    payload["action"] = "deleted"
    result = parse("workflow_job", payload)
    assert isinstance(result, Ignored)
    assert "'deleted'" in result.reason


def test_ping() -> None:
    event = parse("ping", {"zen": "Keep it logically awesome.", "hook_id": 30})
    assert isinstance(event, PipelineEvent)
    assert event.kind is EventKind.PING
    assert event.summary == "Keep it logically awesome."


def test_missing_event_name_and_non_object_payload() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse("", {})
    assert caught.value.field == "header:X-GitHub-Event"
    with pytest.raises(InvalidInput) as caught:
        parse("workflow_run", ["not", "an", "object"])
    assert caught.value.field == "$"


def test_ignored_reason_does_not_echo_unbounded_input() -> None:
    result = parse("x" * 5000, {})
    assert isinstance(result, Ignored)
    assert len(result.reason) < 120


# --- business keys ---------------------------------------------------------------------------------------


def test_redelivery_yields_the_same_business_key() -> None:
    first = parse("deployment_protection_rule", protection_rule_payload(), delivery="aaa")
    same_id = parse("deployment_protection_rule", protection_rule_payload(), delivery="aaa")
    new_id = parse("deployment_protection_rule", protection_rule_payload(), delivery="bbb")
    assert isinstance(first, PipelineEvent) and isinstance(same_id, PipelineEvent) and isinstance(new_id, PipelineEvent)
    assert first.business_key == same_id.business_key == new_id.business_key
    assert first.instance_id == new_id.instance_id


def test_different_environment_run_or_kind_yield_different_keys() -> None:
    base = parse("deployment_protection_rule", protection_rule_payload())
    other_env = protection_rule_payload()
    other_env["environment"] = "staging"
    other_run = protection_rule_payload()
    other_run["deployment_callback_url"] = CALLBACK_URL.replace(str(RUN_ID), "7001234568")
    status = load_fixture("github/deployment_status.payload.json")
    status["workflow_run"] = {"id": RUN_ID}
    status["deployment_status"]["environment"] = "production"
    events = [
        base,
        parse("deployment_protection_rule", other_env),
        parse("deployment_protection_rule", other_run),
        parse("deployment_status", status),
    ]
    assert all(isinstance(e, PipelineEvent) for e in events)
    keys = {e.business_key for e in events if isinstance(e, PipelineEvent)}
    assert len(keys) == 4


def test_jobs_of_one_run_do_not_share_a_key() -> None:
    payload = load_fixture("github/workflow_job.completed.failure.with-organization.payload.json")
    other = copy.deepcopy(payload)
    other["workflow_job"]["id"] = payload["workflow_job"]["id"] + 1
    first, second = parse("workflow_job", payload), parse("workflow_job", other)
    assert isinstance(first, PipelineEvent) and isinstance(second, PipelineEvent)
    assert first.business_key != second.business_key
