"""The approver's view of a gate (gatekeeper.gates.view): one model for card, page, API and mail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.approvals.chain import ChainPlan, Decision
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.gates.store import GateRecord, StoredVote
from gatekeeper.gates.view import build_view, plain_text
from gatekeeper.security.requester import Requester

AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def record(**changes: object) -> GateRecord:
    base: dict[str, object] = {
        "instance_id": "gate-1",
        "tenant_id": "contoso",
        "status": GateStatus.AWAITING_APPROVAL,
        "level": "L2",
        "title": "deploy of contoso/web to production",
        "subject": {"source": "github", "repository": "contoso/web", "environment": "production", "ref": "main"},
        "requested_by": Requester(oid=None, resolved=False, seen_as=("github:login:octocat",), note="not linked"),
        "created_at": AT,
        "updated_at": AT,
        "plan": ChainPlan.model_validate(
            {
                "stages": [
                    {"name": "leads", "approvers": ["a@contoso.com", "b@contoso.com"], "quorum": 1, "timeout": "PT1H"}
                ]
            }
        ),
        "stage": 0,
        "stage_started_at": AT,
        "deadline": AT + timedelta(hours=1),
        "quality": "fail",
        "quality_score": 0.5,
    }
    base.update(changes)
    return GateRecord.model_validate(base)


def test_the_api_document_keeps_the_routes_fields_and_shapes_and_adds_the_context():
    vote = StoredVote(voter_id="oid-a", decision=Decision.APPROVE, stage=0, at=AT, seq=1, comment="ok")
    document = build_view(record(), [vote], can_decide=True, base_url="https://gk.example.net/").to_api()
    assert document["subject"]["repository"] == "contoso/web"
    assert document["stage"]["deadline"] == (AT + timedelta(hours=1)).isoformat()
    assert document["stage"]["approvers"] == ["a@contoso.com", "b@contoso.com"]
    assert document["stages"] == [{"name": "leads", "quorum": 1}]
    assert document["votes"] == [
        {"voter_id": "oid-a", "decision": "approve", "stage": 0, "at": AT.isoformat(), "comment": "ok"}
    ]
    assert document["can_decide"] is True
    assert document["requester"]["resolved"] is False
    assert document["requester"]["note"].startswith("requester unresolved: not linked")
    assert document["page_url"] == "https://gk.example.net/api/approvals/gate-1/page"
    assert document["quality"] == {"result": "fail", "score": 0.5, "failing": []}


def test_links_from_events_are_shown_only_when_they_are_https():
    subject = {
        "repository_url": "javascript:alert(1)",
        "commit_url": "https://github.com/contoso/web/commit/abc",
        "run_url": "https://evil example",
    }
    view = build_view(record(subject=subject))
    assert view.repository_url is None
    assert view.commit_url == "https://github.com/contoso/web/commit/abc"
    assert view.run_url is None


def test_a_decided_gate_is_shown_decided_and_an_instance_id_is_quoted_in_urls():
    view = build_view(record(status=GateStatus.REJECTED, instance_id="a:b"), base_url="https://gk.example.net")
    assert view.decided
    assert view.page_url == "https://gk.example.net/api/approvals/a%3Ab/page"
    assert not build_view(record()).decided


def test_markdown_in_event_text_is_escaped_for_card_text():
    assert plain_text("[click](https://evil)") == "\\[click\\]\\(https://evil\\)"
    assert plain_text("**bold** <b>") == "\\*\\*bold\\*\\* \\<b\\>"
    assert plain_text(None) == ""


@settings(derandomize=True, max_examples=200)
@given(st.text(max_size=64))
def test_plain_text_leaves_no_markdown_character_unescaped(text: str):
    escaped = plain_text(text)
    i = 0
    while i < len(escaped):
        if escaped[i] == "\\":
            i += 2
            continue
        assert escaped[i] not in "`*_{}[]()#+-.!|<>~&"
        assert escaped[i].isprintable() or escaped[i] in "\r\n\t"
        i += 1


def test_the_context_comes_from_the_records_own_fields():
    from gatekeeper.gates.store import AuditRef, FailingObjective
    from gatekeeper.policy.compliance import ComplianceMapping

    view = build_view(
        record(
            repository_url="https://github.com/contoso/web",
            commit_url="https://github.com/contoso/web/commit/abc1234",
            run_url="https://github.com/contoso/web/actions/runs/7",
            version_tags=("v1.2.0",),
            artifact_ids=("web@sha256:00",),
            quality_failing=(FailingObjective(name="line-coverage", detail="61.5 is not >=80"),),
            compliance=(ComplianceMapping(framework="SOC2", control="CC8.1"),),
        ),
        base_url="https://gk.example.net",
        audit=(AuditRef(seq=4, kind="event_received", at=AT), AuditRef(seq=5, kind="decision", at=AT)),
    )
    assert view.run_url == "https://github.com/contoso/web/actions/runs/7" and view.version_tags == ("v1.2.0",)
    assert view.artifact_ids == ("web@sha256:00",)
    assert view.quality is not None and view.quality.failing[0].name == "line-coverage"
    assert [(t.framework, t.control) for t in view.compliance] == [("SOC2", "CC8.1")]
    assert view.audit.entry_ids == ("4", "5") and view.audit.entries[1].kind == "decision"
    assert view.audit.proof_endpoint is not None and "format=bundle" in view.audit.proof_endpoint
    document = view.to_api()
    assert document["audit"]["entry_ids"] == ["4", "5"] and document["compliance"] == [
        {"framework": "SOC2", "control": "CC8.1"}
    ]
