"""Retention of transit keys against Azurite, with the real Key Vault SDK against the local Key Vault server (and
the local JWK provider for the CLI): old rows are shredded, young ones, data keys, the pointer and other tenants'
rows never; a dry run deletes nothing; runs are bounded and continue; two pruners at once delete each row once;
a message sealed under a pruned key is dead-lettered as `key-gone`, and `deadletters list` says it is shredded."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
import uuid
from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.data.tables import UpdateMode

from gatekeeper.ingest.deadletter import DeadLetters, KeyState
from gatekeeper.ingest.queue import SEAL_TABLE, QueueEventSink
from gatekeeper.services import set_services
from gatekeeper.store.key_errors import KeyServiceUnavailable
from gatekeeper.store.keyring import DATA_KEY_PARTITION, POINTER_PARTITION, POINTER_ROW, DataKeyRing
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.retention import (
    MAX_DELETIONS_PER_RUN,
    MIN_RETENTION_DAYS,
    QUEUE_MESSAGE_TTL_DAYS,
    TransitKeyPruner,
)
from gatekeeper.store.tables import StorageAccount, TablePurpose
from gatekeeper.store.transit import TRANSIT_PARTITION, KekPublicKey, TransitKeys, transit_id, transit_row
from tests.keyvault_fixtures import (  # noqa: F401
    keyvault_provider,
    keyvault_tenant,
    local_keyvault,
    new_tenant_id,
    storage,
)
from tests.support.gatekeeper_env import github_request, http_function, make_env

pytestmark = pytest.mark.azurite

NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=31)
YOUNG = NOW - dt.timedelta(days=29)


def transit_ids(storage: StorageAccount, tenant: str) -> set[str]:
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    return {e["RowKey"] for e in table.query_entities("PartitionKey eq @pk", parameters={"pk": TRANSIT_PARTITION})}


def register_rows(storage: StorageAccount, tenant: str, created: dt.datetime, count: int) -> set[str]:
    """`count` transit rows as an edge registers them, created at `created` (contents are never unwrapped)."""
    table = storage.ensure_tenant_table(tenant, TablePurpose.KEYS)
    ids = {transit_id() for _ in range(count)}
    for data_key_id in ids:
        table.create_entity(transit_row(data_key_id, secrets.token_bytes(256), "local://keys/x/1", created))
    return ids


def sealing_at(storage: StorageAccount, public: KekPublicKey, when: dt.datetime):  # -> EnvelopeCipher
    from gatekeeper.store.envelope import EnvelopeCipher

    return EnvelopeCipher(TransitKeys(storage, lambda tenant_id: public, clock=lambda: when), cache_seconds=300)


def test_transit_keys_past_retention_are_shredded_and_younger_ones_still_open(
    storage, keyvault_provider, keyvault_tenant
):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    old = sealing_at(storage, public, OLD).seal(tenant, SEAL_TABLE, tenant, "e-old", b"old")
    young = sealing_at(storage, public, YOUNG).seal(tenant, SEAL_TABLE, tenant, "e-young", b"young")
    fresh = sealing_at(storage, public, NOW).seal(tenant, SEAL_TABLE, tenant, "e-new", b"new")
    old_id, young_id, fresh_id = (value.split(".")[1] for value in (old, young, fresh))

    result = TransitKeyPruner(storage, 30, clock=lambda: NOW).prune(tenant)

    assert result.deleted == (old_id,) and not result.more and result.already_gone == result.changed == 0
    assert transit_ids(storage, tenant) == {young_id, fresh_id}
    dispatcher = build_cipher(storage, keyvault_provider)
    assert dispatcher.open(tenant, SEAL_TABLE, tenant, "e-young", young) == b"young"
    assert dispatcher.open(tenant, SEAL_TABLE, tenant, "e-new", fresh) == b"new"
    from gatekeeper.store.envelope import SealedDataUnreadable

    with pytest.raises(SealedDataUnreadable) as caught:
        dispatcher.open(tenant, SEAL_TABLE, tenant, "e-old", old)
    assert caught.value.reason == "key-gone"


def test_active_and_regular_data_keys_and_the_pointer_are_never_pruned(storage, keyvault_provider, keyvault_tenant):
    tenant = keyvault_tenant()
    ring = DataKeyRing(storage, keyvault_provider)
    cipher = build_cipher(storage, keyvault_provider)
    sealed = cipher.seal(tenant, "Gates", "p", "r", b"table value")
    first = ring.active_id(tenant)
    second = ring.create_data_key(tenant)  # first is now a regular (inactive) data key
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    ancient = NOW - dt.timedelta(days=4000)
    for row in (first, second):  # as old as can be: age alone never shreds a data key
        table.update_entity({"PartitionKey": DATA_KEY_PARTITION, "RowKey": row, "created": ancient}, UpdateMode.MERGE)
    # Rows in the transit partition that are not transit keys (no `t<hex>` id, or no date) are kept too.
    table.create_entity({"PartitionKey": TRANSIT_PARTITION, "RowKey": "notatransitid", "created": ancient})
    undated = transit_id()
    table.create_entity({"PartitionKey": TRANSIT_PARTITION, "RowKey": undated, "wrapped_key": "", "kek_id": "k"})
    expired = register_rows(storage, tenant, OLD, 2)

    result = TransitKeyPruner(storage, 30, clock=lambda: NOW).prune(tenant)

    assert set(result.deleted) == expired
    assert {e["RowKey"] for e in table.list_entities()} == {first, second, POINTER_ROW, "notatransitid", undated}
    assert table.get_entity(POINTER_PARTITION, POINTER_ROW)["data_key_id"] == second
    assert build_cipher(storage, keyvault_provider).open(tenant, "Gates", "p", "r", sealed) == b"table value"


def test_other_tenants_rows_are_untouched(storage):
    mine, theirs = new_tenant_id(), new_tenant_id()
    mine_old = register_rows(storage, mine, OLD, 3)
    theirs_old = register_rows(storage, theirs, OLD, 3)
    result = TransitKeyPruner(storage, 30, clock=lambda: NOW).prune(mine)
    assert set(result.deleted) == mine_old and transit_ids(storage, mine) == set()
    assert transit_ids(storage, theirs) == theirs_old


def test_a_dry_run_deletes_nothing_and_counts_what_a_run_would(storage):
    tenant = new_tenant_id()
    expired = register_rows(storage, tenant, OLD, 4)
    young = register_rows(storage, tenant, YOUNG, 2)
    pruner = TransitKeyPruner(storage, 30, clock=lambda: NOW)
    dry = pruner.prune(tenant, dry_run=True)
    assert dry.dry_run and set(dry.deleted) == expired
    assert transit_ids(storage, tenant) == expired | young, "a dry run deleted something"
    assert set(pruner.prune(tenant).deleted) == expired
    assert transit_ids(storage, tenant) == young


def test_a_tenant_without_a_keys_table_has_nothing_to_prune(storage):
    result = TransitKeyPruner(storage, 30, clock=lambda: NOW).prune(new_tenant_id())
    assert result.deleted == () and not result.more


def test_runs_are_bounded_and_the_next_run_continues(storage):
    tenant = new_tenant_id()
    expired = register_rows(storage, tenant, OLD, 7)
    pruner = TransitKeyPruner(storage, 30, clock=lambda: NOW, page_size=2)  # several pages per run
    runs = [pruner.prune(tenant, limit=3) for _ in range(4)]
    assert [len(r.deleted) for r in runs] == [3, 3, 1, 0]
    assert [r.more for r in runs] == [True, True, False, False]
    assert set().union(*(set(r.deleted) for r in runs)) == expired and transit_ids(storage, tenant) == set()


def test_more_rows_than_one_transaction_are_deleted_in_several(storage):
    tenant = new_tenant_id()
    expired = register_rows(storage, tenant, OLD, 230)  # 100 + 100 + 30
    result = TransitKeyPruner(storage, 30, clock=lambda: NOW).prune(tenant, limit=MAX_DELETIONS_PER_RUN)
    assert set(result.deleted) == expired and len(result.deleted) == 230
    assert transit_ids(storage, tenant) == set()


class _Racing(TransitKeyPruner):
    """A pruner that, between reading the expired rows and deleting them, lets `meanwhile` run: what a second
    pruner (or a re-wrap) does when it gets there first."""

    def __init__(self, *args, meanwhile, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._meanwhile = meanwhile

    def _expired(self, tenant_id: str, before: dt.datetime) -> Iterator:  # type: ignore[override]
        rows = list(super()._expired(tenant_id, before))
        self._meanwhile()
        yield from rows


def test_a_row_another_pruner_deleted_first_counts_as_already_gone_not_deleted_twice(storage):
    tenant = new_tenant_id()
    expired = register_rows(storage, tenant, OLD, 5)
    other = TransitKeyPruner(storage, 30, clock=lambda: NOW)
    results = []
    racing = _Racing(storage, 30, clock=lambda: NOW, meanwhile=lambda: results.append(other.prune(tenant, limit=2)))
    late = racing.prune(tenant)
    (first,) = results
    assert len(first.deleted) == 2 and late.already_gone == 2
    assert set(first.deleted).isdisjoint(late.deleted) and set(first.deleted) | set(late.deleted) == expired
    assert transit_ids(storage, tenant) == set()


def test_a_row_changed_meanwhile_is_left_for_the_next_run(storage):
    tenant = new_tenant_id()
    (row,) = register_rows(storage, tenant, OLD, 1)
    table = storage.tenant_table(tenant, TablePurpose.KEYS)

    def rewrap() -> None:  # what `keys rotate` does to a row: a conditional MERGE that changes its ETag
        table.update_entity({"PartitionKey": TRANSIT_PARTITION, "RowKey": row, "rewrapped": NOW}, UpdateMode.MERGE)

    result = _Racing(storage, 30, clock=lambda: NOW, meanwhile=rewrap).prune(tenant)
    assert result.deleted == () and result.changed == 1 and transit_ids(storage, tenant) == {row}
    assert TransitKeyPruner(storage, 30, clock=lambda: NOW).prune(tenant).deleted == (row,)


def test_two_pruners_at_once_raise_nothing_and_delete_each_row_once(storage):
    tenant = new_tenant_id()
    expired = register_rows(storage, tenant, OLD, 240)
    start = threading.Barrier(2)
    results: list = []
    errors: list[BaseException] = []

    def run() -> None:
        pruner = TransitKeyPruner(storage, 30, clock=lambda: NOW, page_size=50)
        start.wait()
        try:
            results.append(pruner.prune(tenant))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(results) == 2
    a, b = (set(r.deleted) for r in results)
    assert a.isdisjoint(b) and a | b == expired, "each row deleted by exactly one pruner"
    assert len(a) + len(b) + sum(r.already_gone for r in results) >= 240
    assert transit_ids(storage, tenant) == set()


def test_rotation_leaves_transit_keys_past_retention_and_rewraps_the_rest(storage, keyvault_provider, keyvault_tenant):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    old = sealing_at(storage, public, OLD).seal(tenant, SEAL_TABLE, tenant, "e1", b"old")
    young = sealing_at(storage, public, YOUNG).seal(tenant, SEAL_TABLE, tenant, "e2", b"young")
    DataKeyRing(storage, keyvault_provider).active_key(tenant)  # a data key, as old as the KEK version
    new_kid = keyvault_provider.new_version(tenant)
    pruner = TransitKeyPruner(storage, 30, clock=lambda: NOW)

    result = DataKeyRing(storage, keyvault_provider).rewrap(tenant, retire_before=pruner.cutoff())

    old_id, young_id = old.split(".")[1], young.split(".")[1]
    assert result.past_retention == [old_id]
    assert young_id in result.rewrapped and old_id not in result.rewrapped and len(result.rewrapped) == 2
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    assert table.get_entity(TRANSIT_PARTITION, young_id)["kek_id"] == new_kid
    assert table.get_entity(TRANSIT_PARTITION, old_id)["kek_id"] == public.kid, "left as it was"
    assert pruner.prune(tenant).deleted == (old_id,)


def test_queued_messages_expire_before_their_transit_keys_can(storage_connection_string):
    """The retention's lower bound rests on the queue's message time-to-live: the sink sets none, so the
    service's default applies. A sink that starts setting a longer one fails here."""
    storage = StorageAccount(connection_string=storage_connection_string)
    env_sealer = build_cipher(storage, LocalKeyProvider(str(uuid.uuid4())))  # never asked: nothing is sealed
    sink = QueueEventSink(storage, env_sealer, queue_name="q" + uuid.uuid4().hex[:12])
    sink.ensure_queue()
    sink._send(b"ttl probe")
    (message,) = sink.queue.peek_messages()
    lifetime = message.expires_on - message.inserted_on
    assert lifetime == dt.timedelta(days=QUEUE_MESSAGE_TTL_DAYS)
    assert dt.timedelta(days=MIN_RETENTION_DAYS) > lifetime
    sink.queue.delete_queue()


