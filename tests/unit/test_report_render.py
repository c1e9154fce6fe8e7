"""The report page (gatekeeper/report/render.py): the numbers the JSON has, accessible charts, nothing to load,
hostile text escaped."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from gatekeeper.report.metrics import build_report
from gatekeeper.report.render import render_html
from tests.support.report_history import WINDOW, History, rich_history


class Page(HTMLParser):
    """Tables by id (rows of (row header, [data-value, ...])), summary card values, svg titles, tag names."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[str, list[Any]]]] = {}
        self.cards: list[Any] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._table: str | None = None
        self._row: list[Any] | None = None
        self._header: list[str] = []
        self._in_th = False
        self.svg_children: list[list[str]] = []
        self._svg_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "svg":
            self.svg_children.append([])
            self._svg_depth = 1
        elif self._svg_depth == 1 and self.svg_children:
            self.svg_children[-1].append(tag)
            self._svg_depth = 2 if tag not in ("title", "desc") else 1
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table or ""] = []
        elif tag == "tr" and self._table:
            self._row, self._header = [], []
        elif tag == "th" and a.get("scope") == "row":
            self._in_th = True
        elif tag == "td" and self._row is not None and "data-value" in a:
            self._row.append(json.loads(a["data-value"] or "null"))
        elif tag == "dd" and "data-value" in a:
            self.cards.append(json.loads(a["data-value"] or "null"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "th":
            self._in_th = False
        elif tag == "tr" and self._table and self._row is not None and self._header:
            self.tables[self._table].append(("".join(self._header), self._row))
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "svg":
            self._svg_depth = 0

    def handle_data(self, data: str) -> None:
        if self._in_th:
            self._header.append(data)


@pytest.fixture(scope="module")
def rich() -> tuple[dict[str, Any], str, Page]:
    report = build_report(rich_history().as_entries(), WINDOW, tenant="contoso", generated_at=WINDOW.until)
    html = render_html(report)
    page = Page()
    page.feed(html)
    return report, html, page


def test_every_number_in_the_tables_is_the_json_figure(rich):
    report, _, page = rich
    rules = [(r["rule"], [r["gates"], r["overrides"], r["rate"]]) for r in report["overrides"]["rules"]]
    assert page.tables["table-overrides"] == rules
    stages = report["approval_latency"]["stages"]
    assert page.tables["table-latency-stages"] == [
        (s["stage"], [s["n"], s["p50"], s["p95"], s["timed_out"]]) for s in stages
    ]
    dora = dict((k, v[0]) for k, v in page.tables["table-dora"])
    d = report["dora"]
    assert dora["change failure rate"] == d["change_failure_rate"]["rate"]
    assert dora["time to restore p50 (minutes)"] == d["time_to_restore"]["p50"]
    assert dora["lead time commit to deploy p95 (hours)"] == d["lead_time"]["p95"]
    assert dora["deployments per day"] == d["deployment_frequency"]["per_day"]
    envs = [(e["environment"], [e["deployments"], e["failed"], e["change_failure_rate"]]) for e in d["environments"]]
    assert page.tables["table-dora-environments"] == envs
    bins = [(b["n"], b["mean_predicted"], b["observed"]) for b in report["calibration"]["bins"] if b["n"]]
    assert [tuple(v) for _, v in page.tables["table-calibration-bins"]] == bins
    figures = ("requests", "approved", "denied", "expired_or_cancelled", "pending", "executed_after_approval",
               "executed_refused")  # fmt: skip
    agents = report["agents"]
    assert agents["requests"] and agents["executed_refused"], "the rich history has agents' actions"
    assert page.tables["table-agents"] == [(r["agent"], [r[k] for k in figures]) for r in agents["by_agent"]]
    assert page.tables["table-agent-tools"] == [(r["tool"], [r[k] for k in figures]) for r in agents["by_tool"]]
    total = page.tables["table-gates"][-1]
    assert total == ("total", list(report["gates"]["by_level"].values()))
    assert page.cards == list(report["summary"].values())


def test_each_chart_is_inline_svg_with_a_title_and_description_first(rich):
    _, html, page = rich
    svgs = [a for tag, a in page.tags if tag == "svg"]
    assert len(svgs) == 6
    for attrs, children in zip(svgs, page.svg_children, strict=True):
        assert attrs["role"] == "img"
        assert children[:2] == ["title", "desc"]
        assert attrs["aria-labelledby"] and "width" not in attrs and attrs["viewbox"]
    assert html.count("<h2 ") == 8  # summary, six figures, sources
    assert all(a.get("scope") in ("col", "row") for tag, a in page.tags if tag == "th")


def test_the_page_loads_nothing_and_runs_nothing(rich):
    _, html, page = rich
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "img", "link", "iframe", "object", "embed", "image", "foreignobject"}
    assert "default-src 'none'" in html and "<!DOCTYPE svg" not in html and "<metadata>" not in html
    for _, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), name
            assert not (name in ("href", "src", "xlink:href") and value and not value.startswith("#")), value
    assert not re.search(r"url\(\s*['\"]?(https?:|//)", html)


