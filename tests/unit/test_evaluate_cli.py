"""`gatekeeper evaluate` on real payloads: exact public JSON shape, exit 0; bad input exits 2 naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from gatekeeper.cli import main

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT.parent / "shared" / "fixtures" / "github"
POLICY = ROOT / "examples" / "policy.yaml"
EVENTS = ROOT / "examples" / "events"
EVIDENCE = ROOT / "examples" / "evidence"
PROTECTION_RULE = EVENTS / "github-deployment-protection-rule.json"
MONDAY_10 = "2025-03-31T10:00:00+02:00"  # Amsterdam business hours
SATURDAY = "2025-03-29T11:00:00+01:00"

TOP_KEYS = {"level", "action", "environment", "rule", "reasons", "quality", "approval", "blocked"}
QUALITY_KEYS = {"result", "score", "objectives"}
OBJECTIVE_KEYS = {"name", "kind", "value", "baseline", "criteria", "verdict", "weight", "score", "reason"}
STAGE_KEYS = {"name", "approvers", "quorum", "timeout", "on_timeout"}


def evaluate(capsys, *args: str) -> tuple[int, dict | None, str]:
    code = main(["evaluate", "--policy", str(POLICY), *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def assert_public_shape(decision: dict) -> None:
    assert set(decision) - {"compliance"} == TOP_KEYS  # `compliance` only when the matching rule has mappings
    for mapping in decision.get("compliance", [{"framework": "-", "control": "-"}]):
        assert set(mapping) == {"framework", "control"}
    assert decision["level"] in ("L0", "L1", "L2", "L3")
    assert isinstance(decision["reasons"], list) and all(isinstance(r, str) and r for r in decision["reasons"])
    assert set(decision["quality"]) == QUALITY_KEYS
    assert decision["quality"]["result"] in ("pass", "warning", "fail")
    for objective in decision["quality"]["objectives"]:
        assert set(objective) == OBJECTIVE_KEYS
        assert objective["verdict"] in ("pass", "warning", "fail", "info")
    if decision["approval"] is not None:
        assert set(decision["approval"]) == {"stages"}
        for stage in decision["approval"]["stages"]:
            assert set(stage) == STAGE_KEYS
            assert stage["on_timeout"] in ("escalate", "reject")


def test_example_protection_rule_payload_matches_githubs_schema():
    registry = Registry()
    for path in (GITHUB / "schemas").rglob("*.schema.json"):
        schema = json.loads(path.read_text())
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema, default_specification=DRAFT7))
    schema = json.loads((GITHUB / "schemas" / "deployment_protection_rule.requested.schema.json").read_text())
    payload = json.loads(PROTECTION_RULE.read_text())
    errors = list(Draft7Validator(schema, registry=registry).iter_errors(payload))
    assert errors == []


def test_protection_rule_with_passing_evidence(capsys):
    code, decision, _ = evaluate(
        capsys, "--event", str(PROTECTION_RULE), "--evidence", str(EVIDENCE / "passing.json"), "--at", MONDAY_10
    )
    assert code == 0
    assert_public_shape(decision)
    assert decision["level"] == "L2"
    assert (decision["action"], decision["environment"], decision["rule"]) == (
        "deploy",
        "production",
        "production-deploy",
    )
    assert decision["blocked"] is False
    assert (decision["quality"]["result"], decision["quality"]["score"]) == ("pass", 100.0)
    assert len(decision["quality"]["objectives"]) == 7
    assert decision["approval"] == {
        "stages": [
            {
                "name": "release-managers",
                "approvers": ["lisa.devries@contoso.com", "tom.mulder@contoso.com"],
                "quorum": 1,
                "timeout": "PT4H",
                "on_timeout": "escalate",
            },
            {
                "name": "change-advisory-board",
                "approvers": ["anna.jansen@contoso.com", "piet.bakker@contoso.com", "sara.visser@contoso.com"],
                "quorum": 2,
                "timeout": "PT8H",
                "on_timeout": "reject",
            },
        ]
    }


def test_protection_rule_with_failing_evidence_goes_to_l3(capsys):
    code, decision, _ = evaluate(
        capsys, "--event", str(PROTECTION_RULE), "--evidence", str(EVIDENCE / "failing.json"), "--at", MONDAY_10
    )
    assert code == 0
    assert_public_shape(decision)
    assert (decision["level"], decision["approval"], decision["quality"]["result"]) == ("L3", None, "fail")
    assert "quality gate failed: level raised from L2 to L3" in decision["reasons"]


def test_protection_rule_in_the_year_end_freeze(capsys):
    code, decision, _ = evaluate(capsys, "--event", str(PROTECTION_RULE), "--at", "2025-12-23T10:00:00+01:00")
    assert code == 0 and decision["level"] == "L3"
    assert any(r.startswith("change freeze 'year-end-freeze'") for r in decision["reasons"])


def test_published_deployment_status_payload(capsys):
    code, decision, _ = evaluate(capsys, "--event", str(GITHUB / "deployment_status.payload.json"), "--at", SATURDAY)
    assert code == 0
    assert_public_shape(decision)
    # Codertocat/Hello-World deploys ref "master" to production
    assert (decision["level"], decision["rule"], decision["environment"]) == ("L2", "production-deploy", "production")
    assert decision["quality"] == {"result": "pass", "score": None, "objectives": []}
    assert any(r.startswith("outside business hours") for r in decision["reasons"])
    assert [s["name"] for s in decision["approval"]["stages"]] == ["release-managers", "change-advisory-board"]


@pytest.mark.parametrize("name", ["workflow_run.completed.payload.json", "workflow_run.requested.payload.json"])
def test_published_workflow_run_payloads(capsys, name):
    code, decision, _ = evaluate(capsys, "--event", str(GITHUB / name), "--source", "github")
    assert code == 0
    assert_public_shape(decision)
    assert decision == {
        "level": "L0",
        "action": "build",
        "environment": None,
        "rule": "builds-and-tests",
        "reasons": [
            "rule 'builds-and-tests' matched: builds and test runs change nothing that customers use",
            "no quality evidence attached: 7 objective(s) not evaluated, quality result is pass "
            "(policy quality.missing_evidence)",
            "gate level L0: fully automated and logged",
        ],
        "quality": {"result": "pass", "score": None, "objectives": []},
        "approval": None,
        "blocked": False,
    }


def test_published_workflow_job_with_deployment(capsys):
    code, decision, _ = evaluate(
        capsys, "--event", str(GITHUB / "workflow_job.queued.with-deployment.payload.json"), "--at", MONDAY_10
    )
    assert code == 0
    assert (decision["level"], decision["rule"], decision["environment"]) == ("L0", "dev-test-deploys", "Test")


def test_azure_devops_check_request_with_inline_evidence(capsys):
    code, decision, _ = evaluate(capsys, "--event", str(EVENTS / "azure-devops-check.request.json"), "--at", MONDAY_10)
    out = json.dumps(decision)
    assert code == 0
    assert_public_shape(decision)
    assert (decision["level"], decision["rule"], decision["quality"]["result"]) == ("L1", "staging", "pass")
    assert "placeholder-job-access-token" not in out  # the AuthToken never reaches the output


def test_generic_event(capsys):
    code, decision, _ = evaluate(
        capsys, "--event", str(EVENTS / "generic-infrastructure-change.json"), "--at", MONDAY_10
    )
    assert code == 0
    assert (decision["level"], decision["action"], decision["rule"]) == (
        "L2",
        "infrastructure_change",
        "production-infrastructure",
    )
    assert [s["name"] for s in decision["approval"]["stages"]] == ["change-advisory-board"]


def test_subprocess_entry_point():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gatekeeper",
            "evaluate",
            "--policy",
            str(POLICY),
            "--event",
            str(PROTECTION_RULE),
            "--at",
            MONDAY_10,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["level"] == "L2"


# --- bad input: exit 2, naming the file and the field ----------------------------------------------------------


def _write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_bad_policy_field(capsys, tmp_path):
    policy = _write(tmp_path, "policy.yaml", "version: 1\nrules:\n  - name: prod\n    level: L7\n")
    code = main(["evaluate", "--policy", str(policy), "--event", str(PROTECTION_RULE)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"gatekeeper: error: {policy}: rules[0].level: 'L7' is not one of")


def test_bad_quorum_in_policy(capsys, tmp_path):
    text = POLICY.read_text().replace(
        "quorum: 2\n          timeout: PT8H\n          on_timeout: reject\n\n  - name: production-rollback",
        "quorum: 4\n          timeout: PT8H\n          on_timeout: reject\n\n  - name: production-rollback",
    )
    assert text != POLICY.read_text()
    policy = _write(tmp_path, "policy.yaml", text)
    code = main(["evaluate", "--policy", str(policy), "--event", str(PROTECTION_RULE)])
    assert code == 2
    names = [rule["name"] for rule in yaml.safe_load(text)["rules"]]
    index = names.index("production-rollback") - 1  # the rule just before it, whose quorum was changed
    assert f"{policy}: rules[{index}].approval.stages[0].quorum: must be between 1 and 3" in capsys.readouterr().err


def test_event_missing_a_field(capsys, tmp_path):
    payload = json.loads(PROTECTION_RULE.read_text())
    payload["environment"] = 5
    event = _write(tmp_path, "event.json", payload)
    code, _, err = evaluate(capsys, "--event", str(event), "--event-name", "deployment_protection_rule")
    assert code == 2
    assert err.startswith(f"gatekeeper: error: {event}: environment: ")


def test_legacy_event_without_an_environment_has_nothing_to_evaluate(capsys, tmp_path):
    payload = json.loads(PROTECTION_RULE.read_text())
    del payload["environment"]  # GitHub's schema allows it; the route answers 202 "ignored" with this reason
    event = _write(tmp_path, "event.json", payload)
    code, _, err = evaluate(capsys, "--event", str(event), "--event-name", "deployment_protection_rule")
    assert code == 2
    assert err.startswith(f"gatekeeper: error: {event}: ") and "without environment" in err


def test_ado_check_request_missing_header(capsys, tmp_path):
    request = json.loads((EVENTS / "azure-devops-check.request.json").read_text())
    del request["headers"]["PlanId"]
    event = _write(tmp_path, "check.json", request)
    code, _, err = evaluate(capsys, "--event", str(event))
    assert code == 2
    assert f"{event}: header:PlanId: " in err
    assert "placeholder-job-access-token" not in err


def test_unhandled_github_event(capsys, tmp_path):
    event = _write(tmp_path, "event.json", {"action": "created", "repository": {}, "sender": {}})
    code, _, err = evaluate(capsys, "--event", str(event), "--event-name", "star")
    assert code == 2 and "is not handled; there is nothing to evaluate" in err
    code, _, err = evaluate(capsys, "--event", str(event))
    assert code == 2 and "pass --event-name" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "2025-03-31T10:00:00"], "--at: '2025-03-31T10:00:00' has no UTC offset"),
        (["--at", "monday"], "--at: 'monday' is not an ISO 8601 date and time"),
        (["--tenant", "Contoso!"], "--tenant: 'Contoso!' is not a tenant id"),
    ],
)
def test_bad_options(capsys, args, message):
    code, _, err = evaluate(capsys, "--event", str(PROTECTION_RULE), *args)
    assert code == 2 and message in err


def test_bad_evidence_field(capsys, tmp_path):
    evidence = _write(tmp_path, "evidence.json", {"coverage": {"line_percent": 180}})
    code, _, err = evaluate(capsys, "--event", str(PROTECTION_RULE), "--evidence", str(evidence))
    assert code == 2
    assert f"{evidence}: coverage.line_percent: " in err


@pytest.mark.parametrize(("content", "message"), [("{not json", "not valid JSON"), ("[1, 2]", "$: the event must be")])
def test_event_not_a_json_object(capsys, tmp_path, content, message):
    event = _write(tmp_path, "event.json", content)
    code, _, err = evaluate(capsys, "--event", str(event), "--source", "github")
    assert code == 2 and f"{event}: " in err and message in err


def test_missing_files(capsys, tmp_path):
    code, _, err = evaluate(capsys, "--event", str(tmp_path / "nope.json"))
    assert code == 2 and f"{tmp_path / 'nope.json'}: cannot be read" in err
