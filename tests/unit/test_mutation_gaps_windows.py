"""Change windows and level ordering at their edges (issue 21: survivors of `make mutation MODULES=policy`).

Each test pins one boundary a mutant moved without any test noticing: inclusive starts and exclusive ends of
freezes and overnight business hours, the scope's case-insensitive environments, the models' own constraints
(the JSON schema checks them too, but the models are the contract code builds on), and GateLevel's ordering.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

import pytest
from pydantic import ValidationError

from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent
from gatekeeper.policy import GateLevel, evaluate, load_policy
from gatekeeper.policy.windows import BusinessHours, ChangeWindows, FreezePeriod

START = datetime(2025, 12, 20, 0, 0, tzinfo=UTC)
END = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
NIGHT = {"timezone": "Europe/Amsterdam", "days": ["fri"], "start": "22:00", "end": "06:00"}


def _freeze(**fields) -> FreezePeriod:
    return FreezePeriod(**{"name": "year-end", "start": START, "end": END, **fields})


# --- freezes ---------------------------------------------------------------------------------------------------


def test_a_freeze_is_active_from_its_start_instant_until_just_before_its_end():
    freeze = _freeze()
    assert freeze.active_at(START) is True
    assert freeze.active_at(START - timedelta(microseconds=1)) is False
    assert freeze.active_at(END - timedelta(microseconds=1)) is True
    assert freeze.active_at(END) is False


def test_a_freeze_must_end_after_it_starts():
    with pytest.raises(ValidationError, match="must be after start"):
        _freeze(end=START)
    with pytest.raises(ValidationError, match="must be after start"):
        _freeze(end=START - timedelta(hours=1))


@pytest.mark.parametrize(
    "fields",
    [{"name": ""}, {"name": "x" * 101}, {"actions": []}, {"environments": []}],
    ids=["empty-name", "long-name", "no-actions", "no-environments"],
)
def test_freeze_model_constraints(fields):
    with pytest.raises(ValidationError):
        _freeze(**fields)


def test_a_freeze_name_of_exactly_100_characters_is_accepted():
    assert _freeze(name="x" * 100).name == "x" * 100


def test_duplicate_freeze_names_are_refused():
    with pytest.raises(ValidationError, match="duplicate freeze name 'year-end'"):
        ChangeWindows(freezes=[_freeze(), _freeze()])


def test_change_windows_are_immutable():
    windows = ChangeWindows(freezes=[_freeze()])
    with pytest.raises(ValidationError):
        windows.freezes = []  # type: ignore[misc]


def test_scope_environments_match_case_insensitively():
    freeze = _freeze(environments=["Prod-*"], actions=["deploy"])
    assert freeze.applies_to("PROD-eu", ActionKind.DEPLOY) is True
    assert freeze.applies_to("prod-eu", ActionKind.ROLLBACK) is False
    assert freeze.applies_to("staging", ActionKind.DEPLOY) is False


# --- business hours ----------------------------------------------------------------------------------------------


def _local(day: int, hour: int, minute: int = 0) -> datetime:
    """December 2025 in Amsterdam is CET (UTC+1)."""
    return datetime(2025, 12, day, hour, minute, tzinfo=UTC) - timedelta(hours=1)


def test_overnight_hours_start_inclusive_end_exclusive_on_the_next_day():
    hours = BusinessHours(**NIGHT)
    # Friday 12 December 2025
    assert hours.contains(_local(12, 22, 0)) is True  # the start minute belongs to the shift
    assert hours.contains(_local(12, 21, 59)) is False
    assert hours.contains(_local(13, 5, 59)) is True  # Saturday morning: still Friday's shift
    assert hours.contains(_local(13, 6, 0)) is False  # the end is exclusive


def test_overnight_hours_belong_to_the_day_they_start_on():
    hours = BusinessHours(**NIGHT)
    assert hours.contains(_local(11, 23, 0)) is False  # Thursday night: Thursday is not a working day
    assert hours.contains(_local(12, 3, 0)) is False  # Friday 03:00 belongs to Thursday's shift


def test_daytime_hours_start_inclusive():
    hours = BusinessHours(timezone="Europe/Amsterdam", start="08:00", end="18:00")
    assert hours.contains(_local(12, 8, 0)) is True
    assert hours.contains(_local(12, 7, 59)) is False


@pytest.mark.parametrize("value", ["8:00", "24:00", "08:60", "0800", "08:00 ", ""])
def test_clock_times_must_be_hh_mm(value: str):
    with pytest.raises(ValidationError, match="24-hour time"):
        BusinessHours(timezone="Europe/Amsterdam", start=value)


def test_business_hours_need_at_least_one_day():
    with pytest.raises(ValidationError):
        BusinessHours(timezone="Europe/Amsterdam", days=[])


# --- the engine ----------------------------------------------------------------------------------------------------


class _NoOffset(tzinfo):
    """A tzinfo that does not know its offset: the instant is not really aware."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None

    def dst(self, dt: datetime | None) -> None:
        return None


