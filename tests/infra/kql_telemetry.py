"""What a KQL query reads of the product's telemetry, checked against `gatekeeper.telemetry`: the custom
events it names (`name == "X"`, `name in ("X", "Y")` over customEvents) and the fields it reads
(`customDimensions.f`, `customMeasurements.f`), or the metrics it names over customMetrics and their
attributes. Used by the workbook test and the alert-rule test, so both read exactly what the code emits."""

from __future__ import annotations

import re

from gatekeeper import telemetry

NAME_IS = re.compile(r"""\bname\s*==\s*["']([^"']+)["']""")
NAME_IN = re.compile(r"""\bname\s+in\s*\(([^)]*)\)""")
QUOTED = re.compile(r"""["']([^"']+)["']""")
DIMENSION = re.compile(r"""\bcustomDimensions(?:\.([A-Za-z_]\w*)|\[\s*["']([^"']+)["']\s*\])""")
MEASUREMENT = re.compile(r"""\bcustomMeasurements(?:\.([A-Za-z_]\w*)|\[\s*["']([^"']+)["']\s*\])""")
NUMBER_TYPES = (int, float)


def names(query: str) -> set[str]:
    found = set(NAME_IS.findall(query))
    for group in NAME_IN.findall(query):
        found |= set(QUOTED.findall(group))
    return found


def dimensions(query: str) -> set[str]:
    return {a or b for a, b in DIMENSION.findall(query)}


def measurements(query: str) -> set[str]:
    return {a or b for a, b in MEASUREMENT.findall(query)}


def problems(where: str, query: str) -> list[str]:
    """Why `query` would read something the product does not emit (empty when it reads only what it does)."""
    found: list[str] = []
    if "GATEKEEPER_EVENT" in query or re.search(r"\btraces\b", query):
        found.append(f"{where}: reads trace lines; events are custom events now")
    reads_events, reads_metrics = "customEvents" in query, "customMetrics" in query
    if reads_events and reads_metrics:
        found.append(f"{where}: mixes customEvents and customMetrics; split the query")
    queried = names(query)
    if reads_events:
        unknown = queried - telemetry.EVENT_NAMES
        if unknown:
            found.append(f"{where}: unknown event(s) {sorted(unknown)}")
        if not queried:
            found.append(f"{where}: names no event")
        fields = set().union(*(telemetry.FIELDS[telemetry.Event(n)] for n in queried - unknown))
        if dimensions(query) - fields:
            found.append(f"{where}: reads field(s) no queried event has: {sorted(dimensions(query) - fields)}")
        if measurements(query) - fields:
            found.append(f"{where}: measures field(s) no queried event has: {sorted(measurements(query) - fields)}")
    if reads_metrics:
        metric_names = {m.value for m in telemetry.Metric}
        unknown = queried - metric_names
        if unknown or not queried:
            found.append(f"{where}: unknown or no metric(s) {sorted(unknown)}")
        attributes = set().union(*(telemetry.METRICS[telemetry.Metric(n)].attributes for n in queried - unknown))
        if dimensions(query) - attributes:
            found.append(f"{where}: reads attribute(s) no queried metric has: {sorted(dimensions(query) - attributes)}")
    return found
