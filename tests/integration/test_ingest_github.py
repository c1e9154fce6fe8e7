"""GitHub webhooks through the real trigger function, signed in the test, into Azurite's queue."""

from __future__ import annotations

import json

import pytest

from gatekeeper.ingest.queue import decode_message
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import github_request, http_function, problem

DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())


@pytest.fixture
def env(served_env):
    return served_env


def call(request):
    return http_function("github_webhook")(request)


def shared(name: str) -> dict:
    return json.loads((SHARED_FIXTURES / "github" / name).read_text())


def test_protection_rule_is_accepted_queued_and_sealed(env):
    response = call(github_request("deployment_protection_rule", DPR))
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert body["status"] == "accepted" and body["kind"] == "gate_request"
    assert body["instanceId"].startswith("gate-")
    [text] = env.queued_texts()
    assert "octo-repo" not in text  # the event travels sealed
    queued = decode_message(env.services.sealer, text)
    assert queued.event.tenant_id == env.tenant_id
    assert queued.event.environment == "production"
    assert queued.event.callback.run_id == 289782451
    assert queued.event.instance_id == body["instanceId"]


@pytest.mark.parametrize(
    ("event", "fixture", "kind"),
    [
        ("deployment_status", "deployment_status.payload.json", "deployment_status"),
        ("deployment_status", "deployment_status.with-installation.payload.json", "deployment_status"),
        ("workflow_run", "workflow_run.completed.payload.json", "run_status"),
        ("workflow_run", "workflow_run.requested.payload.json", "run_status"),
        ("workflow_job", "workflow_job.completed.failure.with-organization.payload.json", "job_status"),
        ("workflow_job", "workflow_job.queued.with-deployment.payload.json", "job_status"),
    ],
)
def test_published_payloads_are_accepted(env, event, fixture, kind):
    response = call(github_request(event, shared(fixture)))
    assert response.status_code == 202, response.get_body()
    assert json.loads(response.get_body())["kind"] == kind
    assert len(env.queued_texts()) == 1


@pytest.mark.parametrize(
    ("event", "fixture"),
    [
        ("check_suite", "check_suite.completed.payload.json"),
        ("deployment_review", "deployment_review.requested.payload.json"),
    ],
)
def test_other_events_are_ignored_with_a_reason(env, event, fixture):
    response = call(github_request(event, shared(fixture)))
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert body["status"] == "ignored" and event in body["reason"]
    assert env.queued_texts() == []


def test_forged_missing_and_unknown_tenant_signatures_look_the_same(env):
    forged = call(github_request("deployment_protection_rule", DPR, secret="not-the-secret"))
    unsigned = call(github_request("deployment_protection_rule", DPR, headers={"X-Hub-Signature-256": ""}))
    stranger = dict(
        DPR,
        organization=dict(DPR["organization"], login="someone-else"),
        repository=dict(
            DPR["repository"],
            full_name="someone-else/repo",
            owner=dict(DPR["repository"]["owner"], login="someone-else"),
        ),
        installation={"id": 999},
    )
    unknown = call(github_request("deployment_protection_rule", stranger))
    bodies = [problem(r) for r in (forged, unsigned, unknown)]
    assert {r.status_code for r in (forged, unsigned, unknown)} == {401}
    assert bodies[0]["detail"] == bodies[1]["detail"] == bodies[2]["detail"]
    assert env.tenant_id not in json.dumps(bodies)
    assert env.queued_texts() == []


def test_signature_covers_the_raw_bytes(env):
    request = github_request("deployment_protection_rule", DPR)
    tampered = request.get_body().replace(b"production", b"productiox")
    import azure.functions as func

    response = call(func.HttpRequest("POST", request.url, headers=dict(request.headers), body=tampered))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda r: r.update(headers={"Content-Type": "text/plain"}), 415, "header:Content-Type"),
        (lambda r: r.update(headers={"X-GitHub-Event": ""}), 400, "header:X-GitHub-Event"),
        (lambda r: r.update(body=b"{not json"), 400, "body"),
        (lambda r: r.update(body=b"[1, 2]"), 400, None),
        (lambda r: r.update(body=b"x" * 1_048_577), 413, None),
    ],
)
def test_bad_requests_get_problem_details_and_nothing_is_queued(env, mutate, status, field):
    parts = {"headers": {}, "body": None}
    mutate(parts)
    payload = parts["body"] if parts["body"] is not None else DPR
    response = call(github_request("deployment_protection_rule", payload, headers=parts["headers"]))
    assert response.status_code == status
    body = problem(response)
    assert body["status"] == status and body["type"].startswith("https://")
    if field:
        assert body["field"] == field
    assert env.queued_texts() == []


def test_invalid_payload_names_the_field(env):
    broken = dict(DPR, environment=["production"])
    response = call(github_request("deployment_protection_rule", broken))
    assert response.status_code == 422
    assert "environment" in problem(response)["detail"]
    assert env.queued_texts() == []


def test_legacy_protection_rule_without_environment_is_ignored_with_a_reason(env):
    legacy = {k: v for k, v in DPR.items() if k != "environment"}
    response = call(github_request("deployment_protection_rule", legacy))
    assert response.status_code == 202
    body = json.loads(response.get_body())
    assert body["status"] == "ignored" and "environment" in body["reason"]
    assert env.queued_texts() == []


def test_ping_is_answered(env):
    ping = {
        "zen": "Keep it logically awesome.",
        "hook_id": 1,
        "hook": {"type": "Organization", "id": 1},
        "organization": DPR["organization"],
        "sender": DPR["sender"],
    }
    response = call(github_request("ping", ping))
    assert response.status_code == 202
