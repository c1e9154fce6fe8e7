"""Property tests for the one bounded JSON/YAML reader: within the bounds documents round-trip, beyond them
the specific JsonBoundsError comes back, and nothing else (RecursionError, ValueError from `int`) ever does."""

from __future__ import annotations

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
