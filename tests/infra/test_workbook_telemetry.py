"""The workbook queries exactly what the product emits: every event name and field its KQL reads is in
`gatekeeper.telemetry`, every call site emits a declared event with its declared fields, and every event the
code emits is charted by the workbook or documented in docs/telemetry.md."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gatekeeper import telemetry

ROOT = Path(__file__).resolve().parents[2]
WORKBOOK = ROOT / "infra" / "workbook.json"
DOC = ROOT / "docs" / "telemetry.md"
SOURCES = ("gatekeeper", "functions", "orchestrators")

EVENT_NAME = re.compile(r"""tostring\(\s*e\.name\s*\)\s*==\s*["']([^"']+)["']""")
FIELD_REF = re.compile(r"""\be(?:\.([A-Za-z_]\w*)|\[\s*["']([^"']+)["']\s*\])""")
PARSE = re.compile(r"parse_json\(\s*substring\(\s*message\s*,\s*(\d+)\s*\)\s*\)")


def queries() -> list[tuple[str, str]]:
    """(item name, KQL) for every query in the workbook, parameters included."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, name: str) -> None:
        if isinstance(node, dict):
            name = str(node.get("name", name))
            if isinstance(node.get("query"), str):
                found.append((name, node["query"]))
            for value in node.values():
                walk(value, name)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    walk(json.loads(WORKBOOK.read_text(encoding="utf-8")), "workbook")
    return found


def telemetry_queries() -> list[tuple[str, str]]:
    return [(name, q) for name, q in queries() if "GATEKEEPER_EVENT" in q]


def emit_calls() -> list[tuple[str, str, set[str]]]:
    """(file:line, event name, keyword names) of every `telemetry.emit(...)` / `emit(...)` in the product."""
    calls = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
                if called != "emit" or owner not in (None, "telemetry") or path.name == "telemetry.py":
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                assert node.args, f"{where}: emit needs the event as its first argument"
                first = node.args[0]
                if isinstance(first, ast.Attribute):  # telemetry.Event.GATE_DECISION / Event.GATE_DECISION
                    name = telemetry.Event[first.attr].value
                elif isinstance(first, ast.Constant) and isinstance(first.value, str):
                    name = first.value
                else:
                    raise AssertionError(f"{where}: emit's event must be an Event member or a literal")
                calls.append((where, name, {k.arg for k in node.keywords if k.arg is not None}))
    return calls


def test_the_workbook_reads_telemetry_the_way_it_is_written():
    found = telemetry_queries()
    assert len(found) >= 7, "the parameter and the charts all read telemetry"
    for name, query in found:
        assert f'message startswith "{telemetry.PREFIX}"' in query, name
        offsets = PARSE.findall(query)
        assert offsets and all(int(o) == len(telemetry.PREFIX) for o in offsets), name
    assert "customEvents" not in WORKBOOK.read_text(encoding="utf-8"), "nothing is sent as a custom event"


def test_every_event_the_workbook_queries_is_emitted_with_the_fields_it_reads():
    for name, query in telemetry_queries():
        names = set(EVENT_NAME.findall(query))
        assert names, f"{name}: the query names no event"
        assert names <= telemetry.EVENT_NAMES, f"{name}: unknown event(s) {names - telemetry.EVENT_NAMES}"
        readable = {"name"}.union(*(telemetry.FIELDS[telemetry.Event(n)] for n in names))
        fields = {a or b for a, b in FIELD_REF.findall(query)}
        assert fields <= readable, f"{name}: reads field(s) no queried event has: {fields - readable}"


def test_the_field_check_can_fail():
    query = 'extend e = parse_json(substring(message, 17)) | where tostring(e.name) == "GateDecision" | e.latency'
    names = set(EVENT_NAME.findall(query))
    fields = {a or b for a, b in FIELD_REF.findall(query)}
    assert names == {"GateDecision"} and "latency" in fields
    assert "latency" not in telemetry.FIELDS[telemetry.Event.GATE_DECISION]


def test_the_four_views_use_the_events_they_are_about():
    by_item = dict(telemetry_queries())
    assert set(EVENT_NAME.findall(by_item["throughput"])) == {"GateDecision"}
    assert "bin(timestamp, 1h)" in by_item["throughput"] and "e.level" in by_item["throughput"]
    assert set(EVENT_NAME.findall(by_item["errors"])) == {"IngestRejected"}
    assert "requests" in by_item["errors"] and "success == false" in by_item["errors"]
    assert set(EVENT_NAME.findall(by_item["latency"])) == {"ApprovalDecided"}
    assert "e.latency_seconds" in by_item["latency"]
    assert set(EVENT_NAME.findall(by_item["overrideRate"])) == {"HitlOverride", "GateOutcome", "ApprovalDecided"}


def test_every_call_site_emits_a_declared_event_with_exactly_its_fields():
    calls = emit_calls()
    assert calls, "the product emits telemetry"
    for where, name, keywords in calls:
        assert name in telemetry.EVENT_NAMES, f"{where}: unknown event {name!r}"
        assert keywords == set(telemetry.FIELDS[telemetry.Event(name)]), f"{where}: fields differ from FIELDS"


@pytest.mark.parametrize("event", sorted(telemetry.EVENT_NAMES))
def test_every_event_is_emitted_and_charted_or_documented(event: str):
    emitted = {name for _, name, _ in emit_calls()}
    assert event in emitted, f"{event} is declared but nothing emits it"
    charted = any(event in EVENT_NAME.findall(q) for _, q in telemetry_queries())
    documented = f"`{event}`" in DOC.read_text(encoding="utf-8")
    assert charted or documented, f"{event} is neither in the workbook nor in docs/telemetry.md"
    assert documented, f"docs/telemetry.md does not describe {event}"
