"""Tampering with the Audit table directly, as an attacker with storage access would (the table client,
not our code), is detected by online verification and named by its first bad sequence number; an export
of the tampered table fails offline verification the same way."""

from __future__ import annotations

import json

import pytest
from azure.data.tables import UpdateMode

from gatekeeper.audit.archive import blob_name
from gatekeeper.audit.bundle import check_bundle
from gatekeeper.audit.checkpoints import Checkpoint, sign_checkpoint
from gatekeeper.audit.export import export_bundle
from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.merkle import MerkleTree
from gatekeeper.audit.records import entry_canonical, entry_hash
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount

pytestmark = pytest.mark.azurite
N = 30


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    base = tmp_path_factory.mktemp("tamper")
    return {
        "signer": LocalCheckpointKey(base).signer(),
        "attacker": LocalCheckpointKey(base, "attacker").signer(),
        "provider": LocalKeyProvider(base, key_size=2048),
    }


@pytest.fixture
def storage(storage_connection_string):
    return StorageAccount(connection_string=storage_connection_string)


def new_log(storage, keys, tenant, n=N):
    log = AuditLog(storage, build_cipher(storage, keys["provider"]), keys["signer"], tenant, checkpoint_every=10)
    items = [
        {
            "kind": "decision",
            "actor": "system:gatekeeper",
            "instance_id": f"gate-{i // 3}",
            "subject": f"deploy-{i}",
            "data": {"level": "L1", "i": i},
        }
        for i in range(n)
    ]
    for start in range(0, n, 10):  # one transaction per 10 entries: checkpoints at 10, 20, 30
        log.append_many(items[start : start + 10])
    return log


@pytest.fixture
def log(storage, keys, unique_name):
    built = new_log(storage, keys, unique_name)
    assert built.check().ok
    return built


def row(seq: int) -> str:
    return f"{seq:020d}"


def entity(log, seq):
    return dict(log.table.get_entity("log", row(seq)))


def put(log, seq, values) -> None:
    """Overwrite entity `seq` with other properties, as an attacker with the account key can."""
    log.table.upsert_entity({**values, "PartitionKey": "log", "RowKey": row(seq)}, mode=UpdateMode.REPLACE)


def assert_detected(log, seq, fragment, keys):
    result = log.check()
    assert (result.ok, result.first_bad_seq) == (False, seq), result.summary()
    assert fragment in result.problem
    offline = check_bundle(export_bundle(log, sign_now=False), public_key_pem=keys["signer"].public_key_pem())
    assert (offline.ok, offline.first_bad_seq) == (False, seq), offline.summary()


def test_edit_a_field(log, keys):
    log.table.update_entity({"PartitionKey": "log", "RowKey": row(12), "actor": "user:mallory"}, mode=UpdateMode.MERGE)
    assert_detected(log, 12, "content altered", keys)


def test_edit_a_field_and_its_hash(log, keys):
    values = entity(log, 12)
    values["subject"] = "deploy-evil"
    values["entry_hash"] = entry_hash(entry_canonical({**values, "seq": 12})).hex()
    put(log, 12, values)
    assert_detected(log, 12, "altered", keys)


def test_delete_an_entry(log, keys):
    log.table.delete_entity("log", row(7))
    assert_detected(log, 7, "missing", keys)


def test_reorder_two_entries(log, keys):
    a, b = entity(log, 7), entity(log, 8)
    put(log, 7, b)
    put(log, 8, a)
    assert_detected(log, 7, "content altered", keys)


def test_insert_an_entry(log, keys):
    """Shift entries 5.. up by one and put a self-consistent forged entry at 5 (head updated too)."""
    for seq in range(N - 1, 4, -1):
        put(log, seq + 1, entity(log, seq))
    forged = entity(log, 5)
    forged["actor"] = "user:mallory"
    forged["prev_hash"] = entity(log, 4)["entry_hash"]
    forged["entry_hash"] = entry_hash(entry_canonical({**forged, "seq": 5})).hex()
    put(log, 5, forged)
    head = dict(log.table.get_entity("log", "head"))
    head["size"] = N + 1
    log.table.upsert_entity(head, mode=UpdateMode.REPLACE)
    assert_detected(log, 5, "inserted", keys)


def test_truncate(log, keys):
    for seq in range(25, N):
        log.table.delete_entity("log", row(seq))
    assert_detected(log, 25, "missing", keys)


