"""Valid instances of a vendor's JSON schema (Draft 7), built from the schema itself, for conformance tests.

Why: our own fixtures only show the payloads we thought of. A vendor's published schema says what may
arrive (nullable fields, empty strings, absent optional objects, every enum value), so the ingestion routes
are tested against instances derived from it:

- `minimal()`: only `required` properties; a nullable value `null`; an enum its first value; strings,
  integers and arrays the smallest that satisfy their format and `min*` constraints.
- `nulls_and_empties()`: every optional property present too; nullable ones `null`, arrays empty.
- `strategy()`: a hypothesis strategy varying optional presence, enum values, `oneOf`/`anyOf` branches,
  types of multi-typed values and string contents (unicode, separators, long but bounded).

Every instance is validated with jsonschema (with format checks for the formats the schemas use) before it
is returned, so a generator bug fails as `GeneratorBug`, never as a product bug. `$ref`s resolve through a
`referencing` registry of the schema files' `$id`s (octokit/webhooks uses whole-file relative refs).
Written by hand rather than with hypothesis-jsonschema: that library resolves `$ref`s only inside one
document and would need the GitHub schemas inlined (they are cyclic through `common/`), and it would be a
new dependency for what is about 300 lines here.
"""

from __future__ import annotations

import calendar
import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from jsonschema import Draft7Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

# Integers as the vendors send them: ids are signed 64-bit at most (JSON has no bound, the JSON reader of the
# routes refuses longer numbers on purpose: docs/security.md, "Bounded input").
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
LONG_TEXT = 1200  # "long but bounded": well past any display limit, well under the body limit
FREE_DEPTH = 3  # below this many nested objects the strategy varies optional properties; deeper, minimal
MAX_REQUIRED_DEPTH = 40  # a chain of required objects deeper than this is a cycle the schema cannot satisfy


class GeneratorBug(AssertionError):
    """An instance the generator built is not valid for its schema: fix the generator, not the product."""


# -- format checks (jsonschema ships none for these three without optional packages) -------------------

_PCT = r"%[0-9A-Fa-f]{2}"
_URI = re.compile(
    rf"^[A-Za-z][A-Za-z0-9+.\-]*:(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?\[\]]|{_PCT})*"
    rf"(?:#(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|{_PCT})*)?$"
)
_DATE_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$")
_VARCHAR = rf"(?:[A-Za-z0-9_]|{_PCT})"
_VARSPEC = rf"{_VARCHAR}(?:\.?{_VARCHAR})*(?::[1-9]\d{{0,3}}|\*)?"
_URI_TEMPLATE = re.compile(
    rf"^(?:[^\x00-\x20\"'%<>\\^`{{|}}\x7f]|{_PCT}|\{{[+#./;?&=,!@|]?{_VARSPEC}(?:,{_VARSPEC})*\}})*$"
)


def _is_uri(value: object) -> bool:
    """RFC 3986 `URI` (absolute, ASCII; a fragment allowed)."""
    return not isinstance(value, str) or bool(_URI.match(value))


def _is_date_time(value: object) -> bool:
    """RFC 3339 `date-time`, with the calendar's days per month and hour/minute/offset ranges."""
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.match(value)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    offset_hours, offset_minutes = (int(g) for g in match.groups()[7:9]) if match.group(7) else (0, 0)
    return (
        1 <= month <= 12
        and 1 <= day <= calendar.monthrange(max(year, 1), month)[1]
        and hour <= 23
        and minute <= 59
        and second <= 60
        and offset_hours <= 23
        and offset_minutes <= 59
    )


def _is_uri_template(value: object) -> bool:
    """RFC 6570 URI template: literals and `{op var,var:len,var*}` expressions."""
    return not isinstance(value, str) or bool(_URI_TEMPLATE.match(value))


FORMATS = FormatChecker()
FORMATS.checks("uri")(_is_uri)
FORMATS.checks("date-time")(_is_date_time)
FORMATS.checks("uri-template")(_is_uri_template)


# -- the schema, its references and its validator ------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    """A subschema and the resolver of the document it sits in (relative `$ref`s resolve against it)."""

    schema: Mapping[str, Any]
    resolver: Any  # a `referencing` Resolver (its class is not exported)


