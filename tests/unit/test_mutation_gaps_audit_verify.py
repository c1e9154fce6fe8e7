"""Gaps `make mutation MODULES=audit` found in gatekeeper/audit/verify.py and checkpoints.py (issue 21): the
truncation messages name the last entry present, a truncated log still credits the checkpoints its entries
prove, a swap of the last two entries is named as a reorder, an inserted entry names the entry it skips, a
frontier of the wrong shape proves nothing, and the bounds of the stored checkpoint and of checkpoint keys.

Logs are built with the builders of tests/unit/test_audit_support.py; expected sequence numbers and messages
are written out by hand.
"""

from __future__ import annotations

import base64
import copy

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from gatekeeper.audit import strict_json
from gatekeeper.audit.checkpoints import CheckpointFormatError, SignedCheckpoint, load_public_keys
from gatekeeper.audit.verify import check_log
from tests.unit.test_audit_support import make_checkpoints, make_entries, rehash

TENANT = "contoso"


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """30 entries, checkpoints signed at sizes 10, 20 and 30, and the trusted keys."""
    from gatekeeper.audit.signing import LocalCheckpointKey

    signer = LocalCheckpointKey(tmp_path_factory.mktemp("key")).signer()
    entries = make_entries(TENANT, 30)
    return entries, make_checkpoints(TENANT, entries, signer, 10), load_public_keys(signer.public_key_pem())


@pytest.fixture
def pem_bundle_factory(tmp_path):
    """A bundle of a 30-entry log (checkpoints at 10, 20, 30) exported from `start_seq`, and the trusted PEM."""
    from gatekeeper.audit.signing import LocalCheckpointKey
    from tests.unit.test_audit_support import make_bundle

    signer = LocalCheckpointKey(tmp_path).signer()

    def make(start_seq: int = 0):
        return make_bundle(signer, n=30, every=10, start_seq=start_seq), signer.public_key_pem()

    return make


@pytest.fixture
def pem_bundle(pem_bundle_factory):
    return pem_bundle_factory()


def test_a_head_claiming_more_entries_names_the_last_one_present(log):
    entries, checkpoints, keys = log
    short = [c for c in checkpoints if c.checkpoint().size <= 20]
    result = check_log(TENANT, entries[:22], short, keys, expected_size=25, allow_unsigned_tail=True)
    assert (result.ok, result.first_bad_seq, result.size) == (False, 22, 20)
    assert result.problem == "missing: the log records 25 entries but the last present is seq 21"


def test_a_truncated_log_keeps_the_checkpoints_its_entries_prove_and_names_the_last_entry(log):
    """Entries 25..29 are gone but the checkpoint at 30 is still there: the checkpoints at 10 and 20 are
    judged against the entries (so 20 entries stay proven) and the one at 30 names the truncation."""
    entries, checkpoints, keys = log
    result = check_log(TENANT, entries[:25], checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 25)
    assert (result.size, result.checkpoints_checked) == (20, 2)
    assert result.problem == "missing: a signed checkpoint covers 30 entries but the last present is seq 24"


def test_the_last_two_entries_swapped_are_named_out_of_order(log):
    entries, checkpoints, keys = log
    swapped = [*entries[:28], entries[29], entries[28]]
    result = check_log(TENANT, swapped, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 28)
    assert result.problem == "out of order (seq 29 found where seq 28 belongs)"


def test_the_last_entry_missing_behind_a_gap_is_named_missing(log):
    entries, checkpoints, keys = log
    gap = [*entries[:28], entries[29]]
    result = check_log(TENANT, gap, checkpoints, keys)
    assert (result.first_bad_seq, result.problem) == (28, "missing (the next entry present is seq 29)")


def test_an_inserted_entry_names_the_entry_it_skips(log):
    entries, checkpoints, keys = log
    forged = copy.deepcopy(entries[:10])
    fake = copy.deepcopy(forged[4])
    fake["actor"] = "user:intruder"
    rehash(fake)
    forged.insert(4, fake)
    for entry in forged[5:]:
        entry["seq"] += 1
    result = check_log(TENANT, forged, checkpoints[:1], keys)
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert result.problem == "was inserted: seq 5 links to seq 3"


