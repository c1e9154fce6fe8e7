"""The verifier's two paths must agree: the bulk check (whole chunks at C speed) may only accept what the
entry-by-entry walk accepts, or a tampered log could pass through the fast path unnoticed.

A seeded differential fuzz: each case damages a log in one of the ways an attacker or a broken copy could
(field edits, wrong types, separators, str/dict/int subclasses, lone surrogates, moved, duplicated,
dropped or swapped entries, re-hashed forgeries) and both paths must reach the same verdict; when both
accept, they must build the same tree. Logs span more than one bulk chunk, so chunk seams are covered.
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Callable
from typing import Any

import pytest

from gatekeeper.audit.merkle import CompactRange, MerkleTree
from gatekeeper.audit.records import RECORD_FORMAT, SEPARATOR
from gatekeeper.audit.verify import CHUNK, _Bad, _Levels, _Verifier
from tests.unit.test_audit_support import make_entries, rehash

TENANT = "contoso"
TEXT_FIELDS = ("tenant", "kind", "at", "actor", "instance_id", "subject", "data", "prev_hash", "entry_hash")


class _Str(str):
    """A str subclass that claims equality with everything: exact-type checks must reject it."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


class _Dict(dict):
    pass


def _bulk_root(entries: list[Any]) -> tuple[int, bytes] | None:
    """(size, root) of the leaves the bulk check accepts, or None when it declines."""
    verifier = _Verifier(TENANT, {}, 0, CompactRange(), None)
    leaves = verifier._bulk(entries, None, None)
    if leaves is None:
        return None
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    return compact.size, compact.root()


def _walk_root(entries: list[Any]) -> tuple[int, bytes] | None:
    """(size, root) of the leaves the walk accepts, or None when it names a bad entry."""
    verifier = _Verifier(TENANT, {}, 0, CompactRange(), None)
    try:
        verifier._walk(entries)
    except _Bad:
        return None
    return verifier.compact.size, verifier.compact.root()


def _rehash_unchecked(entry: dict[str, Any]) -> None:
    """What a forger would compute: the leaf hash of the joined fields, separator or not."""
    fields = [entry[name] for name in ("tenant", "kind", "at", "actor", "instance_id", "subject", "data", "prev_hash")]
    text = SEPARATOR.join([RECORD_FORMAT, str(entry["seq"]), *fields])
    entry["entry_hash"] = hashlib.sha256(b"\x00" + text.encode()).hexdigest()


def _mutations(rng: random.Random) -> list[tuple[str, Callable[[list[dict[str, Any]]], None]]]:
    def field_edit(entries: list[dict[str, Any]]) -> None:
        entry = rng.choice(entries)
        name = rng.choice(TEXT_FIELDS)
        value = entry[name]
        position = rng.randrange(len(value) + 1)
        entry[name] = value[:position] + rng.choice("xZ0 \u00e9") + value[position:]

    def field_edit_rehashed(entries: list[dict[str, Any]]) -> None:
        entry = rng.choice(entries)
        entry[rng.choice(("actor", "subject", "data", "at"))] += "!"
        rehash(entry)

    def wrong_type(entries: list[dict[str, Any]]) -> None:
        entry = rng.choice(entries)
        entry[rng.choice(("seq", *TEXT_FIELDS))] = rng.choice([None, 7, 7.0, ["x"], {"a": 1}, b"x", True])

    def str_subclass(entries: list[dict[str, Any]]) -> None:
        entry = rng.choice(entries)
        name = rng.choice(TEXT_FIELDS)
        entry[name] = _Str(entry[name])

    def forged_hash_subclass(entries: list[dict[str, Any]]) -> None:
        entry = rng.choice(entries)
        entry["actor"] = "user:attacker"
        entry["entry_hash"] = _Str("f" * 64)

    def bool_seq(entries: list[dict[str, Any]]) -> None:
        if entries[1]["seq"] == 1:
            entries[1]["seq"] = True

    def separator(entries: list[dict[str, Any]]) -> None:
        """A separator inside a field, the chain re-linked after it as a forger would: only the separator
        rule catches it (such a field could be read as two, since the canonical bytes join on it)."""
        index = rng.randrange(len(entries))
        entry = entries[index]
        name = rng.choice(("kind", "actor", "instance_id", "subject", "data"))
        position = rng.randrange(len(entry[name]) + 1)
        entry[name] = entry[name][:position] + SEPARATOR + entry[name][position:]
        _rehash_unchecked(entry)
        for before, after in zip(entries[index:], entries[index + 1 :], strict=False):
            after["prev_hash"] = before["entry_hash"]
            rehash(after)

    def lone_surrogate(entries: list[dict[str, Any]]) -> None:
        rng.choice(entries)["subject"] += "\ud800"

    def missing_key(entries: list[dict[str, Any]]) -> None:
        del rng.choice(entries)[rng.choice(("seq", *TEXT_FIELDS))]

    def extra_key(entries: list[dict[str, Any]]) -> None:
        rng.choice(entries)["note"] = "harmless extra field"

    def not_a_dict(entries: list[dict[str, Any]]) -> None:
        index = rng.randrange(len(entries))
        entries[index] = rng.choice([list(entries[index].items()), _Dict(entries[index]), None, "entry"])

    def other_tenant(entries: list[dict[str, Any]]) -> None:
        entry = rng.choice(entries)
        entry["tenant"] = "fabrikam"
        rehash(entry)

    def swap(entries: list[dict[str, Any]]) -> None:
        i = rng.randrange(len(entries) - 1)
        entries[i], entries[i + 1] = entries[i + 1], entries[i]

    def duplicate(entries: list[dict[str, Any]]) -> None:
        i = rng.randrange(len(entries))
        entries.insert(i, copy.deepcopy(entries[i]))

    def drop(entries: list[dict[str, Any]]) -> None:
        del entries[rng.randrange(len(entries))]

    def truncate(entries: list[dict[str, Any]]) -> None:
        del entries[rng.randrange(1, len(entries)) :]

    def harmless(entries: list[dict[str, Any]]) -> None:
        entries[0] = dict(entries[0])

    return [
        (f.__name__, f)
        for f in (
            field_edit,
            field_edit_rehashed,
            wrong_type,
            str_subclass,
            forged_hash_subclass,
            bool_seq,
            separator,
            lone_surrogate,
            missing_key,
            extra_key,
            not_a_dict,
            other_tenant,
            swap,
            duplicate,
            drop,
            truncate,
            harmless,
        )
    ]


