"""Evidence documents: loading, SARIF by path or inline, errors naming the field, event evidence refs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.events.model import EvidenceRef
from gatekeeper.quality import EvidenceError, QualityEvidence, load_evidence

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "evidence"


def test_example_with_sarif_path():
    evidence = load_evidence(EXAMPLES / "failing.json")
    assert evidence.tests.pass_rate == pytest.approx(398 / 412 * 100)
    assert (evidence.sarif.critical, evidence.sarif.high) == (1, 2)
    assert evidence.indicator("slo.response_time_p95") == (318.0, 224.0)
    assert evidence.indicator("slo.unknown") == (None, None)
    assert evidence.indicator("coverage.branch_percent") == (None, None)


def test_inline_sarif(tmp_path):
    sarif = json.loads((EXAMPLES / "codeql-findings.sarif.json").read_text())
    (tmp_path / "e.json").write_text(json.dumps({"sarif": sarif}))
    assert load_evidence(tmp_path / "e.json").indicator("sarif.critical") == (1.0, None)


@pytest.mark.parametrize(
    ("document", "field", "detail"),
    [
        ({"tests": {"passed": -1, "failed": 0}}, "tests.passed", "greater than or equal to 0"),
        ({"tests": {"passed": 1}}, "tests.failed", "Field required"),
        ({"coverage": {"line_percent": 101}}, "coverage.line_percent", "less than or equal to 100"),
        ({"slo": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]}, "slo[1].name", "duplicate"),
        ({"slo": [{"name": "9x", "value": 1}]}, "slo[0].name", "pattern"),
        ({"slo": [{"name": "x", "value": "NaN"}]}, "slo[0].value", "finite"),
        (
            {"sarif": {"version": "2.1.0", "runs": [{"results": [{"level": "bad"}]}]}},
            "sarif.runs[0].results[0].level",
            "not one of",
        ),
        ({"coverage": {"line_percent": 80, "lines": 3}}, "coverage.lines", "Extra inputs are not permitted"),
    ],
)
def test_errors_name_the_field(tmp_path, document, field, detail):
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(document))
    with pytest.raises(EvidenceError) as caught:
        load_evidence(path)
    assert caught.value.field == field
    assert detail in caught.value.detail


def test_sarif_path_that_does_not_exist(tmp_path):
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps({"sarif": "missing.sarif"}))
    with pytest.raises(EvidenceError) as caught:
        load_evidence(path)
    assert caught.value.field == "sarif" and "cannot be read" in caught.value.detail


def test_not_json(tmp_path):
    path = tmp_path / "evidence.json"
    path.write_text("{tests:")
    with pytest.raises(EvidenceError, match="not valid JSON"):
        load_evidence(path)


def test_from_event_refs():
    refs = (
        EvidenceRef(kind="tests", data={"passed": 3, "failed": 1}),
        EvidenceRef(kind="sarif", uri="https://ci.example.com/results.sarif"),  # fetched by an activity, skipped
        EvidenceRef(kind="slo", data={"indicators": [{"name": "rt", "value": 5, "baseline": 4}]}),
    )
    evidence = QualityEvidence.from_refs(refs)
    assert evidence.indicator("tests.failed") == (1, None)
    assert evidence.indicator("slo.rt") == (5.0, 4.0)
    assert evidence.sarif is None
    assert QualityEvidence.from_refs(()) is None


def test_from_event_refs_names_bad_item():
    refs = (EvidenceRef(kind="coverage", data={"line_percent": 120}),)
    with pytest.raises(EvidenceError) as caught:
        QualityEvidence.from_refs(refs)
    assert caught.value.field == "evidence.coverage.line_percent"
