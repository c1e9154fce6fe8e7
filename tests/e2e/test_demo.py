"""`make demo` end to end, as a newcomer runs it: the public demo-output/ files exist and check out."""

from __future__ import annotations

import json
import subprocess
import sys

from gatekeeper.audit.oscal_validate import validation_errors
from gatekeeper.cli import main
from tests.conftest import ROOT, SHARED_FIXTURES


def test_demo_tells_the_whole_story_and_leaves_verifiable_evidence(tmp_path, capsys):
    out = tmp_path / "demo-output"
    run = subprocess.run(
        [sys.executable, "-m", "demo", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    timeline = (out / "timeline.txt").read_text()
    for expected in (
        "dispatcher: {'started': 1, 'duplicate': 1",
        "forged X-Hub-Signature-256: 401",
        "policy: L2 by rule production-deploy",
        "GitHub was called back: progress comment",
        "GitHub was called back: review approved",
        "votes again: 409",
        "policy: L0 by rule builds-and-tests",
        "Azure DevOps was called back: TaskCompleted succeeded",
        "policy: L1 by rule staging",
        "policy: L3 by rule privilege-escalation",
        "L2 rejected: approval chain rejected (timeout); pipeline called back",
        "on-deny: skip -> action denied: step skipped, exit 0",
        "claims it ran the denied command anyway: 409",
        "data export: 202 pending L2",
        "the agent reports `executed` (exit 0): 202",
        "gatekeeper audit verify (offline): exit 0",
    ):
        assert expected in timeline, expected
    assert "demo-job-access-token" not in timeline

    oscal = json.loads((out / "audit.oscal.json").read_text())
    assert validation_errors(oscal, SHARED_FIXTURES / "oscal/oscal_complete_schema-1.2.3.json") == []
    assert (out / "checkpoint-public-key.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert list((out / "outbox").rglob("*.json"))

    capsys.readouterr()
    bundle, key = str(out / "audit.bundle.json"), str(out / "checkpoint-public-key.pem")
    assert main(["audit", "verify", bundle, "--public-key", key, "--no-progress"]) == 0
    assert "verified" in capsys.readouterr().out

    tampered = json.loads((out / "audit.bundle.json").read_text())
    tampered["entries"][3]["actor"] = "someone-else"
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    assert main(["audit", "verify", str(tmp_path / "tampered.json"), "--public-key", key, "--no-progress"]) == 1
    assert "seq 3" in capsys.readouterr().out + capsys.readouterr().err
