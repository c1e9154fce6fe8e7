"""Loading policies: the example, the shipped JSON Schema, and errors that name the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from functions.http import status_of
from gatekeeper.policy import GateLevel, PolicyError, load_policy, policy_schema
from gatekeeper.policy.document import PolicyDocument

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy.yaml"

BASE = {
    "version": 1,
    "rules": [
        {
            "name": "prod",
            "match": {"environments": ["production"]},
            "level": "L2",
            "approval": {
                "stages": [
                    {
                        "name": "leads",
                        "approvers": ["a@contoso.com", "b@contoso.com"],
                        "quorum": 1,
                        "timeout": "PT4H",
                        "on_timeout": "escalate",
                    },
                    {
                        "name": "cab",
                        "approvers": ["c@contoso.com", "d@contoso.com", "e@contoso.com"],
                        "quorum": 2,
                        "timeout": "PT8H",
                        "on_timeout": "reject",
                    },
                ]
            },
        }
    ],
}


def _with(path: str, value):
    """BASE with one value replaced, the path written like the error messages (rules[0].level)."""
    document = copy.deepcopy(BASE)
    parts = path.replace("[", ".").replace("]", "").split(".")
    target = document
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    last = parts[-1]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return document


_DELETE = object()


def test_example_policy_loads():
    policy = load_policy(EXAMPLE)
    assert isinstance(policy, PolicyDocument)
    assert policy.version == 7
    names = [r.name for r in policy.rules]
    assert names[:3] == ["secret-access", "privilege-escalation", "data-export"]
    prod = next(r for r in policy.rules if r.name == "production-deploy")
    assert prod.level is GateLevel.L2
    assert [(s.name, s.quorum, len(s.approvers), s.timeout, s.on_timeout) for s in prod.approval.stages] == [
        ("release-managers", 1, 2, "PT4H", "escalate"),
        ("change-advisory-board", 2, 3, "PT8H", "reject"),
    ]
    assert prod.approval.stages[0].timeout_delta.total_seconds() == 4 * 3600
    hours = policy.change_windows.business_hours
    assert (hours.timezone, hours.start, hours.end) == ("Europe/Amsterdam", "08:00", "18:00")


def test_example_policy_validates_against_the_shipped_schema():
    schema = json.loads((ROOT / "gatekeeper" / "policy" / "policy.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert schema == policy_schema()
    document = yaml.safe_load(EXAMPLE.read_text())
    assert list(Draft202012Validator(schema).iter_errors(document)) == []


def test_json_text_and_mapping_load_the_same_policy():
    from_mapping = load_policy(BASE)
    from_json = load_policy(json.dumps(BASE, indent=1))
    assert from_mapping == from_json
    assert from_mapping.fingerprint() == from_json.fingerprint()
    changed = load_policy(_with("rules[0].level", "L3"))
    assert changed.fingerprint() != from_mapping.fingerprint()


def test_yaml_clock_times_and_timestamps_stay_strings():
    text = """
version: 1
change_windows:
  freezes:
    - {name: f, start: 2025-12-19T17:00:00+01:00, end: 2026-01-05T08:00:00+01:00}
  business_hours: {timezone: Europe/Amsterdam, start: 08:00, end: 18:00}
