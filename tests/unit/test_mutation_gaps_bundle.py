"""Gaps `make mutation MODULES=merkle` found in gatekeeper/audit/bundle.py (issue 21): the unsigned
`range.from/to` checks at their exact boundaries, the entry a repeated key is blamed on, damaged entries at
export time, the header's bounds, which key error message an auditor sees, and `verify_bundle`'s raise.

Bundles are built with the builders of tests/unit/test_audit_support.py (the product's own writer functions,
as an exporter would); expected sequence numbers and messages are written out by hand.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from gatekeeper.audit.bundle import (
    BundleFormatError,
    BundleRange,
    build_bundle,
    check_bundle,
    dumps,
    load_bundle,
    parse_header,
    range_problem,
    verify_bundle,
)
from gatekeeper.audit.records import format_time
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.audit.verify import VerificationError
from tests.unit.test_audit_support import T0, make_checkpoints, make_entries

EXPORTED_AT = "2026-03-02T00:00:00.000000Z"
HASH_HEX = "ab" * 32


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("key")).signer()


@pytest.fixture(scope="module")
def pem(signer) -> str:
    return signer.public_key_pem()


@pytest.fixture(scope="module")
def log(signer):
    """30 entries one minute apart from 09:00, checkpoints signed at sizes 10, 20 and 30."""
    entries = make_entries("contoso", 30)
    return entries, make_checkpoints("contoso", entries, signer, 10)


def export(log, pem, *, start_seq=0, end_seq=30, time_from=None, time_to=None, entries=None):
    all_entries, checkpoints = log
    return build_bundle(
        "contoso",
        all_entries if entries is None else entries,
        checkpoints,
        start_seq=start_seq,
        end_seq=end_seq,
        exported_at=EXPORTED_AT,
        time_from=time_from,
        time_to=time_to,
        public_keys=[pem],
    )


def check(bundle, pem):
    return check_bundle(json.loads(dumps(bundle)), public_key_pem=pem)


def at(seq: int) -> str:
    """The recording time make_entries gives entry `seq` (written out, not read back from the entries)."""
    return f"2026-03-01T{9 + seq // 60:02d}:{seq % 60:02d}:00.000000Z"


def test_entry_times_are_what_the_tests_assume(log):
    assert [e["at"] for e in log[0]] == [at(s) for s in range(30)]
    assert format_time(T0) == at(0)


# --- range.from / range.to at their exact boundaries -----------------------------------------------------


def test_range_ending_exactly_on_an_entry_next_to_a_checkpoint_verifies(log, pem):
    """`to` equal to entry 10's time includes entry 10 (the range is closed), and the checkpoint at size 10
    does not cover entry 10, so ending at the next checkpoint (20) is what the exporter does."""
    bundle = export(log, pem, end_seq=20, time_to=at(10))
    result = check(bundle, pem)
    assert result.ok, result.summary()
    assert range_problem(parse_header(bundle)) is None


def test_range_ending_before_a_checkpoint_that_covers_it_is_refused_with_the_bundles_last_seq(log, pem):
    bundle = export(log, pem, end_seq=20, time_to=at(9))
    result = check(bundle, pem)
    assert (result.ok, result.first_bad_seq) == (False, 10)
    assert result.problem == (
        f"the checkpoint at size 10 already covers the range up to {at(9)}, but the bundle goes on to seq 19"
    )


def test_range_of_one_instant_verifies(log, pem):
    """from == to is a valid range (one entry recorded at that instant), not a reversed one."""
    bundle = export(log, pem, start_seq=10, end_seq=20, time_from=at(10), time_to=at(10))
    result = check(bundle, pem)
    assert result.ok, result.summary()
    assert result.size == 20


def test_reversed_range_is_refused(log, pem):
    bundle = export(log, pem, start_seq=10, end_seq=20, time_from=at(11), time_to=at(10))
    result = check(bundle, pem)
    assert (result.ok, result.first_bad_seq) == (False, 10)
    assert result.problem == f"range.from {at(11)} is after range.to {at(10)}"


def test_first_entry_before_range_from_is_named_with_its_own_time_and_an_open_end(log, pem):
    bundle = export(log, pem, start_seq=12, time_from=at(13))
    result = check(bundle, pem)
    assert (result.ok, result.first_bad_seq) == (False, 12)
    assert result.problem == f"recorded at {at(12)}, outside the bundle's range {at(13)} .. now"


def test_entries_disagreeing_with_end_seq_name_the_first_missing_seq(log, pem):
    bundle = export(log, pem, start_seq=12, time_from=at(12))
    del bundle["entries"][15:]
    assert range_problem(parse_header(bundle)) == (
        27,
        "range.end_seq 30 disagrees with the entries (seq 12 onwards, 15 of them)",
    )


@pytest.mark.parametrize("bad_time", ["yesterday", "2026-03-01T09:15:00Z", 12345])
def test_an_entry_time_that_cannot_be_compared_is_named_by_its_seq(log, pem, bad_time):
    bundle = export(log, pem, start_seq=12, time_from=at(12))
    bundle["entries"][3]["at"] = bad_time
    assert range_problem(parse_header(bundle)) == (
        15,
        "field 'at' is not an RFC 3339 UTC time to compare with range.from/to",
    )


def test_an_unreadable_checkpoint_does_not_hide_the_ones_after_it(log, pem):
    """range_problem skips a checkpoint it cannot read (the verifier names it) and goes on checking."""
    bundle = export(log, pem, end_seq=20, time_to=at(5))
    bundle["checkpoints"].insert(0, {"note": "not a checkpoint"})
    problem = range_problem(parse_header(bundle))
    assert problem is not None and problem[0] == 10


def test_range_model_is_built_by_its_python_field_name():
    rng = BundleRange(from_=at(0), start_seq=0, end_seq=1)
    assert rng.from_ == at(0)
    assert BundleRange.model_validate({"from": at(1), "start_seq": 0, "end_seq": 1}).from_ == at(1)


# --- a repeated key: which entry it leaves unproven ------------------------------------------------------


def ambiguous(text: str):
    result = check_bundle(text.encode())
    assert not result.ok
    assert (result.size, result.entries_checked, result.checkpoints_checked) == (0, 0, 0)
    assert result.root == hashlib.sha256(b"").hexdigest()  # nothing proven: the empty tree's root
    return result


def test_repeated_key_in_an_entry_of_a_range_bundle_names_that_entry(log, pem):
    text = dumps(export(log, pem, start_seq=12, time_from=at(12))).decode()
    assert text.count('"subject":"github:contoso/web:run-2:production"') == 3  # seq 12, 13, 14
    first = text.index('"subject":"github:contoso/web:run-2:production"')
    second = text.index('"subject":', first + 1)
    text = text[:second] + '"subject":"x",' + text[second:]  # seq 13 says subject twice
    result = ambiguous(text)
    assert result.first_bad_seq == 13
    assert result.problem == "entry repeats the key 'subject': the JSON is ambiguous (readers disagree on its value)"


def test_repeated_key_inside_an_entry_field_names_the_field(log, pem):
    text = dumps(export(log, pem, start_seq=12, time_from=at(12))).decode()
    text = text.replace('"data":"gk1.test.sealed-contoso-13"', '"data":{"k":1,"k":2}')
    result = ambiguous(text)
    assert result.first_bad_seq == 13
    assert result.problem.startswith("entry field 'data' repeats the key 'k': ")


@pytest.mark.parametrize(
    ("text", "seq", "where"),
    [
        ('{"tenant":"a","tenant":"b"}', 0, "top level"),  # no range at all: blame seq 0
        ('{"range":{"start_seq":7},"tenant":"a","tenant":"b"}', 7, "top level"),
        ('{"range":{"start_seq":-5},"entries":[{"k":1,"k":2}]}', 0, "entry"),  # a negative start is not believed
        ('{"range":{"start_seq":"12"},"entries":[{},{"k":1,"k":2}]}', 1, "entry"),  # nor a string
        ('{"range":{"start_seq":true},"entries":[{},{"k":1,"k":2}]}', 1, "entry"),  # nor a bool
        ('{"range":[12],"entries":[{},{"k":1,"k":2}]}', 1, "entry"),  # range not an object
        ('{"entries":{"k":1,"k":2}}', 0, "entries"),  # entries not a list
        ('[{"k":1,"k":2}]', 0, "[0]"),  # not an object at all
    ],
)
def test_repeated_key_in_a_malformed_header_is_blamed_without_trusting_the_header(text, seq, where):
    result = ambiguous(text)
    assert result.first_bad_seq == seq
    assert result.problem.startswith(f"{where} repeats the key ")


# --- damaged entries at export time -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda e: e.pop("actor"), id="missing-field"),  # KeyError in the canonical encoding
        pytest.param(lambda e: e.update(subject=7), id="wrong-type"),  # TypeError
        pytest.param(lambda e: e.update(actor="user:a\x1fuser:b"), id="separator"),  # ValueError
        pytest.param(lambda e: e.update(data=None), id="null"),  # TypeError
    ],
)
def test_a_damaged_stored_entry_is_exported_as_is_and_named_by_the_verifier(log, pem, damage):
    """The exporter does not stop at a damaged entry: it ships it as stored, with a leaf no honest entry has,
    so the auditor's verifier names it."""
    entries = [dict(e) for e in log[0]]
    damage(entries[14])
    bundle = export(log, pem, entries=entries)
    assert bundle["entries"][14] == entries[14]
    assert len(bundle["entries"]) == 30 and bundle["range"]["end_seq"] == 30
    result = check(bundle, pem)
    assert (result.ok, result.first_bad_seq) == (False, 14)


