"""Audit verify (issue 21): the head's last_hash against a tampered unsigned tail, and split-view checkpoints.

Two mutants passed the suite: dropping the head's last_hash check, and accepting two signed checkpoints of one
size with different roots. A live log has an unsigned tail (entries after the last checkpoint): only the head's
last_hash protects its final entry, which a writer to the table can rewrite and re-hash without breaking the chain.
"""

from __future__ import annotations

import copy

import pytest

from gatekeeper.audit.checkpoints import Checkpoint, load_public_keys, origin_for, sign_checkpoint
from gatekeeper.audit.merkle import CompactRange, MerkleTree
from gatekeeper.audit.verify import VerificationError, check_log, verify_log
from tests.unit.test_audit_support import audit_signer, make_checkpoints, make_entries, rehash  # noqa: F401

TENANT = "contoso"
N = 25


def _signed_log(signer):
    entries = make_entries(TENANT, N)
    checkpoints = [c for c in make_checkpoints(TENANT, entries, signer, 10) if c.checkpoint().size <= 20]
    return entries, checkpoints, load_public_keys(signer.public_key_pem())


def _verify(entries, checkpoints, keys, **head):
    return check_log(TENANT, entries, checkpoints, keys, allow_unsigned_tail=True, **head)


def test_intact_log_with_an_unsigned_tail_matches_its_head(audit_signer):
    entries, checkpoints, keys = _signed_log(audit_signer)
    result = _verify(entries, checkpoints, keys, expected_size=N, expected_last_hash=entries[-1]["entry_hash"])
    assert result.ok, result.summary()
    assert (result.size, result.unsigned_tail) == (20, 5)


def test_a_rewritten_last_entry_is_caught_by_the_head_last_hash(audit_signer):
    entries, checkpoints, keys = _signed_log(audit_signer)
    head_hash = entries[-1]["entry_hash"]
    tampered = copy.deepcopy(entries)
    tampered[-1]["actor"] = "user:mallory"
    rehash(tampered[-1])  # the chain still holds: nothing follows the last entry
    assert _verify(tampered, checkpoints, keys).ok, "without the head the rewrite is undetectable"
    result = _verify(tampered, checkpoints, keys, expected_size=N, expected_last_hash=head_hash)
    assert (result.ok, result.first_bad_seq) == (False, N - 1), result.summary()
    assert "altered" in result.problem and "head" in result.problem
    with pytest.raises(VerificationError):  # the raising form used by `audit verify` refuses it too
        verify_log(TENANT, tampered, checkpoints, keys, allow_unsigned_tail=True, expected_last_hash=head_hash)


def test_a_dropped_tail_is_caught_by_the_head_size(audit_signer):
    entries, checkpoints, keys = _signed_log(audit_signer)
    result = _verify(entries[:-2], checkpoints, keys, expected_size=N, expected_last_hash=entries[-1]["entry_hash"])
    assert (result.ok, result.first_bad_seq) == (False, N - 2), result.summary()
    assert "missing" in result.problem


def test_a_dropped_tail_with_a_rewritten_head_hash_is_still_missing(audit_signer):
    entries, checkpoints, keys = _signed_log(audit_signer)
    result = _verify(entries[:-1], checkpoints, keys, expected_size=N, expected_last_hash=entries[-2]["entry_hash"])
    assert result.ok is False and "missing" in result.problem


def test_two_signed_checkpoints_of_one_size_that_disagree_are_refused(audit_signer):
    """A split view: the genuine key signed two different roots for size 10."""
    entries, checkpoints, keys = _signed_log(audit_signer)
    other = make_entries(TENANT, 10)
    other[3]["actor"] = "user:mallory"
    rehash(other[3])
    rogue_root = MerkleTree(bytes.fromhex(e["entry_hash"]) for e in other).root(10)
    genuine = checkpoints[0].checkpoint()
    assert genuine.size == 10 and genuine.root != rogue_root
    rogue = sign_checkpoint(audit_signer, Checkpoint(origin_for(TENANT), 10, rogue_root, genuine.time))
    for order in ([*checkpoints, rogue], [rogue, *checkpoints]):
        result = _verify(entries, order, keys)
        assert result.ok is False, result.summary()
        assert "disagree" in result.problem or "root" in result.problem, result.problem


def test_the_same_checkpoint_twice_is_not_a_disagreement(audit_signer):
    entries, checkpoints, keys = _signed_log(audit_signer)
    result = _verify(entries, [*checkpoints, checkpoints[0]], keys)
    assert result.ok, result.summary()


def test_two_signed_checkpoints_of_one_size_before_an_export_range_must_agree(audit_signer):
    """A partial export cannot recompute the roots of checkpoints before its range: it checks their signatures and
    that two signed checkpoints of one size name the same root (a split view signed by the genuine key)."""
    entries, checkpoints, keys = _signed_log(audit_signer)
    start = 20
    frontier = CompactRange()
    for entry in entries[:start]:
        frontier.append(bytes.fromhex(entry["entry_hash"]))
    genuine = checkpoints[0].checkpoint()
    rogue_root = bytes(32) if genuine.root != bytes(32) else b"\x01" * 32
    rogue = sign_checkpoint(audit_signer, Checkpoint(origin_for(TENANT), 10, rogue_root, genuine.time))

    def run(cps):
        return check_log(
            TENANT, entries[start:], cps, keys, start=start, frontier=frontier.hashes, allow_unsigned_tail=True
        )

    assert run(checkpoints).ok, run(checkpoints).summary()
    result = run([*checkpoints, rogue])
    assert result.ok is False
    assert "two signed checkpoints for size 10 disagree" in result.problem
