"""RFC 6962 (Certificate Transparency) Merkle tree hashing, proofs and proof verification.

Pure functions over bytes, so the audit log, the exporter and the offline verifier share one definition:
leaf hash `SHA-256(0x00 || d)`, interior node `SHA-256(0x01 || left || right)`, the empty tree's root is
`SHA-256("")`. Proof generation follows RFC 6962 section 2.1 (PATH and SUBPROOF); verification follows the
iterative algorithms of RFC 9162 section 2.1.3.2 and 2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


class ProofError(ValueError):
    """A proof does not verify, or was asked for impossible sizes/indices. The message says which."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2): RFC 6962's k."""
    return 1 << ((n - 1).bit_length() - 1)


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves (the compact-range fold, O(n) time, O(log n) memory)."""
    compact = CompactRange()
    for h in hashes:
        compact.append(h)
    return compact.root()


def root(leaves: Iterable[bytes]) -> bytes:
    """MTH(D[n]) over raw leaf inputs."""
    return root_from_leaf_hashes([leaf_hash(d) for d in leaves])


class CompactRange:
    """The right edge of a growing tree: roots of the perfect subtrees that [0, size) decomposes into,
    largest first. Appending is O(1) amortised and the root is a right fold, so a verifier can stream
    millions of entries in O(log n) memory; a range export ships this state for the entries it omits."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ProofError("compact range size must not be negative")
        if len(hashes) != size.bit_count():
            raise ProofError(f"compact range of size {size} needs {size.bit_count()} hashes, got {len(hashes)}")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ProofError("compact range hashes must be 32 bytes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (not the raw leaf input)."""
        hashes = self.hashes
        hashes.append(leaf)
        self.size += 1
        size = self.size
        while not size & 1:
            right = hashes.pop()
            hashes[-1] = hashlib.sha256(_NODE + hashes[-1] + right).digest()
            size >>= 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        acc = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)


class MerkleTree:
    """An in-memory tree over leaf hashes, keeping every perfect subtree root so that any RFC 6962 subtree
    hash costs O(log n); used by the exporter to build inclusion and consistency proofs."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes:
            self.append(h)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise ProofError("leaf hashes must be 32 bytes")
        levels = self._levels
        levels[0].append(leaf)
        level = 0
        while len(levels[level]) % 2 == 0:
            row = levels[level]
            parent = node_hash(row[-2], row[-1])
            if level + 1 == len(levels):
                levels.append([])
            levels[level + 1].append(parent)
            level += 1

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC 6962's recursion produces (start aligned to the range)."""
        if end - start == 0:
            return EMPTY_ROOT
        parts: list[bytes] = []
        pos = start
        remaining = end - start
        while remaining:
            width = 1 << (remaining.bit_length() - 1)
            level = width.bit_length() - 1
            if pos % width:
                raise ProofError(f"range [{start}, {end}) is not aligned for a subtree lookup")
            parts.append(self._levels[level][pos // width])
            pos += width
            remaining -= width
        acc = parts[-1]
        for h in reversed(parts[:-1]):
            acc = node_hash(h, acc)
        return acc

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is outside 0..{self.size}")
        return self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) from RFC 6962 section 2.1.1."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ProofError(f"no inclusion proof for leaf {index} in a tree of size {size}")
        proof: list[bytes] = []
        start, end, m = 0, size, index
        path: list[tuple[int, int]] = []
        while end - start > 1:
            k = _split(end - start)
            if m < k:
                path.append((start + k, end))
                end = start + k
            else:
                path.append((start, start + k))
                start, m = start + k, m - k
        for lo, hi in reversed(path):
            proof.append(self._subtree(lo, hi))
        return proof

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) from RFC 6962 section 2.1.2."""
        new_size = self.size if new_size is None else new_size
        if not 0 <= old_size <= new_size <= self.size:
            raise ProofError(f"no consistency proof from size {old_size} to {new_size}")
        if old_size in (0, new_size):
            return []
        out: list[bytes] = []
        self._subproof(old_size, 0, new_size, True, out)
        return out

    def _subproof(self, m: int, start: int, end: int, complete: bool, out: list[bytes]) -> None:
        n = end - start
        if m == n:
            if not complete:
                out.append(self._subtree(start, end))
            return
        k = _split(n)
        if m <= k:
            self._subproof(m, start, start + k, complete, out)
            out.append(self._subtree(start + k, end))
        else:
            self._subproof(m - k, start + k, end, False, out)
            out.append(self._subtree(start, start + k))


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes) -> None:
    """RFC 9162 2.1.3.2; `leaf` is the leaf hash. Raises ProofError naming what failed."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("inclusion proof hashes must be 32 bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    if r != expected_root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 2.1.4.2. Raises ProofError naming what failed."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"tree cannot shrink from size {old_size} to {new_size}")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("consistency proof hashes must be 32 bytes")
    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    sha256 = hashlib.sha256
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = sha256(_NODE + c + fr).digest()
            sr = sha256(_NODE + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha256(_NODE + sr + c).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree is deep")
    if fr != old_root:
        raise ProofError(f"consistency proof does not reproduce the root of size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not reproduce the root of size {new_size}")
