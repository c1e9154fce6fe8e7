"""Glob patterns for environments, repositories and branches, compiled once per policy.

Semantics follow GitHub's deployment branch policies: `*` matches within one path segment (never `/`),
`**` matches across segments, `?` matches one character other than `/`. `release/*` matches
`release/1.2` but not `release/1.2/hotfix`; `release/**` matches both. Environment and repository
names are compared case-insensitively (GitHub treats them so); branches are case-sensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


def glob_to_regex(pattern: str) -> str:
    """The anchored regular expression for one glob."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def is_literal(pattern: str) -> bool:
    return not any(c in pattern for c in "*?")


@dataclass(frozen=True)
class GlobSet:
    """Any-of a list of globs, compiled into one regular expression."""

    patterns: tuple[str, ...]
    case_sensitive: bool = True

    def __post_init__(self) -> None:
        flags = 0 if self.case_sensitive else re.IGNORECASE
        body = "|".join(f"(?:{glob_to_regex(p)})" for p in self.patterns)
        object.__setattr__(self, "_regex", re.compile(f"^(?:{body})$", flags))

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        return self._regex.match(value) is not None  # type: ignore[attr-defined]