# -- through the product: the queue trigger, the dead letters, the CLI ----------------------------------------


def test_a_message_sealed_under_a_pruned_key_is_dead_lettered_key_gone_and_listed_as_shredded(
    storage_connection_string, tmp_path, monkeypatch, capsys
):
    from devstack.durable_api import DurableApiServer
    from gatekeeper.cli import main
    from tests.support.worker_loop import run_on_worker

    dpr = (
        __import__("pathlib").Path(__file__).resolve().parents[1]
        / "fixtures/github/deployment_protection_rule.requested.json"
    ).read_bytes()
    env = make_env(storage_connection_string, tmp_path / "keys", record_kek_public=True)
    set_services(env.services)
    try:
        assert http_function("github_webhook")(github_request("deployment_protection_rule", dpr)).status_code == 202
        [text] = env.drain()
        key_id = json.loads(text)["sealed"].split(".")[1]
        dead = DeadLetters(env.storage)
        kept = dead.record("pipeline-events", text, "moved to poison after 5 attempts")  # while still readable
        [before] = [d for d in dead.list("pipeline-events") if d.row_key == kept]
        assert dead.key_state(before, env.services.large_events) is KeyState.READABLE

        later = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=31)  # noqa: E731
        assert TransitKeyPruner(env.storage, 30, clock=later).prune(env.tenant_id).deleted == (key_id,)

        with DurableApiServer() as durable:
            function = http_function("dispatch_pipeline_events")
            run_on_worker(function(func.QueueMessage(id="x", body=text.encode()), client=durable.client_binding))
            assert durable.posts("/orchestrators/") == [], "nothing may start from an event that did not open"
    finally:
        set_services(None)
    event_id = json.loads(text)["id"]
    letters = [d for d in DeadLetters(env.storage).list("pipeline-events") if event_id in d.message]
    [at_dispatch] = [d for d in letters if d.row_key != kept]
    assert "key-gone" in at_dispatch.reason
    [entry] = [r for r in env.services.audit_for(env.tenant_id).records() if r.kind == "integrity_failure"]
    assert entry.data["reason"] == "key-gone" and entry.data["row_key"] == event_id
    assert all(DeadLetters(env.storage).key_state(d, env.services.large_events) is KeyState.SHREDDED for d in letters)

    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "keys"))
    capsys.readouterr()
    assert main(["deadletters", "list", "--queue", "pipeline-events", "--json", "--storage-connection",
                 storage_connection_string]) == 0  # fmt: skip
    rows = {r["row_key"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[kept]["key"] == "shredded" and rows[at_dispatch.row_key]["key"] == "shredded"
    assert main(["deadletters", "list", "--storage-connection", storage_connection_string]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if kept in line]
    assert lines and "key=shredded" in lines[0]


class _Timer(func.TimerRequest):
    """What the host hands a timer trigger (the SDK's TimerRequest is abstract)."""

    @property
    def past_due(self) -> bool:
        return False


@pytest.fixture
def cli(monkeypatch, tmp_path, storage_connection_string):
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "cli-keys"))
    from gatekeeper.cli import main

    def run(*argv: str) -> int:
        return main([*argv, "--storage-connection", storage_connection_string])

    return run


