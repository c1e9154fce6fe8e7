"""GitHub's published webhook schemas (octokit/webhooks) against the registered `github_webhook` function.

Every payload here is built from the vendor's schema (tests/support/schema_instances.py), not from our own
fixtures, and validated against it before it is sent. Only the fields that say which tenant a delivery
belongs to are overwritten (repository names and owner, organisation, installation id, and the protection
rule's `deployment_callback_url`, which must name that repository's run: a target, checked like the others),
so each payload is judged on its content. It is signed over its exact bytes and posted as GitHub delivers it.

A schema-valid delivery is never answered 422 or 500: it is accepted (202, the normalised event carrying what
the payload said) or ignored (202 with the reason), and a protection rule becomes a gate request whose
callback URL is the payload's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings

from gatekeeper.events.common import normalise_status
from gatekeeper.events.model import EventKind, GitHubCallback, PipelineEvent
from gatekeeper.ingest.queue import decode_message
from gatekeeper.security.requester import external_id
from gatekeeper.services import set_services
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from tests.conftest import SHARED_FIXTURES
from tests.support.gatekeeper_env import GatekeeperEnv, github_request, http_function, make_env
from tests.support.schema_instances import SchemaInstances, load

SCHEMAS = SHARED_FIXTURES / "github" / "schemas"
# schema file stem -> the X-GitHub-Event header GitHub sends with it
EVENTS = {
    "deployment_protection_rule.requested": "deployment_protection_rule",
    "deployment.created": "deployment",
    "deployment_status.created": "deployment_status",
    "workflow_run.completed": "workflow_run",
}
OWNER, REPO, INSTALLATION = "gk-conformance", "gate", 424242
CONFORMANCE_TENANT = TenantRecord(
    tenant_id="conformance",
    display_name="Schema conformance",
    # Exactly one App installation: a protection rule without `installation` (the schema allows it) is then
    # answered through that one (gatekeeper/ingest/scope.py).
    identities=(f"github:org:{OWNER}", f"github:repo:{OWNER}/{REPO}", f"github:installation:{INSTALLATION}"),
    secrets={SecretPurpose.GITHUB_WEBHOOK: ("env:GK_GITHUB",)},
)
# A deployment's `payload` is free-form (whoever creates the deployment writes it); these are the keys our
# convention reads from it (docs/approval-context.md), tried with any JSON value.
DEPLOYMENT_PAYLOAD_KEYS = ("version", "version_tags", "artifacts")
EXAMPLES = 15  # per schema; each one is a signed request through the function into Azurite


@pytest.fixture(scope="module")
def generators() -> dict[str, SchemaInstances]:
    return {
        name: load(SCHEMAS / f"{name}.schema.json", SCHEMAS / "common", free_keys=DEPLOYMENT_PAYLOAD_KEYS)
        for name in EVENTS
    }


@pytest.fixture(scope="module")
def env(azurite: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatekeeperEnv]:
    """One tenant registry and queue for the module: hypothesis runs many examples against it."""
    env = make_env(azurite.connection_string, tmp_path_factory.mktemp("keys"), extra_tenants=(CONFORMANCE_TENANT,))
    set_services(env.services)
    yield env
    set_services(None)


def run_number(payload: dict[str, Any]) -> int:
    """A run id for the rewritten callback URL, stable per payload (at most 12 digits)."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest()
    return 1 + int.from_bytes(digest[:6], "big") % 10**12


def callback_url(run: int) -> str:
    return f"https://api.github.com/repos/{OWNER}/{REPO}/actions/runs/{run}/deployment_protection_rule"


