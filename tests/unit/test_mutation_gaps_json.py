"""Exact bounds and messages of the bounded JSON reader, found by mutation testing (issue 21, group `parsing`).

Each test pins one behaviour a one-line bug would change: the limit itself (64 levels, 20 digits, 40
characters), how the depth scan treats escapes inside strings and stray closers, the path a long key is
shown by, which errors carry the parsed document, and the field a problem names.
"""

from __future__ import annotations

import json

import pytest

from gatekeeper import json_bounded
from gatekeeper.json_bounded import JsonBoundsError, as_problem, field_of, key_path, loads, verdict


def refused(text: str) -> JsonBoundsError:
    with pytest.raises(JsonBoundsError) as caught:
        loads(text)
    return caught.value


def test_the_depth_limit_is_exactly_64_levels():
    assert loads("[" * 64 + "]" * 64) is not None
    assert refused("[" * 65 + "]" * 65).kind == "depth"
    assert json_bounded.MAX_DEPTH == 64


def test_closed_siblings_give_their_depth_back_one_level_each():
    # depth 2 at most, however many siblings: a closer that did not give its level back would refuse this
    assert loads("[" + "[]," * 80 + "[]]") == [[]] * 81
    # one sibling closed, then 64 more levels: 65 deep in total, refused
    assert refused("[[]," + "[" * 64 + "]" * 64 + "]").kind == "depth"
    # one level back per closer, not two: [[[]] leaves depth 1 open, 64 more make 65
    assert refused("[[[]]," + "[" * 64 + "]" * 64 + "]").kind == "depth"
    assert loads("[[[]]," + "[" * 63 + "]" * 63 + "]") is not None


def test_a_stray_closer_neither_buys_nor_costs_room():
    assert refused("]" + "[" * 64 + "]" * 64).kind == "syntax"  # 64 levels after it: only the syntax is wrong
    assert refused("]" + "[" * 65 + "]" * 65).kind == "depth"  # 65 levels after it: still too deep


def test_brackets_inside_strings_after_an_escaped_quote_do_not_count():
    text = '["\\"' + "[" * 80 + '"]'
    assert loads(text) == ['"' + "[" * 80]


def test_an_escaped_backslash_ends_at_the_next_character_so_the_closing_quote_counts():
    # "\\" is one backslash; the quote right after it closes the string, so the nesting after it counts
    assert refused('["\\\\",' + "[" * 64 + "]" * 64 + "]").kind == "depth"
    assert refused('["\\\\x",' + "[" * 64 + "]" * 64 + "]").kind == "depth"


def test_scanning_goes_on_after_the_first_escape():
    assert refused('["\\n", "\\t",' + "[" * 64 + "]" * 64 + "]").kind == "depth"


def test_integers_of_20_digits_are_read_and_21_refused_the_sign_not_counted():
    assert loads("1" * 20) == int("1" * 20)
    assert loads("-" + "1" * 20) == -int("1" * 20)
    error = refused("1" * 21)
    assert error.kind == "number"
    assert error.message == "integer with 21 digits (the limit is 20)"


def test_numbers_written_with_40_characters_are_read_and_41_refused():
    forty = "1." + "1" * 38
    assert len(forty) == 40 and loads(forty) == float(forty)
    error = refused(forty + "1")
    assert error.kind == "number"
    assert error.message == "number written with 41 characters (the limit is 40)"


def test_an_out_of_range_number_is_named_by_its_first_20_characters():
    text = "1.00000000000000000000e999"
    assert refused(text).message == f"number {text[:20]} is out of range"
    assert refused("1e999").message == "number 1e999 is out of range"


def test_a_key_of_64_characters_is_shown_whole_and_a_longer_one_cut_to_63_and_an_ellipsis():
    assert key_path("$", "k" * 64) == "$." + "k" * 64
    assert key_path("$", "k" * 65) == "$[" + json.dumps("k" * 63 + "…") + "]"
    assert key_path("$", "a b") == '$["a b"]'


def test_only_a_repeated_key_carries_the_parsed_document():
    duplicate = refused('{"a": 1, "a": 2}')
    assert duplicate.kind == "duplicate-key" and duplicate.document == {"a": 2}
    assert refused('{"a": NaN}').document is None


def test_the_verdict_tells_syntax_from_bounds():
    assert verdict(refused("{")) == "not valid JSON"
    assert verdict(refused("1" * 21)) == "outside the accepted JSON bounds"


def test_the_field_drops_the_root_of_the_path():
    assert field_of(refused('{"a": [1e999]}'), "body") == "a[0]"
    assert field_of(refused('[{"a b": 1e999}]'), "body") == '[0]["a b"]'
    assert field_of(refused("1e999"), "body") == "body"
    assert as_problem(refused('{"x": {"y": 1e999}}')).field == "x.y"


def test_a_position_is_shown_only_when_there_is_one():
    assert str(JsonBoundsError("syntax", "$", "bad", line=3, column=4)) == "$: bad at line 3, column 4"
    assert str(JsonBoundsError("syntax", "$", "bad")) == "$: bad"
    assert str(JsonBoundsError("syntax", "$", "bad", line=1, column=1)) == "$: bad at line 1, column 1"


def test_limits_are_keyword_only():
    with pytest.raises(TypeError):
        loads("[]", 5)  # type: ignore[misc]
    with pytest.raises(TypeError):
        json_bounded.loads_object("{}", 5)  # type: ignore[misc]
    assert loads("[[1]]", max_depth=2) == [[1]]
    with pytest.raises(JsonBoundsError):
        loads("[[[1]]]", max_depth=2)
