"""Property tests for the one bounded JSON/YAML reader: within the bounds documents round-trip, beyond them
the specific JsonBoundsError comes back, and nothing else (RecursionError, ValueError from `int`) ever does."""

from __future__ import annotations

import contextlib
import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.http import status_of
from gatekeeper import json_bounded, yaml_bounded
from gatekeeper.json_bounded import MAX_DEPTH, MAX_INT_DIGITS, JsonBoundsError

BOUNDED = settings(derandomize=True, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**19) + 1, max_value=10**19 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
documents = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=30
)


def nested(depth: int, innermost: str = "1") -> str:
    return (
        "".join('{"k":' if i % 2 else "[" for i in range(depth))
        + innermost
        + "".join("}" if i % 2 else "]" for i in reversed(range(depth)))
    )


@BOUNDED
@given(documents)
def test_documents_within_the_bounds_round_trip(document):
    assert json_bounded.loads(json.dumps(document)) == document
    assert json_bounded.loads(json.dumps(document, ensure_ascii=False).encode()) == document


@BOUNDED
@given(st.integers(min_value=1, max_value=MAX_DEPTH))
def test_nesting_up_to_the_limit_is_read(depth):
    assert json_bounded.loads(nested(depth)) is not None


@BOUNDED
@given(st.integers(min_value=MAX_DEPTH + 1, max_value=20_000), st.sampled_from(["1", '"x"', "[", '"\\"]"']))
def test_nesting_beyond_the_limit_is_a_depth_error_never_recursion(depth, innermost):
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads(nested(depth, innermost))
    assert caught.value.kind == "depth"


def test_stray_closers_do_not_buy_room_for_deeper_nesting():
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads("]" * 5000 + "[" * 3000)
    assert caught.value.kind == "depth"


@BOUNDED
@given(st.integers(min_value=1, max_value=100))
def test_brackets_inside_strings_do_not_count_as_depth(count):
    document = {"s": "[" * (MAX_DEPTH + count) + '\\"{' * count}
    assert json_bounded.loads(json.dumps(document)) == document


@BOUNDED
@given(st.integers(min_value=MAX_INT_DIGITS + 1, max_value=6_000), st.booleans(), st.sampled_from(["", "a", "a.b"]))
def test_integers_beyond_the_digit_limit_name_their_path(digits, negative, key):
    number = ("-" if negative else "") + "9" * digits
    body = f'{{"{key}": [0, {number}]}}' if key else f"[{number}]"
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads(body)
    assert caught.value.kind == "number"
    assert caught.value.path == (f'$["{key}"][1]' if "." in key else f"$.{key}[1]" if key else "$[0]")


@BOUNDED
@given(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1." + "0" * 50]))
def test_numbers_a_peer_cannot_read_back_are_refused(number):
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads(f'{{"x": {number}}}')
    assert caught.value.kind in {"number", "constant"} and caught.value.path == "$.x"


@BOUNDED
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 9), min_size=1, max_size=5), st.data())
def test_a_repeated_key_is_refused_wherever_it_is(mapping, data):
    key = data.draw(st.sampled_from(sorted(mapping)))
    members = [f"{json.dumps(k)}: {v}" for k, v in mapping.items()] + [f"{json.dumps(key)}: 0"]
    body = '{"outer": [{' + ", ".join(members) + "}]}"
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads(body)
    assert caught.value.kind == "duplicate-key" and caught.value.path.startswith("$.outer[0]")


@BOUNDED
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_give_a_value_or_the_specific_error(data):
    try:
        json_bounded.loads(data)
    except JsonBoundsError as exc:
        assert exc.kind in {"syntax", "depth", "number", "constant", "duplicate-key", "string"}


def test_problems_name_the_field():
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads(b'{"deployment": {"creator": {"id": ' + b"1" * 5000 + b"}}}")
    problem = json_bounded.as_problem(caught.value)
    assert (status_of(problem), problem.code, problem.field) == (400, "json-out-of-bounds", "deployment.creator.id")
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads_object(b"[]")
    assert json_bounded.as_problem(caught.value, "message").code == "malformed-json"


# -- YAML --------------------------------------------------------------------------------------------------


@BOUNDED
@given(documents)
def test_yaml_within_the_bounds_round_trips(document):
    finite = json.loads(json.dumps(document))  # YAML has no -0.0 vs 0.0 distinction issues here
    assert yaml_bounded.load_yaml(yaml.safe_dump(finite)) == finite


@settings(derandomize=True, max_examples=20, deadline=None)
@given(st.integers(min_value=MAX_DEPTH + 1, max_value=5_000))
def test_yaml_nesting_beyond_the_limit_is_a_depth_error(depth):
    with pytest.raises(JsonBoundsError) as caught:
        yaml_bounded.load_yaml("a: " + "[" * depth + "]" * depth)
    assert caught.value.kind == "depth"


