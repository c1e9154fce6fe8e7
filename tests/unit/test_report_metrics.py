"""The report's figures on generated histories with known answers (gatekeeper/report/metrics.py)."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from gatekeeper.actions.tool import OTHER_TOOL, command_tool
from gatekeeper.report import metrics
from gatekeeper.report.metrics import Entry, Window, build_report, percentile
from tests.support.report_history import OPS_AGENT, T0, WINDOW, History, agent_actions, recommendation, rich_history

DAY = timedelta(days=1)


def report_of(history: History, window: Window = WINDOW) -> dict:
    return build_report(history.as_entries(), window, tenant="contoso", generated_at=window.until)


# --- gates by level -------------------------------------------------------------------------------------------


def test_gates_are_counted_once_per_gate_by_level_and_day():
    h = History()
    h.gate("a", T0 + timedelta(hours=2), "L0", "builds", final="approved")
    h.gate("b", T0 + timedelta(hours=3), "L2", "prod", stages=(("s", 5, "decided"),), final="approved")
    h.gate("c", T0 + DAY, "L1", "staging", final="approved")
    h.add("decision", T0 + DAY, "c", {"level": "L3", "rule": "retried"})  # an activity run twice: first wins
    h.gate("early", T0 - DAY, "L3", "pim", final="human_task")  # before the window
    h.gate("odd", T0 + 2 * DAY, "L9", "weird")
    report = report_of(h)
    gates = report["gates"]
    assert gates["total"] == 4
    assert gates["by_level"] == {"L0": 1, "L1": 1, "L2": 1, "L3": 0, "other": 1}
    first, second, third = gates["series"][:3]
    assert (first["bucket"], first["L0"], first["L2"]) == ("2026-11-01", 1, 1)
    assert (second["bucket"], second["L1"], second["L3"]) == ("2026-11-02", 1, 0)
    assert third["other"] == 1
    assert len(gates["series"]) == 31  # every day of the window, empty ones too
    outcomes = {o["outcome"]: o["gates"] for o in gates["outcomes"]}
    assert outcomes == {"approved (policy)": 2, "approved (people)": 1}


@hyp_settings(derandomize=True, max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 29), st.sampled_from(metrics.LEVELS)), max_size=40))
def test_gate_counts_per_bucket_match_what_was_generated(gates):
    h = History()
    for i, (day, level) in enumerate(gates):
        h.gate(f"g{i}", T0 + day * DAY + timedelta(minutes=i), level, "r")
    series = report_of(h)["gates"]["series"]
    expected = Counter(gates)
    for day in range(30):
        for level in metrics.LEVELS:
            assert series[day][level] == expected[(day, level)]


def test_a_long_window_is_bucketed_by_iso_week():
    window = Window(T0, T0 + 100 * DAY)
    h = History()
    h.gate("a", T0 + 3 * DAY, "L1", "r")  # Wednesday 4 Nov 2026: week of Monday 2 Nov
    report = report_of(h, window)
    assert report["bucket"] == "week"
    assert report["gates"]["series"][0]["bucket"] == "2026-10-26"
    assert [s["L1"] for s in report["gates"]["series"][:2]] == [0, 1]


# --- approval latency -----------------------------------------------------------------------------------------


def test_approval_latency_is_nearest_rank_per_stage_and_timeouts_are_counted_beside():
    h = History()
    for i, minutes in enumerate((40, 10, 30, 20)):
        h.gate(f"g{i}", T0 + i * DAY, "L2", "prod", stages=(("release", minutes, "decided"),), final="approved")
    h.gate("slow", T0 + 5 * DAY, "L2", "prod", stages=(("release", 480, "timed_out"),), final="rejected")
    h.gate(
        "two",
        T0 + 6 * DAY,
        "L2",
        "prod",
        stages=(("release", 480, "timed_out"), ("cab", 15, "decided")),
        final="approved",
    )
    latency = report_of(h)["approval_latency"]
    stages = {s["stage"]: s for s in latency["stages"]}
    assert stages["release"] == {"stage": "release", "n": 4, "p50": 20.0, "p95": 40.0, "timed_out": 2}
    assert stages["cab"] == {"stage": "cab", "n": 1, "p50": 15.0, "p95": 15.0, "timed_out": 0}
    assert latency["overall"] == {"n": 5, "p50": 20.0, "p95": 40.0, "timed_out": 2}
    by_day = {(p["bucket"], p["stage"]): p for p in latency["series"]}
    assert by_day[("2026-11-01", "release")]["p50"] == 40.0


def test_a_vote_alone_does_not_close_a_stage():
    h = History()
    h.add("approval_requested", T0, "g", {"stage": 0, "stage_name": "release"})
    h.add("approval_decided", T0 + timedelta(minutes=5), "g", {"vote": 0, "stage": 0, "decision": "approve"})
    assert report_of(h)["approval_latency"]["overall"]["n"] == 0


@hyp_settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50), st.sampled_from((0.5, 0.95, 1.0)))
def test_nearest_rank_percentile_is_an_observed_value_with_q_of_the_values_at_or_below(values, q):
    p = percentile(values, q)
    assert p in values
    at_or_below = sum(v <= p for v in values)
    below = sum(v < p for v in values)
    assert at_or_below >= math.ceil(q * len(values)) > below


# --- overrides ------------------------------------------------------------------------------------------------


def test_override_frequency_by_rule_counts_each_source_once():
    h = History()
    for i in range(10):
        approve_despite_fail = i < 3
        h.gate(
            f"p{i}",
            T0 + i * DAY,
            "L2",
            "prod",
            quality="fail" if approve_despite_fail else "pass",
            score=90.0,
            stages=(("release", 5, "decided"),),
            final="approved",
        )
    h.gate("p-timeout", T0 + DAY, "L2", "prod", quality="fail", stages=(("release", 9, "timed_out"),),
           final="approved", chain_reason="timeout")  # fmt: skip
    h.override("p5", T0 + 5 * DAY, "approved_against_reject", None)
    h.override("p5", T0 + 5 * DAY, "approved_against_reject", None)  # recorded twice: one override
    for i in range(4):
        h.gate(f"s{i}", T0 + i * DAY, "L1", "staging", final="approved")
    h.flag("s0", T0 + 2 * DAY)
    h.override("s0", T0 + 2 * DAY, "flagged_for_rollback", "staging")  # the same flag, seen twice
    h.override("s1", T0 + 40 * DAY, "flagged_for_rollback", "staging")  # after the window
    o = report_of(h)["overrides"]
    rules = {r["rule"]: r for r in o["rules"]}
    assert rules["prod"] == {
        "rule": "prod",
        "gates": 11,
        "overrides": 4,
        "rate": round(4 / 11, 4),
        "by_kind": {"approved_despite_fail": 3, "approved_against_reject": 1},
    }
    assert rules["staging"]["overrides"] == 1 and rules["staging"]["rate"] == 0.25
    assert o["total"] == 5 and o["gates"] == 15 and o["by_kind"]["flagged_for_rollback"] == 1
    assert [r["rule"] for r in o["rules"]] == ["prod", "staging"]


def test_rejecting_a_scored_pass_is_an_override_and_an_unscored_pass_is_not():
    h = History()
    h.gate("scored", T0, "L2", "prod", quality="pass", score=95.0, stages=(("s", 1, "decided"),), final="rejected")
    h.gate("unscored", T0, "L2", "prod", quality="pass", score=None, stages=(("s", 1, "decided"),), final="rejected")
    assert report_of(h)["overrides"]["by_kind"]["rejected_despite_pass"] == 1


def test_override_table_is_bounded_and_sums_the_rest():
    h = History()
    for i in range(metrics.MAX_RULES + 5):
        h.gate(f"g{i}", T0 + timedelta(minutes=i), "L1", f"rule-{i:02d}", final="approved")
        h.flag(f"g{i}", T0 + timedelta(hours=1))
    rules = report_of(h)["overrides"]["rules"]
    assert len(rules) == metrics.MAX_RULES + 1
    assert rules[-1] == {
        "rule": metrics.OTHER_RULES,
        "gates": 5,
        "overrides": 5,
        "rate": 1.0,
        "by_kind": {"flagged_for_rollback": 5},
    }


# --- DORA -----------------------------------------------------------------------------------------------------


def test_dora_metrics_from_deployments_watches_and_rollbacks():
    h = History()
    commit = (T0 - timedelta(hours=4)).isoformat()
    for i in range(10):
        at = T0 + i * DAY
        gate = f"g{i}"
        h.gate(gate, at - timedelta(hours=1), "L2", "prod", commit_time=commit if i < 4 else None)
        kwargs: dict = {}
        if i == 2:  # unhealthy 5 minutes in, rolled back, restored 35 minutes in
            kwargs = {"failing_after": 5, "rollback_after": 6, "restored_after": 35}
        if i == 7:  # unhealthy, rollback decided, never restored
            kwargs = {"failing_after": 3, "rollback_after": 4}
        h.deployment(f"w{i}", at, gate_id=gate, status="failure" if i == 9 else "success", **kwargs)
    h.deployment("w-rollback", T0 + 2 * DAY + timedelta(minutes=30), is_rollback=True)  # not a deployment
    h.add("health_check", T0, "w-unknown", {"result": "fail"})  # a watch whose start was not read
    dora = report_of(h)["dora"]
    assert dora["deployments"] == 10
    assert dora["deployment_frequency"] == {"successful": 9, "per_day": 0.3, "per_week": 2.1}
    # Commit at T0-4h: deployments 0..3 at T0 + i days.
    assert dora["lead_time"] == {"unit": "hours", "n": 4, "p50": 28.0, "p95": 76.0, "without_commit_time": 6}
    assert dora["request_to_deploy"] == {"unit": "hours", "n": 10, "p50": 1.0, "p95": 1.0}
    assert dora["change_failure_rate"] == {"failed": 3, "deployments": 10, "rate": 0.3}
    assert dora["time_to_restore"] == {"unit": "minutes", "n": 1, "p50": 30.0, "p95": 30.0, "not_restored": 2}
    assert [s["failed"] for s in dora["series"][:10]] == [0, 0, 1, 0, 0, 0, 0, 1, 0, 1]
    assert dora["environments"] == [
        {"environment": "production", "deployments": 10, "failed": 3, "change_failure_rate": 0.3}
    ]


def test_a_commit_time_in_the_future_or_far_past_is_not_a_lead_time():
    h = History()
    h.deployment("w1", T0, commit_time=(T0 + DAY).isoformat())
    h.deployment("w2", T0 + DAY, commit_time=(T0 - 400 * DAY).isoformat())
    h.deployment("w3", T0 + 2 * DAY, commit_time="yesterday")
    assert report_of(h)["dora"]["lead_time"]["n"] == 0


def test_failed_statuses_are_the_watch_steps_own():
    from gatekeeper.rollback.steps import FAILED_STATUSES

    assert metrics.FAILED_STATUSES == FAILED_STATUSES


# --- calibration ----------------------------------------------------------------------------------------------


def test_calibration_brier_against_base_rate_and_reliability_bins():
    h = History()
    for i in range(20):
        high = i < 10
        approved = (i % 10) != 0 if high else (i % 10) == 0  # 9 of 10 at p=0.9, 1 of 10 at p=0.1
        h.gate(
            f"g{i}",
            T0 + i * timedelta(hours=6),
            "L2",
            "prod",
            recommendation=recommendation(0.9 if high else 0.1, "approve" if high else "reject", "m1"),
            stages=(("s", 3, "decided"),),
            final="approved" if approved else "rejected",
        )
    h.gate("to", T0, "L2", "prod", recommendation=recommendation(0.9), stages=(("s", 3, "timed_out"),),
           final="rejected", chain_reason="timeout")  # fmt: skip
    cal = report_of(h)["calibration"]
    assert cal["n"] == 20
    assert cal["brier"] == 0.09  # (9 * 0.01 + 0.81) * 2 / 20
    assert cal["base_rate"] == 0.5 and cal["base_rate_brier"] == 0.25
    assert cal["skill"] == round(1 - 0.09 / 0.25, 4)
    used = [b for b in cal["bins"] if b["n"]]
    assert used == [
        {"lower": 0.1, "upper": 0.2, "n": 10, "mean_predicted": 0.1, "observed": 0.1},
        {"lower": 0.9, "upper": 1.0, "n": 10, "mean_predicted": 0.9, "observed": 0.9},
    ]
    verdicts = {v["verdict"]: v for v in cal["verdicts"]}
    assert verdicts["approve"] == {"verdict": "approve", "gates": 10, "approved": 9, "rejected": 1}
    assert cal["models"] == [{"model_version": "m1", "n": 20, "brier": 0.09}]


def test_hostile_recommendations_and_fits_are_left_out_not_trusted():
    h = History()
    bad = (float("nan"), float("inf"), 1.5, -0.1, "0.7", True, 10**400, None)
    for i, p in enumerate(bad):
        h.gate(f"g{i}", T0 + i * DAY, "L2", "prod", recommendation=recommendation(p, "<b>approve</b>"),
               stages=(("s", 3, "decided"),), final="approved")  # fmt: skip
    h.fit(T0 + DAY, "m" * 5000, 10**30, float("nan"), 0.2)
    cal = report_of(h)["calibration"]
    assert cal["n"] == 0 and cal["brier"] is None and cal["skill"] is None
    assert [v["verdict"] for v in cal["verdicts"]] == ["approve", "reject", "needs_attention", "other"]
    assert cal["verdicts"][-1]["gates"] == len(bad)
    (fit,) = cal["fits"]
    assert fit["samples"] is None and fit["brier"] is None and fit["base_rate_brier"] == 0.2
    assert len(fit["model_version"]) == metrics.MAX_LABEL


# --- hostile text, empty history, the whole document ------------------------------------------------------------


def test_labels_are_single_line_printable_and_bounded():
    assert metrics.label("a\x00b\nc\u202e d", "x") == "a b c d"
    assert len(metrics.label("r" * 10_000, "x")) == metrics.MAX_LABEL
    assert metrics.label({"not": "text"}, "(no rule)") == "(no rule)"
    assert metrics.label("\n\t", "(no rule)") == "(no rule)"


def test_an_empty_history_is_a_report_that_says_so():
    report = report_of(History())
    assert report["empty"] is True
    assert report["summary"]["gates"] == 0 and report["summary"]["brier"] is None
    assert report["approval_latency"]["overall"] == {"n": 0, "p50": None, "p95": None, "timed_out": 0}


def test_the_rich_history_has_the_figures_the_other_tests_expect():
    report = report_of(rich_history())
    s = report["summary"]
    assert (s["gates"], s["deployments"], s["overrides"]) == (33, 9, 9)  # 25 gates and 8 actions
    assert s["change_failure_rate"] == 0.3333 and s["time_to_restore_p50_minutes"] == 15.0
    assert report["entries"]["in_window"] == len(rich_history().entries)


def test_window_is_bounded_and_aware():
    with pytest.raises(ValueError, match="at most"):
        Window(T0, T0 + 800 * DAY)
    with pytest.raises(ValueError, match="later"):
        Window(T0, T0)
    with pytest.raises(ValueError, match="aware"):
        Window(T0.replace(tzinfo=None), T0 + DAY)


def test_entries_with_odd_shapes_do_not_crash_the_report():
    odd = [
        Entry("decision", T0, "g", data={"level": "L2", "rule": 7, "quality": "not a mapping"}),
        Entry("decision", T0, "g", data={"final": True, "chain": ["not", "a", "mapping"]}),
        Entry("approval_requested", T0, "g", data={"stage": -1}),
        Entry("approval_requested", T0, "g", data={"stage": 10**20}),
        Entry("approval_escalated", T0, "g", data={"stage": "0"}),
        Entry("deployment_finished", T0, "w", data={"status": 5, "is_rollback": "yes", "commit_time": 12}),
        Entry("rollback", T0, "w", data={"step": "finished", "conclusion": None}),
        Entry("override", T0, "", data={"kind": "<i>new</i>", "gate": None}),
        Entry("model_fitted", T0, "", data={}),
    ]
    report = build_report(odd, WINDOW, tenant="t", generated_at=T0)
    assert report["gates"]["total"] == 1 and report["overrides"]["by_kind"]["other"] == 1
    assert report["dora"]["deployments"] == 1


# --- AI agents and tools ----------------------------------------------------------------------------------------


def test_agent_actions_by_agent_and_tool_have_the_known_answers():
    h = History()
    agent_actions(h)
    a = report_of(h)["agents"]
    # act-8 is a pipeline's (no via, no agent, no mcp-guard command): not counted
    assert {k: a[k] for k in metrics.AGENT_FIGURES} == {
        "requests": 7,
        "approved": 2,  # act-2 by people, act-3 at once (L1)
        "denied": 2,  # act-1 by people, act-4 human only (L3)
        "expired_or_cancelled": 2,  # act-5 cancelled, act-6 timed out
        "pending": 1,  # act-7
        "executed_after_approval": 2,  # act-2, act-3
        "executed_refused": 1,  # act-1: `executed` reported after the denial
    }
    by_agent = {r["agent"]: r for r in a["by_agent"]}
    assert by_agent[OPS_AGENT]["requests"] == 6 and by_agent[OPS_AGENT]["executed_refused"] == 1
    assert by_agent[metrics.UNIDENTIFIED_AGENT] == {
        "agent": metrics.UNIDENTIFIED_AGENT,
        "requests": 1,
        "approved": 0,
        "denied": 0,
        "expired_or_cancelled": 0,
        "pending": 1,
        "executed_after_approval": 0,
        "executed_refused": 0,
    }
    by_tool = {r["tool"]: r for r in a["by_tool"]}
    assert set(by_tool) == {"kubectl_delete_namespace", "kubectl", "psql", "rotate-keys.sh", "terraform"}
    delete = by_tool["kubectl_delete_namespace"]
    assert (delete["requests"], delete["approved"], delete["denied"], delete["expired_or_cancelled"]) == (3, 1, 1, 1)
    assert [r["tool"] for r in a["by_tool"]][:2] == ["kubectl_delete_namespace", "psql"]  # most denied first


def test_an_agent_outcome_after_the_window_is_pending_and_a_request_before_it_is_not_counted():
    h = History()
    end = WINDOW.until
    h.action("late", end - timedelta(minutes=30), "kubectl get pods", final="rejected", minutes=60,
             reports=(("executed", True),))  # fmt: skip
    h.action("early", WINDOW.since - DAY, "kubectl get pods", final="approved", reports=(("executed", False),))
    a = report_of(h)["agents"]
    assert (a["requests"], a["pending"], a["denied"], a["executed_refused"]) == (1, 1, 0, 0)


def test_the_agent_tables_are_bounded_and_sum_the_rest():
    h = History()
    for i in range(metrics.MAX_AGENTS + 4):
        h.action(f"a{i}", T0 + timedelta(minutes=i), f"tool{i:02d} --x", agent=f"app-{i:02d}", level="L3")
    a = report_of(h)["agents"]
    assert len(a["by_agent"]) == len(a["by_tool"]) == metrics.MAX_AGENTS + 1
    assert a["by_agent"][-1]["agent"] == metrics.OTHER_AGENTS and a["by_agent"][-1]["denied"] == 4
    assert a["by_tool"][-1] == {"tool": metrics.OTHER_TOOLS, **dict.fromkeys(metrics.AGENT_FIGURES, 0),
                                "requests": 4, "denied": 4}  # fmt: skip


@hyp_settings(derandomize=True, max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(("app-a", "app-b", None)),
            st.sampled_from(("kubectl", "mcp-tool drop_db {}", "helm")),
            st.sampled_from(("L1", "L3", "approved", "rejected", "timeout", "cancelled", "expired", "open")),
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_agent_figures_match_what_was_generated(actions):
    h = History()
    expected: Counter[str] = Counter()
    for i, (agent, command, fate, report_executed) in enumerate(actions):
        at = T0 + timedelta(hours=i)
        status = {"L1": "approved", "L3": "denied", "approved": "approved", "rejected": "denied"}.get(fate)
        status = status or ("pending" if fate == "open" else "expired_or_cancelled")
        approved = status == "approved"
        reports = (("executed", not approved),) if report_executed else ()
        if fate in ("L1", "L3"):
            h.action(f"a{i}", at, command, agent=agent, level=fate, reports=reports)
        elif fate in ("cancelled", "expired"):
            h.action(f"a{i}", at, command, agent=agent, withdrawn=fate, reports=reports)
        elif fate == "open":
            h.action(f"a{i}", at, command, agent=agent, reports=reports)
        else:
            final = "rejected" if fate == "timeout" else fate
            h.action(f"a{i}", at, command, agent=agent, final=final, chain_reason=fate if fate == "timeout" else None,
                     reports=reports)  # fmt: skip
        expected.update({"requests": 1, status: 1})
        if report_executed:
            expected["executed_after_approval" if approved else "executed_refused"] += 1
    a = report_of(h)["agents"]
    assert {k: a[k] for k in metrics.AGENT_FIGURES} == {k: expected[k] for k in metrics.AGENT_FIGURES}
    for rows in (a["by_agent"], a["by_tool"]):
        for figure in metrics.AGENT_FIGURES:
            assert sum(r[figure] for r in rows) == a[figure]
    for row in a["by_agent"] + a["by_tool"]:
        assert row["requests"] == sum(row[k] for k in ("approved", "denied", "expired_or_cancelled", "pending"))


@pytest.mark.parametrize(
    ("command", "tool"),
    [
        ('mcp-tool kubectl_delete_namespace {"name":"prod-legacy"}', "kubectl_delete_namespace"),
        ("kubectl delete namespace prod-legacy", "kubectl"),
        ("/usr/local/bin/terraform apply -auto-approve", "terraform"),
        ("./deploy.sh --token=s3cr3t", "deploy.sh"),
        ("API_KEY=s3cr3t OTHER='a b' helm upgrade web", "helm"),
        ("pg_dump '--file=/x y.sql' db", "pg_dump"),
        ("psql -c 'unbalanced", "psql"),
        ("https://user:s3cr3t@example.com/hook", OTHER_TOOL),
        ("C:\\tools\\x.exe /quiet", OTHER_TOOL),
        ("s3cr3t@host", OTHER_TOOL),
        ("--flag value", OTHER_TOOL),
        ("x" * 65, OTHER_TOOL),
        ("mcp-tool <script>alert(1)</script> {}", OTHER_TOOL),
        ("mcp-tool ", OTHER_TOOL),
        ("A=1 " * 40 + "kubectl", OTHER_TOOL),
        ("", OTHER_TOOL),
        (["kubectl"], OTHER_TOOL),
        (None, OTHER_TOOL),
    ],
)
def test_the_tool_of_a_command_is_one_name_and_never_an_argument(command, tool):
    assert command_tool(command) == tool


@hyp_settings(derandomize=True, max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_the_tool_of_any_text_is_a_bounded_name_that_was_in_it(text):
    tool = command_tool(text)
    assert tool == OTHER_TOOL or (len(tool) <= 64 and tool in text and tool.isprintable() and " " not in tool)