def load(path: Path, *others: Path, free_keys: Iterable[str] = ()) -> SchemaInstances:
    """The schema at `path`, with every schema in `others` (files or folders of `*.schema.json`) registered."""
    documents = [json.loads(path.read_text())]
    for other in others:
        files = sorted(other.glob("*.schema.json")) if other.is_dir() else [other]
        documents += [json.loads(f.read_text()) for f in files]
    return SchemaInstances(documents[0], documents[1:], free_keys=free_keys)


class SchemaInstances:
    """Deterministic and hypothesis-generated valid instances of one schema.

    `free_keys`: names the strategy also tries as keys of free-form objects (no declared properties, any
    extra allowed, such as a GitHub deployment's `payload`), with any JSON value; random names alone would
    never meet the keys a reader of such an object looks for.
    """

    def __init__(
        self, schema: Mapping[str, Any], referenced: Iterable[Mapping[str, Any]] = (), *, free_keys: Iterable[str] = ()
    ):
        self.free_keys = tuple(free_keys)
        resources = [
            (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT7)) for doc in (schema, *referenced)
        ]
        self.registry: Registry[Any] = Registry().with_resources(resources)
        self.schema = schema
        self.validator = Draft7Validator(schema, registry=self.registry, format_checker=FORMATS)
        self._root = _Node(schema, self.registry.resolver(base_uri=schema["$id"]))

    # -- checks ---------------------------------------------------------------------------------------

    def errors(self, instance: Any) -> list[str]:
        """What is wrong with `instance` for this schema, one line per error ([] when valid)."""
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message[:200]}"
            for e in self.validator.iter_errors(instance)
        ]

    def check(self, instance: Any) -> Any:
        """`instance` if the schema accepts it, else `GeneratorBug` naming the first errors."""
        problems = self.errors(instance)
        if problems:
            raise GeneratorBug(f"generated instance is not valid for {self.schema['$id']}: {problems[:5]}")
        return instance

    # -- deterministic variants ----------------------------------------------------------------------

    def minimal(self) -> Any:
        """Required properties only, nulls where allowed, first enum values, smallest strings and numbers."""
        return self.check(self._fixed(self._root, all_properties=False, depth=0))

    def nulls_and_empties(self) -> Any:
        """Every property present (past `FREE_DEPTH` only the required ones); nullable ones null, arrays empty."""
        return self.check(self._fixed(self._root, all_properties=True, depth=0))

    def _fixed(self, node: _Node, *, all_properties: bool, depth: int) -> Any:
        if depth > MAX_REQUIRED_DEPTH:
            raise GeneratorBug(f"required properties nest deeper than {MAX_REQUIRED_DEPTH}: a cycle in the schema")
        node = self._deref(node)
        schema = node.schema
        if "allOf" in schema:
            return self._fixed_object(self._merged(node), all_properties=all_properties, depth=depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            values = list(schema["enum"])
            return None if None in values and "null" in _types(schema) else values[0]
        for keyword in ("oneOf", "anyOf"):
            if keyword in schema:
                branches = [self._deref(_Node(b, node.resolver)) for b in schema[keyword]]
                nulls = [b for b in branches if _types(b.schema) == ["null"]]
                chosen = nulls[0] if nulls else branches[0]
                return self._fixed(chosen, all_properties=all_properties, depth=depth)
        types = _types(schema) or ["null"]  # an untyped value may be anything; null is the smallest
        if "null" in types:
            return None
        kind = types[0]
        if kind == "object":
            return self._fixed_object(_Object.of(node), all_properties=all_properties, depth=depth)
        if kind == "array":
            count = int(schema.get("minItems", 0))
            items = _Node(schema.get("items", {}), node.resolver)
            return [self._fixed(items, all_properties=False, depth=depth + 1) for _ in range(count)]
        return _smallest(kind, schema)

    def _fixed_object(self, shape: _Object, *, all_properties: bool, depth: int) -> dict[str, Any]:
        every = all_properties and depth < FREE_DEPTH
        names = list(shape.properties) if every else [n for n in shape.properties if n in shape.required]
        return {
            name: self._fixed(shape.properties[name], all_properties=all_properties, depth=depth + 1) for name in names
        }

    # -- hypothesis ----------------------------------------------------------------------------------

    def strategy(self) -> st.SearchStrategy[Any]:
        """Valid instances varying optional presence, enum values, branches, types and string contents."""
        return self._strategy(self._root, depth=0).map(self.check)

    def _strategy(self, node: _Node, *, depth: int) -> st.SearchStrategy[Any]:
        node = self._deref(node)
        schema = node.schema
        if depth > FREE_DEPTH:
            return st.just(self._fixed(node, all_properties=False, depth=0))
        if "allOf" in schema:
            return self._object_strategy(self._merged(node), depth=depth)
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(list(schema["enum"]))
        for keyword in ("oneOf", "anyOf"):
            if keyword in schema:
                return st.one_of([self._strategy(_Node(b, node.resolver), depth=depth) for b in schema[keyword]])
        types = _types(schema)
        if not types:
            return _any_json()
        return st.one_of([self._typed_strategy(kind, node, depth=depth) for kind in types])

    def _typed_strategy(self, kind: str, node: _Node, *, depth: int) -> st.SearchStrategy[Any]:
        schema = node.schema
        if kind == "object":
            return self._object_strategy(_Object.of(node), depth=depth)
        if kind == "array":
            items = self._strategy(_Node(schema.get("items", {}), node.resolver), depth=depth + 1)
            low = int(schema.get("minItems", 0))
            high = min(int(schema.get("maxItems", 2)), low + (2 if depth < FREE_DEPTH - 1 else 0))
            return st.lists(items, min_size=low, max_size=max(low, high))
        if kind == "string":
            return _string_strategy(schema)
        if kind == "integer":
            low = max(int(schema.get("minimum", INT_MIN)), INT_MIN)
            high = min(int(schema.get("maximum", INT_MAX)), INT_MAX)
            return st.one_of(st.integers(min_value=low, max_value=high), st.sampled_from(sorted({low, high})))
        if kind == "number":
            return st.one_of(
                st.floats(allow_nan=False, allow_infinity=False, min_value=schema.get("minimum")),
                st.integers(min_value=max(int(schema.get("minimum", -(2**53))), -(2**53)), max_value=2**53),
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        raise GeneratorBug(f"type {kind!r} is not supported")

    def _object_strategy(self, shape: _Object, *, depth: int) -> st.SearchStrategy[dict[str, Any]]:
        if shape.free_form:
            names = st.one_of(st.text(max_size=12), *([st.sampled_from(self.free_keys)] if self.free_keys else []))
            return st.dictionaries(names, _any_json(), max_size=3)
        required = {n: self._strategy(s, depth=depth + 1) for n, s in shape.properties.items() if n in shape.required}
        optional = {
            n: self._strategy(s, depth=depth + 1) for n, s in shape.properties.items() if n not in shape.required
        }
        fixed = st.fixed_dictionaries(required, optional=optional)
        if shape.additional is None:
            return fixed
        extra_names = st.text(alphabet=string.ascii_lowercase + "_-.", min_size=1, max_size=12).filter(
            lambda name: name not in shape.properties
        )
        extras = st.dictionaries(extra_names, self._strategy(shape.additional, depth=depth + 1), max_size=2)
        return st.builds(lambda known, more: {**more, **known}, fixed, extras)

    # -- references and composition ------------------------------------------------------------------

    def _deref(self, node: _Node) -> _Node:
        seen = 0
        while "$ref" in node.schema:  # Draft 7: a `$ref`'s siblings are ignored
            resolved = node.resolver.lookup(node.schema["$ref"])
            node = _Node(resolved.contents, resolved.resolver)
            seen += 1
            if seen > 20:
                raise GeneratorBug(f"$ref chain too long at {node.schema.get('$id')}")
        return node

    def _merged(self, node: _Node) -> _Object:
        """`allOf` of object schemas as one object: properties united (a later branch narrows an earlier
        one's property, as `workflow_run.completed` narrows `conclusion`), required united."""
        shapes = [_Object.of(self._deref(_Node(branch, node.resolver))) for branch in node.schema["allOf"]]
        properties: dict[str, _Node] = {}
        required: set[str] = set()
        for shape in shapes:
            properties.update(shape.properties)
            required |= shape.required
        return _Object(properties, frozenset(required), shapes[0].additional)


@dataclass(frozen=True)
class _Object:
    properties: Mapping[str, _Node]
    required: frozenset[str]
    additional: _Node | None  # the schema of extra properties, when the schema gives one
    free_form: bool = False  # no declared properties, and any extra property allowed

    @staticmethod
    def of(node: _Node) -> _Object:
        schema = node.schema
        if "allOf" in schema or "oneOf" in schema or "anyOf" in schema:
            raise GeneratorBug("composition inside an allOf branch is not supported")
        properties = {name: _Node(sub, node.resolver) for name, sub in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties")
        additional = _Node(extra, node.resolver) if isinstance(extra, Mapping) else None
        free_form = not properties and (extra is None or extra is True)
        return _Object(properties, frozenset(schema.get("required", ())), additional, free_form)


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if declared is None:
        if "properties" in schema or "required" in schema:
            return ["object"]
        return ["array"] if "items" in schema else []
    return [declared] if isinstance(declared, str) else list(declared)


_SMALLEST_BY_FORMAT = {"uri": "a:", "date-time": "0001-01-01T00:00:00Z", "uri-template": "", "email": "a@b"}


def _smallest(kind: str, schema: Mapping[str, Any]) -> Any:
    if kind == "string":
        fmt = str(schema.get("format", ""))
        if fmt and fmt not in _SMALLEST_BY_FORMAT:
            raise GeneratorBug(f"format {fmt!r} is not supported")
        text = _SMALLEST_BY_FORMAT.get(fmt, "")
        return text + "a" * max(0, int(schema.get("minLength", 0)) - len(text))
    if kind in ("integer", "number"):
        return int(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    raise GeneratorBug(f"type {kind!r} is not supported")


# -- strings ---------------------------------------------------------------------------------------------

# Texts that have broken parsers before: separators, path and ref shapes, markup, pipeline macros, combining
# and case-changing letters, line separators, a NUL, right-to-left marks.
SEPARATORS = (
    "",
    " ",
    "/",
    "\\",
    ":",
    "..",
    "a/b",
    "refs/heads/main",
    "refs/tags/v1.2.3",
    "refs/tags/",
    "\n",
    "\r\n",
    "\t",
    "\u2028",
    "\x00",
    "\u202e",
    "$(Environment.Name)",
    "<script>alert(1)</script>",
    "%2F%00",
    "e\u0301",
    "\u0130",
    "\U0001f680 deploy",
    "production",
    "Production ",
)


def _string_strategy(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    fmt = schema.get("format")
    low = int(schema.get("minLength", 0))
    high = int(schema.get("maxLength", LONG_TEXT))
    if fmt == "uri":
        text = _uri_strategy()
    elif fmt == "uri-template":
        text = st.builds(lambda uri, var: uri + var, _uri_strategy(), st.sampled_from(["", "{/id}", "{?q,page}"]))
    elif fmt == "date-time":
        text = _date_time_strategy()
    elif fmt is None:
        # Long texts repeat a short random unit: hypothesis pays per drawn choice, and a payload has hundreds
        # of strings, so drawing each long character would overrun its buffer.
        unit = st.text(min_size=1, max_size=6)
        long = st.builds(lambda part, times: (part * times)[:high], unit, st.integers(1, LONG_TEXT))
        text = st.one_of(st.text(max_size=24), st.sampled_from(SEPARATORS), long)
    else:
        raise GeneratorBug(f"format {fmt!r} is not supported")
    return text.filter(lambda value: low <= len(value) <= high)


_UNRESERVED = string.ascii_letters + string.digits + "-._~"


def _uri_strategy() -> st.SearchStrategy[str]:
    """Absolute URIs: https links on varied hosts and paths (percent-encoded unicode), other schemes too."""
    segment = st.text(alphabet=_UNRESERVED + "!$&()*+,;=:@", max_size=12)
    encoded = st.text(max_size=6).map(lambda t: "".join(f"%{b:02X}" for b in t.encode()))
    path = st.lists(st.one_of(segment, encoded), max_size=4).map(lambda parts: "/" + "/".join(parts))
    host = st.one_of(
        st.sampled_from(["github.com", "api.github.com", "ghe.example.com", "localhost", "127.0.0.1", "[::1]"]),
        st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=20).map(
            lambda label: label + ".example"
        ),
    )
    web = st.builds(lambda scheme, h, p: f"{scheme}://{h}{p}", st.sampled_from(["https", "http"]), host, path)
    odd = st.sampled_from(["a:", "javascript:alert(1)", "mailto:a@b.example", "urn:x:y", "git://h/r.git", "a:b#c"])
    return st.one_of(web, odd)


def _date_time_strategy() -> st.SearchStrategy[str]:
    zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12, minutes=30))])

    def render(moment: datetime, zulu: bool) -> str:
        text = moment.isoformat()
        return text.replace("+00:00", "Z") if zulu else text

    moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones)
    return st.builds(render, moments, st.booleans())


def _any_json() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=12))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
        max_leaves=6,
    )
