"""Strict JSON reading for the audit verifier: one document, one meaning.

A bundle the verifier accepts must mean the same thing to every reader. Python's `json` keeps the last of
two equal keys where other readers keep the first, accepts NaN and Infinity (not JSON) and recurses
without a bound of its own, so an auditor's tool could show an `"actor"` the hash never covered. The
product's one bounded parser (`gatekeeper.json_bounded`) refuses all of these; this adapter only turns its
errors into the verifier's: a message naming the file, and for a repeated key where it stands, so the
verifier can name the first entry it leaves unproven.
"""

from __future__ import annotations

from typing import Any

from gatekeeper import json_bounded
from gatekeeper.errors import MalformedInput

MAX_DEPTH = json_bounded.MAX_DEPTH  # a bundle nests 4 deep; anything near this bound is not a bundle


class StrictJSONError(MalformedInput, ValueError):
    """Not a strict JSON document: the message names the source and the problem (bad input, exit 2)."""

    default_code = "malformed-json"
    default_title = "Not a strict JSON document"

    def __str__(self) -> str:
        return self.detail


class DuplicateKeyError(StrictJSONError):
    """An object repeats a key. `path` locates the first such object (document order) in `document`, the
    value as a lenient reader (last key wins) would see it, so callers can name what is ambiguous."""

    def __init__(self, message: str, key: str, path: tuple[str | int, ...], document: Any) -> None:
        super().__init__(message)
        self.key = key
        self.path = path
        self.document = document


def format_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "top level"


def loads(raw: bytes | str, *, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one strict JSON document with the product's bounded parser. Raises StrictJSONError naming
    `source` and the problem: nesting deeper than `max_depth`, NaN/Infinity (or a number out of range),
    text that is not UTF-8, a repeated key (DuplicateKeyError), or not JSON."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    try:
        return json_bounded.loads(data, max_depth=max_depth)
    except json_bounded.JsonBoundsError as exc:
        if exc.kind == "duplicate-key" and exc.parts:
            key, where = str(exc.parts[-1]), format_path(exc.parts[:-1])
            raise DuplicateKeyError(
                f"{source}: {where} repeats the key {key!r} (readers disagree on which value counts)",
                key,
                exc.parts[:-1],
                exc.document,
            ) from None
        if exc.kind == "depth":
            raise StrictJSONError(f"{source}: nested more than the {max_depth} levels allowed") from None
        if exc.kind == "syntax":
            raise StrictJSONError(f"{source}: not a JSON document ({exc.message})") from None
        raise StrictJSONError(f"{source}: {json_bounded.verdict(exc)} ({exc})") from None
