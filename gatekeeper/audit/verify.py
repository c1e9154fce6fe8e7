"""Verification of a tenant's log: pure code over entries and checkpoints, shared by the online check
(`AuditLog.verify`) and the offline one (`verify_bundle`).

It walks the entries in order and stops at the first problem, naming the first sequence number whose
integrity cannot be established:

- per entry: seq continuity (gap, duplicate, reorder), field types, tenant, the prev_hash link to the entry
  before and the entry's own hash;
- per checkpoint: the note's origin, the Merkle root recomputed at its size, its signature by a trusted key,
  and the RFC 6962 consistency proof from the checkpoint before it;
- at the end: checkpoints or a head that claim more entries than there are (truncation), and entries no
  signed checkpoint covers.

When a link between seq n-1 and n breaks, the blame goes to the entry whose own evidence fails: n when its
hash does not match its content, n-1 when n links to n-2 (n-1 was inserted) or when n is self-consistent
(n-1 was altered and re-hashed). A root or signature failure means the entries after the last good
checkpoint were rewritten consistently (a forgery without the signing key): the first entry no valid
checkpoint covers is reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from pydantic import ValidationError

from gatekeeper.audit.checkpoints import (
    Checkpoint,
    CheckpointFormatError,
    PublicKey,
    SignedCheckpoint,
    origin_for,
    verify_signature,
)
from gatekeeper.audit.merkle import CompactRange, ProofError, verify_consistency
from gatekeeper.audit.records import GENESIS_HASH, LEAF_ASCII_FORMAT, RECORD_FORMAT, canonical_bytes

_TEXT_FIELDS = ("tenant", "kind", "at", "actor", "instance_id", "subject", "data", "prev_hash", "entry_hash")
_FIELDS = itemgetter("seq", *_TEXT_FIELDS)
PROGRESS_EVERY = 1024
Progress = Callable[[int], None]


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    size: int  # the verified tree size: entries [0, size) are covered by a valid signed checkpoint
    root: str  # hex Merkle root at `size`
    entries_checked: int
    checkpoints_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    trusted_key: bool = True  # False when signatures were checked against the bundle's own embedded key
    unsigned_tail: int = 0  # entries after the last checkpoint (online verification of a live log)

    def summary(self) -> str:
        if self.ok:
            return f"verified {self.size} entries, root {self.root}"
        return f"first bad entry: seq {self.first_bad_seq}: {self.problem}"


class _Bad(Exception):
    def __init__(self, seq: int, problem: str) -> None:
        super().__init__(problem)
        self.seq = seq
        self.problem = problem


@dataclass
class _State:
    good_size: int  # entries [0, good_size) are covered by a checkpoint that passed every check
    root: bytes
    checked: int = 0
    checkpoints: int = 0


@dataclass
class _Checkpoint:
    index: int
    signed: SignedCheckpoint | None
    parsed: Checkpoint | None
    error: str | None

    @property
    def size(self) -> int:
        return self.parsed.size if self.parsed else -1


def _load_checkpoints(raw: Iterable[Any], tenant: str) -> tuple[list[_Checkpoint], list[_Checkpoint]]:
    """(usable checkpoints sorted by size, malformed ones)."""
    good: list[_Checkpoint] = []
    broken: list[_Checkpoint] = []
    seen: set[tuple[str, str]] = set()
    origin = origin_for(tenant)
    for index, item in enumerate(raw):
        try:
            signed = item if isinstance(item, SignedCheckpoint) else SignedCheckpoint.model_validate(item)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "checkpoint"
            broken.append(_Checkpoint(index, None, None, f"checkpoint #{index}: field {where!r} is malformed"))
            continue
        key = (signed.note, signed.signature)
        if key in seen:
            continue  # the same checkpoint from the table and from the archive
        seen.add(key)
        try:
            parsed = signed.checkpoint()
            signed.signature_bytes()
        except CheckpointFormatError as exc:
            broken.append(_Checkpoint(index, signed, None, f"checkpoint #{index}: {exc}"))
            continue
        error = None
        if parsed.origin != origin:
            error = f"checkpoint at size {parsed.size} belongs to log {parsed.origin!r}, not {origin!r}"
        good.append(_Checkpoint(index, signed, parsed, error))
    good.sort(key=lambda c: (c.size, c.index))
    return good, broken


def _check_signature(cp: _Checkpoint, keys: Mapping[str, PublicKey]) -> str | None:
    assert cp.signed is not None and cp.parsed is not None
    if cp.error:
        return cp.error
    key = keys.get(cp.signed.key_fingerprint)
    if key is None:
        return (
            f"checkpoint at size {cp.parsed.size} is signed by key {cp.signed.key_fingerprint[:16]}..., "
            "which is not a trusted checkpoint key"
        )
    if not verify_signature(key, cp.signed.algorithm, cp.signed.note.encode("utf-8"), cp.signed.signature_bytes()):
        return f"checkpoint at size {cp.parsed.size}: signature does not verify"
    return None


def verify_log(
    tenant: str,
    entries: Sequence[Any],
    checkpoints: Iterable[Any],
    keys: Mapping[str, PublicKey],
    *,
    start: int = 0,
    frontier: Sequence[bytes] = (),
    consistency: Mapping[tuple[int, int], Sequence[bytes]] | None = None,
    expected_size: int | None = None,
    expected_last_hash: str | None = None,
    allow_unsigned_tail: bool = False,
    trusted_key: bool = True,
    progress: Progress | None = None,
) -> VerificationResult:
    """Verify entries [start, start+len(entries)) of `tenant`'s log. `frontier` is the compact range of the
    leaves before `start` (empty when start is 0); `consistency` maps (old size, new size) to the proof
    between consecutive checkpoints and, when given, every such proof must be present and verify."""
    try:
        compact = CompactRange(start, frontier)
    except ProofError as exc:
        return VerificationResult(False, start, "", 0, 0, start, f"frontier: {exc}", trusted_key)
    state = _State(start, compact.root())
    cps, broken = _load_checkpoints(checkpoints, tenant)
    try:
        if broken:
            raise _Bad(start, broken[0].error or "malformed checkpoint")
        _walk(tenant, entries, cps, keys, start, compact, consistency, state, progress)
        end = start + len(entries)
        if expected_size is not None and expected_size > end:
            raise _Bad(end, f"missing: the log records {expected_size} entries but the last present is seq {end - 1}")
        if expected_last_hash is not None and end > start and expected_last_hash != entries[-1].get("entry_hash"):
            raise _Bad(end - 1, "altered: the log head records a different hash for the last entry")
        good = state.good_size
        if good < end and not allow_unsigned_tail:
            raise _Bad(good, f"entries {good}..{end - 1} are not covered by any signed checkpoint")
        return VerificationResult(
            True, good, state.root.hex(), state.checked, state.checkpoints,
            trusted_key=trusted_key, unsigned_tail=end - good,
        )
    except _Bad as bad:
        return VerificationResult(
            False, state.good_size, state.root.hex(), state.checked, state.checkpoints, bad.seq, bad.problem,
            trusted_key,
        )


def _walk(
    tenant: str,
    entries: Sequence[Any],
    cps: list[_Checkpoint],
    keys: Mapping[str, PublicKey],
    start: int,
    compact: CompactRange,
    consistency: Mapping[tuple[int, int], Sequence[bytes]] | None,
    state: _State,
    progress: Progress | None,
) -> None:
    sha256 = hashlib.sha256
    previous: _Checkpoint | None = None  # last checkpoint that passed

    def good_size() -> int:
        return state.good_size

    def accept(cp: _Checkpoint, root_checked: bool) -> None:
        nonlocal previous
        assert cp.parsed is not None
        problem = _check_signature(cp, keys)
        if problem:
            raise _Bad(good_size(), problem)
        if previous is not None and previous.parsed is not None:
            s1, s2 = previous.parsed.size, cp.parsed.size
            if s1 == s2 and previous.parsed.root != cp.parsed.root:
                raise _Bad(good_size(), f"two signed checkpoints for size {s2} disagree")
            if s1 != s2 and consistency is not None:
                proof = consistency.get((s1, s2))
                if proof is None:
                    raise _Bad(good_size(), f"no consistency proof from checkpoint size {s1} to {s2}")
                try:
                    verify_consistency(s1, s2, previous.parsed.root, cp.parsed.root, proof)
                except ProofError as exc:
                    raise _Bad(good_size(), f"checkpoints at sizes {s1} and {s2} are not consistent: {exc}") from None
        if root_checked:
            state.good_size = cp.parsed.size
            state.root = cp.parsed.root
        previous = cp
        state.checkpoints += 1

    # Checkpoints before the range: only their signatures and the proofs linking them can be checked.
    pending = list(cps)
    while pending and pending[0].size < start:
        accept(pending.pop(0), root_checked=False)
    while pending and pending[0].size == start:
        cp = pending.pop(0)
        assert cp.parsed is not None
        if start and cp.parsed.root != compact.root():
            raise _Bad(start, f"the frontier does not produce the root signed by the checkpoint at size {start}")
        accept(cp, root_checked=True)
    next_size = pending[0].size if pending else -1

    prev_hex: str | None = GENESIS_HASH if start == 0 else None
    prev2_hex: str | None = None
    seq = start - 1
    hashes = compact.hashes  # the compact range, appended to inline: this loop is the verifier's hot path
    size = compact.size
    fields = _FIELDS
    join = "".join
    leaf_format = LEAF_ASCII_FORMAT
    format_len = len(RECORD_FORMAT)
    for chunk_start in range(0, len(entries), PROGRESS_EVERY):
        for entry in entries[chunk_start:chunk_start + PROGRESS_EVERY]:
            seq += 1
            try:
                found, t, k, at, a, i, su, d, p, h = fields(entry)
                join((t, k, at, a, i, su, d, p, h))  # a TypeError unless all nine are strings
            except (KeyError, TypeError):
                _diagnose(entries, seq - start, seq, tenant)
                raise AssertionError("unreachable") from None
            if found != seq or type(found) is not int or t != tenant:
                _diagnose(entries, seq - start, seq, tenant)
            seq_text = str(seq)
            text = leaf_format % (
                format_len, RECORD_FORMAT, len(t), t, len(seq_text), seq_text, len(k), k, len(at), at, len(a), a,
                len(i), i, len(su), su, len(d), d, len(p), p,
            )
            if text.isascii():  # the common case; otherwise lengths must count UTF-8 bytes
                digest = sha256(text.encode("ascii")).digest()
            else:
                digest = sha256(b"\x00" + canonical_bytes(t, seq, k, at, a, i, su, d, p)).digest()
            digest_hex = digest.hex()
            if p != prev_hex and prev_hex is not None:
                if prev2_hex is not None and p == prev2_hex and seq - 1 >= state.good_size:
                    raise _Bad(seq - 1, f"was inserted: seq {seq} links to seq {seq - 2}")
                if digest_hex != h:
                    raise _Bad(seq, "content altered: its hash does not match its fields")
                if seq - 1 < state.good_size:
                    raise _Bad(seq, f"prev_hash does not match the hash of seq {seq - 1}")
                raise _Bad(seq - 1, f"altered: its hash does not match the prev_hash recorded by seq {seq}")
            if digest_hex != h:
                raise _Bad(seq, "content altered: its hash does not match its fields")
            prev2_hex = prev_hex
            prev_hex = digest_hex
            hashes.append(digest)
            size += 1
            merge = size
            while not merge & 1:
                right = hashes.pop()
                hashes[-1] = sha256(b"\x01" + hashes[-1] + right).digest()
                merge >>= 1
            if size == next_size:
                compact.size = size
                state.checked = size - start
                root = compact.root()
                while pending and pending[0].size == size:
                    cp = pending.pop(0)
                    assert cp.parsed is not None
                    if cp.error is None and cp.parsed.root != root:
                        problem = _check_signature(cp, keys)
                        if problem:  # a forged checkpoint; the entries may be fine, but nothing proves them
                            raise _Bad(good_size(), problem)
                        raise _Bad(
                            good_size(),
                            f"entries {good_size()}..{seq} do not produce the Merkle root signed at size {size} "
                            "(rewritten after signing)",
                        )
                    accept(cp, root_checked=True)
                next_size = pending[0].size if pending else -1
        if progress is not None:
            progress(min(PROGRESS_EVERY, len(entries) - chunk_start))
    compact.size = size
    end = seq + 1
    state.checked = end - start
    for cp in pending:  # checkpoints beyond the last entry: a truncated log, or a forged checkpoint
        problem = _check_signature(cp, keys)
        if problem:
            raise _Bad(good_size(), problem)
        raise _Bad(end, f"missing: a signed checkpoint covers {cp.size} entries but the last present is seq {end - 1}")


def _diagnose(entries: Sequence[Any], index: int, seq: int, tenant: str) -> None:
    """The slow path for an entry that failed the fast checks: raise _Bad naming exactly what is wrong."""
    entry = entries[index]
    if type(entry) is not dict:
        raise _Bad(seq, "entry is not a JSON object")
    found = entry.get("seq")
    if type(found) is not int:
        raise _Bad(seq, "field 'seq' is missing or not an integer")
    if found != seq:
        if found == seq - 1:
            raise _Bad(found, "appears twice (a second entry claims the same sequence number)")
        if found > seq:
            later = entries[index + 1] if index + 1 < len(entries) else None
            if isinstance(later, dict) and later.get("seq") == seq:
                raise _Bad(seq, f"out of order (seq {found} found where seq {seq} belongs)")
            raise _Bad(seq, f"missing (the next entry present is seq {found})")
        raise _Bad(seq, f"out of order (seq {found} found where seq {seq} belongs)")
    for name in _TEXT_FIELDS:
        if type(entry.get(name)) is not str:
            raise _Bad(seq, f"field {name!r} is missing or not a string")
    if entry["tenant"] != tenant:
        raise _Bad(seq, f"belongs to tenant {entry['tenant']!r}, not {tenant!r} (moved between tenants)")