def for_tenant(generator: SchemaInstances, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload addressed to the conformance tenant: identity fields only, and still schema-valid."""
    document = copy.deepcopy(payload)
    repository = document["repository"]
    repository.update(full_name=f"{OWNER}/{REPO}", name=REPO)
    repository["owner"]["login"] = OWNER
    if isinstance(document.get("organization"), dict):
        document["organization"]["login"] = OWNER
    if isinstance(document.get("installation"), dict):
        document["installation"]["id"] = INSTALLATION
    if isinstance(document.get("deployment_callback_url"), str):
        document["deployment_callback_url"] = callback_url(run_number(payload))
    return generator.check(document)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    queued: list[PipelineEvent]


def deliver(env: GatekeeperEnv, event: str, payload: dict[str, Any]) -> Answer:
    """Post `payload` as GitHub does (exact bytes signed, delivery GUID) and read what reached the queue."""
    env.drain()
    response = http_function("github_webhook")(github_request(event, payload, delivery=str(uuid.uuid4())))
    body = json.loads(response.get_body())
    queued = [decode_message(env.services.sealer, text).event for text in env.drain()]
    return Answer(response.status_code, body, queued)


def ignored(answer: Answer, *words: str) -> None:
    assert answer.status == 202, answer.body
    assert answer.body["status"] == "ignored", answer.body
    assert all(word in answer.body["reason"] for word in words), answer.body["reason"]
    assert answer.queued == []


def accepted(answer: Answer, kind: EventKind) -> PipelineEvent:
    assert answer.status == 202, answer.body
    assert answer.body["status"] == "accepted" and answer.body["kind"] == kind.value, answer.body
    [event] = answer.queued
    assert event.kind is kind
    assert event.repository == f"{OWNER}/{REPO}" and event.tenant_id == CONFORMANCE_TENANT.tenant_id
    return event


# -- what each event must become ------------------------------------------------------------------------


def judge_protection_rule(answer: Answer, payload: dict[str, Any]) -> None:
    missing = [name for name in ("environment", "deployment_callback_url") if not payload.get(name)]
    if missing:  # an older payload version: nothing to answer, so nothing to gate
        ignored(answer, "deployment_protection_rule", *missing)
        return
    event = accepted(answer, EventKind.GATE_REQUEST)
    url = payload["deployment_callback_url"]
    assert answer.body["instanceId"] == event.instance_id
    assert event.environment == payload["environment"]
    assert isinstance(event.callback, GitHubCallback)
    assert event.callback.deployment_callback_url == url
    assert event.callback.run_id == int(url.split("/runs/")[1].split("/")[0])
    assert (event.callback.owner, event.callback.repo, event.callback.installation_id) == (OWNER, REPO, INSTALLATION)
    deployment = payload.get("deployment")
    assert event.commit == ((deployment or {}).get("sha") or None)
    assert event.ref == ((deployment or {}).get("ref") or None)
    sender = external_id("github", "id", payload["sender"]["id"])
    assert sender in event.requester_ids
    creator = ((deployment or {}).get("creator") or {}).get("login")
    assert event.actor == (creator or payload["sender"]["login"])  # who asked: the deployment's creator first
    if deployment is not None:
        assert event.run_id == f"{event.callback.run_id}/deployments/{deployment['id']}"


def judge_deployment(answer: Answer, payload: dict[str, Any]) -> None:
    """`deployment` (created) is not a request Gatekeeper answers: the protection rule is (docs/integrations.md)."""
    ignored(answer, "'deployment'", "not handled")


def judge_deployment_status(answer: Answer, payload: dict[str, Any]) -> None:
    status, deployment = payload["deployment_status"], payload["deployment"]
    environment = status["environment"] or deployment["environment"]
    if not environment:
        ignored(answer, "deployment_status", "environment")
        return
    event = accepted(answer, EventKind.DEPLOYMENT_STATUS)
    assert event.environment == environment
    assert event.commit == deployment["sha"] and event.ref == deployment["ref"]
    run = payload.get("workflow_run")
    assert event.run_id == str(run["id"] if run else deployment["id"])
    assert event.status == normalise_status(status["state"])
    assert event.actor == status["creator"]["login"]
    assert event.subject == f"deployments/{deployment['id']}"


def judge_workflow_run(answer: Answer, payload: dict[str, Any]) -> None:
    run = payload["workflow_run"]
    event = accepted(answer, EventKind.RUN_STATUS)
    assert event.run_id == str(run["id"])
    assert (event.commit, event.ref) == (run["head_sha"], run["head_branch"])
    finished = run["status"] == "completed" and run["conclusion"]
    assert event.status == normalise_status(run["conclusion"] if finished else run["status"])
    assert event.actor == run["triggering_actor"]["login"]


JUDGES = {
    "deployment_protection_rule.requested": judge_protection_rule,
    "deployment.created": judge_deployment,
    "deployment_status.created": judge_deployment_status,
    "workflow_run.completed": judge_workflow_run,
}


def conforms(env: GatekeeperEnv, generator: SchemaInstances, name: str, payload: dict[str, Any]) -> str:
    """Deliver the payload (addressed to the tenant) and judge the answer; returns "accepted" or "ignored"."""
    document = for_tenant(generator, payload)
    answer = deliver(env, EVENTS[name], document)
    assert answer.status not in (422, 500), f"{name}: schema-valid payload refused: {answer.body}"
    JUDGES[name](answer, document)
    return str(answer.body["status"])


# -- the variants ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EVENTS)
def test_minimal_payload_is_accepted_or_ignored(env, generators, name):
    conforms(env, generators[name], name, generators[name].minimal())


@pytest.mark.parametrize("name", EVENTS)
def test_payload_with_nulls_and_empty_arrays_is_accepted_or_ignored(env, generators, name):
    conforms(env, generators[name], name, generators[name].nulls_and_empties())


def test_every_property_present_with_an_environment_is_a_gate_request(env, generators):
    """The nulls-and-empties protection rule names the environment "" (ignored, above); with one it is a gate
    request, deterministically, whatever the hypothesis examples reach."""
    name = "deployment_protection_rule.requested"
    payload = {**generators[name].nulls_and_empties(), "environment": "production"}
    assert conforms(env, generators[name], name, payload) == "accepted"


# What the generated examples must reach, so the property is not met by ignoring everything: a protection
# rule and a status with an environment are accepted, without one ignored; `deployment` is never handled.
OUTCOMES = {
    "deployment_protection_rule.requested": {"accepted", "ignored"},
    "deployment.created": {"ignored"},
    "deployment_status.created": {"accepted", "ignored"},
    "workflow_run.completed": {"accepted"},
}


@pytest.mark.parametrize("name", EVENTS)
def test_generated_payloads_are_accepted_or_ignored(env, generators, name):
    generator = generators[name]
    seen: set[str] = set()

    # No shrinking: each example is a signed request through Azurite, and shrinking a 7 KB payload takes
    # minutes; the failing payload is printed whole, and the deterministic variants above are the small cases.
    @hypothesis_settings(
        derandomize=True,
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(payload=generator.strategy())
    def check(payload: dict[str, Any]) -> None:
        seen.add(conforms(env, generator, name, payload))

    check()
    assert seen == OUTCOMES[name]


# -- the strictness that stays ------------------------------------------------------------------------------


def gate_request(generator: SchemaInstances) -> dict[str, Any]:
    """A schema-valid protection rule that is a gate request: every property present, an environment named."""
    document = for_tenant(generator, {**generator.nulls_and_empties(), "environment": "production"})
    return generator.check(document)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.github.com/repos/someone-else/their-repo/actions/runs/1/deployment_protection_rule",
        f"http://api.github.com/repos/{OWNER}/{REPO}/actions/runs/1/deployment_protection_rule",
        f"https://api.github.com/repos/{OWNER}/{REPO}/deployments/1",
        "urn:x:y",
    ],
)
def test_a_schema_valid_callback_url_elsewhere_is_still_refused_naming_it(env, generators, url):
    """The schema allows any URI; the answer goes with an installation token, so only a run of the payload's
    own repository over https is accepted (a target, checked like the tenant's identities)."""
    generator = generators["deployment_protection_rule.requested"]
    document = generator.check({**gate_request(generator), "deployment_callback_url": url})
    answer = deliver(env, "deployment_protection_rule", document)
    assert answer.status == 422 and answer.body["field"] == "deployment_callback_url", answer.body
    assert answer.queued == []


def test_a_schema_valid_installation_of_another_tenant_is_still_refused_naming_it(env, generators):
    generator = generators["deployment_protection_rule.requested"]
    document = gate_request(generator)
    document["installation"] = {**document["installation"], "id": INSTALLATION + 1}
    answer = deliver(env, "deployment_protection_rule", generator.check(document))
    assert answer.status == 422 and answer.body["field"] == "installation.id", answer.body
    assert answer.queued == []
