"""Strict JSON reading for the audit verifier: one document, one meaning.

A bundle the verifier accepts must mean the same thing to every reader. Python's `json` keeps the last of
two equal keys where other readers keep the first, accepts NaN and Infinity (not JSON) and recurses
without a bound of its own, so an auditor's tool could show an `"actor"` the hash never covered. This
reader refuses all three. It is deliberately small, with one entry point (`loads`), so the product's
shared bounded parser can replace it without touching the callers.

Cost: duplicate keys are caught by an `object_pairs_hook` that builds the dict in C and only compares
lengths (about +20% on the parse of a 20,000-entry bundle); depth is bounded before parsing by a C-level
scan of the bracket bytes, and only a document whose brackets (strings included) nest too deep is scanned
again with its strings removed, so brackets inside strings never cause a false refusal.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 64  # a bundle nests 4 deep; anything near this bound is not a bundle
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_OPEN = frozenset(b"[{")


class StrictJSONError(ValueError):
    """Not a strict JSON document: the message names the source and the problem (bad input, exit 2)."""


class DuplicateKeyError(StrictJSONError):
    """An object repeats a key. `path` locates the first such object (document order) in `document`, the
    value as a lenient reader (last key wins) would see it, so callers can name what is ambiguous."""

    def __init__(self, message: str, key: str, path: tuple[str | int, ...], document: Any) -> None:
        super().__init__(message)
        self.key = key
        self.path = path
        self.document = document


def _depth(brackets: bytes) -> int:
    return max(itertools.accumulate(1 if b in _OPEN else -1 for b in brackets), default=0)


def nesting_depth(raw: bytes) -> int:
    """Deepest nesting of arrays and objects in `raw`, ignoring brackets inside strings."""
    brackets = raw.translate(None, _NOT_BRACKETS)
    if _depth(brackets) <= MAX_DEPTH:  # strings included: an upper bound, exact for ordinary documents
        return _depth(brackets)
    return _depth(_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large for a number (it would read as Infinity)")
    return value


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[Any, tuple[str | int, ...]]]:
    """Every object and array in document order, with its path."""
    stack = [(value, path)]
    while stack:
        node, where = stack.pop()
        yield node, where
        if type(node) is dict:
            children = [(v, (*where, k)) for k, v in node.items() if type(v) in (dict, list)]
        elif type(node) is list:
            children = [(v, (*where, i)) for i, v in enumerate(node) if type(v) in (dict, list)]
        else:
            continue
        stack.extend(reversed(children))


def format_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "top level"


def loads(raw: bytes | str, *, source: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one strict JSON document. Raises StrictJSONError naming `source` and the problem:
    nesting deeper than `max_depth`, NaN/Infinity (or a float literal too large, which would read as
    Infinity), text that is not UTF-8, a repeated key (DuplicateKeyError), or not JSON."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    depth = nesting_depth(data)
    if depth > max_depth:
        raise StrictJSONError(f"{source}: nested {depth} levels deep, more than the {max_depth} allowed")
    repeated: list[tuple[str, int]] = []  # (key, id of the object that repeats it)

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    repeated.append((key, id(obj)))
                    break
                seen.add(key)
        return obj

    try:
        text = data.decode("utf-8")  # RFC 8259: UTF-8 only (json would also guess UTF-16/32 and pass surrogates)
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        document = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise StrictJSONError(f"{source}: nested too deep to read") from None
    except ValueError as exc:
        raise StrictJSONError(f"{source}: not a JSON document ({exc})") from None
    if repeated:
        keys = {ident: key for key, ident in reversed(repeated)}
        for node, path in _walk(document, ()):
            if id(node) in keys and type(node) is dict:
                key = keys[id(node)]
                where = format_path(path)
                raise DuplicateKeyError(
                    f"{source}: {where} repeats the key {key!r} (readers disagree on which value counts)",
                    key,
                    path,
                    document,
                )
    return document