@BOUNDED
@given(st.integers(min_value=MAX_INT_DIGITS + 1, max_value=6_000))
def test_yaml_integers_beyond_the_digit_limit_are_refused(digits):
    with pytest.raises(JsonBoundsError) as caught:
        yaml_bounded.load_yaml(f"tenants:\n  - count: {'7' * digits}\n")
    assert caught.value.kind == "number"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_yaml_non_finite_numbers_are_refused(value):
    with pytest.raises(JsonBoundsError) as caught:
        yaml_bounded.load_yaml(f"x: {value}\n")
    assert caught.value.kind == "number" and caught.value.path == "$.x"


def test_yaml_alias_bombs_and_repeated_keys_are_refused():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    with pytest.raises(JsonBoundsError) as caught:
        yaml_bounded.load_yaml(bomb)
    assert caught.value.kind == "yaml-size"
    with pytest.raises(JsonBoundsError) as caught:
        yaml_bounded.load_yaml("tenants:\n  - tenant_id: a\n    tenant_id: b\n")
    assert caught.value.kind == "duplicate-key" and caught.value.path.endswith("tenant_id")
    assert yaml_bounded.load_yaml("a: &a [1, 2]\nb: *a\n") == {"a": [1, 2], "b": [1, 2]}


@BOUNDED
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_gives_a_value_or_the_specific_error(source):
    try:
        value = yaml_bounded.load_yaml(source)
    except JsonBoundsError:
        return
    assert not (isinstance(value, float) and not math.isfinite(value))


# -- the C-speed passes (`_structure`) and the skipped walk: the same outcome as scan-then-walk -------------


def outcome(data: str | bytes, max_depth: int = MAX_DEPTH) -> tuple:
    try:
        return ("value", json_bounded.loads(data, max_depth=max_depth))
    except JsonBoundsError as exc:
        return ("error", exc.kind, exc.path, str(exc), exc.parts)


def exact_outcome(data: str | bytes, monkeypatch: pytest.MonkeyPatch, max_depth: int = MAX_DEPTH) -> tuple:
    """What the reader says with the passes unsure of everything: the exact scan, the parser, the walk."""
    with monkeypatch.context() as patched:
        patched.setattr(json_bounded, "_structure", lambda raw, max_depth: (False, True))
        return outcome(data, max_depth)


FRAGMENTS = st.sampled_from(
    [
        "[", "]", "{", "}", '"', "\\", '\\"', "\\\\", '"a"', '"[{"', '"]}"', ":", ",", " ", "1", "-0", "1.5",
        '"k":', "\\ud800", "\\uDC00", "\\ud83d\\ude00", "\\u00e9", "NaN", "1e999", "9" * 25, "é", "null",
    ]
)  # fmt: skip