@pytest.mark.parametrize("frontier_length", [0, 1, 3])
def test_a_frontier_of_the_wrong_shape_proves_nothing(log, frontier_length):
    """Start 10 needs a frontier of two hashes (10 = 8 + 2): any other count is refused before any entry
    or checkpoint counts as checked."""
    entries, checkpoints, keys = log
    frontier = [bytes.fromhex(entries[0]["entry_hash"])] * frontier_length
    result = check_log(TENANT, entries[10:20], checkpoints[:2], keys, start=10, frontier=frontier)
    assert (result.ok, result.size, result.root) == (False, 10, "")
    assert (result.entries_checked, result.checkpoints_checked, result.first_bad_seq) == (0, 0, 10)
    assert result.problem == f"frontier: compact range of size 10 needs 2 hashes, got {frontier_length}"


# --- checkpoints.py bounds ---------------------------------------------------------------------------------


def _stored(**fields):
    raw = {
        "note": "gatekeeper.audit/contoso\n1\n" + base64.b64encode(b"\x00" * 32).decode() + "\n",
        "algorithm": "ES256",
        "key_id": "k",
        "key_fingerprint": "ab" * 32,
        "signature": base64.b64encode(b"\x01" * 64).decode(),
    }
    raw.update(fields)
    return raw


def test_a_stored_checkpoint_key_id_may_have_2048_characters_not_more():
    assert len(SignedCheckpoint.model_validate(_stored(key_id="k" * 2048)).key_id) == 2048
    with pytest.raises(ValidationError, match="key_id"):
        SignedCheckpoint.model_validate(_stored(key_id="k" * 2049))


def test_a_stored_checkpoint_signature_may_have_4096_characters_not_more():
    assert len(SignedCheckpoint.model_validate(_stored(signature="A" * 4096)).signature) == 4096
    with pytest.raises(ValidationError, match="signature"):
        SignedCheckpoint.model_validate(_stored(signature="A" * 4097))


def _rsa_pem(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_an_rsa_checkpoint_key_of_exactly_2048_bits_is_accepted_and_a_smaller_one_refused():
    assert len(load_public_keys(_rsa_pem(2048))) == 1
    with pytest.raises(CheckpointFormatError, match="public key block 1: RSA keys must have at least 2048 bits"):
        load_public_keys(_rsa_pem(1024))


def test_a_checkpoint_listed_twice_does_not_hide_the_checkpoints_after_it(log):
    """The online check reads checkpoints from the table and from the WORM archive, so the same one comes
    twice: the copy is skipped, and every later checkpoint still counts."""
    entries, checkpoints, keys = log
    doubled = [checkpoints[0], checkpoints[0], *checkpoints[1:]]
    result = check_log(TENANT, entries, doubled, keys)
    assert result.ok, result.summary()
    assert (result.size, result.checkpoints_checked) == (30, 3)


def test_a_malformed_checkpoint_is_named_even_after_a_valid_one(log):
    entries, checkpoints, keys = log
    broken = {**checkpoints[1].model_dump(), "signature": "not base64!"}
    result = check_log(TENANT, entries, [checkpoints[0], broken, checkpoints[2]], keys)
    assert (result.ok, result.first_bad_seq) == (False, 0)
    assert result.problem == "checkpoint #1: signature: must be standard base64"
    assert (result.size, result.entries_checked, result.checkpoints_checked) == (0, 0, 0)


def test_a_relinked_entry_right_after_a_checkpoint_names_the_proven_entry_it_no_longer_links_to(log):
    """Entry 10 is given another prev_hash and re-hashed: entry 9 is proven by the checkpoint at 10, so the
    blame is entry 10 itself, naming seq 9 as the hash it should link to."""
    entries, checkpoints, keys = log
    forged = copy.deepcopy(entries)
    forged[10]["prev_hash"] = "00" * 32
    rehash(forged[10])
    result = check_log(TENANT, forged, checkpoints, keys)
    assert (result.ok, result.first_bad_seq, result.size) == (False, 10, 10)
    assert result.problem == "prev_hash does not match the hash of seq 9"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "b.json: not a JSON document ("),
        (b"\xff", "b.json: not a JSON document (not UTF-8 (byte 0))"),
        (b'{"a": NaN}', "b.json: outside the accepted JSON bounds ($.a: NaN is not a JSON number)"),
        (b'{"a": 1e999}', "b.json: outside the accepted JSON bounds ($.a: number 1e999 is out of range)"),
    ],
)
def test_strict_json_tells_text_that_is_not_json_from_json_outside_the_bounds(raw, message):
    """The CLI's message for a bundle says which: not JSON at all, or JSON a reader could take two ways."""
    with pytest.raises(strict_json.StrictJSONError) as raised:
        strict_json.loads(raw, source="b.json")
    assert str(raised.value).startswith(message)