"""
    policy = load_policy(text)
    assert policy.change_windows.business_hours.end == "18:00"  # YAML 1.1 would have read 1080
    assert policy.change_windows.freezes[0].start.utcoffset().total_seconds() == 3600


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        # caught by the JSON Schema
        ("rules[0].level", "L5", "rules[0].level", "is not one of"),
        ("rules[0].match.actions", ["deploy", "launch"], "rules[0].match.actions[1]", "is not one of"),
        ("rules[0].match.colour", ["red"], "rules[0].match", "unknown field"),
        ("rules[0].approval.stages[0].timeout", "P1M", "rules[0].approval.stages[0].timeout", "does not match"),
        (
            "rules[0].approval.stages[0].approvers",
            ["alice"],
            "rules[0].approval.stages[0].approvers[0]",
            "does not match",
        ),
        ("rules[0].approval.stages[1].quorum", 0, "rules[0].approval.stages[1].quorum", "less than the minimum"),
        ("rules[0].name", _DELETE, "rules[0]", "'name' is required"),
        ("version", "seven", "version", "is not of type 'integer'"),
        ("defaults", {"level": "L1"}, "defaults.level", "is not one of"),
        (
            "quality",
            {"objectives": [{"sli": "slo.x", "pass": "<=10"}, {"sli": "slo.y", "pass": "about 3"}]},
            "quality.objectives[1].pass",
            "does not match",
        ),
        # caught by the models
        ("rules[0].approval.stages[0].quorum", 3, "rules[0].approval.stages[0].quorum", "must be between 1 and 2"),
        (
            "rules[0].approval.stages[1].on_timeout",
            "escalate",
            "rules[0].approval.stages[1].on_timeout",
            "the last stage cannot escalate",
        ),
        (
            "rules[0].approval.stages[1].approvers",
            ["c@contoso.com", "C@Contoso.com"],
            "rules[0].approval.stages[1].approvers[1]",
            "listed twice",
        ),
        ("rules[0].approval.stages[1].name", "leads", "rules[0].approval.stages[1].name", "duplicate stage name"),
        (
            "change_windows",
            {"business_hours": {"timezone": "Europe/Amsterdamm"}},
            "change_windows.business_hours.timezone",
            "not an IANA time zone",
        ),
        (
            "change_windows",
            {"freezes": [{"name": "f", "start": "2025-12-19T17:00:00+01:00", "end": "2025-12-19T16:00:00+01:00"}]},
            "change_windows.freezes[0].end",
            "must be after start",
        ),
        ("quality", {"objectives": [{"sli": "slo.x", "pass": "<=10%"}]}, "quality.objectives[0].pass", "needs a sign"),
    ],
)
def test_errors_name_the_field(path, value, field, message):
    with pytest.raises(PolicyError) as caught:
        load_policy(_with(path, value), name="policy.yaml")
    error = caught.value
    assert error.field == field, error.issues
    assert message in error.detail
    assert str(error).startswith(f"policy.yaml: {field}: ")
    assert status_of(error) == 422 and error.extra["errors"][0]["field"] == field


def test_naive_freeze_time_is_refused():
    document = _with(
        "change_windows",
        {"freezes": [{"name": "f", "start": "2025-12-19T17:00:00", "end": "2026-01-05T08:00:00+01:00"}]},
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(document)
    assert caught.value.field == "change_windows.freezes[0].start"


def test_group_approver_lifts_the_quorum_limit():
    stage = {"name": "cab", "approvers": ["group:5f0c7a52-3b8e-4c1d-9a6f-2e4b8d7c1a90"], "quorum": 3, "timeout": "P1D"}
    policy = load_policy(_with("rules[0].approval.stages", [stage]))
    assert policy.rules[0].approval.stages[0].has_group


def test_duplicate_rule_names():
    document = copy.deepcopy(BASE)
    document["rules"].append({"name": "prod", "level": "L0"})
    with pytest.raises(PolicyError) as caught:
        load_policy(document)
    assert caught.value.field == "rules[1].name"
    assert "duplicate rule name" in caught.value.detail


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nrules:\n  - name: [unclosed\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.field.startswith("line ")
    assert str(caught.value).startswith(f"{path}: line ")


def test_missing_file():
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policy(ROOT / "examples" / "no-such-policy.yaml")


def test_all_issues_are_listed():
    document = _with("rules[0].level", "L9")
    document["version"] = 0
    with pytest.raises(PolicyError) as caught:
        load_policy(document)
    fields = [f for f, _ in caught.value.issues]
    assert fields == ["rules[0].level", "version"]
    assert "(and 1 more)" in caught.value.detail