PASSES = settings(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@settings(PASSES, max_examples=300)
@given(
    source=st.lists(FRAGMENTS, max_size=40).map("".join),
    as_bytes=st.booleans(),
    max_depth=st.sampled_from([0, 1, 2, 3, MAX_DEPTH]),
)
def test_the_passes_never_change_what_hostile_text_gives(source, as_bytes, max_depth, monkeypatch):
    data = source.encode("utf-8", "surrogatepass") if as_bytes else source
    assert outcome(data, max_depth) == exact_outcome(data, monkeypatch, max_depth)


def test_text_the_parser_refuses_is_scanned_exactly_so_too_deep_still_comes_first():
    """A backslash outside a string is no escape for the scan (the passes drop it with the quote after it,
    and so see one string to the end): the scan finds the nesting, and depth is reported before syntax."""
    body = '\\""' + "[" * (MAX_DEPTH + 1)
    assert json_bounded._structure(body.encode(), MAX_DEPTH)[0] is True
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads(body)
    assert caught.value.kind == "depth"


@settings(PASSES, max_examples=150)
@given(
    document=documents,
    depth=st.integers(min_value=MAX_DEPTH - 3, max_value=MAX_DEPTH + 2),
    inside=st.sampled_from(FRAGMENTS.elements),
)
def test_the_passes_never_change_what_a_document_near_the_depth_limit_gives(document, depth, inside, monkeypatch):
    """Valid JSON around the bound, with brackets, quotes and escapes inside its strings."""
    body = nested(depth, json.dumps([document, inside, {"s": inside + "\\"}]))
    assert outcome(body) == exact_outcome(body, monkeypatch)
    assert outcome(body.encode()) == exact_outcome(body.encode(), monkeypatch)


@pytest.mark.parametrize(
    ("raw", "verdict"),
    [
        (b'{"a": "[[[", "b": ["\\"]]]"]}', (True, False)),  # brackets and an escaped quote inside strings
        (nested(MAX_DEPTH).encode(), (True, False)),
        (nested(MAX_DEPTH + 1).encode(), (False, False)),
        # an escaped backslash closes its string: the brackets after it count
        (b'["\\\\", ' + nested(MAX_DEPTH).encode() + b"]", (False, False)),
        (b'["\\\\\\"", ' + nested(MAX_DEPTH - 1).encode() + b"]", (True, False)),
        (b'["\\ud800"]', (True, True)),
        (b'["\\uDFFF"]', (True, True)),
        (b'["\\ud83d\\ude00"]', (True, True)),  # a pair: the walk looks, and finds nothing
        (b'["\\u00e9", "\\uD7FF", "\\ue000"]', (True, False)),
        (b'["\\\\ud800"]', (True, False)),  # an escaped backslash, then plain text
        (b"][", (False, False)),
        (b"[[]", (False, False)),
        (b'"[[[', (True, False)),  # an unclosed string runs to the end, as the scan reads it
        (b'["' + b"\\n" * json_bounded.MAX_ESCAPES_SCANNED + b'"]', (True, False)),
        (b'["' + b"\\n" * (json_bounded.MAX_ESCAPES_SCANNED + 1) + b'"]', (False, True)),
    ],
)
def test_the_passes_clear_exactly_what_they_can_read(raw, verdict):
    assert json_bounded._structure(raw, MAX_DEPTH) == verdict


def test_a_zero_depth_bound_clears_only_a_scalar():
    assert json_bounded._structure(b'"[]"', 0) == (True, False)
    assert json_bounded._structure(b"[]", 0) == (False, False)


@pytest.mark.parametrize(
    ("body", "walked"),
    [
        ('{"a": [1, -99999999999999999999, 1.5, "\\n\\u00e9", "[{\\"", "\\\\"]}', False),
        ('{"a": "\\ud83d\\ude00"}', True),
        ('{"a": 1, "a": 2}', True),
        ('{"a": NaN}', True),
        ('{"a": 1e999}', True),
        ('{"a": 1.' + "0" * 50 + "}", True),
        ('{"a": ' + "9" * (MAX_INT_DIGITS + 1) + "}", True),
        ('{"a": "\\ud800"}', True),
    ],
)
def test_the_walk_runs_only_when_something_was_marked_or_a_surrogate_may_hide(body, walked, monkeypatch):
    calls = []
    original = json_bounded._check
    monkeypatch.setattr(json_bounded, "_check", lambda *args: calls.append(args) or original(*args))
    with contextlib.suppress(JsonBoundsError):
        json_bounded.loads(body)
    assert bool(calls) is walked


def test_a_lone_surrogate_in_text_is_walked_and_refused():
    with pytest.raises(JsonBoundsError) as caught:
        json_bounded.loads('{"a": "x\ud800"}')
    assert (caught.value.kind, caught.value.path) == ("string", "$.a")
    assert json_bounded.loads('{"a": "é\U0001f600"}') == {"a": "é\U0001f600"}


def test_the_first_repeated_key_in_document_order_is_named():
    for body, key in (('{"a": 1, "b": 2, "a": 3, "b": 4}', "a"), ('{"b": 1, "a": 2, "a": 3, "b": 4}', "a")):
        with pytest.raises(JsonBoundsError) as caught:
            json_bounded.loads(body)
        assert caught.value.path == f"$.{key}" and caught.value.document == {"a": 3, "b": 4}


def test_a_signed_integer_at_the_digit_limit_is_read():
    assert json_bounded.loads("[-" + "9" * MAX_INT_DIGITS + "]") == [-int("9" * MAX_INT_DIGITS)]


def test_body_object_reads_a_small_request_body_or_names_what_is_wrong():
    """The person routes' body (a vote, a hold, a rollback): 413 just over the limit and not at it, the
    bounds' own problem for a repeated key, `body` named for anything that is not one JSON object, and an
    empty body read as `{}` only where the route says so."""
    from gatekeeper.errors import InputTooLarge, InvalidInput, MalformedInput

    at_limit = b'{"a":"' + b"x" * 10 + b'"}'
    assert json_bounded.body_object(at_limit, max_bytes=len(at_limit)) == {"a": "x" * 10}
    with pytest.raises(InputTooLarge) as big:
        json_bounded.body_object(at_limit, max_bytes=len(at_limit) - 1)
    assert big.value.code == "body-too-large" and big.value.detail == f"At most {len(at_limit) - 1} bytes."

    with pytest.raises(MalformedInput) as twice:
        json_bounded.body_object(b'{"a":1,"a":2}', max_bytes=100)
    assert twice.value.code == "duplicate-key" and twice.value.field == "a"

    for body in (b"", b"[1]", b"null", b"{", b"not json"):
        with pytest.raises(InvalidInput) as wrong:
            json_bounded.body_object(body, max_bytes=100)
        assert type(wrong.value) is InvalidInput
        assert (wrong.value.field, wrong.value.detail) == ("body", "the body must be a JSON object")
    assert json_bounded.body_object(b"", max_bytes=100, empty_is_object=True) == {}
    with pytest.raises(InvalidInput):
        json_bounded.body_object(b"[]", max_bytes=100, empty_is_object=True)