def test_build_bundle_refuses_a_negative_or_reversed_range(log, pem):
    with pytest.raises(ValueError, match=r"range: start_seq -1 must not exceed end_seq 5"):
        export(log, pem, start_seq=-1, end_seq=5)
    with pytest.raises(ValueError, match="range: start_seq 6 must not exceed end_seq 5"):
        export(log, pem, start_seq=6, end_seq=5)


def test_build_bundle_takes_the_range_by_keyword_only(log):
    """Keyword-only, so a caller cannot swap start_seq and end_seq by position."""
    entries, checkpoints = log
    with pytest.raises(TypeError):
        build_bundle("contoso", entries, checkpoints, 0, 30, EXPORTED_AT)  # type: ignore[misc]


def test_bundle_file_is_utf8_not_ascii_escaped():
    raw = dumps({"subject": "Zürich ✓"})
    assert raw == '{"subject":"Zürich ✓"}'.encode()


# --- the header's bounds ----------------------------------------------------------------------------------


def test_consistency_sizes_may_be_zero_but_not_negative(log, pem):
    bundle = export(log, pem)
    bundle["consistency"] = [{"from_size": 0, "to_size": 0, "proof": []}]
    assert parse_header(bundle).consistency[0].from_size == 0
    for field in ("from_size", "to_size"):
        bundle["consistency"] = [{"from_size": 0, "to_size": 0, "proof": [], field: -1}]
        with pytest.raises(BundleFormatError, match=rf"field consistency\.0\.{field}: "):
            parse_header(bundle)


