"""Offline verification of export bundles, and every tampering the issue lists, each reported with the
first bad sequence number."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from gatekeeper.audit.bundle import BundleFormatError, build_bundle, check_bundle, dumps
from gatekeeper.audit.checkpoints import SignedCheckpoint
from gatekeeper.audit.signing import LocalCheckpointKey
from tests.unit.test_audit_support import forge, make_bundle, make_checkpoints, make_entries, rehash


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("key")).signer()


@pytest.fixture(scope="module")
def attacker(tmp_path_factory):
    return LocalCheckpointKey(tmp_path_factory.mktemp("attacker"), "attacker").signer()


@pytest.fixture(scope="module")
def pem(signer) -> str:
    return signer.public_key_pem()


@pytest.fixture
def bundle(signer):
    return make_bundle(signer, n=30, every=10)


def check(bundle, pem):
    return check_bundle(json.loads(dumps(bundle)), public_key_pem=pem)


def test_intact_bundle_verifies_with_size_and_root(bundle, pem):
    result = check(bundle, pem)
    assert result.ok and result.trusted_key
    assert result.summary() == f"verified 30 entries, root {result.root}"
    last = SignedCheckpoint.model_validate(bundle["checkpoints"][-1]).checkpoint()
    assert result.root == last.root.hex()
    assert [p["from_size"] for p in bundle["consistency"]] == [10, 20]


def test_edit_a_field(bundle, pem):
    bundle["entries"][7]["kind"] = "approval_decided"
    result = check(bundle, pem)
    assert not result.ok
    assert (result.first_bad_seq, result.problem) == (7, "content altered: its hash does not match its fields")
    assert result.summary().startswith("first bad entry: seq 7: ")


def test_edit_a_field_and_recompute_its_hash(bundle, pem):
    bundle["entries"][12]["actor"] = "user:someone-else"
    rehash(bundle["entries"][12])
    result = check(bundle, pem)
    assert result.first_bad_seq == 12
    assert "does not match the prev_hash recorded by seq 13" in result.problem


def test_edit_the_sealed_data(bundle, pem):
    bundle["entries"][3]["data"] = bundle["entries"][4]["data"]
    assert check(bundle, pem).first_bad_seq == 3


def test_delete_an_entry(bundle, pem):
    del bundle["entries"][5]
    result = check(bundle, pem)
    assert (result.first_bad_seq, result.problem) == (5, "missing (the next entry present is seq 6)")


def test_delete_an_entry_and_renumber_the_rest(bundle, pem):
    del bundle["entries"][5]
    for entry in bundle["entries"][5:]:
        entry["seq"] -= 1
    assert check(bundle, pem).first_bad_seq == 5


def test_reorder_two_entries(bundle, pem):
    entries = bundle["entries"]
    entries[8], entries[9] = entries[9], entries[8]
    result = check(bundle, pem)
    assert (result.first_bad_seq, result.problem) == (8, "out of order (seq 9 found where seq 8 belongs)")


def test_reorder_contents_keeping_sequence_numbers(bundle, pem):
    entries = bundle["entries"]
    entries[8]["seq"], entries[9]["seq"] = 9, 8
    entries[8], entries[9] = entries[9], entries[8]
    assert check(bundle, pem).first_bad_seq == 8


def test_insert_an_entry(bundle, pem):
    fake = copy.deepcopy(bundle["entries"][4])
    fake["actor"] = "user:intruder"
    fake["prev_hash"] = bundle["entries"][3]["entry_hash"]
    rehash(fake)
    bundle["entries"].insert(4, fake)  # a second seq 4
    result = check(bundle, pem)
    assert result.first_bad_seq == 4 and "appears twice" in result.problem


def test_insert_an_entry_and_renumber(bundle, pem):
    fake = copy.deepcopy(bundle["entries"][4])
    fake["actor"] = "user:intruder"
    fake["prev_hash"] = bundle["entries"][3]["entry_hash"]
    rehash(fake)
    bundle["entries"].insert(4, fake)
    for entry in bundle["entries"][5:]:
        entry["seq"] += 1
    result = check(bundle, pem)
    assert result.first_bad_seq == 4 and "inserted" in result.problem


def test_truncate(bundle, pem):
    del bundle["entries"][25:]
    result = check(bundle, pem)
    assert result.first_bad_seq == 25 and result.problem.startswith("missing")


def test_truncate_and_drop_the_checkpoints_that_cover_the_tail(bundle, pem):
    del bundle["entries"][25:]
    bundle["checkpoints"] = bundle["checkpoints"][:2]
    bundle["consistency"] = bundle["consistency"][:1]
    result = check(bundle, pem)  # the bundle still declares end_seq 30
    assert result.first_bad_seq == 25 and result.problem.startswith("missing")
    bundle["range"]["end_seq"] = 25  # and with the declared end rewritten too
    result = check(bundle, pem)
    assert result.first_bad_seq == 20 and "not covered by any signed checkpoint" in result.problem


def test_truncate_at_a_checkpoint_and_rewrite_the_range_is_the_honest_shorter_log(bundle, pem):
    """Cutting exactly at a signed checkpoint yields a genuine, shorter log: only a checkpoint the auditor
    saw before (or the WORM container) shows that entries existed after it. Documented in docs/audit.md."""
    del bundle["entries"][20:]
    bundle["checkpoints"] = bundle["checkpoints"][:2]
    bundle["consistency"] = bundle["consistency"][:1]
    bundle["range"]["end_seq"] = 20
    result = check(bundle, pem)
    assert result.ok and result.size == 20


def test_move_an_entry_from_another_tenant(signer, bundle, pem):
    other = make_entries("fabrikam", 30)
    bundle["entries"][6] = other[6]
    result = check(bundle, pem)
    assert result.first_bad_seq == 6 and "moved between tenants" in result.problem


def test_move_an_entry_from_another_tenant_relabelled(bundle, pem):
    other = make_entries("fabrikam", 30)[6]
    other["tenant"] = "contoso"
    bundle["entries"][6] = other
    assert check(bundle, pem).first_bad_seq == 6


def test_move_a_checkpoint_from_another_tenant(signer, bundle, pem):
    other = make_bundle(signer, tenant="fabrikam", n=30, every=10)
    bundle["checkpoints"][1] = other["checkpoints"][1]
    result = check(bundle, pem)
    assert result.first_bad_seq == 10 and "belongs to log 'gatekeeper.audit/fabrikam'" in result.problem


def test_consistent_forgery_without_the_signing_key_fails_on_signature(bundle, pem, attacker):
    forged = forge(bundle, 10, attacker)
    result = check(forged, pem)
    assert not result.ok
    assert result.first_bad_seq == 10
    assert "not a trusted checkpoint key" in result.problem


def test_forgery_inside_a_checkpoint_span_names_the_first_unproven_entry(bundle, pem, attacker):
    """The edit is at seq 13; nothing but the checkpoint at 20 could reveal it, so the verifier names the
    first entry no valid checkpoint covers: 10 (entries 0-9 are still proven by the checkpoint at 10)."""
    result = check(forge(bundle, 13, attacker), pem)
    assert (result.ok, result.first_bad_seq, result.size) == (False, 10, 10)


def test_naive_forgery_re_signing_everything_fails_at_the_start(bundle, pem, attacker):
    result = check(forge(bundle, 13, attacker, keep_valid_signatures=False), pem)
    assert (result.ok, result.first_bad_seq) == (False, 0)


def test_forgery_keeping_the_genuine_signatures_fails_on_the_root(bundle, pem):
    forged = copy.deepcopy(bundle)
    forged["entries"][15]["actor"] = "user:attacker"
    prev = forged["entries"][15]["prev_hash"]
    for entry in forged["entries"][15:]:
        entry["prev_hash"] = prev
        rehash(entry)
        prev = entry["entry_hash"]
    result = check(forged, pem)
    assert result.first_bad_seq == 10 and "do not produce the Merkle root signed at size 20" in result.problem


def test_a_re_signed_checkpoint_with_a_wrong_signature(bundle, pem):
    raw = bundle["checkpoints"][2]
    sig = bytearray(SignedCheckpoint.model_validate(raw).signature_bytes())
    sig[5] ^= 1
    raw["signature"] = base64.b64encode(bytes(sig)).decode()
    result = check(bundle, pem)
    assert result.first_bad_seq == 20 and "signature does not verify" in result.problem


def test_tampered_consistency_proof(bundle, pem):
    proof = bundle["consistency"][1]["proof"]
    proof[0] = "00" * 32
    result = check(bundle, pem)
    assert result.first_bad_seq == 20 and "not consistent" in result.problem


def test_missing_consistency_proof(bundle, pem):
    bundle["consistency"] = bundle["consistency"][:1]
    result = check(bundle, pem)
    assert result.first_bad_seq == 20 and "no consistency proof" in result.problem


def test_embedded_key_is_used_without_a_trusted_key_and_flagged(bundle):
    result = check_bundle(bundle)
    assert result.ok and not result.trusted_key


def test_wrong_trusted_key_fails(bundle, attacker):
    result = check_bundle(bundle, public_key_pem=attacker.public_key_pem())
    assert result.first_bad_seq == 0 and "not a trusted checkpoint key" in result.problem


def test_rotated_checkpoint_keys_verify_with_both_keys_in_the_pem(signer, attacker):
    entries = make_entries("contoso", 20)
    first = make_checkpoints("contoso", entries[:10], signer, 10)
    second = make_checkpoints("contoso", entries, attacker, 10)[1:]  # a new key signs from size 20 on
    bundle = build_bundle(
        "contoso", entries, [*first, *second], start_seq=0, end_seq=20, exported_at="2026-03-02T00:00:00.000000Z"
    )
    both = signer.public_key_pem() + attacker.public_key_pem()
    assert check_bundle(bundle, public_key_pem=both).ok
    assert check_bundle(bundle, public_key_pem=signer.public_key_pem()).first_bad_seq == 10


@pytest.mark.parametrize(("start_seq", "end_seq"), [(12, 30), (10, 20), (0, 20), (25, 30)])
def test_range_bundles_verify_from_the_frontier(signer, pem, start_seq, end_seq):
    bundle = make_bundle(signer, n=30, every=10, start_seq=start_seq, end_seq=end_seq)
    assert bundle["entries"][0]["seq"] == start_seq and len(bundle["entries"]) == end_seq - start_seq
    result = check(bundle, pem)
    assert result.ok, result.summary()
    assert result.size == end_seq


def test_range_bundle_with_a_tampered_frontier(signer, pem):
    bundle = make_bundle(signer, n=30, every=10, start_seq=12, end_seq=30)
    bundle["frontier"][0] = "11" * 32
    result = check(bundle, pem)
    assert not result.ok and result.first_bad_seq == 12


def test_range_bundle_edit_inside_the_range(signer, pem):
    bundle = make_bundle(signer, n=30, every=10, start_seq=12, end_seq=30)
    bundle["entries"][3]["subject"] = "something else"  # seq 15
    assert check(bundle, pem).first_bad_seq == 15


def test_empty_bundle_of_an_empty_log_verifies(signer, pem):
    bundle = build_bundle(
        "contoso", [], [], start_seq=0, end_seq=0, exported_at="2026-03-02T00:00:00.000000Z", public_keys=[pem]
    )
    result = check(bundle, pem)
    assert result.ok and result.size == 0


def test_entries_without_any_checkpoint_fail(signer, pem):
    entries = make_entries("contoso", 5)
    bundle = build_bundle("contoso", entries, [], start_seq=0, end_seq=5, exported_at="2026-03-02T00:00:00.000000Z")
    result = check(bundle, pem)
    assert result.first_bad_seq == 0 and "not covered by any signed checkpoint" in result.problem


def test_a_field_smuggling_the_separator_is_named(bundle, pem):
    """Moving a field boundary into a value (actor absorbs instance_id) is refused, not re-parsed."""
    entry = bundle["entries"][9]
    entry["actor"], entry["instance_id"] = entry["actor"] + "\x1f" + entry["instance_id"], ""
    with pytest.raises(ValueError, match="actor: must not contain"):
        rehash(entry)  # the writer's own encoder refuses to hash it
    result = check(bundle, pem)
    assert result.first_bad_seq == 9 and "actor: must not contain" in result.problem


def test_wrong_types_are_named(bundle, pem):
    bundle["entries"][2]["at"] = 12345
    result = check(bundle, pem)
    assert (result.first_bad_seq, result.problem) == (2, "field 'at' is missing or not a string")
    bundle["entries"][2] = "not an object"
    assert check(bundle, pem).problem == "entry is not a JSON object"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(format="other/9"), "format"),
        (lambda b: b.update(tenant="Not A Tenant"), "tenant"),
        (lambda b: b["range"].update(start_seq=-1), "range.start_seq"),
        (lambda b: b.update(frontier=["xyz"]), "frontier"),
        (lambda b: b.pop("entries"), "entries"),
    ],
)
def test_unreadable_headers_name_the_field(bundle, pem, mutate, field):
    mutate(bundle)
    with pytest.raises(BundleFormatError, match=f"field {field}"):
        check_bundle(bundle, public_key_pem=pem)


def test_unreadable_public_key_is_a_format_error(bundle):
    with pytest.raises(BundleFormatError, match="no '-----BEGIN PUBLIC KEY-----' block"):
        check_bundle(bundle, public_key_pem="not a key")


def test_progress_reports_every_entry(signer, pem):
    bundle = make_bundle(signer, n=2100, every=500)
    seen: list[int] = []
    assert check_bundle(bundle, public_key_pem=pem, progress=seen.append).ok
    assert sum(seen) == 2100 and seen[0] == 1024
