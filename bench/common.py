"""Shared reporting for benchmarks: every figure is printed as a ratio to a baseline measured in the
same run, so results compare across machines."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Ratio:
    name: str
    measured: float
    baseline: float
    unit: str
    target: str  # e.g. ">= 0.8" or "<= 1.5" or "" when informative only
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.measured / self.baseline if self.baseline else float("inf")

    def met(self) -> bool | None:
        if not self.target:
            return None
        op, value = self.target.split()
        return self.ratio >= float(value) if op == ">=" else self.ratio <= float(value)

    def line(self) -> str:
        verdict = {None: "", True: "  [target met]", False: "  [TARGET MISSED]"}[self.met()]
        target = f" (target {self.target})" if self.target else ""
        return (
            f"{self.name}: {self.measured:.4g} {self.unit} vs baseline {self.baseline:.4g} {self.unit}"
            f" -> ratio {self.ratio:.3f}{target}{verdict}"
        )


def best_of(fn: Callable[[], float], repeats: int = 3) -> float:
    """Run a measurement several times and keep the median, to damp noise on a shared machine."""
    return statistics.median(fn() for _ in range(repeats))


def rate(fn: Callable[[], None], count: int) -> float:
    """Calls per second of fn over count calls."""
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)
