"""The watch's audit entries (deployment_finished, health_check, rollback) in the OSCAL export: observations
that say what happened, valid against the official schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gatekeeper.audit.bundle import build_bundle, check_bundle
from gatekeeper.audit.oscal import to_oscal
from gatekeeper.audit.oscal_validate import validation_errors
from gatekeeper.audit.records import GENESIS_HASH, sealed_entry
from gatekeeper.audit.signing import LocalCheckpointKey
from tests.unit.test_audit_oscal import SCHEMA_PATH
from tests.unit.test_audit_support import make_checkpoints

NOW = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
PROBE = {"name": "health", "outcome": "fail", "detail": "status 503, expected 200", "status_code": 503, "latency_ms": 4}

# What gatekeeper.rollback.steps records for a deployment that went bad and was rolled back.
STEPS = [
    (
        "deployment_finished",
        {
            "environment": "production",
            "repository": "contoso/webshop",
            "ref": "refs/tags/v2",
            "commit": "badbad000002",
            "run_id": "77",
            "status": "success",
            "gate_id": None,
            "is_rollback": False,
            "watched": True,
            "reason": "watched",
        },
    ),
    ("health_check", {"round": 1, "result": "fail", "probes": [PROBE]}),
    (
        "rollback",
        {
            "step": "decided",
            "result": "decided at level L1",
            "level": "L1",
            "reason": "rollback level L1 from the watch settings",
            "cause": "2 failed probe round(s)",
            "leased": True,
        },
    ),
    (
        "rollback",
        {
            "step": "finished",
            "result": "run finished: success",
            "run_id": "9000",
            "url": "https://github.com/contoso/webshop/actions/runs/9000",
            "conclusion": "success",
        },
    ),
    ("health_check", {"final": True, "verdict": "healthy", "last_known_good": True}),
]


def test_watch_entries_become_observations_that_say_what_happened(tmp_path):
    signer = LocalCheckpointKey(tmp_path).signer()
    entries, prev = [], GENESIS_HASH
    for seq, (kind, _) in enumerate(STEPS):
        entry = sealed_entry(
            "contoso",
            seq,
            kind,
            f"2031-03-03T10:0{seq}:00.000000Z",
            "system:gatekeeper",
            "watch-1",
            "contoso/webshop production (badbad000002)",
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
        exported_at="2031-03-04T00:00:00.000000Z",
    )
    verification = check_bundle(bundle, public_key_pem=signer.public_key_pem())
    document = to_oscal(bundle, {seq: data for seq, (_, data) in enumerate(STEPS)}, verification, generated_at=NOW)
    assert validation_errors(document, json.loads(SCHEMA_PATH.read_text())) == []
    observations = document["assessment-results"]["results"][0]["observations"]
    titles = [o["title"] for o in observations]
    subject = "contoso/webshop production (badbad000002)"
    assert titles == [
        f"Deployment success: {subject}",
        f"Health check of {subject}: fail",
        f"Rollback of {subject}",
        f"Rollback of {subject}",
        f"Health check of {subject}: healthy",
    ]
    descriptions = [o["description"] for o in observations]
    assert "contoso/webshop at badbad000002 to production reported success; watched after deployment" in descriptions[0]
    assert "health: status 503, expected 200" in descriptions[1]
    assert "decided at level L1" in descriptions[2] and "run finished: success" in descriptions[3]
