"""The KQL probe's number and its judgement (gatekeeper/rollback/kql.py): cases a hand sweep of planted bugs
found untested (docs/mutation.md, second sweep). Same local Log Analytics server as test_kql_probe.py."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from gatekeeper.rollback.kql import QueryFailed, first_number
from tests.integration.test_kql_probe import DEPLOYED, probe_for, server, spec  # noqa: F401 - fixture by name


def tables(columns: list[str], row: list[Any]) -> list[Any]:
    return [SimpleNamespace(columns=columns, rows=[row])]


def test_the_value_column_wins_over_an_earlier_number():
    assert first_number(tables(["count", "value"], [5, 0.2])) == 0.2


def test_a_boolean_is_not_a_number_and_neither_is_nan_or_infinity():
    assert first_number(tables(["ok", "n"], [True, 3])) == 3.0
    assert first_number(tables(["a", "b", "c"], [math.nan, math.inf, 7])) == 7.0
    with pytest.raises(QueryFailed):
        first_number(tables(["value"], [math.inf]))
    with pytest.raises(QueryFailed):
        first_number(tables(["value"], [False]))


def test_a_value_exactly_at_the_baseline_limit_passes(server):
    server.current, server.baseline = 200.0, 100.0
    at = probe_for(server).run(spec(threshold=None, max_increase_percent=100), "tenant1", DEPLOYED)
    assert at.outcome == "pass"
    server.current = 200.5
    over = probe_for(server).run(spec(threshold=None, max_increase_percent=100), "tenant1", DEPLOYED)
    assert over.outcome == "fail"


@pytest.mark.parametrize(("operator", "outcome"), [(">=", "fail"), (">", "pass"), ("<=", "fail"), ("<", "pass")])
def test_each_operator_judges_a_value_equal_to_the_threshold(server, operator, outcome):
    server.current = 0.05
    result = probe_for(server).run(spec(operator=operator, threshold=0.05), "tenant1", DEPLOYED)
    assert result.outcome == outcome
