"""`make demo` end to end, as a newcomer runs it: the public demo-output/ files exist and check out."""

from __future__ import annotations

import json
import subprocess
import sys

from gatekeeper.audit.oscal_validate import validation_errors
from gatekeeper.cli import main
from gatekeeper.slack.blocks import violations
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
        "GitHub was asked: workflow_dispatch rollback.yml on Codertocat/Hello-World ref v1.4.0",
        "watch outcome: rolled_back",
        "on-deny: skip -> action denied: step skipped, exit 0",
        "claims it ran the denied command anyway: 409",
        "data export: 202 pending L2",
        "the agent reports `executed` (exit 0): 202",
        "gatekeeper audit verify (offline): exit 0",
        "policy: L2 by rule cab-in-connectwise",
        "note: Gatekeeper: L2 gate requested",
        "status: Awaiting CAB",
        "its callback to POST /api/connectors/connectwise: 202",
        "psa_change_approval stage: accepted (approve)",
        "anna.jansen (release managers) approves: 202",
        "L2 approved: approval chain approved",
        "note: Gatekeeper: change approved",
        "status: Change Approved",
        "credentials in ConnectWise's request log or the audit entries: none",
        "decided L2 gates (the refit timer does this daily)",
        "recommendation: approve (confidence",
        "rule=production-deploy (+",
        "gatekeeper policy recommend ->",
    ):
        assert expected in timeline, expected
    assert "demo-job-access-token" not in timeline
    # AI agents (issue 20): the guarded delete is denied, never reaches the cluster tools, the agent carries on
    assert 'kubectl_delete_namespace({"name": "prod-legacy"}) -> isError: Gatekeeper did not allow' in timeline
    assert "cluster-tools received 2 calls (list_pods, list_pods), 0 deletes" in timeline
    exchange = json.loads((out / "mcp-guard-exchange.json").read_text())
    assert [step["is_error"] for step in exchange["exchange"]] == [False, True, False]
    assert exchange["gatekeeper_action"]["command"] == 'mcp-tool kubectl_delete_namespace {"name":"prod-legacy"}'
    assert exchange["gatekeeper_action"]["status"] == "denied"
    assert "kubectl_delete_namespace" not in [call["tool"] for call in exchange["upstream_received"]]
    assert "sara.visser approves from the Teams card (a signed adaptiveCard/action invoke): 200" in timeline
    assert "Teams chat with sara.visser: the card is now the read-only summary: Decided approved" in timeline
    card = json.loads((out / "teams-card.json").read_text())
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert card["body"][0]["items"][0]["text"] == "You approved this request\\."
    assert any(str(b.get("text", "")).startswith("Recommendation: approve") for b in card["body"])
    model = json.loads((out / "recommendation-model.json").read_text())
    assert model["samples"] == 92 and model["brier"] < model["base_rate_brier"]
    proposals = (out / "policy-recommendations.txt").read_text()
    assert "rule production-deploy: 81 approvals, 0 rejections" in proposals  # 80 in the history + act 2's
    assert "not proposed: it maps to SOC2 CC8.1" in proposals and "never lowered" in proposals

    assert "presses Approve in Slack (signed block_actions): 200, queued" in timeline
    assert "slack-interactions queue: voted" in timeline and "a forged Slack signature: 401" in timeline
    request = json.loads((out / "slack-request.json").read_text())
    decided = json.loads((out / "slack-decided.json").read_text())
    assert violations(request) == [] and violations(decided) == []  # Slack's Block Kit limits
    assert [e["action_id"] for b in request["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
        "gatekeeper_approve",
        "gatekeeper_reject",
    ]
    assert not [b for b in decided["blocks"] if b["type"] == "actions"] and "Decided: approved" in json.dumps(decided)

    oscal = json.loads((out / "audit.oscal.json").read_text())
    assert validation_errors(oscal, SHARED_FIXTURES / "oscal/oscal_complete_schema-1.2.3.json") == []
    assert (out / "checkpoint-public-key.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert list((out / "outbox").rglob("*.json"))
    assert "approval page for anna.jansen in headless Chromium: 200, buttons ['Approve', 'Reject']" in timeline
    assert (out / "approval-page.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    [ticket] = json.loads((out / "psa-tickets.json").read_text())["tickets"]
    assert ticket["status"] == "Change Approved" and len(ticket["notes"]) >= 3

    assert "gatekeeper report --tenant contoso --since 30d -> " in timeline
    assert "charts, 0 requests beyond the file -> report.png" in timeline
    assert (out / "report.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    figures = json.loads((out / "report.json").read_text())
    assert figures["format"] == "gatekeeper-report/1" and figures["tenant"] == "contoso"
    assert figures["dora"]["deployments"] == 2 and figures["dora"]["change_failure_rate"]["rate"] == 0.5
    assert figures["gates"]["by_level"]["L3"] >= 1 and figures["approval_latency"]["overall"]["n"] >= 1
    assert f'<dd data-value="{figures["summary"]["gates"]}">' in (out / "report.html").read_text()
    from demo.agents import OPS_AGENT_APP

    agents = {r["agent"]: r for r in figures["agents"]["by_agent"]}
    assert agents[OPS_AGENT_APP]["denied"] >= 1  # the guard's kubectl_delete_namespace, denied by anna
    assert any(r["tool"] == "kubectl_delete_namespace" and r["denied"] for r in figures["agents"]["by_tool"])
    assert "prod-legacy" not in (out / "report.json").read_text()  # the tool's name, never its arguments
    assert 'id="agents"' in (out / "report.html").read_text() and "AI agents: " in timeline

    capsys.readouterr()
    bundle, key = str(out / "audit.bundle.json"), str(out / "checkpoint-public-key.pem")
    assert main(["audit", "verify", bundle, "--public-key", key, "--no-progress"]) == 0
    assert "verified" in capsys.readouterr().out

    tampered = json.loads((out / "audit.bundle.json").read_text())
    tampered["entries"][3]["actor"] = "someone-else"
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    assert main(["audit", "verify", str(tmp_path / "tampered.json"), "--public-key", key, "--no-progress"]) == 1
    assert "seq 3" in capsys.readouterr().out + capsys.readouterr().err

    # The install act (issue 17): the health route and the admin's smoke test against a fresh install.
    health = json.loads((out / "health.json").read_text())
    assert health["status_code"] == 200 and health["body"]["dataBoundary"] == "EU"
    assert health["body"]["bootstrap"] == {"status": "done"}
    smoke = (out / "smoke-test.txt").read_text()
    for step in ("health: ok:", "event: ok: accepted for tenant northwind", "gate: ok: L0 approved", "audit: ok:"):
        assert step in smoke, step
    assert smoke.rstrip().endswith("(exit 0)")
