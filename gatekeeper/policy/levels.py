"""Gate levels L0-L3, ordered so that "raise" is simply "max".

Every step of a decision (freeze, business hours, quality) may only raise the level; making the order a
property of the type keeps that rule in one place instead of in each caller's comparison.
"""

from __future__ import annotations

from enum import StrEnum


class GateLevel(StrEnum):
    """How much a human is involved. Ordered: L0 < L1 < L2 < L3."""

    L0 = "L0"  # fully automated, logged
    L1 = "L1"  # execute, then notify
    L2 = "L2"  # a human must approve before execution
    L3 = "L3"  # human only: the system refuses to execute and supports the human's decision

    @property
    def rank(self) -> int:
        return int(self.value[1])

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    def raise_to(self, other: GateLevel) -> GateLevel:
        """The higher of the two levels; never lower than self."""
        return other if other.rank > self.rank else self

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, GateLevel):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, GateLevel):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, GateLevel):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, GateLevel):
            return NotImplemented
        return self.rank >= other.rank

    # StrEnum's __eq__/__hash__ come from str; keep them so GateLevel("L2") == "L2" stays true.
    __hash__ = StrEnum.__hash__


_DESCRIPTIONS = {
    GateLevel.L0: "fully automated and logged",
    GateLevel.L1: "executed, then people are notified",
    GateLevel.L2: "a human must approve before execution",
    GateLevel.L3: "human only: automation refuses to execute",
}
