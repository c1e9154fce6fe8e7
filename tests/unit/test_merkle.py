"""RFC 6962 Merkle tree against Certificate Transparency's published test vectors.

Vectors copied from transparency-dev/merkle (the Go library behind Trillian and Certificate Transparency):
- leaf inputs, node hashes and roots: `testonly/constants.go` (LeafInputs, NodeHashes, RootHashes,
  EmptyRootHash), commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1;
- inclusion and consistency proofs: `proof/verify_test.go` (inclusionProofs, consistencyProofs; leaf
  indices there are 1-based), commit 02194e9afb6c1d95b5381350007963aa70fff472.
"""

from __future__ import annotations

import hashlib
import random

import pytest

from gatekeeper.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

LEAF_INPUTS = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]

NODE_HASHES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

EMPTY_ROOT_HASH = h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
ROOTS = [  # by tree size 0..8
    EMPTY_ROOT_HASH,
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# (1-based leaf, tree size, proof) from proof/verify_test.go `inclusionProofs`.
INCLUSION_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (size1, size2, proof) from proof/verify_test.go `consistencyProofs`.
CONSISTENCY_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return MerkleTree(leaf_hash(d) for d in LEAF_INPUTS)


def test_empty_root_is_sha256_of_nothing():
    assert EMPTY_ROOT == EMPTY_ROOT_HASH == root([])


def test_leaf_and_node_hashes_match_vectors():
    assert [leaf_hash(d) for d in LEAF_INPUTS] == NODE_HASHES[0]
    for level in range(1, 4):
        below = NODE_HASHES[level - 1]
        assert [node_hash(below[i], below[i + 1]) for i in range(0, len(below), 2)] == NODE_HASHES[level]


@pytest.mark.parametrize("size", range(0, 9))
def test_roots_match_vectors_for_every_size(size, tree):
    assert root(LEAF_INPUTS[:size]) == ROOTS[size]
    assert tree.root(size) == ROOTS[size]
    compact = CompactRange()
    for d in LEAF_INPUTS[:size]:
        compact.append(leaf_hash(d))
    assert compact.root() == ROOTS[size]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS)
def test_inclusion_proofs_match_vectors(leaf, size, proof, tree):
    assert tree.inclusion_proof(leaf - 1, size) == proof
    verify_inclusion(leaf - 1, size, leaf_hash(LEAF_INPUTS[leaf - 1]), proof, ROOTS[size])


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_PROOFS)
def test_consistency_proofs_match_vectors(size1, size2, proof, tree):
    assert tree.consistency_proof(size1, size2) == proof
    verify_consistency(size1, size2, ROOTS[size1], ROOTS[size2], proof)


def test_every_generated_proof_verifies_for_small_trees():
    leaves = [leaf_hash(i.to_bytes(2, "big")) for i in range(70)]
    tree = MerkleTree(leaves)
    for size in range(1, 71):
        r = tree.root(size)
        for index in range(size):
            verify_inclusion(index, size, leaves[index], tree.inclusion_proof(index, size), r)
        for old in range(0, size + 1):
            verify_consistency(old, size, tree.root(old), r, tree.consistency_proof(old, size))


def _inclusion_probes(index, size, proof, r, leaf):
    """The corruptions transparency-dev's corruptInclusionProof applies; none may verify."""
    probes = [
        (index - 1, size, r, leaf, proof),
        (index + 1, size, r, leaf, proof),
        (index ^ 2, size, r, leaf, proof),
        (index, size * 2, r, leaf, proof),
        (index, size // 2, r, leaf, proof),
        (index, size, r, b"WrongLeaf", proof),
        (index, size, EMPTY_ROOT_HASH, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, r, leaf, [*proof, b""]),
        (index, size, r, leaf, [*proof, r]),
        (index, size, r, leaf, [b"", *proof]),
        (index, size, r, leaf, [r, *proof]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((index, size, r, leaf, bad))
    if proof:
        probes.append((index, size, r, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append((index, size, r, leaf, [proof[0], SOME_HASH, *proof[1:]]))
    return probes


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS[1:])
def test_corrupted_inclusion_proofs_fail(leaf, size, proof):
    good_leaf = leaf_hash(LEAF_INPUTS[leaf - 1])
    for probe in _inclusion_probes(leaf - 1, size, proof, ROOTS[size], good_leaf):
        with pytest.raises(ProofError):
            verify_inclusion(*probe[:2], probe[3], probe[4], probe[2])


@pytest.mark.parametrize(("size1", "size2", "proof"), [p for p in CONSISTENCY_PROOFS if p[2]])
def test_corrupted_consistency_proofs_fail(size1, size2, proof):
    r1, r2 = ROOTS[size1], ROOTS[size2]
    probes = [
        (size1 - 1, size2, r1, r2, proof),
        (size1 + 1, size2, r1, r2, proof),
        (size1 ^ 2, size2, r1, r2, proof),
        (size1, size2 * 2, r1, r2, proof),
        (size1, size2 // 2, r1, r2, proof),
        (size1, size2, b"WrongRoot", r2, proof),
        (size1, size2, r1, b"WrongRoot", proof),
        (size1, size2, r2, r1, proof),
        (size1, size2, r1, r2, []),
        (size1, size2, r1, r2, [*proof, b""]),
        (size1, size2, r1, r2, [*proof, r1]),
        (size1, size2, r1, r2, [*proof, r2]),
        (size1, size2, r1, r2, [b"", *proof]),
        (size1, size2, r1, r2, [r1, *proof]),
        (size1, size2, r1, r2, [r2, *proof]),
        (size1, size2, r1, r2, [proof[0], *proof]),
        (size1, size2, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((size1, size2, r1, r2, bad))
    for s1, s2, a, b, p in probes:
        with pytest.raises(ProofError):
            verify_consistency(s1, s2, a, b, p)


def test_consistency_edge_cases_from_vectors_file():
    r1, r2 = b"don't care 1", b"don't care 2"
    verify_consistency(0, 0, r1, r1, [])
    verify_consistency(0, 1, r1, r2, [])
    verify_consistency(1, 1, r2, r2, [])
    for args in [
        (0, 0, r1, r2, []),
        (1, 1, r1, r2, []),
        (1, 0, r1, r2, []),
        (2, 1, r1, r2, []),
        (1, 2, r1, r2, []),
        (0, 0, EMPTY_ROOT_HASH, EMPTY_ROOT_HASH, [EMPTY_ROOT_HASH]),
        (0, 1, EMPTY_ROOT_HASH, EMPTY_ROOT_HASH, [EMPTY_ROOT_HASH]),
        (1, 1, EMPTY_ROOT_HASH, EMPTY_ROOT_HASH, [EMPTY_ROOT_HASH]),
    ]:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_compact_range_resumes_from_a_frontier():
    rng = random.Random(7)
    leaves = [hashlib.sha256(rng.randbytes(8)).digest() for _ in range(300)]
    full = MerkleTree(leaves)
    for start in (0, 1, 5, 64, 127, 200):
        head = CompactRange()
        for leaf in leaves[:start]:
            head.append(leaf)
        resumed = CompactRange(start, head.hashes)
        for leaf in leaves[start:]:
            resumed.append(leaf)
        assert resumed.root() == full.root()
    with pytest.raises(ProofError):
        CompactRange(5, [leaves[0]])  # 5 = 4 + 1 needs two subtree hashes
