"""Glob patterns for environments, repositories and branches, compiled once per policy.

Semantics follow GitHub's deployment branch policies: `*` matches within one path segment (never `/`),
`**` matches across segments, `?` matches one character other than `/`. `release/*` matches
`release/1.2` but not `release/1.2/hotfix`; `release/**` matches both. Environment and repository
names are compared case-insensitively (GitHub treats them so); branches are case-sensitive.
"""

from __future__ import annotations

import re


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


class GlobSet:
    """Any-of a list of globs, compiled into one regular expression."""

    __slots__ = ("case_sensitive", "patterns", "regex")

    def __init__(self, patterns: tuple[str, ...], case_sensitive: bool = True):
        self.patterns = tuple(patterns)
        self.case_sensitive = case_sensitive
        body = "|".join(f"(?:{glob_to_regex(p)})" for p in self.patterns)
        self.regex = re.compile(f"^(?:{body})$", 0 if case_sensitive else re.IGNORECASE)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GlobSet) and (self.patterns, self.case_sensitive) == (
            other.patterns,
            other.case_sensitive,
        )

    def __hash__(self) -> int:
        return hash((self.patterns, self.case_sensitive))

    def __repr__(self) -> str:
        return f"GlobSet({self.patterns!r}, case_sensitive={self.case_sensitive})"

    def matches(self, value: str | None) -> bool:
        return value is not None and self.regex.match(value) is not None
