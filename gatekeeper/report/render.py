"""The report as one self-contained HTML page: charts drawn now as inline SVG, the numbers beside each chart.

Why matplotlib's SVG backend at report time: the page must open offline, from a file or a mail attachment,
and load nothing (its Content-Security-Policy forbids every fetch and every script), and print well. SVG text
stays text (`svg.fonttype: none`), so a screen reader and a search find it; each chart carries a `<title>` and
a `<desc>` that say what it shows in words. matplotlib is imported here only, never on a request path.

Everything shown comes from the report document (`metrics.build_report`) and every number in a table cell is
the document's number (`data-value` holds its JSON text), so report.html and report.json agree. Text from the
log (rule and stage names, model versions) is escaped here, and mathtext is off, so a `$` in a rule name is
just a dollar sign.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")  # Okabe-Ito
LEVEL_COLOURS = {"L0": "#009E73", "L1": "#56B4E9", "L2": "#E69F00", "L3": "#D55E00", "other": "#999999"}
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
DASH = "\u2013"

STYLE = """
:root { color-scheme: light; --ink: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0072B2; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #fff; }
header, main { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.25rem; margin: 32px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
.meta, .note, figcaption, .sources { color: var(--muted); }
.empty { border: 1px solid var(--line); border-left: 4px solid #E69F00; padding: 12px 16px; margin: 16px 0; }
dl.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; margin: 12px 0; }
dl.cards div { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
dl.cards dt { font-size: .8rem; color: var(--muted); }
dl.cards dd { margin: 2px 0 0; font-size: 1.3rem; font-weight: 600; }
.pair { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 24px; align-items: start; }
figure { margin: 0; }
figure svg { width: 100%; height: auto; }
.numbers { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f6f8fa; position: sticky; top: 0; }
.pct { color: var(--muted); }
@media (max-width: 900px) { .pair { grid-template-columns: 1fr; } }
@media print {
  body { font-size: 11pt; }
  header, main { max-width: none; padding: 0; }
  section { break-inside: avoid-page; }
  .pair { grid-template-columns: 1fr; }
  .numbers { overflow: visible; }
  thead th { position: static; }
}
"""


# --- numbers and text ----------------------------------------------------------------------------------------


def number(value: Any) -> str:
    """A figure as report.json writes it (`null` shown as an en dash)."""
    return DASH if value is None else json.dumps(value)


def _cell(value: Any, *, percent: bool = False, header: bool = False) -> str:
    if isinstance(value, str) and not header:
        return f"<td>{escape(value)}</td>"
    if header:
        return f'<th scope="row">{escape(str(value))}</th>'
    extra = f' <span class="pct">({value * 100:.1f}%)</span>' if percent and isinstance(value, int | float) else ""
    return f'<td data-value="{escape(json.dumps(value))}">{number(value)}{extra}</td>'


def table(
    table_id: str,
    caption: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    percent: frozenset[int] = frozenset(),
) -> str:
    """A table whose first column names the row; `percent`: column indexes that are rates (shown also as %)."""
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = [_cell(row[0], header=True)]
        cells += [_cell(v, percent=i + 1 in percent) for i, v in enumerate(row[1:])]
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(columns)}">No data in this period.</td></tr>')
    return (
        f'<table id="{table_id}"><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


# --- charts --------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",  # text stays text: searchable, read aloud, small
            "svg.hashsalt": "gatekeeper-report",  # the same figures give the same file
            "text.parse_math": False,  # a `$` in a rule name is text, never mathtext
            "text.usetex": False,
            "font.family": "sans-serif",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.color": "#e5e7eb",
            "axes.axisbelow": True,
        }
    )
    import matplotlib.pyplot as plt

    return plt


_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_SIZE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')


def svg(fig: Any, chart_id: str, title: str, description: str) -> str:
    """The figure as inline SVG with a `<title>` and `<desc>` (its accessible name and description)."""
    plt = _pyplot()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    text = _METADATA.sub("", _PROLOG.sub("", buffer.getvalue(), count=1), count=1)
    text = _SIZE.sub(r"<svg\1", text, count=1)
    head_end = text.index(">")
    return (
        f'<svg role="img" aria-labelledby="{chart_id}-title {chart_id}-desc"{text[4:head_end]}>'
        f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(description)}</desc>'
        + text[head_end + 1 :]
    )


def _ticks(ax: Any, labels: Sequence[str]) -> None:
    step = max(1, len(labels) // 12)
    positions = list(range(0, len(labels), step))
    ax.set_xticks(positions)
    ax.set_xticklabels(
        [labels[i][5:] if len(labels[i]) == 10 else labels[i] for i in positions], rotation=45, ha="right"
    )


def chart_gates(report: dict[str, Any]) -> str | None:
    gates = report["gates"]
    if not gates["total"]:
        return None
    plt = _pyplot()
    series = gates["series"]
    buckets = [s["bucket"] for s in series]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    bottom = [0] * len(series)
    for level, colour in LEVEL_COLOURS.items():
        values = [s[level] for s in series]
        if any(values):
            ax.bar(range(len(series)), values, bottom=bottom, color=colour, label=level, width=0.8)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    _ticks(ax, buckets)
    ax.set_ylabel(f"gates per {report['bucket']}")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, ncol=5)
    levels = ", ".join(f"{k} {v}" for k, v in gates["by_level"].items() if v)
    return svg(
        fig,
        "chart-gates",
        f"Gates by level per {report['bucket']}",
        f"Stacked bars of gates evaluated per {report['bucket']}, by level: {gates['total']} in all ({levels}).",
    )


def chart_latency(report: dict[str, Any]) -> str | None:
    latency = report["approval_latency"]
    if not latency["overall"]["n"]:
        return None
    plt = _pyplot()
    buckets = [s["bucket"] for s in report["gates"]["series"]]
    position = {b: i for i, b in enumerate(buckets)}
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for i, stage in enumerate(s["stage"] for s in latency["stages"] if s["n"]):
        points = [p for p in latency["series"] if p["stage"] == stage]
        xs = [position[p["bucket"]] for p in points]
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(xs, [p["p50"] for p in points], marker="o", color=colour, label=f"{stage} p50")
        ax.plot(xs, [p["p95"] for p in points], marker="^", linestyle="--", color=colour, label=f"{stage} p95")
    ax.set_xlim(-0.5, len(buckets) - 0.5)
    _ticks(ax, buckets)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("minutes to decide")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, fontsize=8, ncol=2)
    overall = latency["overall"]
    words = "; ".join(
        f"{s['stage']}: p50 {number(s['p50'])}, p95 {number(s['p95'])} min ({s['n']})" for s in latency["stages"]
    )
    return svg(
        fig,
        "chart-latency",
        f"Approval latency by stage per {report['bucket']} (p50 and p95, minutes)",
        f"Lines of the median and 95th percentile minutes from an approval request to people's decision, per stage. "
        f"Overall p50 {number(overall['p50'])}, p95 {number(overall['p95'])} minutes over {overall['n']} stages. "
        f"{words}.",
    )


def chart_overrides(report: dict[str, Any]) -> str | None:
    rows = [r for r in report["overrides"]["rules"] if r["rate"] is not None or r["overrides"]]
    if not rows:
        return None
    plt = _pyplot()
    rows = rows[::-1]  # the most overridden at the top
    fig, ax = plt.subplots(figsize=(7.5, max(1.6, 0.35 * len(rows) + 0.8)))
    rates = [r["rate"] or 0 for r in rows]
    ax.barh(range(len(rows)), rates, color="#CC79A7", height=0.6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["rule"] if len(r["rule"]) <= 40 else r["rule"][:39] + "\u2026" for r in rows])
    for i, r in enumerate(rows):
        ax.text(rates[i], i, f" {r['overrides']} of {r['gates']}", va="center", fontsize=8)
    ax.set_xlabel("overrides per gate")
    ax.set_xlim(0, max(1.0, max(rates) * 1.25))
    ax.grid(axis="y", visible=False)
    o = report["overrides"]
    return svg(
        fig,
        "chart-overrides",
        "Override frequency by rule",
        f"Horizontal bars of overrides per gate for each rule: {o['total']} overrides over {o['gates']} gates "
        f"(rate {number(o['rate'])}). "
        + "; ".join(f"{r['rule']}: {r['overrides']} of {r['gates']}" for r in rows[::-1][:8])
        + ".",
    )


def chart_dora(report: dict[str, Any]) -> str | None:
    dora = report["dora"]
    if not dora["deployments"]:
        return None
    plt = _pyplot()
    series = dora["series"]
    xs = range(len(series))
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    ax.bar(xs, [s["deployments"] for s in series], color="#0072B2", width=0.8, label="deployments")
    ax.bar(xs, [s["failed"] for s in series], color="#D55E00", width=0.5, label="failed changes")
    _ticks(ax, [s["bucket"] for s in series])
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"per {report['bucket']}")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, ncol=2)
    cfr = dora["change_failure_rate"]
    return svg(
        fig,
        "chart-dora",
        f"Deployments and failed changes per {report['bucket']}",
        f"Bars of deployments per {report['bucket']} with the failed changes among them: {dora['deployments']} "
        f"deployments, {cfr['failed']} failed (change failure rate {number(cfr['rate'])}), "
        f"{number(dora['deployment_frequency']['per_day'])} successful deployments per day.",
    )


def chart_calibration(report: dict[str, Any]) -> str | None:
    cal = report["calibration"]
    if not cal["n"]:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.2), gridspec_kw={"width_ratios": [3, 1.3]})
    left.plot([0, 1], [0, 1], linestyle=":", color="#57606a", label="perfect calibration")
    used = [b for b in cal["bins"] if b["n"]]
    sizes = [20 + 180 * b["n"] / max(x["n"] for x in used) for b in used]
    left.plot([b["mean_predicted"] for b in used], [b["observed"] for b in used], color="#0072B2", linewidth=1)
    left.scatter(
        [b["mean_predicted"] for b in used],
        [b["observed"] for b in used],
        s=sizes,
        color="#0072B2",
        label="gates (size: count)",
        zorder=3,
    )
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.set_xlabel("predicted probability of approval")
    left.set_ylabel("observed approval rate")
    left.legend(loc="upper left", frameon=False, fontsize=8)
    values = [cal["brier"] or 0, cal["base_rate_brier"] or 0]
    right.bar([0, 1], values, color=["#0072B2", "#999999"], width=0.6)
    right.set_xticks([0, 1])
    right.set_xticklabels(["model", "base rate"])
    right.set_ylabel("Brier score (lower is better)")
    right.set_ylim(0, max(0.3, max(values) * 1.2))
    for i, v in enumerate(values):
        right.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    return svg(
        fig,
        "chart-calibration",
        "Recommendation calibration: reliability diagram and Brier score",
        f"Left: observed approval rate against the mean predicted probability in ten bins, with the diagonal of "
        f"perfect calibration, over {cal['n']} gates people decided. Right: Brier score {number(cal['brier'])} "
        f"against {number(cal['base_rate_brier'])} for always predicting the base rate {number(cal['base_rate'])}.",
    )


AGENT_SEGMENTS = (  # (figure, legend, colour): how the agents' requests were decided
    ("approved", "approved", "#009E73"),
    ("denied", "denied", "#D55E00"),
    ("expired_or_cancelled", "expired or cancelled", "#999999"),
    ("pending", "pending", "#56B4E9"),
)


def _agent_bars(ax: Any, rows: list[dict[str, Any]], key: str, heading: str) -> None:
    rows = rows[::-1]  # the most denied at the top
    left: list[int] = [0] * len(rows)
    for figure, legend, colour in AGENT_SEGMENTS:
        values = [r[figure] for r in rows]
        ax.barh(range(len(rows)), values, left=left, color=colour, height=0.6, label=legend)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r[key] if len(r[key]) <= 40 else r[key][:39] + "\u2026" for r in rows])
    for i, r in enumerate(rows):
        if r["executed_refused"]:
            ax.text(left[i], i, f" {r['executed_refused']} ran though not approved (refused)", va="center", fontsize=8)
    ax.set_title(heading, loc="left", fontsize=9)
    ax.xaxis.get_major_locator().set_params(integer=True)
    widest = max(left, default=0)
    ax.set_xlim(0, widest * 1.6 if widest else 1)
    ax.grid(axis="y", visible=False)


def chart_agents(report: dict[str, Any]) -> str | None:
    a = report["agents"]
    if not a["requests"]:
        return None
    plt = _pyplot()
    agents, tools = a["by_agent"], a["by_tool"]
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(7.5, max(2.6, 0.35 * (len(agents) + len(tools)) + 1.6)),
        gridspec_kw={"height_ratios": [max(1, len(agents)), max(1, len(tools))]},
    )
    fig.subplots_adjust(hspace=0.6)
    _agent_bars(top, agents, "agent", "by agent")
    _agent_bars(bottom, tools, "tool", "by tool")
    bottom.set_xlabel("action requests")
    top.legend(loc="lower left", bbox_to_anchor=(0, 1.12), frameon=False, ncol=4, fontsize=8)
    words = "; ".join(f"{r['tool']}: {r['requests']} requested, {r['denied']} denied" for r in tools[:8])
    return svg(
        fig,
        "chart-agents",
        "AI agents' action requests by agent and by tool, by decision",
        f"Horizontal stacked bars of the action requests AI agents made, per agent and per tool: approved, denied, "
        f"expired or cancelled, pending. {a['requests']} requests, {a['approved']} approved, {a['denied']} denied, "
        f"{a['expired_or_cancelled']} expired or cancelled, {a['executed_after_approval']} run after approval, "
        f"{a['executed_refused']} reported executed although not approved (refused). {words}.",
    )


# --- the page ------------------------------------------------------------------------------------------------


def _section(section_id: str, heading: str, intro: str, chart: str | None, tables: Sequence[str], empty: str) -> str:
    figure = (
        f'<figure aria-labelledby="{section_id}-cap">{chart}'
        f'<figcaption id="{section_id}-cap">{escape(intro)}</figcaption></figure>'
        if chart
        else f'<p class="note">{escape(empty)}</p>'
    )
    return (
        f'<section id="{section_id}" aria-labelledby="{section_id}-h"><h2 id="{section_id}-h">{escape(heading)}</h2>'
        f'<div class="pair"><div>{figure}</div><div class="numbers">{"".join(tables)}</div></div></section>'
    )


def _cards(report: dict[str, Any]) -> str:
    s = report["summary"]
    items = (
        ("Gates", s["gates"], ""),
        ("Approval p50", s["approval_p50_minutes"], " min"),
        ("Approval p95", s["approval_p95_minutes"], " min"),
        ("Overrides", s["overrides"], ""),
        ("Override rate", s["override_rate"], " per gate"),
        ("Deployments", s["deployments"], ""),
        ("Deployments per day", s["deployments_per_day"], ""),
        ("Change failure rate", s["change_failure_rate"], ""),
        ("Time to restore p50", s["time_to_restore_p50_minutes"], " min"),
        ("Brier (model)", s["brier"], ""),
        ("Brier (base rate)", s["base_rate_brier"], ""),
    )
    cells = "".join(
        f'<div><dt>{escape(name)}</dt><dd data-value="{escape(json.dumps(v))}">{number(v)}'
        f"{escape(unit) if v is not None else ''}</dd></div>"
        for name, v, unit in items
    )
    return f'<dl class="cards">{cells}</dl>'


def _gates_section(r: dict[str, Any]) -> str:
    g = r["gates"]
    levels = [*g["by_level"]]
    rows = [[s["bucket"], *(s[k] for k in levels)] for s in g["series"] if any(s[k] for k in levels)]
    rows.append(["total", *(g["by_level"][k] for k in levels)])
    outcomes = [[o["outcome"], o["gates"]] for o in g["outcomes"]]
    return _section(
        "gates",
        "Gates by level over time",
        f"Gates evaluated per {r['bucket']}, stacked by the level policy gave them (L0 automated, L1 run then "
        "tell, L2 approve first, L3 people only).",
        chart_gates(r),
        [
            table("table-gates", f"Gates per {r['bucket']} and level", ["period", *levels], rows if g["total"] else []),
            table(
                "table-outcomes", "Gates closed in the period, by outcome (who decided)", ["outcome", "gates"], outcomes
            ),
        ],
        "No gates were evaluated in this period.",
    )


def _latency_section(r: dict[str, Any]) -> str:
    a = r["approval_latency"]
    stages = [[s["stage"], s["n"], s["p50"], s["p95"], s["timed_out"]] for s in a["stages"]]
    series = [[f"{p['bucket']} {p['stage']}", p["n"], p["p50"], p["p95"]] for p in a["series"]]
    return _section(
        "latency",
        "Approval latency",
        "Minutes from a stage's approval request to the people's decision that closed it: median (p50, solid) and "
        "95th percentile (p95, dashed), per stage. Stages that ran out of time are counted in the table, not in the "
        "lines.",
        chart_latency(r),
        [
            table(
                "table-latency-stages", "Per stage (minutes)", ["stage", "decided", "p50", "p95", "timed out"], stages
            ),
            table(
                "table-latency-series",
                f"Per {r['bucket']} and stage (minutes)",
                ["period and stage", "n", "p50", "p95"],
                series,
            ),
        ],
        "No approval stage was decided by people in this period.",
    )


def _overrides_section(r: dict[str, Any]) -> str:
    o = r["overrides"]
    rows = [[x["rule"], x["gates"], x["overrides"], x["rate"]] for x in o["rules"]]
    kinds = [[k, v] for k, v in o["by_kind"].items() if v]
    return _section(
        "overrides",
        "Override frequency by rule",
        "Overrides per gate for each policy rule: people deciding against the recommendation or the quality "
        "verdict, L1 changes flagged for rollback, rollbacks after an approval.",
        chart_overrides(r),
        [
            table(
                "table-overrides",
                "Overrides by rule",
                ["rule", "gates", "overrides", "rate"],
                rows,
                percent=frozenset({3}),
            ),
            table("table-override-kinds", "Overrides by kind", ["kind", "overrides"], kinds),
        ],
        "No gates or overrides in this period.",
    )


def _dora_section(r: dict[str, Any]) -> str:
    d = r["dora"]
    f, lt, rq, cfr, ttr = (
        d["deployment_frequency"],
        d["lead_time"],
        d["request_to_deploy"],
        d["change_failure_rate"],
        d["time_to_restore"],
    )
    rows = [
        ["deployments", d["deployments"]],
        ["successful deployments", f["successful"]],
        ["deployments per day", f["per_day"]],
        ["deployments per week", f["per_week"]],
        ["lead time commit to deploy p50 (hours)", lt["p50"]],
        ["lead time commit to deploy p95 (hours)", lt["p95"]],
        ["deployments without a commit time", lt["without_commit_time"]],
        ["gate request to deploy p50 (hours)", rq["p50"]],
        ["gate request to deploy p95 (hours)", rq["p95"]],
        ["failed changes", cfr["failed"]],
        ["change failure rate", cfr["rate"]],
        ["time to restore p50 (minutes)", ttr["p50"]],
        ["time to restore p95 (minutes)", ttr["p95"]],
        ["failed changes not restored by a rollback", ttr["not_restored"]],
    ]
    series = [[s["bucket"], s["deployments"], s["failed"]] for s in d["series"] if s["deployments"]]
    envs = d["environments"]
    return _section(
        "dora",
        "DORA metrics",
        f"Deployments per {r['bucket']} (blue) and the failed changes among them (red): a failed change was "
        "rolled back, reported failed by the CI, or found unhealthy by its watch.",
        chart_dora(r),
        [
            table("table-dora", "DORA figures", ["figure", "value"], rows),
            table(
                "table-dora-environments",
                "By environment",
                ["environment", "deployments", "failed", "change failure rate"],
                [[e["environment"], e["deployments"], e["failed"], e["change_failure_rate"]] for e in envs],
                percent=frozenset({3}),
            ),
            table("table-dora-series", f"Deployments per {r['bucket']}", ["period", "deployments", "failed"], series),
        ],
        "No deployments finished in this period.",
    )


def _calibration_section(r: dict[str, Any]) -> str:
    c = r["calibration"]
    bins = [
        [f"{b['lower']:.1f}{DASH}{b['upper']:.1f}", b["n"], b["mean_predicted"], b["observed"]]
        for b in c["bins"]
        if b["n"]
    ]
    scores = [
        ["gates people decided", c["n"]],
        ["Brier score (model)", c["brier"]],
        ["base rate of approval", c["base_rate"]],
        ["Brier score (base rate)", c["base_rate_brier"]],
        ["skill (1 - model / base rate)", c["skill"]],
    ]
    verdicts = [[v["verdict"], v["gates"], v["approved"], v["rejected"]] for v in c["verdicts"]]
    models = [[m["model_version"], m["n"], m["brier"]] for m in c["models"]]
    fits = [[f["model_version"], f["at"], f["samples"], f["brier"], f["base_rate_brier"]] for f in c["fits"]]
    tables = [
        table("table-calibration", "Scores", ["figure", "value"], scores),
        table("table-calibration-bins", "Reliability bins", ["predicted", "gates", "mean predicted", "observed"], bins),
        table(
            "table-verdicts", "Recommendation against decision", ["verdict", "gates", "approved", "rejected"], verdicts
        ),
        table("table-models", "By model version", ["model", "gates", "Brier"], models),
        table(
            "table-fits",
            "Model fits in the period",
            ["model", "fitted at", "samples", "Brier", "base rate Brier"],
            fits,
        ),
    ]
    return _section(
        "calibration",
        "Recommendation calibration",
        "Do recommendations mean what they say? Each point is a bin of gates by the predicted probability of "
        "approval; on the dotted diagonal, predictions match what people decided. The bars compare the model's "
        "Brier score with always predicting the base rate.",
        chart_calibration(r),
        tables,
        "No L2 gate with a recommendation was decided by people in this period.",
    )


AGENT_COLUMNS = (
    "requests",
    "approved",
    "denied",
    "expired or cancelled",
    "pending",
    "executed after approval",
    "executed, refused",
)


def _agents_section(r: dict[str, Any]) -> str:
    from gatekeeper.report.metrics import AGENT_FIGURES

    a = r["agents"]
    by_agent = [[x["agent"], *(x[k] for k in AGENT_FIGURES)] for x in a["by_agent"]]
    by_tool = [[x["tool"], *(x[k] for k in AGENT_FIGURES)] for x in a["by_tool"]]
    return _section(
        "agents",
        "AI agents and tools",
        "Action requests from AI agents (through the MCP server, mcp-guard, or an agent's own token), per agent "
        "(the token's client application) and per tool (the MCP tool, or the command's program; never its "
        "arguments), by how they were decided. Refused: the agent reported it ran an action that was not approved.",
        chart_agents(r),
        [
            table("table-agents", "By agent", ["agent", *AGENT_COLUMNS], by_agent),
            table("table-agent-tools", "By tool", ["tool", *AGENT_COLUMNS], by_tool),
        ],
        "No AI agent asked for an action in this period.",
    )


SOURCES = (
    ("Gates by level", "the first `decision` entry of each gate (level, rule); outcomes from its final `decision`"),
    (
        "Approval latency",
        "`approval_requested` to the stage's own `approval_decided` "
        "(or `approval_escalated` / `approval_expired`: timed out)",
    ),
    ("Overrides", "`override` entries, `follow_up` flag_rollback, and final `decision` against the quality verdict"),
    (
        "DORA",
        "`deployment_finished`, `health_check`, `rollback` of each watch; "
        "lead time where the events carry the commit time",
    ),
    (
        "Calibration",
        "`decision.recommendation.p_approve` of L2 gates against the people's final decision; `model_fitted`",
    ),
    (
        "AI agents and tools",
        "`action_requested` with `via` mcp, an `agent` or an mcp-guard command (agent; tool name only); its "
        "immediate `answer`, the gate's final `decision`, `action_cancelled` / `action_expired`; "
        "`action_reported` executed (approved, or `refused`)",
    ),
)


def _code(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def render_html(report: dict[str, Any]) -> str:
    """The page: a header, the summary cards, one section per figure (chart, then its numbers), the sources."""
    r = report
    tenant = escape(r["tenant"])
    period = f"{escape(r['since'][:16].replace('T', ' '))} to {escape(r['until'][:16].replace('T', ' '))} UTC"
    notes = []
    if r["empty"]:
        notes.append(
            f"No audit entries were recorded for tenant {tenant} in this period, so there is nothing to chart."
        )
    if r["entries"]["unreadable"]:
        notes.append(
            f"{r['entries']['unreadable']} entries could not be opened (their tenant key is gone or they were moved) "
            "and are left out; run `gatekeeper audit export --format bundle` and `audit verify` to check the log."
        )
    if r["entries"]["truncated"]:
        notes.append("The period holds more entries than the report reads at once; the newest entries are left out.")
    notice = "".join(f'<p class="empty" role="note">{n}</p>' for n in notes)
    builders: Sequence[Callable[[dict[str, Any]], str]] = (
        _gates_section,
        _latency_section,
        _overrides_section,
        _dora_section,
        _calibration_section,
        _agents_section,
    )
    sections = "".join(build(r) for build in builders)
    sources = "".join(f"<li><strong>{escape(k)}</strong>: {_code(escape(v))}</li>" for k, v in SOURCES)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="referrer" content="no-referrer">
<title>Gatekeeper report: {tenant}, {period}</title>
<style>{STYLE}</style>
</head>
<body>
<header>
<h1>Gatekeeper report for {tenant}</h1>
<p class="meta">{period}, by {escape(r["bucket"])}.
Generated {escape(r["generated_at"][:19].replace("T", " "))} UTC from the tenant's audit log
({r["entries"]["in_window"]} entries in the period). The same figures are in report.json.</p>
</header>
<main>
{notice}
<section id="summary" aria-labelledby="summary-h"><h2 id="summary-h">At a glance</h2>{_cards(r)}</section>
{sections}
<section id="sources" aria-labelledby="sources-h"><h2 id="sources-h">Where the numbers come from</h2>
<ul class="sources">{sources}</ul>
<p class="note">Percentiles are nearest-rank: each is a value that was observed. Rates are fractions (0.25 is 25%).
A dash means there was nothing to measure.</p>
</section>
</main>
</body>
</html>
"""
