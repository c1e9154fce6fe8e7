"""Gaps `make mutation MODULES=merkle` found in gatekeeper/audit/merkle.py (issue 21): the bounds of proof
generation and verification (a negative index or size, an index equal to the size), the leaf's own length,
and a proof longer than the tree is deep, each named by its message.

Expected roots and proofs are Certificate Transparency's published vectors (see tests/unit/test_merkle.py for
their source); nothing expected here is computed with the code under test.
"""

from __future__ import annotations

import pytest

from gatekeeper.audit.merkle import CompactRange, MerkleTree, ProofError, verify_consistency, verify_inclusion
from tests.unit.test_merkle import CONSISTENCY_PROOFS, INCLUSION_PROOFS, NODE_HASHES, ROOTS, SOME_HASH

LEAF_HASHES = NODE_HASHES[0]  # RFC 6962 leaf hashes of the eight vector inputs


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return MerkleTree(LEAF_HASHES)


def test_the_vector_tree_has_the_published_root(tree):
    assert tree.root() == ROOTS[8]


@pytest.mark.parametrize("size", range(1, 9))
def test_inclusion_proof_refuses_an_index_equal_to_the_size(tree, size):
    """Leaf `size` is not in a tree of `size` leaves: asking for its proof is an error, not some path."""
    with pytest.raises(ProofError, match=f"no inclusion proof for leaf {size} in a tree of size {size}"):
        tree.inclusion_proof(size, size)


def test_inclusion_proof_refuses_a_negative_index(tree):
    with pytest.raises(ProofError, match="no inclusion proof for leaf -1 in a tree of size 8"):
        tree.inclusion_proof(-1)
    with pytest.raises(ProofError, match="no inclusion proof for leaf -1 in a tree of size 5"):
        tree.inclusion_proof(-1, 5)


def test_tree_root_refuses_a_negative_size(tree):
    with pytest.raises(ProofError, match=r"tree size -1 is outside 0\.\.8"):
        tree.root(-1)
    assert tree.root(0) == ROOTS[0]


def test_consistency_proof_refuses_a_negative_old_size(tree):
    with pytest.raises(ProofError, match="no consistency proof from size -1 to 4"):
        tree.consistency_proof(-1, 4)
    with pytest.raises(ProofError, match="no consistency proof from size -1 to 8"):
        tree.consistency_proof(-1)


def test_compact_range_refuses_a_negative_size_even_with_a_hash_per_bit():
    """-1 has one set bit for int.bit_count(), so one hash would pass the shape check: the sign check must
    come first."""
    with pytest.raises(ProofError, match="compact range size must not be negative"):
        CompactRange(-1, [LEAF_HASHES[0]])
    with pytest.raises(ProofError, match="compact range size must not be negative"):
        CompactRange(-1)


def test_inclusion_at_index_minus_one_is_refused_though_it_would_fold_to_the_root():
    """Index -1 has every bit set, so the RFC 9162 fold treats it as the rightmost leaf: without the bound,
    leaf 1's genuine proof in a tree of two would 'prove' a leaf at index -1."""
    verify_inclusion(1, 2, LEAF_HASHES[1], [LEAF_HASHES[0]], ROOTS[2])  # the genuine proof verifies
    with pytest.raises(ProofError, match="leaf index -1 is outside a tree of size 2"):
        verify_inclusion(-1, 2, LEAF_HASHES[1], [LEAF_HASHES[0]], ROOTS[2])


@pytest.mark.parametrize("leaf", [LEAF_HASHES[5][:31], LEAF_HASHES[5] + b"\x00", b""])
def test_inclusion_refuses_a_leaf_of_the_wrong_length_with_a_well_formed_proof(leaf):
    index, size, proof = INCLUSION_PROOFS[2]  # leaf 6 (1-based) of 8
    verify_inclusion(index - 1, size, LEAF_HASHES[index - 1], proof, ROOTS[size])
    with pytest.raises(ProofError, match="inclusion proof hashes must be 32 bytes"):
        verify_inclusion(index - 1, size, leaf, proof, ROOTS[size])


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS)
def test_inclusion_proof_with_an_extra_hash_is_named_too_long(leaf, size, proof):
    with pytest.raises(ProofError, match="inclusion proof is longer than the tree is deep"):
        verify_inclusion(leaf - 1, size, LEAF_HASHES[leaf - 1], [*proof, SOME_HASH], ROOTS[size])


@pytest.mark.parametrize("old_size", [-1, -2, -8])
def test_consistency_from_a_negative_size_is_refused(old_size):
    _, _, proof = CONSISTENCY_PROOFS[2]  # 6 -> 8
    with pytest.raises(ProofError, match=f"tree cannot shrink from size {old_size} to 8"):
        verify_consistency(old_size, 8, ROOTS[6], ROOTS[8], proof)


@pytest.mark.parametrize(("size1", "size2", "proof"), [p for p in CONSISTENCY_PROOFS if p[2]])
def test_consistency_proof_with_an_extra_hash_is_named_too_long(size1, size2, proof):
    verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], proof)
    with pytest.raises(ProofError, match="consistency proof is longer than the tree is deep"):
        verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], [*proof, SOME_HASH])


def test_inclusion_at_an_index_equal_to_the_size_is_refused_though_it_would_fold_to_the_root():
    """In a tree of one leaf the root is the leaf hash and the proof is empty: without the strict bound,
    that leaf would also 'prove' a second leaf at index 1."""
    verify_inclusion(0, 1, LEAF_HASHES[0], [], ROOTS[1])  # vector (1, 1, []): the genuine proof
    with pytest.raises(ProofError, match="leaf index 1 is outside a tree of size 1"):
        verify_inclusion(1, 1, LEAF_HASHES[0], [], ROOTS[1])
    _, size, proof = INCLUSION_PROOFS[2]
    with pytest.raises(ProofError, match="leaf index 8 is outside a tree of size 8"):
        verify_inclusion(size, size, LEAF_HASHES[5], proof, ROOTS[size])
