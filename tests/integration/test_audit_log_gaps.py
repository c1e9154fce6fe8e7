"""The audit log where its own bookkeeping is damaged or refused: a head rolled back under entries that
exist (an append must not overwrite history), head fields of the wrong type, a log whose head is gone, a
sealed text that opens to something else, a batch too large for one transaction, and the settings and keys
the log refuses to run without. Azurite, local keys, the real log."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from azure.data.tables import UpdateMode

from gatekeeper.audit.log import (
    ENTRY_PARTITION,
    HEAD_ROW,
    MAX_TRANSACTION_CHARS,
    AuditLog,
    AuditLogCorrupted,
    entity_to_entry,
)
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.audit.verify import VerificationError
from gatekeeper.store.envelope import SealedDataUnreadable
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("audit-gaps")
    return {"signer": LocalCheckpointKey(base).signer(), "provider": LocalKeyProvider(base, key_size=2048)}


@pytest.fixture
def storage(storage_connection_string: str) -> StorageAccount:
    return StorageAccount(connection_string=storage_connection_string)


def new_log(storage: StorageAccount, keys: dict[str, Any], signer: Any = "default", **options: Any) -> AuditLog:
    return AuditLog(
        storage,
        build_cipher(storage, keys["provider"]),
        keys["signer"] if signer == "default" else signer,
        "t" + uuid.uuid4().hex[:12],
        **options,
    )


def add(log: AuditLog, n: int = 1) -> None:
    for i in range(n):
        log.append("decision", "system:gatekeeper", f"gate-{i}", f"deploy {i}", {"level": "L1", "i": i})


def head(log: AuditLog) -> dict[str, Any]:
    return dict(log.table.get_entity(ENTRY_PARTITION, HEAD_ROW))


def test_a_head_rolled_back_under_existing_entries_refuses_to_append_over_them(storage, keys):
    log = add_and(new_log(storage, keys), 1)
    earlier = head(log)
    add(log)  # entry 1
    log.table.update_entity(earlier, mode=UpdateMode.REPLACE)  # the head says the log ends at entry 0 again
    fresh = AuditLog(
        storage, build_cipher(storage, keys["provider"]), keys["signer"], log.tenant_id
    )  # another process: no cached head
    with pytest.raises(AuditLogCorrupted, match="entry seq 1 already exists although the head says"):
        add(fresh)
    assert [e["seq"] for e in log.entries()] == [0, 1]  # nothing overwritten


def add_and(log: AuditLog, n: int) -> AuditLog:
    add(log, n)
    return log


@pytest.mark.parametrize(
    "damage",
    [{"size": True}, {"size": 1.5}, {"last_hash": "not-hex"}, {"cp_root": "z" * 64}],
    ids=["size-bool", "size-float", "last-hash", "checkpoint-root"],
)
def test_a_head_with_a_field_of_the_wrong_kind_is_corrupted_and_verification_fails(storage, keys, damage):
    log = add_and(new_log(storage, keys), 2)
    log.table.update_entity({**head(log), **damage}, mode=UpdateMode.REPLACE)
    fresh = AuditLog(storage, build_cipher(storage, keys["provider"]), keys["signer"], log.tenant_id)
    with pytest.raises(AuditLogCorrupted, match="the audit log head is unreadable"):
        add(fresh)
    result = fresh.check()
    assert not result.ok and "head is missing or unreadable" in (result.problem or "")
    with pytest.raises(VerificationError):
        fresh.verify()


def test_a_log_whose_head_was_deleted_does_not_verify(storage, keys):
    log = add_and(new_log(storage, keys), 3)
    log.table.delete_entity(ENTRY_PARTITION, HEAD_ROW)
    result = AuditLog(storage, build_cipher(storage, keys["provider"]), keys["signer"], log.tenant_id).check()
    assert (result.ok, result.first_bad_seq) == (False, 3)


def test_a_sealed_subject_that_opens_to_no_text_is_unreadable_and_left_as_stored_for_export(storage, keys):
    log = add_and(new_log(storage, keys), 1)
    [entry] = list(log.entries())
    forged = build_cipher(storage, keys["provider"]).seal_json(
        log.tenant_id, log.table_name, ENTRY_PARTITION, f"{0:020d}#subject", 42
    )
    row = dict(log.table.get_entity(ENTRY_PARTITION, f"{0:020d}"))
    log.table.update_entity({**row, "subject": forged}, mode=UpdateMode.REPLACE)
    with pytest.raises(SealedDataUnreadable, match="sealed subject is not text"):
        list(log.records())
    [stored] = list(log.entries())
    assert log.readable(stored)["subject"] == forged and entry["subject"] != forged


def test_a_batch_larger_than_one_transaction_is_split_and_stays_one_verifiable_log(storage, keys):
    log = new_log(storage, keys)
    big = "x" * 400_000  # each entry's sealed data is spread over several properties
    count = MAX_TRANSACTION_CHARS // (2 * 400_000) + 3  # more than one transaction's budget
    records = log.append_many(
        [
            {"kind": "decision", "actor": "a", "instance_id": f"g{i}", "subject": "s", "data": {"b": big}}
            for i in range(count)
        ]
    )
    assert [r.seq for r in records] == list(range(count))
    assert log.check().ok and int(head(log)["size"].value) == count


def test_a_stored_entry_with_an_odd_parts_count_is_passed_through_for_the_verifier():
    entry = entity_to_entry(
        {"PartitionKey": "log", "RowKey": f"{0:020d}", "seq": 0, "data_parts": "many", "data": "v1.x.y"}
    )
    assert entry["data"] == "v1.x.y"


def test_the_log_refuses_settings_it_cannot_run_with_and_keys_it_does_not_have(storage, keys):
    with pytest.raises(ValueError, match="checkpoint_every: must be at least 1"):
        new_log(storage, keys, checkpoint_every=0)
    with pytest.raises(ValueError, match="checkpoint_interval: must be positive"):
        new_log(storage, keys, checkpoint_interval=timedelta(0))
    unsigned = new_log(storage, keys, signer=None)
    assert repr(unsigned) == f"AuditLog(tenant_id={unsigned.tenant_id!r})"
    with pytest.raises(ValueError, match="no checkpoint signer"):
        unsigned.trusted_public_key_pem()
    with pytest.raises(ValueError, match="public_key_pem: needed to verify"):
        unsigned.check()
    pem = keys["signer"].public_key_pem()
    add(unsigned, 2)
    assert unsigned.check(public_key_pem=pem).ok  # unsigned tail: entries, no checkpoint yet


def test_an_audit_table_removed_under_a_running_process_reads_as_no_entries_not_an_error(storage, keys):
    log = add_and(new_log(storage, keys), 2)
    storage.tables.delete_table(log.table_name)  # the tenant offboarded (table deleted) while this process runs
    assert list(log.entries()) == [] and list(log.records()) == []