def test_cli_prune_transit_dry_run_then_run_prints_counts_per_tenant(cli, storage, capsys):
    tenant = new_tenant_id()
    expired = register_rows(storage, tenant, OLD, 3)
    young = register_rows(storage, tenant, YOUNG, 1)
    capsys.readouterr()
    assert cli("keys", "prune-transit", "--tenant", tenant, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"tenant {tenant}: would delete 3 transit key(s) older than 30 days" in out
    assert transit_ids(storage, tenant) == expired | young
    assert cli("keys", "prune-transit", "--tenant", tenant, "--limit", "2") == 0
    out = capsys.readouterr().out
    assert f"tenant {tenant}: deleted 2 transit key(s) older than 30 days; more left past the limit of 2" in out
    assert cli("keys", "prune-transit", "--tenant", tenant) == 0
    assert f"tenant {tenant}: deleted 1 transit key(s)" in capsys.readouterr().out
    assert transit_ids(storage, tenant) == young


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (("--tenant", "../etc"), "--tenant"),
        (("--tenant", "abc", "--limit", "0"), "--limit"),
    ],
)
def test_cli_prune_transit_bad_arguments_exit_2_naming_them(cli, capsys, argv, field):
    assert cli("keys", "prune-transit", *argv) == 2
    assert field in capsys.readouterr().err


