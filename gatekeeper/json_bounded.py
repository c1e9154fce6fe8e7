"""The one JSON (and YAML) reader for everything that comes from outside: routes, queue messages, CLI files.

Python's readers accept what no product needs and some of it crashes later: nesting thousands deep makes
`json.loads` raise RecursionError, an integer with 5,000 digits raises ValueError inside `int` (the 4,300
digit limit), `NaN`/`Infinity` and `1e999` are not JSON numbers a peer can read back, a lone surrogate
cannot be encoded as UTF-8 when the value is sealed or stored, and a duplicated key silently keeps the
last value (so two readers may see two different documents). Here every such input is refused with
`JsonBoundsError`, a ValueError naming the JSON path, before any of it reaches product code.

Depth is checked by a scan before parsing, so no recursion limit is ever relied on; numbers, constants,
duplicate keys and strings are marked while parsing and reported, with their path, by one walk after it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import yaml

from gatekeeper.errors import MalformedInput

MAX_DEPTH = 64  # arrays and objects inside each other; real payloads stay below 15
MAX_INT_DIGITS = 20  # a signed 64-bit integer has at most 19 digits; ids longer than that arrive as strings
MAX_NUMBER_CHARS = 40  # the text of a non-integer number (digits, point, exponent)
MAX_YAML_NODES = 100_000  # nodes after expanding aliases (a "billion laughs" document has billions)

_STRUCTURAL = re.compile(r'[\[\]{}"\\]')
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonBoundsError(ValueError):
    """Input outside what the product reads. `kind` is stable (`syntax`, `depth`, `number`, `constant`,
    `duplicate-key`, `string`, `yaml-size`), `path` names where (`$` is the whole document)."""

    def __init__(
        self,
        kind: str,
        path: str,
        message: str,
        line: int | None = None,
        column: int | None = None,
        *,
        parts: tuple[str | int, ...] = (),
        document: Any = None,
    ):
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"{path}: {message}{where}")
        self.kind = kind
        self.path = path
        self.message = message
        self.line = line  # 1-based, for YAML syntax errors
        self.column = column
        self.parts = parts  # the path as keys and indexes (JSON values only), for callers that map it
        self.document = document  # the parsed document, for a repeated key (so a caller can say what it affects)


class _Rejected:
    """A value refused while parsing; reported with its path by `_check` once the path is known."""

    __slots__ = ("kind", "message")

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message


class _DuplicateKeys(dict):
    """An object that repeated a key: kept (so the walk can still name the path) and then refused."""

    duplicate: str = ""


def _parse_int(text: str) -> int | _Rejected:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Rejected("number", f"integer with {digits} digits (the limit is {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float | _Rejected:
    if len(text) > MAX_NUMBER_CHARS:
        return _Rejected("number", f"number written with {len(text)} characters (the limit is {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        return _Rejected("number", f"number {text[:20]} is out of range")
    return value


def _parse_constant(text: str) -> _Rejected:
    return _Rejected("constant", f"{text} is not a JSON number")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            marked = _DuplicateKeys(pairs)
            marked.duplicate = key
            return marked
        result[key] = value
    return result


_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def _key_path(path: str, key: str) -> str:
    shown = "".join(ch if ch.isprintable() else "?" for ch in key)
    shown = shown if len(shown) <= 64 else shown[:63] + "…"
    return f"{path}.{shown}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", shown) else f"{path}[{json.dumps(shown)}]"


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than `max_depth` by scanning brackets outside strings, without recursion."""
    depth = 0
    in_string = False
    skip_to = -1
    for match in _STRUCTURAL.finditer(text):
        position = match.start()
        if position < skip_to:
            continue  # the character after a backslash
        char = match.group()
        if in_string:
            if char == "\\":
                skip_to = position + 2
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonBoundsError("depth", "$", f"nested deeper than {max_depth} levels (at character {position})")
        elif char in "]}":
            depth = max(depth - 1, 0)  # a stray closer cannot buy room for deeper nesting later


def _check(value: Any, path: str, parts: tuple[str | int, ...] = ()) -> None:
    """Find the first refused value (depth is already bounded, so recursion is safe here)."""
    if isinstance(value, _Rejected):
        raise JsonBoundsError(value.kind, path, value.message, parts=parts)
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise JsonBoundsError(
                "string", path, "string holds an unpaired surrogate (not encodable as UTF-8)", parts=parts
            )
        return
    if isinstance(value, _DuplicateKeys):
        raise JsonBoundsError(
            "duplicate-key",
            _key_path(path, value.duplicate),
            "key appears more than once",
            parts=(*parts, value.duplicate),
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if _SURROGATE.search(key):
                raise JsonBoundsError("string", path, "a key holds an unpaired surrogate", parts=parts)
            _check(item, _key_path(path, key), (*parts, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", (*parts, index))


def loads(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON within the product's bounds; raises JsonBoundsError (a ValueError) for anything else."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonBoundsError("syntax", "$", f"not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    check_depth(text, max_depth)
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise JsonBoundsError("syntax", "$", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    try:
        _check(value, "$")
    except JsonBoundsError as exc:
        if exc.kind == "duplicate-key":
            exc.document = value
        raise
    return value


def loads_object(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """`loads` for documents that must be a JSON object (every request body and queue message)."""
    value = loads(data, max_depth=max_depth)
    if not isinstance(value, dict):
        raise JsonBoundsError("syntax", "$", "expected a JSON object")
    return value


def verdict(error: JsonBoundsError) -> str:
    """A short phrase for messages: what was wrong with the document as a whole."""
    return "not valid JSON" if error.kind == "syntax" else "outside the accepted JSON bounds"


def field_of(error: JsonBoundsError, what: str) -> str:
    """The problem's `field`: the JSON path without the `$.` root, or `what` for the whole document."""
    if error.path == "$":
        return what
    return error.path[2:] if error.path.startswith("$.") else error.path[1:]


def as_problem(error: JsonBoundsError, what: str = "body") -> MalformedInput:
    """The malformed-input error every edge answers for JSON it will not read, naming the field."""
    if error.kind == "syntax":
        return MalformedInput(
            f"{what}: {error.message}", what, code="malformed-json", title="The body is not valid JSON"
        )
    field = field_of(error, what)
    if error.kind == "duplicate-key":
        return MalformedInput(
            f"{field}: {error.message}", field, code="duplicate-key", title="A JSON key appears more than once"
        )
    return MalformedInput(
        f"{field}: {error.message}",
        field,
        code="json-out-of-bounds",
        title="The JSON is outside the accepted bounds",
        extra={"limit": error.kind},
    )


# -- YAML ---------------------------------------------------------------------------------------------------

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
                    raise JsonBoundsError("duplicate-key", _key_path(top[5], key), "key appears more than once")
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
            _check_yaml_values(item, _key_path(path, str(key)), depth + 1)
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
