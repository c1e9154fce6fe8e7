"""Eight writers appending to one tenant's log at once leave a gap-free, valid sequence.

Each writer has its own AuditLog (as separate Function instances would) and its own storage clients, so
the only coordination is the ETag-guarded entity-group transaction on the head."""

from __future__ import annotations

import itertools
import threading
from collections import Counter

import pytest

from gatekeeper.audit.log import AuditLog
from gatekeeper.audit.signing import LocalCheckpointKey
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount

pytestmark = pytest.mark.azurite

WRITERS = 8
APPENDS_EACH = 8


def test_eight_concurrent_writers_leave_a_gap_free_valid_log(storage_connection_string, unique_name, tmp_path):
    signer = LocalCheckpointKey(tmp_path).signer()
    provider = LocalKeyProvider(tmp_path, key_size=2048)
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(WRITERS)

    def writer(number: int) -> None:
        storage = StorageAccount(connection_string=storage_connection_string)
        log = AuditLog(storage, build_cipher(storage, provider), signer, unique_name, checkpoint_every=10)
        barrier.wait()
        try:
            results[number] = [
                log.append("notification", f"system:writer-{number}", subject=f"w{number}-{i}", data={"i": i})
                for i in range(APPENDS_EACH)
            ]
        except BaseException as exc:  # surfaced below with the writer's number
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    total = WRITERS * APPENDS_EACH

    returned = [record for records in results.values() for record in records]
    assert sorted(r.seq for r in returned) == list(range(total))  # every append got its own seq, no gaps
    for records in results.values():  # each writer's own appends are in its order
        assert [r.seq for r in records] == sorted(r.seq for r in records)

    storage = StorageAccount(connection_string=storage_connection_string)
    log = AuditLog(storage, build_cipher(storage, provider), signer, unique_name, checkpoint_every=10)
    entries = list(log.entries())
    assert [e["seq"] for e in entries] == list(range(total))
    assert Counter(log.open_text(e, "subject") for e in entries) == Counter(  # subjects are sealed at rest
        f"w{n}-{i}" for n in range(WRITERS) for i in range(APPENDS_EACH)
    )
    for before, after in itertools.pairwise(entries):
        assert after["prev_hash"] == before["entry_hash"]
    by_seq = {r.seq: r for r in returned}
    assert all(by_seq[e["seq"]].entry_hash == e["entry_hash"] for e in entries)

    log.checkpoint(force=True)
    result = log.check()
    assert result.ok, result.summary()
    assert result.size == total
    assert [c.checkpoint().size for c in log.checkpoints()][:6] == [10, 20, 30, 40, 50, 60]
