"""The Watches table on Azurite: one rollback per environment under concurrency (create-only lease, ETag
takeover after expiry), last known good only moving forward, rollback runs remembered, records sealed."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from gatekeeper.rollback.store import Deployment, WatchRecord, WatchStore
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount, TablePurpose

pytestmark = pytest.mark.azurite

NOW = datetime(2031, 3, 3, 10, 0, tzinfo=UTC)
LEASE = timedelta(minutes=40)


@pytest.fixture
def store(azurite, tmp_path) -> WatchStore:
    storage = StorageAccount(connection_string=azurite.connection_string)
    return WatchStore(storage, "t" + uuid.uuid4().hex[:12], build_cipher(storage, LocalKeyProvider(str(tmp_path))))


def record(watch_id: str, started: datetime, commit: str = "c0ffee") -> WatchRecord:
    deployment = Deployment(source="github", repository="contoso/shop", environment="production", commit=commit)
    return WatchRecord(
        instance_id=watch_id, tenant_id="x", deployment=deployment, started_at=started, updated_at=started
    )


def test_of_twenty_watches_failing_at_once_exactly_one_rolls_back(store):
    store.acquire_lease("contoso/shop", "production", "warmup", NOW - 2 * LEASE, LEASE)  # table exists, expired
    barrier = threading.Barrier(20, timeout=30)

    def take(n: int) -> str | None:
        barrier.wait()
        return store.acquire_lease("contoso/shop", "production", f"watch-{n}", NOW, LEASE)

    with ThreadPoolExecutor(max_workers=20) as pool:
        holders = [h for h in pool.map(take, range(20), timeout=120) if h is not None]
    assert len(holders) == 1
    assert store.lease_holder("contoso/shop", "production", NOW) == holders[0]


def test_a_lease_is_per_repository_and_environment_renewable_and_taken_over_only_after_expiry(store):
    assert store.acquire_lease("contoso/shop", "production", "watch-a", NOW, LEASE) == "watch-a"
    assert store.acquire_lease("contoso/shop", "production", "watch-b", NOW, LEASE) is None
    assert store.acquire_lease("contoso/shop", "PRODUCTION", "watch-b", NOW, LEASE) is None  # names compare lower
    assert store.acquire_lease("contoso/shop", "staging", "watch-b", NOW, LEASE) == "watch-b"
    assert store.acquire_lease("contoso/other", "production", "watch-b", NOW, LEASE) == "watch-b"
    assert store.acquire_lease("contoso/shop", "production", "watch-a", NOW, LEASE) == "watch-a"  # its own again
    later = NOW + LEASE + timedelta(seconds=1)
    assert store.lease_holder("contoso/shop", "production", later) is None
    assert store.acquire_lease("contoso/shop", "production", "watch-b", later, LEASE) == "watch-b"
    assert store.release_lease("contoso/shop", "production", "watch-a") is False  # not the holder any more
    assert store.release_lease("contoso/shop", "production", "watch-b") is True
    assert store.acquire_lease("contoso/shop", "production", "watch-c", later, LEASE) == "watch-c"


def test_last_known_good_only_moves_forward(store):
    assert store.last_good("contoso/shop", "production") is None
    newer, older = record("watch-2", NOW, "bbbb"), record("watch-1", NOW - timedelta(hours=1), "aaaa")
    assert store.record_good(newer, NOW) is True
    assert store.record_good(older, NOW) is False  # a slow, older watch finishing late never moves it back
    good = store.last_good("contoso/shop", "production")
    assert good is not None and good.commit == "bbbb"
    assert store.last_good("contoso/shop", "staging") is None


def test_rollback_runs_are_remembered_per_source(store):
    assert store.is_rollback_run("github", "9000") is False
    store.mark_rollback_run("github", "9000", "watch-1")
    assert store.is_rollback_run("github", "9000") is True
    assert store.is_rollback_run("azure-devops", "9000") is False
    assert store.is_rollback_run("github", None) is False


def test_watch_records_are_sealed_at_rest(store, azurite):
    store.save(record("watch-1", NOW, "deadbeef"))
    assert store.load("watch-1").deployment.commit == "deadbeef"
    table = StorageAccount(connection_string=azurite.connection_string).tenant_table(
        store._repo.tenant_id, TablePurpose.WATCHES
    )
    raw = table.get_entity("watch", "watch-1")
    assert "deadbeef" not in str(raw["record"]) and raw["state"] == "watching"