def test_evaluate_refuses_an_instant_whose_offset_is_unknown():
    policy = load_policy({"version": 1, "rules": [{"name": "any", "level": "L0"}]})
    event = PipelineEvent(tenant_id="t1", source=EventSource.GITHUB, kind=EventKind.GATE_REQUEST)
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(policy, event, None, datetime(2025, 12, 12, 10, 0, tzinfo=_NoOffset()))
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(policy, event, None, datetime(2025, 12, 12, 10, 0))


def test_the_quality_summary_is_one_of_the_reasons():
    from gatekeeper.quality import load_evidence
    from tests.unit.test_policy_engine import EXAMPLES, QUALITY

    policy = load_policy({"version": 1, "rules": [{"name": "any", "level": "L0"}], "quality": QUALITY})
    event = PipelineEvent(tenant_id="t1", source=EventSource.GITHUB, kind=EventKind.GATE_REQUEST)
    decision = evaluate(policy, event, load_evidence(EXAMPLES / "evidence" / "failing.json"), _local(12, 10))
    assert decision.quality.summary and decision.quality.summary in decision.reasons
    assert decision.reasons.count(decision.quality.summary) == 1


# --- GateLevel ordering ----------------------------------------------------------------------------------------------


def test_levels_are_totally_ordered_by_rank():
    levels = [GateLevel.L0, GateLevel.L1, GateLevel.L2, GateLevel.L3]
    for i, a in enumerate(levels):
        for j, b in enumerate(levels):
            assert (a < b, a <= b, a > b, a >= b) == (i < j, i <= j, i > j, i >= j), (a, b)
    assert sorted(reversed(levels)) == levels
    assert max(levels) is GateLevel.L3


@pytest.mark.parametrize("other", ["L9", "A", 1])
def test_levels_do_not_compare_with_other_types(other):
    for op in ("__lt__", "__le__", "__gt__", "__ge__"):
        assert getattr(GateLevel.L1, op)(other) is NotImplemented, op


def test_levels_describe_themselves():
    for level in GateLevel:
        assert isinstance(level.description, str) and level.description


def _gate(**fields) -> PipelineEvent:
    return PipelineEvent(tenant_id="t1", source=EventSource.GITHUB, kind=EventKind.GATE_REQUEST, **fields)


def test_a_freeze_raises_even_when_no_rule_matched_and_names_its_reason():
    from tests.unit.test_policy_engine import FREEZE, IN_FREEZE

    freeze = {**FREEZE, "reason": "year-end change freeze"}
    policy = load_policy(
        {
            "version": 1,
            "rules": [{"name": "dev-only", "match": {"environments": ["dev"]}, "level": "L0"}],
            "defaults": {"level": "L2"},
            "change_windows": {"freezes": [freeze]},
        }
    )
    decision = evaluate(policy, _gate(environment="production"), None, IN_FREEZE)
    assert decision.rule is None and decision.level is GateLevel.L3
    [why] = [r for r in decision.reasons if r.startswith("change freeze 'year-end'")]
    assert "(year-end change freeze)" in why
    unexplained = load_policy(
        {"version": 1, "rules": [{"name": "any", "level": "L0"}], "change_windows": {"freezes": [FREEZE]}}
    )
    [why] = [
        r for r in evaluate(unexplained, _gate(environment="production"), None, IN_FREEZE).reasons if "freeze" in r
    ]
    assert "()" not in why and "None" not in why


def test_a_matched_rule_is_explained_by_its_reason_or_its_level():
    policy = load_policy(
        {
            "version": 1,
            "rules": [
                {
                    "name": "prod",
                    "match": {"environments": ["production"]},
                    "level": "L1",
                    "reason": "prod needs a look",
                },
                {"name": "any", "level": "L0"},
            ],
        }
    )
    prod = evaluate(policy, _gate(environment="production"), None, _local(12, 10))
    assert "rule 'prod' matched: prod needs a look" in prod.reasons
    other = evaluate(policy, _gate(environment="dev"), None, _local(12, 10))
    assert "rule 'any' matched: level L0" in other.reasons


def test_windows_are_immutable_once_validated():
    freeze = _freeze()
    hours = BusinessHours(timezone="Europe/Amsterdam")
    with pytest.raises(ValidationError):
        freeze.end = START  # type: ignore[misc]
    with pytest.raises(ValidationError):
        hours.start = hours.end  # type: ignore[misc]


def test_business_hours_must_not_be_empty():
    with pytest.raises(ValidationError, match="must differ from start"):
        BusinessHours(timezone="Europe/Amsterdam", start="08:00", end="08:00")