def test_truncate_and_rewrite_head_and_table_checkpoints(log, keys):
    """The write-once archive still holds the checkpoint at size 30, which the table no longer does."""
    for seq in range(15, N):
        log.table.delete_entity("log", row(seq))
    for size in (20, 30):
        log.table.delete_entity("checkpoint", row(size))
    head = dict(log.table.get_entity("log", "head"))
    head.update(size=15, last_hash=entity(log, 14)["entry_hash"], cp_size=10)
    log.table.upsert_entity(head, mode=UpdateMode.REPLACE)
    result = log.check()
    assert (result.ok, result.first_bad_seq) == (False, 15) and "missing" in result.problem


def test_move_an_entry_between_tenants(storage, keys, log, unique_name):
    other = new_log(storage, keys, unique_name[:-1] + "z", n=10)
    put(log, 6, entity(other, 6))
    assert_detected(log, 6, "moved between tenants", keys)
    relabelled = entity(other, 6)
    relabelled["tenant"] = unique_name
    put(log, 6, relabelled)
    assert_detected(log, 6, "altered", keys)
    entry = next(log.entries(6, 7))
    with pytest.raises(SealedDataUnreadable):  # the sealed data is bound to its tenant, table and row
        log.open_data(entry)


def test_consistent_forgery_without_the_signing_key(log, keys):
    """Rewrite entry 10, re-chain every later entry, rewrite the head and re-sign the table's checkpoints
    with the attacker's key. The archived (WORM) checkpoints still carry the genuine roots."""
    values = entity(log, 10)
    values["actor"] = "user:mallory"
    prev = values["prev_hash"]
    leaves = [bytes.fromhex(e["entry_hash"]) for e in log.entries(0, 10)]
    for seq in range(10, N):
        current = values if seq == 10 else entity(log, seq)
        current["prev_hash"] = prev
        current["entry_hash"] = entry_hash(entry_canonical({**current, "seq": seq})).hex()
        put(log, seq, current)
        prev = current["entry_hash"]
        leaves.append(bytes.fromhex(prev))
    tree = MerkleTree(leaves)
    for size in (20, 30):
        old = log.table.get_entity("checkpoint", row(size))
        cp = Checkpoint.parse(old["note"])
        forged = sign_checkpoint(keys["attacker"], Checkpoint(cp.origin, size, tree.root(size), cp.time))
        log.table.upsert_entity(
            {"PartitionKey": "checkpoint", "RowKey": row(size), **forged.model_dump()}, mode=UpdateMode.REPLACE
        )
    head = dict(log.table.get_entity("log", "head"))
    head.update(last_hash=prev, cp_root=tree.root(30).hex())
    log.table.upsert_entity(head, mode=UpdateMode.REPLACE)
    result = log.check()
    assert (result.ok, result.first_bad_seq) == (False, 10), result.summary()


def test_rewritten_unsigned_tail_is_caught_by_the_head_last_hash(log, keys):
    """Entries after the last checkpoint are signed by nothing yet: an attacker who rewrites the last
    one and its hash keeps the chain intact, and only the head's `last_hash` still tells."""
    log.append("decision", "system:gatekeeper", "gate-x", "deploy-30", {"level": "L1"})
    log.append("decision", "system:gatekeeper", "gate-x", "deploy-31", {"level": "L1"})
    head = log.head()
    assert (head.size, head.checkpoint_size) == (N + 2, N)
    assert log.check().ok and log.check().unsigned_tail == 2
    values = entity(log, N + 1)
    values["subject"] = "deploy-evil"
    values["entry_hash"] = entry_hash(entry_canonical({**values, "seq": N + 1})).hex()
    put(log, N + 1, values)
    result = log.check()
    assert (result.ok, result.first_bad_seq) == (False, N + 1), result.summary()
    assert result.problem == "altered: the log head records a different hash for the last entry"


def test_an_archived_checkpoint_that_repeats_a_key_is_damaged(log, keys):
    """A WORM blob rewritten (where no immutability policy stops it, as in Azurite) to carry a second
    `note`: a lenient reader keeps the genuine last one and sees nothing; the strict reader refuses it."""
    container = log.archive._container
    name = blob_name(log.tenant_id, 20)
    body = container.download_blob(name).readall()
    forged = body.replace(b'{\n "algorithm"', b'{\n "note": "gatekeeper.audit/x\\n1\\nAA==\\nnow\\n",\n "algorithm"', 1)
    assert forged != body and json.loads(forged) == json.loads(body)
    container.upload_blob(name, forged, overwrite=True)
    result = log.check()
    assert not result.ok and "malformed" in result.problem, result.summary()