def test_consistency_proof_of_128_hashes_is_read_and_129_refused(log, pem):
    bundle = export(log, pem)
    bundle["consistency"] = [{"from_size": 1, "to_size": 2, "proof": [HASH_HEX] * 128}]
    assert len(parse_header(bundle).consistency[0].proof) == 128
    bundle["consistency"][0]["proof"].append(HASH_HEX)
    with pytest.raises(BundleFormatError, match=r"field consistency\.0\.proof: "):
        parse_header(bundle)


def test_frontier_of_64_hashes_is_read_and_65_refused(log, pem):
    bundle = export(log, pem)
    bundle["frontier"] = [HASH_HEX] * 64
    assert len(parse_header(bundle).frontier) == 64
    bundle["frontier"].append(HASH_HEX)
    with pytest.raises(BundleFormatError, match="field frontier: "):
        parse_header(bundle)


def test_the_first_invalid_header_field_is_named(log, pem):
    bundle = export(log, pem)
    bundle["format"], bundle["tenant"] = "other/9", "Not A Tenant"
    with pytest.raises(BundleFormatError, match=r"^field format: "):
        parse_header(bundle)


# --- keys and verify_bundle -------------------------------------------------------------------------------


def test_an_unreadable_trusted_key_is_named_as_the_auditors_key_not_the_bundles(log, pem):
    bundle = export(log, pem)
    with pytest.raises(BundleFormatError) as raised:
        check_bundle(bundle, public_key_pem="not a key")
    assert str(raised.value) == "public key: no '-----BEGIN PUBLIC KEY-----' block found"


