"""Verification of a tenant's log: pure code over entries and checkpoints, shared by the online check
(`AuditLog.verify`) and the offline one (`verify_bundle`).

It walks the entries in order and stops at the first problem, naming the first sequence number whose
integrity cannot be established:

- per entry: seq continuity (gap, duplicate, reorder), field types, exactly the hashed fields (an unhashed
  extra such as `approved_by` is refused, not ignored), tenant, the prev_hash link to the entry before and
  the entry's own hash;
- per checkpoint: the note's origin, the Merkle root recomputed at its size, its signature by a trusted key,
  and the RFC 6962 consistency proof from the checkpoint before it;
- at the end: checkpoints or a head that claim more entries than there are (truncation), entries no
  signed checkpoint covers, a verified size that no checkpoint signature covers (a frontier alone proves
  nothing), and consistency proofs that linked no two checkpoints (data nobody checked).

When a link between seq n-1 and n breaks, the blame goes to the entry whose own evidence fails: n when its
hash does not match its content, n-1 when n links to n-2 (n-1 was inserted) or when n is self-consistent
(n-1 was altered and re-hashed). A root or signature failure means the entries after the last good
checkpoint were rewritten consistently (a forgery without the signing key): the first entry no valid
checkpoint covers is reported.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
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
from gatekeeper.audit.merkle import EMPTY_ROOT, CompactRange, ProofError, node_hash, verify_consistency
from gatekeeper.audit.records import ENTRY_FIELDS, GENESIS_HASH, LEAF_PREFIX, SEPARATOR, canonical_bytes
from gatekeeper.errors import IntegrityError

_TEXT_FIELDS = ENTRY_FIELDS[1:]  # tenant .. entry_hash
CHUNK_LEVELS = 10
CHUNK = 1 << CHUNK_LEVELS  # entries checked per bulk step (and per progress update): a whole subtree
HEX_LENGTH = 64
_ENTRY_KEYS = frozenset(ENTRY_FIELDS)
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


class VerificationError(IntegrityError):
    """The one way verification fails: `seq` is the first entry whose integrity cannot be established and
    `reason` says why. `result` is the partial verification up to that point (what was proven before it)."""

    default_code = "verification-failed"
    default_title = "The audit log failed verification"

    def __init__(self, seq: int, reason: str, result: VerificationResult | None = None) -> None:
        super().__init__(f"first bad entry: seq {seq}: {reason}", extra={"seq": seq})
        self.seq = seq
        self.reason = reason
        self.result = result

    def __str__(self) -> str:
        return self.detail

    @classmethod
    def of(cls, result: VerificationResult) -> VerificationError:
        """The error for a failed result (`result.ok` is False)."""
        return cls(result.first_bad_seq if result.first_bad_seq is not None else 0, result.problem or "", result)


_Bad = VerificationError  # the short name the many checks below raise


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
    signature: bytes = b""  # decoded once, when loaded

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
            signature = signed.signature_bytes()
        except CheckpointFormatError as exc:
            broken.append(_Checkpoint(index, signed, None, f"checkpoint #{index}: {exc}"))
            continue
        error = None
        if parsed.origin != origin:
            error = f"checkpoint at size {parsed.size} belongs to log {parsed.origin!r}, not {origin!r}"
        good.append(_Checkpoint(index, signed, parsed, error, signature))
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
    if not verify_signature(key, cp.signed.algorithm, cp.signed.note.encode("utf-8"), cp.signature):
        return f"checkpoint at size {cp.parsed.size}: signature does not verify"
    return None


def check_log(
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
    """Verify entries [start, start+len(entries)) of `tenant`'s log and report the outcome, failed or not
    (for reports that show what was proven before the first bad entry: the CLI's lines, OSCAL). `frontier`
    is the compact range of the leaves before `start` (empty when start is 0); `consistency` maps (old size,
    new size) to the proof between consecutive checkpoints and, when given, every such proof must be present
    and verify."""
    try:
        compact = CompactRange(start, frontier)
    except ProofError as exc:
        return VerificationResult(False, start, "", 0, 0, start, f"frontier: {exc}", trusted_key)
    verifier = _Verifier(tenant, keys, start, compact, consistency)
    state = verifier.state
    cps, broken = _load_checkpoints(checkpoints, tenant)
    try:
        if broken:
            raise _Bad(start, broken[0].error or "malformed checkpoint")
        verifier.run(entries, cps, progress)
        end = start + len(entries)
        if expected_size is not None and expected_size > end:
            raise _Bad(end, f"missing: the log records {expected_size} entries but the last present is seq {end - 1}")
        if expected_last_hash is not None and end > start and expected_last_hash != entries[-1].get("entry_hash"):
            raise _Bad(end - 1, "altered: the log head records a different hash for the last entry")
        good = state.good_size
        if good < end and not allow_unsigned_tail:
            raise _Bad(good, f"entries {good}..{end - 1} are not covered by any signed checkpoint")
        if good and not verifier.anchored:
            state.good_size, state.root = 0, EMPTY_ROOT
            raise _Bad(
                0,
                f"no trusted checkpoint signature covers entry {good - 1}: the {good} entries rest on "
                "the frontier alone, which nothing signed",
            )
        unused = sorted(set(consistency or ()) - verifier.used_proofs)
        if unused:
            a, b = unused[0]
            raise _Bad(
                min(a, good),
                f"consistency proof from size {a} to {b} links no two checkpoints of the bundle (nothing checked it)",
            )
        return VerificationResult(
            True,
            good,
            state.root.hex(),
            state.checked,
            state.checkpoints,
            trusted_key=trusted_key,
            unsigned_tail=end - good,
        )
    except VerificationError as bad:
        return VerificationResult(
            False,
            state.good_size,
            state.root.hex(),
            state.checked,
            state.checkpoints,
            bad.seq,
            bad.reason,
            trusted_key,
        )


def verify_log(
    tenant: str, entries: Sequence[Any], checkpoints: Iterable[Any], keys: Mapping[str, PublicKey], **kw: Any
) -> VerificationResult:
    """`check_log` that raises: the verified result, or VerificationError naming the first bad entry."""
    result = check_log(tenant, entries, checkpoints, keys, **kw)
    if not result.ok:
        raise VerificationError.of(result)
    return result


class _Verifier:
    """Entries are first checked in bulk (C-level map/compare over whole chunks: the common, untampered
    case); if anything in a chunk does not match, the entry-by-entry walk finds and names the first bad
    entry. Both apply the same rules."""

    def __init__(
        self,
        tenant: str,
        keys: Mapping[str, PublicKey],
        start: int,
        compact: CompactRange,
        consistency: Mapping[tuple[int, int], Sequence[bytes]] | None,
    ) -> None:
        self.tenant = tenant
        self.keys = keys
        self.start = start
        self.compact = compact
        self.consistency = consistency
        self.state = _State(start, compact.root())
        self.previous: _Checkpoint | None = None  # last checkpoint that passed
        self.pending: list[_Checkpoint] = []
        self.anchored = False  # a checkpoint whose root was recomputed here covers good_size
        self.used_proofs: set[tuple[int, int]] = set()

    # -- checkpoints -----------------------------------------------------------------------------
    def accept(self, cp: _Checkpoint, root_checked: bool) -> None:
        assert cp.parsed is not None
        state = self.state
        problem = _check_signature(cp, self.keys)
        if problem:
            raise _Bad(state.good_size, problem)
        previous = self.previous
        if previous is not None and previous.parsed is not None:
            s1, s2 = previous.parsed.size, cp.parsed.size
            if s1 == s2 and previous.parsed.root != cp.parsed.root:
                raise _Bad(state.good_size, f"two signed checkpoints for size {s2} disagree")
            if s1 != s2 and self.consistency is not None:
                proof = self.consistency.get((s1, s2))
                self.used_proofs.add((s1, s2))
                if proof is None:
                    raise _Bad(state.good_size, f"no consistency proof from checkpoint size {s1} to {s2}")
                try:
                    verify_consistency(s1, s2, previous.parsed.root, cp.parsed.root, proof)
                except ProofError as exc:
                    raise _Bad(
                        state.good_size, f"checkpoints at sizes {s1} and {s2} are not consistent: {exc}"
                    ) from None
        if root_checked:
            state.good_size = cp.parsed.size
            state.root = cp.parsed.root
            self.anchored = True
        self.previous = cp
        state.checkpoints += 1

    def checkpoints_at(self, size: int, root: bytes) -> None:
        """Judge every pending checkpoint of this size against the recomputed root."""
        state = self.state
        state.checked = size - self.start
        same = list(itertools.takewhile(lambda c: c.size == size, self.pending))
        if len({c.parsed.root for c in same if c.parsed is not None and c.error is None}) > 1:
            for cp in same:  # a forged one is named as such; two genuine ones mean the log forked
                problem = _check_signature(cp, self.keys)
                if problem:
                    raise _Bad(state.good_size, problem)
            raise _Bad(state.good_size, f"two signed checkpoints for size {size} disagree (the log forked)")
        while self.pending and self.pending[0].size == size:
            cp = self.pending.pop(0)
            assert cp.parsed is not None
            if cp.error is None and cp.parsed.root != root:
                problem = _check_signature(cp, self.keys)
                if problem:  # a forged checkpoint; the entries may be fine, but nothing proves them
                    raise _Bad(state.good_size, problem)
                raise _Bad(
                    state.good_size,
                    f"entries {state.good_size}..{size - 1} do not produce the Merkle root signed at size {size} "
                    "(rewritten after signing)",
                )
            self.accept(cp, root_checked=True)

    def next_size(self) -> int:
        return self.pending[0].size if self.pending else -1

    # -- the run ---------------------------------------------------------------------------------
    def run(self, entries: Sequence[Any], cps: list[_Checkpoint], progress: Progress | None) -> None:
        start = self.start
        self.pending = list(cps)
        # Checkpoints before the range: only their signatures and the proofs linking them can be checked.
        while self.pending and self.pending[0].size < start:
            self.accept(self.pending.pop(0), root_checked=False)
        first = self.pending[0] if self.pending else None
        if (
            start
            and first is not None
            and first.size == start
            and first.parsed
            and first.parsed.root != self.compact.root()
        ):
            raise _Bad(start, f"the frontier does not produce the root signed by the checkpoint at size {start}")
        self.checkpoints_at(start, self.compact.root())

        levels = _Levels() if start == 0 else None
        digests = self._bulk(entries, progress, levels)
        if digests is None:
            self._walk(entries)  # names the first bad entry (and judges checkpoints up to it on the way)
            raise AssertionError("the entry walk found nothing the bulk check rejected")  # pragma: no cover
        end = start + len(entries)
        if levels is not None:
            levels.finish()
            while self.pending and self.pending[0].size <= end:
                size = self.pending[0].size
                self.checkpoints_at(size, levels.root(size))
        else:
            self._checkpoints_streaming(digests)
        self.state.checked = end - start
        self._beyond(end)

    def _beyond(self, end: int) -> None:
        for cp in self.pending:  # checkpoints beyond the last entry: a truncated log, or a forged checkpoint
            problem = _check_signature(cp, self.keys)
            if problem:
                raise _Bad(self.state.good_size, problem)
            raise _Bad(
                end, f"missing: a signed checkpoint covers {cp.size} entries but the last present is seq {end - 1}"
            )

    def _bulk(self, entries: Sequence[Any], progress: Progress | None, levels: _Levels | None) -> list[bytes] | None:
        """Leaf hashes of all entries when every entry passes every per-entry rule, else None. With
        `levels` (a log from seq 0) each chunk's subtree is hashed into it while its leaves are in cache.

        Per chunk each field is read into a column (one C-level map per field) and the rules of
        `_diagnose` and `canonical_bytes` are checked over whole columns: every entry is a dict (not a
        subclass or other mapping), every seq exactly the int expected, every text field exactly a str,
        every tenant ours, no field holding U+001F (a memchr over each column's concatenation), every hash
        that of the entry's canonical bytes and every prev_hash the hash before it. So the bulk check
        accepts exactly what the walk accepts, only faster. Hashes are compared per chunk as one hex text
        each side, after checking that every stored hash is 64 characters long, so that the comparison
        still holds entry by entry."""
        sha256, encode = hashlib.sha256, str.encode
        join, separator, tenant, getters = SEPARATOR.join, SEPARATOR, self.tenant, _COLUMNS
        digests: list[bytes] = []
        prev: str | None = GENESIS_HASH if self.start == 0 else None
        for offset in range(0, len(entries), CHUNK):
            chunk = entries[offset : offset + CHUNK]
            count = len(chunk)
            seq_range = range(self.start + offset, self.start + offset + count)
            if list(map(type, chunk)) != [dict] * count or list(map(len, chunk)) != [len(ENTRY_FIELDS)] * count:
                return None  # (every hashed field is read below, so ten keys means no unhashed extra)
            try:
                seqs, *texts, stored = [tuple(map(get, chunk)) for get in getters]
            except KeyError:
                return None
            strs = [str] * count
            if (
                list(map(type, seqs)) != [int] * count
                or seqs != tuple(seq_range)
                or any(list(map(type, column)) != strs for column in (stored, *texts))
                or any(separator in "".join(column) for column in texts)
                or texts[0].count(tenant) != count
            ):
                return None
            try:
                # one pipeline, so each leaf text is hashed while still in cache; a comprehension, because
                # `.digest()` called in place skips the bound method a methodcaller would build per leaf.
                # repr of an exact int is its decimal form, as str() gives, with less call overhead
                leaves = map(encode, map(join, zip(repeat(_LEAF_HEAD), map(repr, seq_range), *texts)))
                hashed = [sha256(leaf).digest() for leaf in leaves]
            except UnicodeError:  # a lone surrogate: the walk names the field
                return None
            prevs, lengths = texts[-1], [HEX_LENGTH] * count
            computed = b"".join(hashed).hex()
            if (
                list(map(len, stored)) != lengths
                or list(map(len, prevs)) != lengths
                or "".join(stored) != computed
                or "".join(prevs) != (prevs[0] if prev is None else prev) + computed[:-HEX_LENGTH]
            ):
                return None
            prev = computed[-HEX_LENGTH:]
            digests += hashed
            if levels is not None:
                levels.add_chunk(hashed)
            if progress is not None:
                progress(count)
        return digests

    def _checkpoints_streaming(self, digests: list[bytes]) -> None:
        """A range export: continue the frontier's compact range leaf by leaf."""
        compact = self.compact
        for leaf in digests:
            compact.append(leaf)
            if compact.size == self.next_size():
                self.checkpoints_at(compact.size, compact.root())

    def _walk(self, entries: Sequence[Any]) -> None:
        """Entry by entry, in order, with checkpoints judged as their size is reached."""
        start, tenant, compact, sha256 = self.start, self.tenant, self.compact, hashlib.sha256
        prev_hex: str | None = GENESIS_HASH if start == 0 else None
        prev2_hex: str | None = None
        for index, entry in enumerate(entries):
            seq = start + index
            _diagnose(entries, index, seq, tenant)
            try:
                canonical = canonical_bytes(
                    entry["tenant"],
                    seq,
                    entry["kind"],
                    entry["at"],
                    entry["actor"],
                    entry["instance_id"],
                    entry["subject"],
                    entry["data"],
                    entry["prev_hash"],
                )
            except ValueError as exc:
                raise _Bad(seq, f"field {exc}") from None
            digest = sha256(b"\x00" + canonical).digest()
            digest_hex, p, h = digest.hex(), entry["prev_hash"], entry["entry_hash"]
            if prev_hex is not None and p != prev_hex:
                if prev2_hex is not None and p == prev2_hex and seq - 1 >= self.state.good_size:
                    raise _Bad(seq - 1, f"was inserted: seq {seq} links to seq {seq - 2}")
                if digest_hex != h:
                    raise _Bad(seq, "content altered: its hash does not match its fields")
                if seq - 1 < self.state.good_size:
                    raise _Bad(seq, f"prev_hash does not match the hash of seq {seq - 1}")
                raise _Bad(seq - 1, f"altered: its hash does not match the prev_hash recorded by seq {seq}")
            if digest_hex != h:
                raise _Bad(seq, "content altered: its hash does not match its fields")
            prev2_hex, prev_hex = prev_hex, digest_hex
            compact.append(digest)
            if compact.size == self.next_size():
                self.checkpoints_at(compact.size, compact.root())


# seq, the fields of the canonical bytes in their order (tenant .. prev_hash), then entry_hash.
_COLUMNS = tuple(map(itemgetter, ("seq", *_TEXT_FIELDS)))
_LEAF_HEAD = LEAF_PREFIX.removesuffix(SEPARATOR)  # joined with seq and the fields by SEPARATOR


class _Levels:
    """Every perfect subtree root of a log exported from seq 0, level by level (level k holds the roots
    of the aligned 2**k-leaf subtrees), so each checkpoint's root is read in O(log n) hashes.

    Chunks are CHUNK (a power of two) leaves, aligned, so a chunk's pairs never straddle two chunks up
    to level CHUNK_LEVELS; `finish` pairs the chunk roots above that."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[] for _ in range(CHUNK_LEVELS + 1)]

    def add_chunk(self, leaves: list[bytes]) -> None:
        level = leaves
        for k in range(CHUNK_LEVELS + 1):
            self.levels[k] += level
            if k == CHUNK_LEVELS or len(level) < 2:
                return
            level = _pairs(level)

    def finish(self) -> None:
        levels = self.levels
        while len(levels) > 1 and not levels[-1]:
            levels.pop()
        while len(levels[-1]) > 1:
            levels.append(_pairs(levels[-1]))

    def root(self, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        levels, parts = self.levels, []
        position, remaining = 0, size
        while remaining:
            level = remaining.bit_length() - 1
            parts.append(levels[level][position >> level])
            position += 1 << level
            remaining -= 1 << level
        acc = parts[-1]
        for h in reversed(parts[:-1]):
            acc = node_hash(h, acc)
        return acc


def _pairs(level: list[bytes]) -> list[bytes]:
    """The parents of each complete pair of a level, `SHA-256(0x01 || left || right)`; an odd last node has
    no parent at this level (not strict zip)."""
    sha256, pairs = hashlib.sha256, zip(level[0::2], level[1::2], strict=False)
    return [sha256(b"\x01" + left + right).digest() for left, right in pairs]


def _diagnose(entries: Sequence[Any], index: int, seq: int, tenant: str) -> None:
    """Raise VerificationError naming exactly what is wrong with the entry's shape, if anything."""
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
    extra = sorted(set(entry) - _ENTRY_KEYS)
    if extra:
        raise _Bad(seq, f"field {extra[0]!r} is not covered by the entry's hash (unhashed fields are refused)")
    if entry["tenant"] != tenant:
        raise _Bad(seq, f"belongs to tenant {entry['tenant']!r}, not {tenant!r} (moved between tenants)")
