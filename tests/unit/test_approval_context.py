"""The approver's context (issue 12, section 3) in the pure parts: policy compliance mappings, the event
parsers' links, tags and artifacts, the gate record's compatibility, the view's requester line and the
fallback mail (subject and escaped body)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatekeeper.errors import InvalidInput
from gatekeeper.events.azure_devops import parse_check_request, parse_service_hook
from gatekeeper.events.common import commit_link, https_link
from gatekeeper.events.github import parse_github
from gatekeeper.events.model import PipelineEvent
from gatekeeper.gates.store import GateRecord
from gatekeeper.gates.view import RequesterView, build_view, notification_details
from gatekeeper.integrations.notify import Notification, NotificationDetail, mail_html, mail_subject
from gatekeeper.policy import load_policy
from gatekeeper.policy.document import PolicyError
from tests.conftest import ROOT, SHARED_FIXTURES

AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())
CHECK = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())


def policy_with(compliance: Any) -> dict[str, Any]:
    return {"version": 1, "rules": [{"name": "prod", "level": "L2", "compliance": compliance}]}


# ----- policy -------------------------------------------------------------------------------------------


def test_compliance_mappings_load_and_reach_the_decision_and_its_public_json():
    from gatekeeper.events.model import EventKind, EventSource
    from gatekeeper.policy import evaluate

    mappings = [{"framework": "SOC2", "control": "CC8.1"}, {"framework": "FedRAMP", "control": "CM-3"}]
    document = load_policy(policy_with(mappings))
    event = PipelineEvent(tenant_id="contoso", source=EventSource.GENERIC, kind=EventKind.GATE_REQUEST, run_id="1")
    public = evaluate(document, event, None, AT).to_public_json()
    assert public["compliance"] == mappings
    bare = evaluate(load_policy({"version": 1, "rules": [{"name": "prod", "level": "L2"}]}), event, None, AT)
    assert "compliance" not in bare.to_public_json()  # the `gatekeeper evaluate` shape without mappings


@pytest.mark.parametrize(
    ("compliance", "field", "words"),
    [
        ([{"framework": "SOC 2", "control": "CC8.1"}], "rules[0].compliance[0].framework", "does not match"),
        ([{"framework": "SOC2", "control": "<b>x</b>"}], "rules[0].compliance[0].control", "does not match"),
        ([{"framework": "SOC2"}], "rules[0].compliance[0]", "'control' is required"),
        ([{"framework": "SOC2", "control": "CC8.1", "note": "x"}], "rules[0].compliance[0]", "unknown field"),
        ([{"framework": "SOC2", "control": "C" * 65}], "rules[0].compliance[0].control", "does not match"),
        ([], "rules[0].compliance", "should be non-empty"),
        ([{"framework": "SOC2", "control": f"CC{i}"} for i in range(21)], "rules[0].compliance", "too long"),
        ("SOC2 CC8.1", "rules[0].compliance", "is not of type 'array'"),
        (
            [{"framework": "SOC2", "control": "CC8.1"}, {"framework": "soc2", "control": "cc8.1"}],
            "rules[0].compliance[1]",
            "listed twice",
        ),
    ],
)
def test_bad_compliance_mappings_are_refused_naming_the_field(compliance: Any, field: str, words: str):
    with pytest.raises(PolicyError) as caught:
        load_policy(policy_with(compliance))
    assert caught.value.field == field
    assert words in caught.value.detail


def test_policies_without_mappings_keep_their_fingerprint_shape():
    document = load_policy({"version": 1, "rules": [{"name": "prod", "level": "L2"}]})
    dumped = document.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "compliance" not in dumped["rules"][0]  # so fingerprints of existing policies do not change


def test_the_example_policy_tags_its_production_rules():
    document = load_policy(ROOT / "examples" / "policy.yaml")
    tagged = {rule.name: [m.label() for m in rule.compliance or ()] for rule in document.rules}
    assert tagged["production-deploy"] == ["SOC2 CC8.1", "FedRAMP CM-3"]


# ----- events --------------------------------------------------------------------------------------------


def test_a_non_https_or_hostile_repository_address_gives_no_links():
    for bad in ("http://github.com/octo-org/octo-repo", "javascript:alert(1)//", "https://evil example/x", None):
        payload = copy.deepcopy(DPR)
        payload["repository"]["html_url"] = bad
        event = parse_github("deployment_protection_rule", payload, tenant_id="contoso", delivery_id="d")
        assert event.repository_url is None and event.commit_url is None and event.run_url is None


@pytest.mark.parametrize(
    ("deployment_payload", "tags", "artifacts"),
    [
        ({"artifacts": "one"}, (), ()),
        ({"artifacts": [f"a{i}" for i in range(25)]}, (), tuple(f"a{i}" for i in range(20))),
        ({"version_tags": ["v 1", "v2", 7, None, ["v3"]]}, ("v2",), ()),
        ({"version": "v" * 101, "artifacts": ["drop@1", {"x": 1}, ""]}, (), ("drop@1",)),
        ({"version": 42, "version_tags": "v1"}, ("42",), ()),
        ({"version": 1.5, "version_tags": {"v": 1}, "artifacts": None}, (), ()),
    ],
)
def test_deployment_payload_context_that_does_not_fit_is_left_out(
    deployment_payload: dict, tags: tuple[str, ...], artifacts: tuple[str, ...]
):
    """The payload is free-form (GitHub's schema allows any object): a value that does not fit our convention
    is left out on its own, the rest is kept (bounded), and the gate request is never refused for it."""
    payload = copy.deepcopy(DPR)
    payload["deployment"]["payload"] = deployment_payload
    event = parse_github("deployment_protection_rule", payload, tenant_id="contoso", delivery_id="d")
    assert isinstance(event, PipelineEvent)
    assert event.version_tags == tags and event.artifacts == artifacts


def test_a_deployment_payload_string_or_foreign_keys_are_ignored():
    for other in ("opaque text", {"task_id": 7, "environment_url": "https://x"}):
        payload = copy.deepcopy(DPR)
        payload["deployment"]["payload"] = other
        event = parse_github("deployment_protection_rule", payload, tenant_id="contoso", delivery_id="d")
        assert event.version_tags == () and event.artifacts == ()


def test_azure_devops_check_context_and_service_hook_run_pages():
    headers = dict(CHECK["headers"], BuildId="$(Build.BuildId)")  # unexpanded: no numeric run, no run page
    event = parse_check_request(headers, {"environment": "prod", "runId": "abc"}, tenant_id="contoso")
    assert event.run_url is None
    with pytest.raises(InvalidInput) as caught:
        parse_check_request(headers, {"environment": "prod", "repositoryUrl": "http://x/y"}, tenant_id="contoso")
    assert caught.value.field == "repositoryUrl"
    hook = json.loads((SHARED_FIXTURES / "azure-devops/ms.vss-pipelines.run-state-changed-event.json").read_text())
    assert parse_service_hook(hook, tenant_id="contoso").run_url == hook["resource"]["run"]["_links"]["web"]["href"]


def test_the_event_model_refuses_context_beyond_its_bounds():
    base = {"tenant_id": "contoso", "source": "generic", "kind": "gate_request"}
    for extra in (
        {"repository_url": "http://x.example/a"},
        {"run_url": "https://x.example/a b"},
        {"version_tags": [f"v{i}" for i in range(21)]},
        {"artifacts": ["a\nb"]},
    ):
        with pytest.raises(ValidationError):
            PipelineEvent.model_validate({**base, **extra})


@settings(derandomize=True, max_examples=300)
@given(st.text(max_size=80))
def test_https_link_returns_only_https_links_without_space_or_credentials(text: str):
    for candidate in (text, "https://" + text, "https://a.example/" + text):
        link = https_link(candidate)
        if link is not None:
            assert link == candidate and link.lower().startswith("https://")
            assert not any(ch.isspace() or ord(ch) < 32 for ch in link) and "@" not in link.split("/")[2]


def test_commit_links_need_a_hex_commit():
    assert commit_link("https://github.com/o/r", "abc1234") == "https://github.com/o/r/commit/abc1234"
    assert commit_link("https://github.com/o/r", "../../evil") is None
    assert commit_link("http://github.com/o/r", "abc1234") is None


# ----- record and view -----------------------------------------------------------------------------------


def stored_before_issue_12() -> dict[str, Any]:
    """A gate record as the store held it before the context fields existed."""
    return {
        "instance_id": "gate-1",
        "tenant_id": "contoso",
        "status": "awaiting_approval",
        "level": "L2",
        "title": "deploy",
        "subject": {"source": "github", "repository": "contoso/web"},
        "requester": ["dev@contoso.com"],
        "requested_by": {"oid": None, "resolved": False, "seen_as": ["github:login:dev"], "aliases": [], "note": "x"},
        "created_at": AT.isoformat(),
        "updated_at": AT.isoformat(),
        "quality": "pass",
    }


def test_records_stored_before_the_context_fields_still_load_and_render():
    record = GateRecord.model_validate(stored_before_issue_12())
    view = build_view(record, base_url="https://gk.example.net")
    assert view.version_tags == () and view.compliance == () and view.audit.entry_ids == ()
    assert view.requester.describe() == "unresolved (seen as github:login:dev)"
    assert view.audit.proof_endpoint == (
        "https://gk.example.net/api/tenants/contoso/audit/export?format=bundle&from=2026-12-05T09%3A00%3A00%2B00%3A00"
    )


def test_the_requester_line_names_the_directory_identity_and_where_it_came_from():
    who = RequesterView(
        resolved=True, oid="o", display="octocat", upn="anna@contoso.com", display_name="Anna", seen_as=("github:id:1",)
    )
    assert who.describe() == "Anna (anna@contoso.com), as github:id:1"
    assert RequesterView(resolved=True, oid="o").describe() == "o"


# ----- mail ---------------------------------------------------------------------------------------------


def test_the_mail_subject_says_the_reason_once_on_one_line():
    note = Notification(kind="approval_request", recipients=("a@contoso.com",), title="deploy x", link="https://g/p")
    assert mail_subject(note) == "[Gatekeeper] Approval needed: deploy x"
    doubled = note.model_copy(update={"title": "Approval needed: deploy\r\nx"})
    assert mail_subject(doubled) == "[Gatekeeper] Approval needed: deploy x"


def test_the_mail_body_escapes_every_detail_and_links_only_https():
    hostile = "<img src=x onerror=alert(1)> [click](https://evil)"
    record = GateRecord.model_validate(
        {
            **stored_before_issue_12(),
            "subject": {"source": "generic", "repository": hostile},
            "version_tags": ["**v1**"],
            "repository_url": "https://git.example/" + "a" * 10,
        }
    )
    details = notification_details(build_view(record))
    note = Notification(
        kind="approval_request", recipients=("a@contoso.com",), title=hostile[:50], link="https://g/p", details=details
    )
    body = mail_html(note, "https://g/p")
    assert "<img" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert '<a href="https://git.example/aaaaaaaaaa">' in body and "**v1**" in body
    with pytest.raises(ValidationError):
        NotificationDetail(label="Run", text="x", url="javascript:alert(1)")


def test_the_generic_api_takes_version_tags_by_either_name_and_builds_the_commit_link():
    from gatekeeper.events.generic import parse_generic

    body = json.loads((ROOT / "tests/fixtures/generic/gate-request.json").read_text())
    event = parse_generic(
        {**body, "repositoryUrl": "https://git.contoso.com/shop/web-shop", "version_tags": ["v2.4.1", "v2.4.1"]},
        tenant_id="contoso",
    )
    assert event.version_tags == ("v2.4.1",)
    assert event.commit_url == "https://git.contoso.com/shop/web-shop/commit/" + body["commit"]
    again = parse_generic({**body, "versionTags": ["v3"], "artifacts": ["web-shop-1287.zip"]}, tenant_id="contoso")
    assert again.version_tags == ("v3",) and again.artifacts == ("web-shop-1287.zip",)