def test_cli_a_retention_setting_out_of_bounds_exits_2_naming_it(cli, monkeypatch, capsys):
    monkeypatch.setenv("GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS", "7")
    assert cli("keys", "prune-transit", "--tenant", "abc", "--dry-run") == 2
    assert "GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS" in capsys.readouterr().err


def test_cli_rotate_says_which_transit_keys_it_left_past_retention(cli, storage, capsys):
    tenant = new_tenant_id()
    register_rows(storage, tenant, OLD, 2)
    assert cli("keys", "rotate", "--tenant", tenant) == 0
    assert f"tenant {tenant}: 2 transit key(s) past retention not re-wrapped" in capsys.readouterr().out


def test_the_hourly_timer_prunes_every_registered_tenant_and_nothing_young(storage_connection_string, tmp_path):
    from tests.support.gatekeeper_env import app_functions

    env = make_env(storage_connection_string, tmp_path / "keys")
    expired = register_rows(env.storage, env.tenant_id, NOW - dt.timedelta(days=40), 3)
    young = register_rows(env.storage, env.tenant_id, NOW - dt.timedelta(days=1), 2)
    unregistered = new_tenant_id()  # not in the registry: the timer does not know it
    theirs = register_rows(env.storage, unregistered, NOW - dt.timedelta(days=40), 1)
    [timer] = [f for f in app_functions() if f.get_function_name() == "transit_key_retention"]
    [binding] = [b for b in timer.get_bindings() if b.type == "timerTrigger"]
    assert binding.schedule == "0 17 * * * *"
    set_services(env.services)
    try:
        http_function("transit_key_retention")(_Timer())
    finally:
        set_services(None)
    assert transit_ids(env.storage, env.tenant_id) == young
    assert transit_ids(env.storage, unregistered) == theirs
    assert expired.isdisjoint(transit_ids(env.storage, env.tenant_id))


