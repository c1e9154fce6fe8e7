"""Builders for audit tests: a signed log and its bundle made with the product's own pure functions
(sealed_entry, CompactRange, sign_checkpoint, build_bundle), plus the attacker's tools for tamper tests.

Entries here carry a placeholder in place of sealed data: hashing and verification never open it, and the
tests that need real sealing run against Azurite with the real EnvelopeCipher.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.audit.bundle import build_bundle, check_bundle
from gatekeeper.audit.checkpoints import Checkpoint, SignedCheckpoint, origin_for, sign_checkpoint
from gatekeeper.audit.merkle import CompactRange, MerkleTree
from gatekeeper.audit.records import GENESIS_HASH, entry_canonical, entry_hash, format_time, sealed_entry
from gatekeeper.audit.signing import CheckpointSigner, LocalCheckpointKey

ROOT_DIR = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KINDS = ["event_received", "decision", "approval_requested", "approval_decided", "callback"]


def make_entries(tenant: str, n: int, *, first_time: datetime = T0) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for seq in range(n):
        kind = KINDS[seq % len(KINDS)]
        actor = "user:approver-oid" if kind == "approval_decided" else "system:gatekeeper"
        entry = sealed_entry(
            tenant,
            seq,
            kind,
            format_time(first_time + timedelta(minutes=seq)),
            actor,
            f"gate-{seq // 5}",
            f"github:contoso/web:run-{seq // 5}:production",
            f"gk1.test.sealed-{tenant}-{seq}",
            prev,
        )
        entries.append(entry)
        prev = entry["entry_hash"]
    return entries


def make_checkpoints(
    tenant: str, entries: list[dict[str, Any]], signer: CheckpointSigner, every: int
) -> list[SignedCheckpoint]:
    compact = CompactRange()
    out = []
    for seq, entry in enumerate(entries):
        compact.append(bytes.fromhex(entry["entry_hash"]))
        if (seq + 1) % every == 0 or seq + 1 == len(entries):
            at = format_time(T0 + timedelta(minutes=seq, seconds=30))
            out.append(sign_checkpoint(signer, Checkpoint(origin_for(tenant), seq + 1, compact.root(), at)))
    return out


def make_bundle(
    signer: CheckpointSigner,
    *,
    tenant: str = "contoso",
    n: int = 30,
    every: int = 10,
    start_seq: int = 0,
    end_seq: int | None = None,
) -> dict[str, Any]:
    entries = make_entries(tenant, n)
    checkpoints = make_checkpoints(tenant, entries, signer, every)
    end = n if end_seq is None else end_seq
    return build_bundle(
        tenant,
        entries,
        checkpoints,
        start_seq=start_seq,
        end_seq=end,
        exported_at=format_time(T0 + timedelta(days=1)),
        # the time range an export of [start_seq, end) would carry (an open range starts at seq 0)
        time_from=entries[start_seq]["at"] if start_seq else None,
        time_to=entries[end - 1]["at"] if end < n and end > start_seq else None,
        public_keys=[signer.public_key_pem()],
    )


def rehash(entry: dict[str, Any]) -> None:
    entry["entry_hash"] = entry_hash(entry_canonical(entry)).hex()


def forge(
    bundle: dict[str, Any], edit_seq: int, attacker: CheckpointSigner, *, keep_valid_signatures: bool = True
) -> dict[str, Any]:
    """Rewrite entry `edit_seq` and rebuild a fully consistent bundle without the real signing key:
    re-chained hashes, recomputed roots and consistency proofs, checkpoints re-signed by the attacker (the
    ones not affected keep their genuine signatures when `keep_valid_signatures`), attacker key embedded."""
    forged = copy.deepcopy(bundle)
    entries = forged["entries"]
    assert forged["range"]["start_seq"] == 0
    entries[edit_seq]["actor"] = "user:attacker"
    prev = entries[edit_seq]["prev_hash"]
    for entry in entries[edit_seq:]:
        entry["prev_hash"] = prev
        rehash(entry)
        prev = entry["entry_hash"]
    tree = MerkleTree(bytes.fromhex(e["entry_hash"]) for e in entries)
    new_checkpoints = []
    for raw in forged["checkpoints"]:
        signed = SignedCheckpoint.model_validate(raw)
        cp = signed.checkpoint()
        if keep_valid_signatures and cp.size <= edit_seq:
            new_checkpoints.append(raw)
            continue
        replacement = Checkpoint(cp.origin, cp.size, tree.root(cp.size), cp.time)
        new_checkpoints.append(sign_checkpoint(attacker, replacement).model_dump())
    forged["checkpoints"] = new_checkpoints
    sizes = [SignedCheckpoint.model_validate(c).checkpoint().size for c in new_checkpoints]
    forged["consistency"] = [
        {"from_size": a, "to_size": b, "proof": [h.hex() for h in tree.consistency_proof(a, b)]}
        for a, b in itertools.pairwise(sizes)
    ]
    forged["public_keys"] = [*bundle["public_keys"], attacker.public_key_pem()]
    return forged


@pytest.fixture(scope="session")
def audit_signer(tmp_path_factory) -> CheckpointSigner:
    return LocalCheckpointKey(tmp_path_factory.mktemp("checkpoint-key")).signer()


@pytest.fixture(scope="session")
def attacker_signer(tmp_path_factory) -> CheckpointSigner:
    return LocalCheckpointKey(tmp_path_factory.mktemp("attacker-key"), "attacker").signer()


def test_builders_make_a_bundle_that_verifies(audit_signer):
    bundle = make_bundle(audit_signer)
    result = check_bundle(bundle, public_key_pem=audit_signer.public_key_pem())
    assert result.ok, result.summary()
    assert (result.size, result.entries_checked, result.checkpoints_checked) == (30, 30, 3)


def test_forge_keeps_the_chain_consistent(audit_signer, attacker_signer):
    forged = forge(make_bundle(audit_signer), 13, attacker_signer)
    assert forged["entries"][13]["actor"] == "user:attacker"
    # Checked against its own (attacker-supplied) keys, the forgery is internally consistent...
    assert check_bundle(forged).ok
    # ...which is exactly why the verifier must be given the trusted key (see test_audit_bundle).
