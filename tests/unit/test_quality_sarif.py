"""SARIF 2.1.0 counting by level and by security severity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.quality.sarif import SarifError, severity_bucket, summarize_sarif

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "evidence"


def _log(results, rules=None, extensions=None):
    tool = {"driver": {"name": "scanner", "rules": rules or []}}
    if extensions is not None:
        tool["extensions"] = extensions
    return {"version": "2.1.0", "runs": [{"tool": tool, "results": results}]}


def test_codeql_example_log():
    log = json.loads((EXAMPLES / "codeql-findings.sarif.json").read_text())
    summary = summarize_sarif(log)
    # code-injection (9.3, error), sql-injection (8.8, error), url sanitization (7.8, warning),
    # unused import (note, no severity); clear-text logging is suppressed in source.
    assert summary.model_dump() == {
        "error": 2,
        "warning": 1,
        "note": 1,
        "none": 0,
        "critical": 1,
        "high": 2,
        "medium": 0,
        "low": 0,
        "results": 4,
    }


def test_clean_example_skips_fixed_results():
    log = json.loads((EXAMPLES / "codeql-clean.sarif.json").read_text())
    summary = summarize_sarif(log)
    assert (summary.results, summary.error, summary.note, summary.high) == (1, 0, 1, 0)


@pytest.mark.parametrize(
    ("score", "bucket"),
    [
        (10.0, "critical"),
        (9.0, "critical"),
        (8.99, "high"),
        (7.0, "high"),
        (6.9, "medium"),
        (4.0, "medium"),
        (3.9, "low"),
        (0.1, "low"),
        (0.0, None),
    ],
)
def test_severity_buckets(score, bucket):
    assert severity_bucket(score) == bucket


def test_level_defaults_and_overrides():
    rules = [
        {"id": "R1", "defaultConfiguration": {"level": "error"}, "properties": {"security-severity": "5.0"}},
        {"id": "R2"},
    ]
    results = [
        {"ruleId": "R1", "message": {"text": "a"}},  # level from the rule: error; medium from the rule
        {"ruleId": "R1", "level": "note", "message": {"text": "b"}, "properties": {"security-severity": 9.8}},
        {"ruleIndex": 1, "message": {"text": "c"}},  # no level anywhere: warning
        {"ruleId": "R1/2", "message": {"text": "d"}},  # hierarchical id falls back to R1
        {"ruleId": "R1", "kind": "pass", "level": "none", "message": {"text": "e"}},  # not a failure
        {"ruleId": "R1", "suppressions": [{"kind": "external", "status": "rejected"}], "message": {"text": "f"}},
        {"ruleId": "R1", "suppressions": [{"kind": "external", "status": "accepted"}], "message": {"text": "g"}},
    ]
    summary = summarize_sarif(_log(results, rules))
    assert summary.model_dump() == {
        "error": 3,
        "warning": 1,
        "note": 1,
        "none": 0,
        "critical": 1,
        "high": 0,
        "medium": 3,
        "low": 0,
        "results": 5,
    }


def test_rules_from_tool_extensions():
    extension = {"name": "codeql/python-queries", "rules": [{"id": "X", "properties": {"security-severity": "7.1"}}]}
    summary = summarize_sarif(_log([{"ruleId": "X", "message": {"text": "x"}}], extensions=[extension]))
    assert (summary.high, summary.warning) == (1, 1)


@pytest.mark.parametrize(
    ("log", "field"),
    [
        ({"version": "2.0.0", "runs": []}, "sarif.version"),
        ({"version": "2.1.0"}, "sarif.runs"),
        (_log([{"level": "fatal", "message": {"text": "x"}}]), "sarif.runs[0].results[0].level"),
        (
            _log([{"message": {"text": "x"}, "properties": {"security-severity": "high"}}]),
            "sarif.runs[0].results[0].properties.security-severity",
        ),
        (
            _log([{"message": {"text": "x"}, "properties": {"security-severity": "11"}}]),
            "sarif.runs[0].results[0].properties.security-severity",
        ),
        ({"version": "2.1.0", "runs": [{"tool": {}, "results": {}}]}, "sarif.runs[0].results"),
    ],
)
def test_malformed_logs_name_the_field(log, field):
    with pytest.raises(SarifError) as caught:
        summarize_sarif(log)
    assert caught.value.field == field