def test_a_transit_key_deleted_by_retention_during_a_rotation_does_not_fail_it(
    storage, keyvault_provider, keyvault_tenant
):
    tenant = keyvault_tenant()
    public = KekPublicKey.from_jwk(keyvault_provider.public_jwk(tenant), tenant)
    young = sealing_at(storage, public, YOUNG).seal(tenant, SEAL_TABLE, tenant, "e1", b"young").split(".")[1]
    table = storage.tenant_table(tenant, TablePurpose.KEYS)
    keyvault_provider.new_version(tenant)

    class Racing(DataKeyRing):  # the timer deletes the row between the rotation's read and its update
        def unwrap(self, tenant_id, record):  # type: ignore[no-untyped-def]
            key = super().unwrap(tenant_id, record)
            table.delete_entity(TRANSIT_PARTITION, record.data_key_id)
            return key

    result = Racing(storage, keyvault_provider).rewrap(tenant)
    assert result.past_retention == [young] and result.rewrapped == []


def test_the_timer_goes_on_to_the_next_tenant_when_one_tenants_keys_table_cannot_be_read(
    storage_connection_string, tmp_path, caplog
):
    from gatekeeper.store.retention import TransitKeyPruner
    from gatekeeper.tenancy.model import TenantRecord

    # The registry lists tenants in id order: the failing one first, so the other comes after its failure.
    failing, other = ("t" + prefix + uuid.uuid4().hex[:9] for prefix in ("000", "fff"))
    env = make_env(
        storage_connection_string,
        tmp_path / "keys",
        extra_tenants=tuple(TenantRecord(tenant_id=t, display_name=t) for t in (failing, other)),
    )
    expired = {t: register_rows(env.storage, t, NOW - dt.timedelta(days=40), 2) for t in (failing, other)}
    retention_days = env.services.transit_pruner.retention_days

    class OneTenantDown(TransitKeyPruner):  # that tenant's Keys table answers with an outage
        def prune(self, tenant_id, **options):  # type: ignore[no-untyped-def]
            if tenant_id == failing:
                raise KeyServiceUnavailable(f"tenant {tenant_id}: Keys table cannot be read")
            return super().prune(tenant_id, **options)

    env.services.transit_pruner = OneTenantDown(env.storage, retention_days)  # type: ignore[misc]
    set_services(env.services)
    try:
        with caplog.at_level("ERROR", logger="gatekeeper.retention"):
            http_function("transit_key_retention")(_Timer())
    finally:
        set_services(None)
    assert transit_ids(env.storage, failing) == expired[failing]
    assert transit_ids(env.storage, other) == set()
    assert [r.getMessage() for r in caplog.records] == [f"transit key retention failed for tenant {failing}"]