def test_an_unsigned_tail_names_its_first_and_last_entry(log):
    entries, checkpoints, keys = log
    short = [c for c in checkpoints if c.checkpoint().size <= 20]
    result = check_log(TENANT, entries[:25], short, keys)
    assert (result.ok, result.first_bad_seq, result.size) == (False, 20, 20)
    assert result.problem == "entries 20..24 are not covered by any signed checkpoint"


def test_an_entry_with_an_unhashed_field_in_place_of_a_hashed_one_is_named(log):
    """Ten keys, as many as an entry has, but `approved_by` stands where `actor` belongs: the bulk check must
    hand the chunk to the walk, which names the missing field, instead of failing on the lookup."""
    entries, checkpoints, keys = log
    forged = copy.deepcopy(entries)
    forged[6]["approved_by"] = forged[6].pop("actor")
    result = check_log(TENANT, forged, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert result.problem == "field 'actor' is missing or not a string"


@pytest.mark.parametrize("field", ["note", "signature"])
def test_a_stored_checkpoint_with_an_empty_note_or_signature_is_malformed(log, field):
    """Refused when read (naming the field), not left for the note parser or the signature check."""
    with pytest.raises(ValidationError, match=field):
        SignedCheckpoint.model_validate(_stored(**{field: ""}))
    entries, checkpoints, keys = log
    empty = {**checkpoints[0].model_dump(), field: ""}
    result = check_log(TENANT, entries, [empty, *checkpoints[1:]], keys)
    assert (result.first_bad_seq, result.problem) == (0, f"checkpoint #0: field {field!r} is malformed")


def test_entries_rewritten_after_signing_are_named_as_the_span_the_checkpoint_covers(log):
    """Entry 15 edited and the chain re-linked from there (no signing key): the checkpoint at 20 no longer
    matches, so entries 10..19 (after the last good checkpoint, up to its size) are named."""
    entries, checkpoints, keys = log
    forged = copy.deepcopy(entries)
    forged[15]["actor"] = "user:attacker"
    prev = forged[15]["prev_hash"]
    for entry in forged[15:]:
        entry["prev_hash"] = prev
        rehash(entry)
        prev = entry["entry_hash"]
    result = check_log(TENANT, forged, checkpoints, keys)
    assert (result.ok, result.first_bad_seq, result.size) == (False, 10, 10)
    assert result.problem == (
        "entries 10..19 do not produce the Merkle root signed at size 20 (rewritten after signing)"
    )


def test_text_holding_a_lone_surrogate_is_refused_as_not_utf8_not_a_crash():
    """A bundle handed over as text (not bytes) may hold a lone surrogate, which no UTF-8 file can: it is
    refused as a malformed document naming the byte, never an encoding exception out of the verifier."""
    with pytest.raises(strict_json.StrictJSONError) as raised:
        strict_json.loads('{"a":"\ud800"}', source="b.json")
    assert str(raised.value) == "b.json: not a JSON document (not UTF-8 (byte 6))"


def test_a_checkpoint_signed_by_an_unknown_key_names_the_size_and_the_keys_fingerprint_prefix(log, tmp_path):
    from gatekeeper.audit.signing import LocalCheckpointKey

    entries, checkpoints, _ = log
    other = load_public_keys(LocalCheckpointKey(tmp_path, "other").signer().public_key_pem())
    result = check_log(TENANT, entries, checkpoints, other)
    assert (result.ok, result.first_bad_seq, result.size) == (False, 0, 0)
    prefix = checkpoints[0].key_fingerprint[:16]  # 16 hex digits, as stored in the checkpoint
    assert result.problem == (
        f"checkpoint at size 10 is signed by key {prefix}..., which is not a trusted checkpoint key"
    )


def test_an_empty_log_with_a_head_verifies_without_reading_a_last_entry(log):
    _, _, keys = log
    result = check_log(TENANT, [], [], keys, expected_size=0, expected_last_hash="ab" * 32)
    assert result.ok and (result.size, result.entries_checked) == (0, 0)


def test_a_consistency_proof_linking_no_checkpoints_names_its_from_size(log, pem_bundle):
    """An extra proof from size 5 to 7 was checked by nothing: it is refused, blaming entry 5 (the earlier
    of its start and the verified size), not the end of the log."""
    from gatekeeper.audit.bundle import check_bundle

    bundle, pem = pem_bundle
    bundle["consistency"].append({"from_size": 5, "to_size": 7, "proof": []})
    result = check_bundle(bundle, public_key_pem=pem)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert (
        result.problem
        == "consistency proof from size 5 to 7 links no two checkpoints of the bundle (nothing checked it)"
    )


def test_a_range_export_rewritten_after_signing_counts_the_entries_checked_from_its_start(pem_bundle_factory):
    """A range bundle from seq 12: entry 15 edited and re-linked, so the checkpoint at 20 fails; 8 entries
    (12..19) were checked when it did."""
    from gatekeeper.audit.bundle import check_bundle

    bundle, pem = pem_bundle_factory(start_seq=12)
    entries = bundle["entries"]
    entries[3]["actor"] = "user:attacker"  # seq 15
    prev = entries[3]["prev_hash"]
    for entry in entries[3:]:
        entry["prev_hash"] = prev
        rehash(entry)
        prev = entry["entry_hash"]
    result = check_bundle(bundle, public_key_pem=pem)
    assert (result.ok, result.first_bad_seq, result.entries_checked) == (False, 12, 8)
    assert "do not produce the Merkle root signed at size 20" in (result.problem or "")


def test_an_entry_inserted_right_after_a_checkpoint_is_named_as_inserted(log):
    entries, checkpoints, keys = log
    forged = copy.deepcopy(entries[:20])
    fake = copy.deepcopy(forged[10])
    fake["actor"] = "user:intruder"
    rehash(fake)  # links to seq 9, as the genuine seq 10 does
    forged.insert(10, fake)
    for entry in forged[11:]:
        entry["seq"] += 1
    result = check_log(TENANT, forged, checkpoints[:1], keys)
    assert (result.ok, result.first_bad_seq, result.size) == (False, 10, 10)
    assert result.problem == "was inserted: seq 11 links to seq 9"


def test_verification_error_of_a_result_without_a_seq_blames_seq_0():
    from gatekeeper.audit.verify import VerificationError, VerificationResult

    error = VerificationError.of(VerificationResult(False, 0, "", 0, 0, None, "unreadable"))
    assert (error.seq, error.reason) == (0, "unreadable")


def test_a_checkpoint_with_several_bad_fields_names_the_first(log):
    entries, checkpoints, keys = log
    bad = {**checkpoints[0].model_dump(), "note": "", "algorithm": "HS256"}
    result = check_log(TENANT, entries, [bad], keys)
    assert (result.first_bad_seq, result.problem) == (0, "checkpoint #0: field 'note' is malformed")


def test_a_signed_checkpoint_cannot_be_changed_after_it_is_read(log):
    _, checkpoints, _ = log
    with pytest.raises(ValidationError, match="frozen"):
        checkpoints[0].note = "gatekeeper.audit/contoso\n99\n"


# --- survivors of the session-6 RETEST (docs/mutation.md) -----------------------------------------------------


def test_a_checkpoint_root_with_a_character_outside_base64_is_refused_as_not_base64():
    """Lenient base64 would drop the stray character and decode the real root; the note is refused first,
    as not standard base64 (not merely as non-canonical)."""
    from gatekeeper.audit.checkpoints import Checkpoint

    note = Checkpoint("gatekeeper.audit/contoso", 3, bytes(range(32)), "2026-03-01T09:00:00.000000Z").note()
    origin, size, root, time = note[:-1].split("\n")
    stray = root[:8] + "!" + root[8:]
    with pytest.raises(CheckpointFormatError) as refused:
        Checkpoint.parse(f"{origin}\n{size}\n{stray}\n{time}\n")
    assert str(refused.value) == "note line 3: root must be standard base64"


def test_a_stored_checkpoint_note_holds_at_most_4096_characters(log):
    checkpoints = log[1]
    fields = checkpoints[0].model_dump()
    assert SignedCheckpoint.model_validate({**fields, "note": "n" * 4096}).note == "n" * 4096
    with pytest.raises(ValidationError):
        SignedCheckpoint.model_validate({**fields, "note": "n" * 4097})


@pytest.mark.parametrize("start_seq", [1, 10])
def test_a_range_export_verifies_and_counts_only_its_own_entries(pem_bundle_factory, start_seq):
    """From seq 1 (the first start that is not the whole log: its roots come from the frontier, never from
    a tree of the range's leaves as if they started at 0) and from seq 10 (on a checkpoint)."""
    from gatekeeper.audit.bundle import check_bundle

    bundle, pem = pem_bundle_factory(start_seq=start_seq)
    result = check_bundle(bundle, public_key_pem=pem)
    assert result.ok, result.summary()
    assert (result.size, result.entries_checked) == (30, 30 - start_seq)


def test_an_entry_rewritten_and_rehashed_right_after_a_checkpoint_is_itself_named(log):
    """Entry 10 (the first after the checkpoint at 10) altered and given a matching hash: entry 11's
    prev_hash no longer links. Entries 0..9 are proven, so the blame is entry 10's, not entry 11's."""
    entries, checkpoints, keys = log
    tampered = copy.deepcopy(entries)
    tampered[10]["actor"] = "user:attacker"
    rehash(tampered[10])
    result = check_log(TENANT, tampered, checkpoints, keys)
    assert (result.ok, result.first_bad_seq) == (False, 10)
    assert result.problem == "altered: its hash does not match the prev_hash recorded by seq 11"


def test_a_failed_verification_reports_no_unsigned_tail(log):
    """unsigned_tail counts entries after the last checkpoint of a log that verified; a failure claims none."""
    entries, checkpoints, keys = log
    tampered = copy.deepcopy(entries)
    tampered[4]["actor"] = "user:attacker"
    result = check_log(TENANT, tampered, checkpoints, keys)
    assert (result.ok, result.first_bad_seq, result.unsigned_tail) == (False, 4, 0)


def test_of_several_unused_consistency_proofs_the_one_from_the_smallest_size_is_named(pem_bundle):
    from gatekeeper.audit.bundle import check_bundle

    bundle, pem = pem_bundle
    bundle["consistency"] += [{"from_size": 8, "to_size": 9, "proof": []}, {"from_size": 5, "to_size": 7, "proof": []}]
    result = check_bundle(bundle, public_key_pem=pem)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert result.problem.startswith("consistency proof from size 5 to 7 links no two checkpoints")
