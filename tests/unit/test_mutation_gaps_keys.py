"""The business key, the dedupe key and the instance id (issue 21): the tenant must be part of both.

A mutant that dropped the tenant from the key hash passed the suite, because no test sent the same business key
from two tenants. Here the key is checked against an independent construction and across tenants.
"""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from gatekeeper.events.model import EventKind, EventSource, PipelineEvent

BASE = {
    "source": EventSource.GITHUB,
    "kind": EventKind.GATE_REQUEST,
    "environment": "production",
    "run_id": "9001",
    "repository": "contoso/web",
}


def _event(tenant_id: str, **fields) -> PipelineEvent:
    return PipelineEvent(tenant_id=tenant_id, **{**BASE, **fields})


def test_same_business_key_in_two_tenants_gives_two_keys_and_two_instances():
    a, b = _event("tcontoso0001"), _event("tfabrikam002")
    assert a.business_key == b.business_key
    assert a.key_hash != b.key_hash
    assert a.instance_id != b.instance_id


def test_key_hash_is_the_documented_construction():
    event = _event("tcontoso0001")
    assert event.business_key == "github|9001|production|gate_request|"
    expected = hashlib.sha256(b"tcontoso0001|github|9001|production|gate_request|").hexdigest()
    assert event.key_hash == expected
    assert event.instance_id == "gate-" + expected[:40]


def test_the_delivery_id_is_not_part_of_the_key():
    assert _event("t1", delivery_id="d-1").key_hash == _event("t1", delivery_id="d-2").key_hash


def test_every_business_field_is_part_of_the_key():
    base = _event("t1")
    for change in (
        {"environment": "staging"},
        {"run_id": "9002"},
        {"source": EventSource.AZURE_DEVOPS},
        {"kind": EventKind.RUN_STATUS, "status": "success"},
    ):
        assert _event("t1", **change).key_hash != base.key_hash, change


def test_status_counts_for_status_events_but_not_for_gate_requests():
    status = {"kind": EventKind.RUN_STATUS}
    assert _event("t1", status="success", **status).key_hash != _event("t1", status="failure", **status).key_hash
    assert _event("t1", status="success").key_hash == _event("t1", status="failure").key_hash


def test_the_subject_stands_in_for_the_run_id_then_the_delivery_id():
    no_run = {"run_id": None}
    assert _event("t1", subject="T-1", **no_run).business_key.split("|")[1] == "T-1"
    assert _event("t1", delivery_id="d-9", **no_run).business_key.split("|")[1] == "d-9"
    assert _event("t1", run_id="r", subject="T-1").business_key.split("|")[1] == "r"


def test_only_gate_requests_are_gate_requests():
    assert _event("t1").is_gate_request is True
    assert _event("t1", kind=EventKind.RUN_STATUS).is_gate_request is False


def test_an_event_cannot_be_rebound_to_another_tenant_after_validation():
    """The key hash and the sealed copy are derived from the fields: an authenticated event is frozen."""
    import pytest
    from pydantic import ValidationError

    event = _event("tcontoso0001")
    with pytest.raises(ValidationError):
        event.tenant_id = "tfabrikam002"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        PipelineEvent(tenant_id="t1", unexpected="x", **BASE)


def test_callback_handles_are_frozen_strict_and_discriminated():
    import pytest
    from pydantic import SecretStr, ValidationError

    from gatekeeper.events.model import AzureDevOpsCallback, GitHubCallback, WebhookCallback

    github = GitHubCallback(owner="o", repo="r", run_id=1, environment_name="prod")
    ado = AzureDevOpsCallback(
        plan_url="https://dev.azure.com/x/",
        project_id="p",
        hub_name="build",
        plan_id="pl",
        job_id="j",
        timeline_id="t",
        task_instance_id="ti",
        auth_token=SecretStr("job-token"),
    )
    hook = WebhookCallback(url="https://ci.example/cb")
    for handle in (github, ado, hook):
        with pytest.raises(ValidationError):
            handle.type = "other"  # type: ignore[misc,assignment]
    for model, fields in (
        (GitHubCallback, {"owner": "o", "repo": "r", "run_id": 1, "environment_name": "p"}),
        (WebhookCallback, {"url": "u"}),
    ):
        with pytest.raises(ValidationError):
            model(**fields, extra_field=1)
    event = _event("t1", callback={"type": "webhook", "url": "https://ci.example/cb"})
    assert isinstance(event.callback, WebhookCallback)
    assert "job-token" not in repr(ado)
    assert {github.type, ado.type, hook.type} == {"github", "azure-devops", "webhook"}


def test_evidence_references_are_frozen():
    import pytest
    from pydantic import ValidationError

    from gatekeeper.events.model import EvidenceRef

    ref = EvidenceRef(kind="tests", uri="https://ci.example/report.xml")
    with pytest.raises(ValidationError):
        ref.uri = "https://attacker.example/"  # type: ignore[misc]


# ----- fifth day (session 9): the event's documented bounds, at the limit and one over -------------------------

_BOUNDS = [
    # field, the longest value kept, the same one character longer (refused, never cut)
    ("command", "c" * 8192, "c" * 8193),
    ("resource", "r" * 200, "r" * 201),
    ("ticket", "t" * 100, "t" * 101),
    ("company", "k" * 100, "k" * 101),
    ("run_url", "https://ci.example/" + "u" * (2000 - 19), "https://ci.example/" + "u" * (2001 - 19)),
    ("version_tags", ("v" * 100,), ("v" * 101,)),
    ("artifacts", ("a" * 200,), ("a" * 201,)),
    ("version_tags", tuple(f"v{i}" for i in range(20)), tuple(f"v{i}" for i in range(21))),
    ("artifacts", tuple(f"a{i}" for i in range(20)), tuple(f"a{i}" for i in range(21))),
]


@pytest.mark.parametrize(("field", "longest", "too_long"), _BOUNDS)
def test_every_bounded_event_field_keeps_its_limit_and_refuses_one_more(field, longest, too_long):
    assert getattr(_event("t1", **{field: longest}), field) == longest
    with pytest.raises(ValidationError) as info:
        _event("t1", **{field: too_long})
    assert info.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(
    ("field", "refused"),
    [
        ("version_tags", ("",)),
        ("version_tags", ("v 1",)),
        ("artifacts", ("",)),
        ("artifacts", ("a\nb",)),
        ("run_url", "http://ci.example/run"),
        ("commit_url", "https://user@ci.example/"),
        ("plan_digest", "sha256:" + "A" * 64),
        ("plan_digest", "sha256:" + "a" * 63),
    ],
)
def test_context_shown_to_an_approver_must_have_its_documented_shape(field, refused):
    with pytest.raises(ValidationError):
        _event("t1", **{field: refused})


@pytest.mark.parametrize("field", ["versionTags", "artifacts"])
def test_an_empty_tag_or_artifact_is_refused_as_empty_and_one_character_is_kept(field):
    """The 422 says what is wrong with the item (empty), not that it fails a pattern the sender cannot read."""
    from gatekeeper.errors import InvalidInput
    from gatekeeper.events.generic import parse_generic

    body = {"kind": "gate_request", "runId": "r1", "environment": "prod"}
    with pytest.raises(InvalidInput) as info:
        parse_generic({**body, field: ["v1", ""]}, tenant_id="t1")
    assert (info.value.field, info.value.detail) == (
        f"{field}[1]",
        f"generic event: field '{field}[1]' string should have at least 1 character",
    )
    event = parse_generic({**body, field: ["v"]}, tenant_id="t1")
    assert (event.version_tags if field == "versionTags" else event.artifacts) == ("v",)
