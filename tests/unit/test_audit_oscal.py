"""OSCAL assessment-results: valid against NIST's official OSCAL 1.2.3 schema (jsonschema with `regex` for
`\\p{...}` patterns) and carrying the mapping the issue asks for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gatekeeper.audit.bundle import check_bundle
from gatekeeper.audit.oscal import CONTROLS, to_oscal
from gatekeeper.audit.oscal_validate import oscal_validator, validation_errors
from gatekeeper.audit.signing import LocalCheckpointKey
from tests.conftest import SHARED_FIXTURES
from tests.unit.test_audit_support import make_bundle

SCHEMA_PATH = SHARED_FIXTURES / "oscal" / "oscal_complete_schema-1.2.3.json"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("key")).signer()


def opened_for(bundle, *, self_approval: bool = False, skip_approval: bool = False) -> dict[int, dict[str, Any]]:
    data: dict[int, dict[str, Any]] = {}
    for entry in bundle["entries"]:
        kind = entry["kind"]
        if kind == "event_received":
            value = {
                "source": "github",
                "repository": "contoso/web",
                "commit": "9f2c1ab",
                "environment": "production",
                "requested_by": "dev-oid",
            }
        elif kind == "decision":
            value = {
                "level": "L2",
                "outcome": "approval_required",
                "requester": "dev-oid",
                "reasons": ["environment production requires approval", "change window: business hours"],
            }
        elif kind == "approval_requested":
            value = {
                "stage": "operations",
                "approvers": [{"name": "Alice Example"}],
                "deadline": "2026-03-01T17:00:00Z",
            }
        elif kind == "approval_decided":
            approver = {
                "oid": "dev-oid" if self_approval else "approver-oid",
                "upn": "alice@contoso.example",
                "name": "Alice Example",
            }
            value = {
                "decision": "rejected" if skip_approval else "approved",
                "stage": "operations",
                "comment": "Looks good,\nship it",
                "approver": approver,
                "decision_token": "must-not-leak",
            }
        else:
            value = {"target": "github", "result": "approved", "status": 204, "auth_token": "must-not-leak-either"}
        data[entry["seq"]] = value
    return data


def build(signer, **opened_options):
    bundle = make_bundle(signer, n=30, every=10)
    verification = check_bundle(bundle, public_key_pem=signer.public_key_pem())
    return bundle, to_oscal(bundle, opened_for(bundle, **opened_options), verification, generated_at=NOW)


def test_document_validates_against_the_official_schema(signer, schema):
    _, document = build(signer)
    assert validation_errors(document, schema) == []
    assert oscal_validator(schema).is_valid(document)  # the full oneOf root as well


def test_validator_really_checks_unicode_patterns_and_formats(signer, schema):
    _, document = build(signer)
    ar = document["assessment-results"]
    ar["results"][0]["observations"][0]["methods"] = ["TEST"]
    ar["metadata"]["roles"][0]["id"] = "ä-approver"  # \p{L} accepts a non-ASCII letter
    assert validation_errors(document, schema) == []
    ar["metadata"]["roles"][0]["id"] = "1-approver"  # a token must start with a letter or _
    ar["metadata"]["last-modified"] = "2026-03-02 12:00"
    ar["uuid"] = "not-a-uuid"
    errors = validation_errors(document, schema)
    assert any(e.startswith("assessment-results/metadata/roles/0/id") for e in errors)
    assert any(e.startswith("assessment-results/metadata/last-modified") for e in errors)
    assert any(e.startswith("assessment-results/uuid") for e in errors)
    assert not oscal_validator(schema).is_valid(document)


def test_decisions_are_tool_tests_and_approvals_name_the_approver_party(signer):
    _, document = build(signer)
    ar = document["assessment-results"]
    result = ar["results"][0]
    tool = result["local-definitions"]["components"][0]["uuid"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for observation in result["observations"]:
        kind = next(p["value"] for p in observation["props"] if p["name"] == "audit-kind")
        by_kind.setdefault(kind, []).append(observation)
    decision = by_kind["decision"][0]
    assert decision["methods"] == ["TEST"]
    assert decision["origins"] == [{"actors": [{"type": "tool", "actor-uuid": tool}]}]
    assert "environment production requires approval" in decision["description"]
    approval = by_kind["approval_decided"][0]
    actor = approval["origins"][0]["actors"][0]
    assert (actor["type"], actor["role-id"]) == ("party", "approver")
    party = next(p for p in ar["metadata"]["parties"] if p["uuid"] == actor["actor-uuid"])
    assert party["name"] == "Alice Example" and party["type"] == "person"
    assert "Looks good, ship it" in approval["description"]
    assert len(result["observations"]) == 30


def test_findings_cover_the_controls_and_are_satisfied(signer):
    _, document = build(signer)
    result = document["assessment-results"]["results"][0]
    findings = {f["target"]["target-id"]: f for f in result["findings"]}
    assert set(findings) == {f"{c}_smt" for c in CONTROLS}
    assert {f["target"]["status"]["state"] for f in findings.values()} == {"satisfied"}
    observations = {o["uuid"] for o in result["observations"]}
    for finding in findings.values():
        for related in finding.get("related-observations", []):
            assert related["observation-uuid"] in observations
    selected = result["reviewed-controls"]["control-selections"][0]["include-controls"]
    assert [c["control-id"] for c in selected] == ["cm-3", "cm-5", "au-9", "au-10", "sa-10"]


def test_checkpoints_and_plan_are_back_matter_evidence(signer):
    bundle, document = build(signer)
    ar = document["assessment-results"]
    resources = {r["uuid"]: r for r in ar["back-matter"]["resources"]}
    assert ar["import-ap"]["href"].lstrip("#") in resources
    checkpoint_resources = [r for r in resources.values() if r["title"].startswith("Signed audit checkpoint")]
    assert len(checkpoint_resources) == len(bundle["checkpoints"]) == 3
    import base64

    note = base64.b64decode(checkpoint_resources[0]["base64"]["value"]).decode()
    assert note.startswith("gatekeeper.audit/contoso\n10\n")
    for observation in ar["results"][0]["observations"]:
        for evidence in observation["relevant-evidence"]:
            assert evidence["href"].lstrip("#") in resources


def test_credentials_never_reach_the_document(signer):
    _, document = build(signer)
    text = json.dumps(document)
    assert "must-not-leak" not in text


def test_violations_make_findings_not_satisfied(signer, schema):
    _, document = build(signer, self_approval=True)
    findings = {f["target"]["target-id"]: f for f in document["assessment-results"]["results"][0]["findings"]}
    assert findings["cm-5_smt"]["target"]["status"] == {
        "state": "not-satisfied",
        "reason": "fail",
        "remarks": "- the requester approved their own change (gate-0)\n"
        "- the requester approved their own change (gate-1)\n"
        "- the requester approved their own change (gate-2)\n"
        "- the requester approved their own change (gate-3)\n"
        "- the requester approved their own change (gate-4)\n"
        "- the requester approved their own change (gate-5)",
    }
    assert validation_errors(document, schema) == []
    _, document = build(signer, skip_approval=True)
    findings = {f["target"]["target-id"]: f for f in document["assessment-results"]["results"][0]["findings"]}
    assert findings["cm-3_smt"]["target"]["status"]["state"] == "not-satisfied"


def test_failed_verification_fails_au9(signer, schema):
    bundle = make_bundle(signer, n=30, every=10)
    bundle["entries"][4]["actor"] = "user:tamperer"
    verification = check_bundle(bundle, public_key_pem=signer.public_key_pem())
    document = to_oscal(bundle, opened_for(bundle), verification, generated_at=NOW)
    findings = {f["target"]["target-id"]: f for f in document["assessment-results"]["results"][0]["findings"]}
    assert findings["au-9_smt"]["target"]["status"]["state"] == "not-satisfied"
    assert "seq 4" in findings["au-9_smt"]["target"]["status"]["remarks"]
    assert validation_errors(document, schema) == []


def test_unreadable_data_is_still_described(signer, schema):
    bundle = make_bundle(signer, n=10, every=10)
    verification = check_bundle(bundle, public_key_pem=signer.public_key_pem())
    document = to_oscal(bundle, dict.fromkeys(range(10)), verification, generated_at=NOW)
    assert validation_errors(document, schema) == []
    assert "can no longer be opened" in document["assessment-results"]["results"][0]["observations"][0]["description"]


def test_the_records_the_gate_activities_write_map_as_documented(signer, schema):
    """The data shapes gatekeeper.gates.activities and the approvals service record today."""
    from gatekeeper.audit.bundle import build_bundle
    from gatekeeper.audit.records import GENESIS_HASH, sealed_entry
    from tests.unit.test_audit_support import make_checkpoints

    steps = [
        (
            "decision",
            "system:gatekeeper",
            {
                "level": "L2",
                "action": "deploy",
                "environment": "production",
                "rule": "prod-needs-approval",
                "reasons": ["production"],
                "quality": {"result": "pass"},
                "approval": {"stages": []},
                "blocked": False,
            },
        ),
        (
            "approval_requested",
            "system:gatekeeper",
            {
                "stage": 0,
                "stage_name": "ops",
                "approvers": ["ops@x"],
                "quorum": 1,
                "deadline": "2026-03-01T17:00:00+00:00",
            },
        ),
        (
            "approval_decided",
            "3f1c-oid",
            {"vote": 1, "stage": 0, "decision": "approve", "comment": "ok", "upn": "alice@contoso.example"},
        ),
        (
            "approval_decided",
            "system:gatekeeper",
            {
                "stage": 0,
                "stage_name": "ops",
                "outcome": "ChainApproved",
                "approvals": ["3f1c-oid"],
                "chain_status": "approved",
            },
        ),
        ("callback", "system:gatekeeper", {"approved": True, "ok": True, "status_code": 204, "target": "github"}),
        ("decision", "system:gatekeeper", {"final": True, "status": "approved", "level": "L2", "reason": None}),
    ]
    entries, prev = [], GENESIS_HASH
    for seq, (kind, actor, _) in enumerate(steps):
        entry = sealed_entry(
            "contoso",
            seq,
            kind,
            f"2026-03-01T09:0{seq}:00.000000Z",
            actor,
            "gate-1",
            "contoso/web to production",
            f"gk1.t.{seq}",
            prev,
        )
        entries.append(entry)
        prev = entry["entry_hash"]
    bundle = build_bundle(
        "contoso",
        entries,
        make_checkpoints("contoso", entries, signer, 10),
        start_seq=0,
        end_seq=len(entries),
        exported_at="2026-03-02T00:00:00.000000Z",
    )
    verification = check_bundle(bundle, public_key_pem=signer.public_key_pem())
    opened = {seq: data for seq, (_, _, data) in enumerate(steps)}
    document = to_oscal(bundle, opened, verification, generated_at=NOW)
    assert validation_errors(document, schema) == []
    result = document["assessment-results"]["results"][0]
    observations = result["observations"]
    vote, chain_outcome = observations[2], observations[3]
    assert vote["origins"][0]["actors"][0]["type"] == "party"
    party = document["assessment-results"]["metadata"]["parties"][1]
    assert party["name"] == "alice@contoso.example" and party["uuid"] == vote["origins"][0]["actors"][0]["actor-uuid"]
    assert chain_outcome["origins"][0]["actors"][0]["type"] == "tool"
    assert observations[4]["title"] == "Pipeline callback to github: approved"
    assert observations[5]["title"] == "Gate outcome approved for contoso/web to production"
    status = {f["target"]["target-id"]: f["target"]["status"]["state"] for f in result["findings"]}
    assert status["cm-3_smt"] == status["cm-5_smt"] == status["au-9_smt"] == status["au-10_smt"] == "satisfied"


def test_compliance_mappings_of_decisions_become_observation_props_and_stay_schema_valid(signer, schema):
    """Issue 12: the matching rule's `compliance` tags, written in the audit decision entry, map to one
    `compliance-control` prop per tag (class = framework, value = control); malformed ones are left out."""
    bundle = make_bundle(signer, n=30, every=10)
    opened = opened_for(bundle)
    tags = [{"framework": "SOC2", "control": "CC8.1"}, {"framework": "FedRAMP", "control": "CM-3"}]
    hostile = [{"framework": "SOC 2", "control": "x"}, {"framework": "ISO27001", "control": "<b>A.8.32</b>"}, "CM-3"]
    decisions = [seq for seq, data in opened.items() if "level" in data]
    assert len(decisions) >= 2
    opened[decisions[0]] = {**opened[decisions[0]], "compliance": tags + hostile}
    opened[decisions[1]] = {**opened[decisions[1]], "compliance": [{"framework": "ISO27001", "control": "A.8.32"}]}
    verification = check_bundle(bundle, public_key_pem=signer.public_key_pem())
    document = to_oscal(bundle, opened, verification, generated_at=NOW)
    assert validation_errors(document, schema) == []
    observations = {
        int(next(p["value"] for p in o["props"] if p["name"] == "audit-seq")): o
        for o in document["assessment-results"]["results"][0]["observations"]
    }

    def mapped(seq: int) -> list[tuple[str, str]]:
        return [(p["class"], p["value"]) for p in observations[seq]["props"] if p["name"] == "compliance-control"]

    assert mapped(decisions[0]) == [("SOC2", "CC8.1"), ("FedRAMP", "CM-3")]
    assert mapped(decisions[1]) == [("ISO27001", "A.8.32")]
    others = [seq for seq in observations if seq not in decisions[:2]]
    assert all(mapped(seq) == [] for seq in others)