def test_an_unreadable_embedded_key_is_named_as_the_bundles_field(log, pem):
    bundle = export(log, pem)
    bundle["public_keys"] = ["not a key"]
    with pytest.raises(BundleFormatError) as raised:
        check_bundle(bundle)
    assert str(raised.value) == "field public_keys: public key: no '-----BEGIN PUBLIC KEY-----' block found"


def test_verify_bundle_returns_the_verified_result_and_raises_on_the_first_bad_entry(log, pem):
    bundle = json.loads(dumps(export(log, pem)))
    result = verify_bundle(bundle, public_key_pem=pem)
    assert result.ok and result.size == 30
    bundle["entries"][7]["kind"] = "approval_decided"
    with pytest.raises(VerificationError) as raised:
        verify_bundle(bundle, public_key_pem=pem)
    assert raised.value.seq == 7
    assert raised.value.result is not None and raised.value.result.first_bad_seq == 7


# --- the last gaps of the RETEST (docs/mutation.md): file errors, end_seq, start_seq -1, proof hashes ------------


def test_an_unreadable_bundle_file_is_a_format_error_naming_the_file_and_the_os_reason(tmp_path):
    """The auditor sees which file and why (the OS's words), as a BundleFormatError (CLI exit 2), not a
    traceback; the exception class name is only the fallback when the OS gives no reason."""
    missing = tmp_path / "no-such-bundle.json"
    with pytest.raises(BundleFormatError) as raised:
        load_bundle(missing)
    assert str(raised.value) == f"{missing}: cannot be read (No such file or directory)"
    with pytest.raises(BundleFormatError) as raised:
        load_bundle(tmp_path)  # a directory
    assert str(raised.value) == f"{tmp_path}: cannot be read (Is a directory)"


def test_range_end_seq_must_not_be_negative(log, pem):
    bundle = export(log, pem, start_seq=0, end_seq=0, entries=[])
    assert parse_header(bundle).range.end_seq == 0
    bundle["range"]["end_seq"] = -1
    with pytest.raises(BundleFormatError, match=r"field range\.end_seq: "):
        parse_header(bundle)


def test_repeated_key_after_a_start_seq_of_minus_one_is_blamed_from_zero():
    """-1 is the closest negative start: not believed either, so entry 1 is seq 1, not 0."""
    result = ambiguous('{"range":{"start_seq":-1},"entries":[{},{"k":1,"k":2}]}')
    assert result.first_bad_seq == 1
    assert result.problem.startswith("entry repeats the key ")


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32, ""])
def test_every_consistency_proof_hash_must_be_64_lower_case_hex_digits(log, pem, bad):
    bundle = export(log, pem)
    bundle["consistency"] = [{"from_size": 1, "to_size": 2, "proof": [HASH_HEX, bad]}]
    with pytest.raises(BundleFormatError, match=r"field consistency\.0\.proof: .*64 lower-case hex digits"):
        parse_header(bundle)