@pytest.fixture(scope="module")
def pristine() -> list[dict[str, Any]]:
    return make_entries(TENANT, CHUNK + 37)


def test_intact_log_is_accepted_by_both_paths_with_the_same_tree(pristine):
    bulk, walk = _bulk_root(pristine), _walk_root(pristine)
    assert bulk is not None and bulk == walk


@pytest.mark.parametrize("seed", range(12))
def test_bulk_and_walk_agree_on_every_damaged_log(pristine, seed):
    rng = random.Random(seed)
    mutations = _mutations(rng)
    for case in range(len(mutations) * 2):
        name, mutate = mutations[case % len(mutations)]
        entries = copy.deepcopy(pristine) if case % 3 == 0 else [dict(e) for e in pristine[: rng.randrange(2, 90)]]
        mutate(entries)
        bulk, walk = _bulk_root(entries), _walk_root(entries)
        assert (bulk is None) == (walk is None), f"seed {seed}, case {case}: {name}: bulk and walk disagree"
        if bulk is not None:
            assert bulk == walk, f"seed {seed}, case {case}: {name}: different trees"


def test_a_forged_hash_that_claims_equality_is_refused_by_both_paths(pristine):
    entries = [dict(e) for e in pristine[:20]]
    entries[5]["actor"] = "user:attacker"
    entries[5]["entry_hash"] = _Str("0" * 64)
    assert _bulk_root(entries) is None and _walk_root(entries) is None


def test_stored_hashes_that_only_line_up_when_concatenated_are_refused(pristine):
    """The bulk check compares a chunk's hashes as one text; moving a character from one stored hash to
    the next keeps that text identical, so the per-entry length check must catch it."""
    entries = [dict(e) for e in pristine[:20]]
    head, tail = entries[6]["entry_hash"], entries[7]["entry_hash"]
    entries[6]["entry_hash"], entries[7]["entry_hash"] = head[:-1], head[-1] + tail
    assert _bulk_root(entries) is None and _walk_root(entries) is None


def test_chunked_subtree_levels_give_every_root_of_the_whole_tree():
    """Subtrees hashed chunk by chunk must give the RFC 6962 root at every size, across chunk seams."""
    rng = random.Random(7)
    leaves = [rng.randbytes(32) for _ in range(2 * CHUNK + 5)]
    levels = _Levels()
    for offset in range(0, len(leaves), CHUNK):
        levels.add_chunk(leaves[offset : offset + CHUNK])
    levels.finish()
    tree = MerkleTree(leaves)
    sizes = {0, 1, 2, 3, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, len(leaves), *rng.sample(range(len(leaves)), 40)}
    for size in sorted(sizes):
        assert levels.root(size) == tree.root(size), size