def test_hostile_rule_names_are_escaped_and_never_mathtext(rich):
    _, html, _ = rich
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html  # the table and the chart's text
    assert "$\\frac{a}{b}$" in html  # the dollars are text, not a rendered fraction


def test_an_empty_history_renders_a_page_that_says_so_without_charts():
    report = build_report([], WINDOW, tenant="contoso", generated_at=WINDOW.until)
    html = render_html(report)
    assert "No audit entries were recorded for tenant contoso in this period" in html
    assert "<svg" not in html
    assert html.count("No data in this period.") >= 5


def test_rendering_is_deterministic(rich):
    report, html, _ = rich
    assert render_html(report) == html


def test_a_tenant_name_and_odd_labels_are_escaped_in_the_header():
    h = History()
    report = build_report(h.as_entries(), WINDOW, tenant='<img src=x onerror="1">', generated_at=WINDOW.until)
    html = render_html(report)
    assert "<img" not in html and "&lt;img src=x" in html


def test_people_comments_and_commands_never_reach_the_report():
    """The report is aggregates and names from policy; who voted, what they wrote and what ran stay in the log."""
    marker = "MARKER-7f3a"
    h = rich_history()
    h.add("approval_decided", WINDOW.since, "gate-2", {"vote": 1, "stage": 0, "comment": marker, "upn": marker})
    h.add("event_received", WINDOW.since, "act-1", {"requested_by": marker, "commit": marker, "ref": marker})
    h.add("action_requested", WINDOW.since, "act-1", {"command": marker, "requester": marker})
    h.add("follow_up", WINDOW.since, "gate-1", {"action": "flag_rollback", "note": marker, "upn": marker}, actor=marker)
    h.add("rollback", WINDOW.since, "watch-3", {"step": "hold", "reason": marker, "url": marker}, actor=marker)
    # An agent's commands: only the tool (MCP tool or program) is shown, never an argument or an assignment.
    at = WINDOW.since + timedelta(hours=1)
    h.action("agent-1", at, f'mcp-tool kubectl_delete_namespace {{"name":"{marker}"}}', final="rejected",
             reports=(("skipped", False), ("executed", True)))  # fmt: skip
    h.action("agent-2", at, f"SECRET={marker} ./deploy.sh --token={marker} {marker}", level="L1")
    h.action("agent-3", at, f"https://{marker}@hooks.example/{marker}", level="L3")
    h.action("agent-4", at, f"{marker}", agent=None, via=None, level="L3")  # a pipeline's: not an agent's
    reported = {"outcome": "executed", "detail": marker, "refused": False, "approved": True}
    h.add("action_reported", at, "agent-2", reported)
    report = build_report(h.as_entries(), WINDOW, tenant="contoso", generated_at=WINDOW.until)
    assert marker not in json.dumps(report) and marker not in render_html(report)
    tools = {r["tool"] for r in report["agents"]["by_tool"]}
    assert {"kubectl_delete_namespace", "deploy.sh", "(other)"} <= tools
