"""Bounded YAML for the files operators hand the CLI (tenants, policy): the same bounds as `json_bounded`.

Kept apart from the JSON reader so that no ingestion route imports PyYAML (cold start): only the CLI and the
policy loader read YAML.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import yaml

from gatekeeper.json_bounded import MAX_DEPTH, MAX_INT_DIGITS, JsonBoundsError, key_path

MAX_YAML_NODES = 100_000  # nodes after expanding aliases (a "billion laughs" document has billions)

_YAML_INT = re.compile(r"[-+]?(?:0x[0-9a-fA-F_]+|0o?[0-7_]+|0b[01_]+|[0-9][0-9_:]*)")


def _yaml_events(text: str, loader: type[yaml.SafeLoader]) -> Iterator[yaml.Event]:
    parser = loader(text)
    try:
        while parser.check_event():
            yield parser.get_event()
    finally:
        parser.dispose()


def check_yaml(text: str, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader, max_depth: int = MAX_DEPTH) -> None:
    """Refuse YAML beyond the bounds before composing it (the composer recurses, aliases expand): depth,
    expanded size (aliases count as what they stand for), over-long integers and repeated mapping keys."""
    nodes = 0
    anchors: dict[str, int] = {}
    # per open collection: [is_mapping, expecting_key, keys seen, anchor, node count at start, path]
    stack: list[list[Any]] = []

    def add(count: int, key: str | None) -> None:
        nonlocal nodes
        nodes += count
        if nodes > MAX_YAML_NODES:
            raise JsonBoundsError("yaml-size", "$", f"more than {MAX_YAML_NODES} nodes once aliases are expanded")
        if stack and stack[-1][0]:
            top = stack[-1]
            if top[1] and key is not None:
                if key in top[2]:
                    raise JsonBoundsError("duplicate-key", key_path(top[5], key), "key appears more than once")
                top[2].add(key)
            top[1] = not top[1]

    def path() -> str:
        return stack[-1][5] if stack else "$"

    try:
        for event in _yaml_events(text, loader):
            if isinstance(event, yaml.ScalarEvent):
                value = event.value
                if (
                    event.style is None
                    and _YAML_INT.fullmatch(value)
                    and sum(c.isalnum() for c in value) > (MAX_INT_DIGITS)
                ):
                    raise JsonBoundsError("number", path(), f"number with more than {MAX_INT_DIGITS} digits")
                if event.anchor:
                    anchors[event.anchor] = 1
                add(1, value)
            elif isinstance(event, yaml.AliasEvent):
                add(anchors.get(event.anchor or "", 1), None)
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                if len(stack) >= max_depth:
                    raise JsonBoundsError("depth", path(), f"nested deeper than {max_depth} levels")
                add(1, None)
                stack.append([isinstance(event, yaml.MappingStartEvent), True, set(), event.anchor, nodes, path()])
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                closed = stack.pop()
                if closed[3]:
                    anchors[closed[3]] = nodes - closed[4] + 1
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None


def _yaml_error(exc: yaml.YAMLError) -> JsonBoundsError:
    mark = getattr(exc, "problem_mark", None)
    problem = f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
    if mark is None:
        return JsonBoundsError("syntax", "$", problem)
    return JsonBoundsError("syntax", "$", problem, mark.line + 1, mark.column + 1)


def _check_yaml_values(value: Any, path: str, depth: int = 0) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise JsonBoundsError("number", path, f"{value} is not a finite number")
    if depth > MAX_DEPTH:  # only reachable through self-referencing aliases
        raise JsonBoundsError("depth", path, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_yaml_values(item, key_path(path, str(key)), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_yaml_values(item, f"{path}[{index}]", depth + 1)


def load_yaml(text: str, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """`yaml.load` with a safe loader, within the same bounds as `loads`; raises JsonBoundsError."""
    check_yaml(text, loader=loader)
    try:
        value = yaml.load(text, Loader=loader)  # noqa: S506 - always a SafeLoader (sub)class
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None
    except ValueError as exc:  # a scalar the constructor cannot build (e.g. a bad timestamp)
        raise JsonBoundsError("syntax", "$", f"not valid YAML: {exc}") from None
    _check_yaml_values(value, "$")
    return value
