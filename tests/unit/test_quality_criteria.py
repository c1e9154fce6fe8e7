"""Keptn-style criteria: parsing and evaluation, table-driven."""

from __future__ import annotations

import math

import pytest

from gatekeeper.quality.criteria import CriteriaError, parse_criteria, parse_criterion, relative_change


@pytest.mark.parametrize(
    ("text", "op", "number", "relative"),
    [
        ("<250", "<", 250.0, False),
        ("<=250", "<=", 250.0, False),
        (">80", ">", 80.0, False),
        (">=80", ">=", 80.0, False),
        ("=0", "=", 0.0, False),
        ("==0", "==", 0.0, False),
        (" < 0.5 ", "<", 0.5, False),
        ("<.5", "<", 0.5, False),
        ("<=+10%", "<=", 10.0, True),
        (">=-5%", ">=", -5.0, True),
        ("< +2.5 %", "<", 2.5, True),
        (">-5", ">", -5.0, False),  # a sign without % is an absolute signed number
        ("<=+100", "<=", 100.0, False),
    ],
)
def test_parse(text, op, number, relative):
    criterion = parse_criterion(text)
    assert (criterion.op, criterion.number, criterion.relative) == (op, number, relative)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("250", "not a criterion"),
        ("=<250", "not a criterion"),
        ("<abc", "not a criterion"),
        ("<=10%", "needs a sign"),
        ("", "not a criterion"),
        ("<1e3", "not a criterion"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(CriteriaError, match=message):
        parse_criterion(text)


@pytest.mark.parametrize(
    ("spec", "value", "baseline", "met"),
    [
        ("<250", 249.9, None, True),
        ("<250", 250, None, False),
        ("<=250", 250, None, True),
        (">=80", 80, None, True),
        (">=80", 79.99, None, False),
        (">0", 0, None, False),
        ("=0", 0, None, True),
        ("<=+10%", 110, 100, True),
        ("<=+10%", 110.01, 100, False),
        ("<=+10%", 50, 100, True),  # improvement
        (">=-5%", 95, 100, True),
        (">=-5%", 94.9, 100, False),
        ("<+10%", 0, 0, True),  # baseline 0, value 0: no change
        ("<+10%", 1, 0, False),  # baseline 0, any rise: +inf
        ("<=+10%", 100, None, False),  # relative without baseline: not met
        (["<=+10%", "<600"], 105, 100, True),  # AND
        (["<=+10%", "<600"], 650, 600, False),
        ([{"criteria": ["<600"]}, {"criteria": ["<=+10%"]}], 650, 600, True),  # OR
        ([{"criteria": ["<600"]}, {"criteria": ["<=+10%"]}], 700, 600, False),
    ],
)
def test_check(spec, value, baseline, met):
    assert parse_criteria(spec).check(value, baseline)[0] is met


def test_reason_reads_as_a_sentence():
    ok, why = parse_criteria(">=80").check(65, None)
    assert (ok, why) == (False, "65 is not >= 80")
    ok, why = parse_criteria("<=+10%").check(231, 200)
    assert not ok and "+15.50%" in why and "baseline 200" in why
    ok, why = parse_criteria("<=+10%").check(231, None)
    assert not ok and "needs a baseline" in why


def test_relative_change():
    assert relative_change(110, 100) == pytest.approx(10.0)
    assert relative_change(-90, -100) == pytest.approx(10.0)  # change is measured against |baseline|
    assert math.isinf(relative_change(-1, 0)) and relative_change(-1, 0) < 0


@pytest.mark.parametrize("spec", [[], {}, 5, [1, 2], [{"criteria": []}], [{"criteria": ["<1"], "x": 1}]])
def test_bad_shapes(spec):
    with pytest.raises(CriteriaError):
        parse_criteria(spec)


def test_display():
    assert str(parse_criteria([{"criteria": ["<600", "<=+10%"]}, {"criteria": ["<500"]}])) == (
        "<600 and <=+10% or <500"
    )
