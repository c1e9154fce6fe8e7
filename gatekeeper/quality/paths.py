"""Field paths for error messages (`rules[3].approval.stages[0].quorum`), from pydantic or jsonschema.

Policy, evidence and CLI errors all name the offending field the same way, so a person can find it in
their YAML or JSON file without reading a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError


def format_path(parts: Iterable[Any], prefix: str = "") -> str:
    """Join keys and indices: ("rules", 3, "level") -> "rules[3].level"."""
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def pydantic_issues(error: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(path, message) for each error of a pydantic ValidationError.

    A validator may name a sub-field by starting its message with "@<subpath>: ", for example
    "@[1].on_timeout: ..." raised while validating `stages`; the subpath is appended to the location.
    Pydantic's own location parts for tagged unions and function validators are dropped.
    """
    issues: list[tuple[str, str]] = []
    for item in error.errors(include_url=False):
        loc = [p for p in item["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
        message = str(item["msg"])
        for noise in ("Value error, ", "Assertion failed, "):
            if message.startswith(noise):
                message = message[len(noise) :]
        path = format_path(loc, prefix)
        if message.startswith("@") and ": " in message:
            sub, message = message[1:].split(": ", 1)
            base = "" if path == "(document)" else path
            path = (base + (sub if sub.startswith("[") else f".{sub}")).lstrip(".")
        issues.append((path, message))
    return issues
