"""Gate levels, ISO 8601 durations and glob semantics: the small pieces rules are built from."""

from __future__ import annotations

from datetime import timedelta
from itertools import product

import pytest

from gatekeeper.policy.durations import format_duration, parse_duration
from gatekeeper.policy.globs import GlobSet
from gatekeeper.policy.levels import GateLevel


def test_levels_are_ordered():
    assert GateLevel.L0 < GateLevel.L1 < GateLevel.L2 < GateLevel.L3
    assert sorted([GateLevel.L3, GateLevel.L0, GateLevel.L2]) == [GateLevel.L0, GateLevel.L2, GateLevel.L3]
    assert GateLevel("L2") == "L2"
    assert max(GateLevel.L1, GateLevel.L2) is GateLevel.L2


@pytest.mark.parametrize(("a", "b"), list(product(GateLevel, GateLevel)))
def test_raise_to_is_max_and_never_lowers(a, b):
    raised = a.raise_to(b)
    assert raised >= a and raised >= b
    assert raised in (a, b)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT4H", timedelta(hours=4)),
        ("PT8H", timedelta(hours=8)),
        ("PT90M", timedelta(minutes=90)),
        ("PT30S", timedelta(seconds=30)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("P1D", timedelta(days=1)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("P2W", timedelta(weeks=2)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P1M", "years and months"),
        ("P1Y", "years and months"),
        ("PT", "not an ISO 8601 duration"),
        ("P", "not an ISO 8601 duration"),
        ("4h", "not an ISO 8601 duration"),
        ("P1DT", "not an ISO 8601 duration"),
        ("PT4H30", "not an ISO 8601 duration"),
        ("PT0S", "longer than zero"),
    ],
)
def test_parse_duration_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(hours=4), "PT4H"),
        (timedelta(days=1, hours=12), "P1DT12H"),
        (timedelta(days=2), "P2D"),
        (timedelta(minutes=90), "PT1H30M"),
        (timedelta(milliseconds=500), "PT0.5S"),
        (timedelta(weeks=1, seconds=1), "P7DT1S"),
    ],
)
def test_format_duration_round_trips(value, text):
    assert format_duration(value) == text
    assert parse_duration(text) == value


@pytest.mark.parametrize(
    ("patterns", "value", "case_sensitive", "matched"),
    [
        (("release/*",), "release/1.2", True, True),
        (("release/*",), "release/1.2/hotfix", True, False),  # * stays within a segment
        (("release/**",), "release/1.2/hotfix", True, True),
        (("main",), "Main", True, False),  # branches are case-sensitive
        (("production",), "Production", False, True),  # environments are not
        (("prod-?",), "prod-1", False, True),
        (("prod-?",), "prod-12", False, False),
        (("contoso/*",), "contoso/web", False, True),
        (("contoso/*",), "contoso-labs/web", False, False),
        (("a.b",), "axb", True, False),  # dots are literal
        (("dev", "test-*"), "test-eu", False, True),
        (("dev",), None, False, False),
    ],
)
def test_globs(patterns, value, case_sensitive, matched):
    assert GlobSet(patterns, case_sensitive=case_sensitive).matches(value) is matched
