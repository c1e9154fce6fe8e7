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


def test_a_newer_deployment_that_passes_its_watch_becomes_the_last_known_good(store):
    older, newer = record("watch-1", NOW - timedelta(hours=1), "aaaa"), record("watch-2", NOW, "bbbb")
    assert store.record_good(older, NOW) is True
    assert store.record_good(newer, NOW) is True
    good = store.last_good("contoso/shop", "production")
    assert good is not None and good.commit == "bbbb"


def test_of_many_watches_passing_at_once_the_newest_deployment_is_the_last_known_good(store):
    store.acquire_lease(None, "warm", "warmup", NOW, LEASE)  # the table exists before the race
    watches = [record(f"watch-{n}", NOW + timedelta(minutes=n), f"c{n:03d}") for n in range(12)]
    barrier = threading.Barrier(len(watches), timeout=30)

    def passed(watch: WatchRecord) -> bool:
        barrier.wait()
        return store.record_good(watch, NOW)

    with ThreadPoolExecutor(max_workers=len(watches)) as pool:
        list(pool.map(passed, watches, timeout=120))
    good = store.last_good("contoso/shop", "production")
    assert good is not None and good.commit == "c011"


def test_a_newer_watch_that_loses_the_write_to_an_older_one_reads_again_and_still_wins(azurite, tmp_path):
    """The interleaving a race may or may not produce, made certain: between the newer watch's read and its
    write, an older watch records itself; the newer one's create fails and it must read again, not give up."""
    from gatekeeper.rollback.store import GOOD_PARTITION

    storage = StorageAccount(connection_string=azurite.connection_string)
    tenant, cipher = "t" + uuid.uuid4().hex[:12], build_cipher(storage, LocalKeyProvider(str(tmp_path)))
    store = WatchStore(storage, tenant, cipher)
    older, newer = record("watch-1", NOW - timedelta(hours=1), "aaaa"), record("watch-2", NOW, "bbbb")
    interleaved: list[bool] = []

    class OlderFinishesMeanwhile(WatchStore):
        def _ready(self):  # type: ignore[no-untyped-def]
            repo = super()._ready()

            class Repo:
                def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
                    return getattr(repo, name)

                def get(self, partition: str, row: str):  # type: ignore[no-untyped-def]
                    current = repo.get(partition, row)
                    if partition == GOOD_PARTITION and not interleaved:
                        interleaved.append(store.record_good(older, NOW))
                    return current

            return Repo()

    racing = OlderFinishesMeanwhile(storage, tenant, cipher)
    assert racing.record_good(newer, NOW) is True and interleaved == [True]
    good = store.last_good("contoso/shop", "production")
    assert good is not None and good.commit == "bbbb"


def test_changing_a_watch_applies_every_concurrent_change_and_a_missing_watch_is_none(store):
    store.save(record("watch-1", NOW))
    assert store.change("watch-missing", lambda r: {"wakes": r.wakes + 1}) is None
    barrier = threading.Barrier(8, timeout=30)

    def wake(_: int) -> WatchRecord | None:
        barrier.wait()
        return store.change("watch-1", lambda r: {"wakes": r.wakes + 1}, attempts=50)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(wake, range(8), timeout=120))
    assert store.wakes("watch-1") == 8  # no lost update: each lost race was read again and retried


def test_a_watch_that_keeps_changing_under_a_change_gives_up_naming_it(store):
    store.save(record("watch-1", NOW))

    def meanwhile(current: WatchRecord) -> dict:
        store.save(current.model_copy(update={"reasons": (*current.reasons, "changed meanwhile")}))
        return {"held": True}

    with pytest.raises(LookupError, match="watch watch-1 kept changing; gave up after 3 attempts"):
        store.change("watch-1", meanwhile, attempts=3)
    stored = store.load("watch-1")
    assert stored is not None and stored.held is False and len(stored.reasons) == 3


def test_update_changes_a_stored_watch_and_refuses_a_missing_one(store):
    store.save(record("watch-1", NOW))
    updated = store.update("watch-1", held=True, held_by="ops@contoso.com")
    assert updated.held and store.load("watch-1") == updated
    with pytest.raises(LookupError, match="watch watch-2 has no record"):
        store.update("watch-2", held=True)
    assert store.wakes("watch-2") == 0


def test_no_lease_has_no_holder(store):
    assert store.lease_holder("contoso/shop", "production", NOW) is None
    assert store.release_lease("contoso/shop", "production", "watch-a") is False
