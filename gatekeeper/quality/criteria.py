"""Keptn-style pass/warning criteria: `<250`, `>=80`, `<=+10%`, `>=-5%`.

A criterion is an operator (`<`, `<=`, `>`, `>=`, `=`) and a number. With a sign *and* a `%` it is
relative: the value's change against its baseline, in percent, is compared (`<=+10%` = "at most 10 %
worse than the baseline"). A sign without `%` is an ordinary (absolute) signed number; a `%` without a
sign is refused as ambiguous. A relative criterion without a baseline is NOT met, with a reason saying
so: a quality gate must never pass because data is missing. A baseline of 0 gives a change of 0 % when
the value is also 0, otherwise +/- infinity.

As in Keptn, the criteria of one group are AND-ed, and groups are OR-ed:
`"<600"` is one group of one; `["<=+10%", "<600"]` is one group of two;
`[{"criteria": ["<600"]}, {"criteria": ["<=+10%"]}]` is two groups.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_CRITERION = re.compile(
    r"^\s*(?P<op><=|>=|==|=|<|>)\s*(?P<sign>[+-])?\s*(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<percent>%)?\s*$"
)
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "==": operator.eq,
}


class CriteriaError(ValueError):
    """A criterion string that cannot be parsed; the message quotes it and says what to write."""


def _fmt(number: float) -> str:
    if math.isinf(number):
        return "+inf" if number > 0 else "-inf"
    return f"{number:.6g}"


@dataclass(frozen=True)
class Criterion:
    op: str
    number: float  # signed; for relative criteria, a percentage
    relative: bool
    text: str

    def check(self, value: float, baseline: float | None) -> tuple[bool, str]:
        """Whether value meets this criterion, and the comparison spelled out for a person."""
        compare = _OPERATORS[self.op]
        if not self.relative:
            met = compare(value, self.number)
            return met, f"{_fmt(value)} {'' if met else 'is not '}{self.op} {_fmt(self.number)}"
        if baseline is None:
            return False, f"{self.text} needs a baseline and the evidence has none"
        change = relative_change(value, baseline)
        met = compare(change, self.number)
        verdict = "within" if met else "not within"
        return met, f"{_fmt(value)} is {_signed_pct(change)} against baseline {_fmt(baseline)}, {verdict} {self.text}"

    def __str__(self) -> str:
        return self.text


def relative_change(value: float, baseline: float) -> float:
    """Change of value against baseline in percent (+10.0 = 10 % higher)."""
    if baseline == 0:
        if value == 0:
            return 0.0
        return math.inf if value > 0 else -math.inf
    return (value - baseline) / abs(baseline) * 100.0


def _signed_pct(change: float) -> str:
    if math.isinf(change):
        return _fmt(change) + "%"
    return f"{change:+.2f}%"


def parse_criterion(text: str) -> Criterion:
    if not isinstance(text, str):
        raise CriteriaError(f"{text!r}: a criterion must be a string such as '<250' or '<=+10%'")
    match = _CRITERION.match(text)
    if not match:
        raise CriteriaError(
            f"{text!r} is not a criterion; write an operator (<, <=, >, >=, =) and a number, "
            "e.g. '<250', '>=80' or '<=+10%'"
        )
    sign, percent = match["sign"], match["percent"]
    if percent and not sign:
        raise CriteriaError(f"{text!r}: a relative criterion needs a sign, e.g. '<=+10%' or '>=-5%'")
    number = float(match["number"]) * (-1.0 if sign == "-" else 1.0)
    return Criterion(op=match["op"], number=number, relative=bool(percent), text=text.strip())


@dataclass(frozen=True)
class CriteriaSet:
    """OR of AND-groups of criteria."""

    groups: tuple[tuple[Criterion, ...], ...]

    @property
    def needs_baseline(self) -> bool:
        return any(c.relative for group in self.groups for c in group)

    def check(self, value: float, baseline: float | None) -> tuple[bool, str]:
        """Met if every criterion of at least one group holds; the explanation names what decided it."""
        explanations: list[str] = []
        for group in self.groups:
            results = [c.check(value, baseline) for c in group]
            if all(met for met, _ in results):
                return True, " and ".join(text for _, text in results)
            explanations.append("; ".join(text for met, text in results if not met))
        return False, " / ".join(explanations)

    def __str__(self) -> str:
        return " or ".join(" and ".join(c.text for c in group) for group in self.groups)


def parse_criteria(spec: Any) -> CriteriaSet:
    """Parse a criteria spec: a string, a list of strings (AND), or a list of {criteria: [...]} (OR)."""
    if isinstance(spec, str):
        return CriteriaSet(((parse_criterion(spec),),))
    if isinstance(spec, Sequence) and spec and all(isinstance(item, str) for item in spec):
        return CriteriaSet((tuple(parse_criterion(item) for item in spec),))
    if isinstance(spec, Sequence) and spec and all(isinstance(item, Mapping) for item in spec):
        groups = []
        for index, item in enumerate(spec):
            inner = item.get("criteria")
            if set(item) != {"criteria"} or not isinstance(inner, list) or not inner:
                raise CriteriaError(f"[{index}]: each group must be {{criteria: [<criterion>, ...]}}")
            groups.append(tuple(parse_criterion(text) for text in inner))
        return CriteriaSet(tuple(groups))
    raise CriteriaError(
        "criteria must be a string ('<250'), a non-empty list of strings (all must hold) "
        "or a list of {criteria: [...]} groups (any group may hold)"
    )
