"""Action-level approvals in the OSCAL export (issue 13): the action's audit entries become observations,
the document stays valid against NIST's official OSCAL 1.2.3 schema, the command itself never appears (only
its SHA-256), and a client reporting it ran a denied action is a CM-3 finding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gatekeeper.audit.bundle import build_bundle, check_bundle
from gatekeeper.audit.oscal import to_oscal
from gatekeeper.audit.oscal_validate import validation_errors
from gatekeeper.audit.records import GENESIS_HASH, sealed_entry
from gatekeeper.audit.signing import LocalCheckpointKey
from tests.conftest import SHARED_FIXTURES
from tests.unit.test_audit_support import make_checkpoints

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
COMMAND = "pg_dump --table=customers postgresql://svc:Hunter2@db/prod"
DIGEST = "5e" * 32


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((SHARED_FIXTURES / "oscal" / "oscal_complete_schema-1.2.3.json").read_text())


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("key")).signer()


def export(signer, steps: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any]:
    entries, prev = [], GENESIS_HASH
    for seq, (kind, actor, _) in enumerate(steps):
        entry = sealed_entry(
            "contoso",
            seq,
            kind,
            f"2026-03-01T09:{seq:02d}:00.000000Z",
            actor,
            "gate-" + "a" * 40,
            "Action: data export on production (production)",
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
    return to_oscal(bundle, opened, verification, generated_at=NOW)


def requested() -> tuple[str, str, dict[str, Any]]:
    return (
        "action_requested",
        "agent-7",
        {
            "command": COMMAND,
            "command_sha256": DIGEST,
            "action": "data_export",
            "environment": "production",
            "resource": "db-prod",
            "level": "L2",
            "answer": "pending",
            "auth": "entra",
            "requested_by": "agent-7",
            "ticket": "CHG0012345",
        },
    )


def received() -> tuple[str, str, dict[str, Any]]:
    # an agent's action names no repository or commit: not an SA-10 violation for actions
    return ("event_received", "system:gatekeeper", {"source": "generic", "labels": ["action"], "requester": []})


def test_an_approved_and_executed_action_maps_to_observations_without_the_command(signer, schema):
    document = export(
        signer,
        [
            received(),
            ("decision", "system:gatekeeper", {"level": "L2", "reasons": ["default"], "blocked": False}),
            requested(),
            ("approval_decided", "3f1c-oid", {"vote": 0, "stage": 0, "decision": "approve", "upn": "ann@contoso.com"}),
            ("action_reported", "agent-7", {"outcome": "executed", "exit_code": 0, "status": "approved"}),
        ],
    )
    assert validation_errors(document, schema) == []
    text = json.dumps(document)
    assert "Hunter2" not in text and "pg_dump" not in text and DIGEST in text
    result = document["assessment-results"]["results"][0]
    titles = [o["title"] for o in result["observations"]]
    assert titles[2].startswith("Action requested: ") and titles[4].startswith("Action executed: ")
    assert "exit code 0" in result["observations"][4]["description"]
    status = {f["target"]["target-id"]: f["target"]["status"]["state"] for f in result["findings"]}
    assert status["cm-3_smt"] == "satisfied"
    sa10 = next(f for f in result["findings"] if f["target"]["target-id"] == "sa-10_smt")
    assert "names no repository" not in json.dumps(sa10)


def test_reporting_a_denied_action_as_executed_is_a_cm3_finding(signer, schema):
    document = export(
        signer,
        [
            received(),
            requested(),
            ("approval_decided", "3f1c-oid", {"vote": 0, "stage": 0, "decision": "reject", "upn": "ann@contoso.com"}),
            ("action_reported", "agent-7", {"outcome": "executed", "status": "denied", "refused": True}),
            ("action_reported", "agent-7", {"outcome": "skipped", "status": "denied", "refused": False}),
        ],
    )
    assert validation_errors(document, schema) == []
    result = document["assessment-results"]["results"][0]
    assert result["observations"][3]["title"].startswith("Refused report: executed")
    cm3 = next(f for f in result["findings"] if f["target"]["target-id"] == "cm-3_smt")
    assert cm3["target"]["status"]["state"] == "not-satisfied"
    assert "although it was denied" in cm3["target"]["status"]["remarks"]


def test_cancelled_and_expired_actions_are_described(signer, schema):
    document = export(
        signer,
        [
            requested(),
            ("action_cancelled", "agent-7", {"reason": "cancelled", "chain_ended": True, "level": "L2"}),
            ("action_expired", "system", {"reason": "expired", "chain_ended": False, "level": "L2"}),
        ],
    )
    assert validation_errors(document, schema) == []
    observations = document["assessment-results"]["results"][0]["observations"]
    assert "cancelled by its requester" in observations[1]["description"]
    assert "expired on its own timeout" in observations[2]["description"]
    assert "not running" in observations[2]["description"]
