"""Small leftovers of the review of session 10's exactly-once fixes, each driven into its bad order on real
Azurite (directly, or behind the loopback Tables proxy of `tests/support/tables_proxy.py`): a follow-up's
put-back that took away a row it no longer owned, a refit that gave up putting its model in use silently, and a
watch close that answered a state it had not stored."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from gatekeeper.actions.store import ANNOUNCE_LEASE, ActionStore
from gatekeeper.contracts.watch import WatchCloseInput
from gatekeeper.errors import Conflict
from gatekeeper.gates.followup import ROW_PREFIX, FollowUpService
from gatekeeper.gates.store import GateRepository
from gatekeeper.recommend.model import fit
from gatekeeper.recommend.store import CURRENT, MAKE_CURRENT_ATTEMPTS, PARTITION, ModelStore
from gatekeeper.rollback.steps import close
from gatekeeper.rollback.store import Deployment, WatchRecord, WatchState, WatchStore
from gatekeeper.security.principal import Principal
from gatekeeper.store.repository import check_key
from gatekeeper.store.tables import StorageAccount, TablePurpose, tenant_table_name
from tests.integration.test_edge_concurrency import stored_action_record
from tests.integration.test_followup_outage import OPERATOR, executed_l1_gate
from tests.support.gatekeeper_env import ENTRA_TENANT, make_env
from tests.support.tables_proxy import TablesProxy

pytestmark = pytest.mark.azurite


class _AuditFailsAfter:
    """The tenant's audit log whose first append fails (an outage), after `meanwhile` ran (another writer
    finishing while this call waits on the log)."""

    def __init__(self, log: Any, meanwhile: Callable[[], None]) -> None:
        self._log, self._meanwhile, self.failed = log, meanwhile, False

    def append(self, kind: str, actor: str, *args: Any, **kwargs: Any) -> Any:
        if not self.failed:
            self.failed = True
            self._meanwhile()
            raise RuntimeError("audit storage unavailable")
        return self._log.append(kind, actor, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def test_a_follow_up_put_back_never_takes_away_a_row_written_again_meanwhile(storage_connection_string, tmp_path):
    """The follow-up's audit append fails, so it hands its row back: it used to delete the row whatever it held by
    then, so a row written again meanwhile (another click's, already answered "recorded" or "already recorded")
    disappeared. Now only the row as this call wrote it (its ETag) is handed back."""
    env = make_env(storage_connection_string, tmp_path / "keys")
    gate_id = executed_l1_gate(env)
    repo = GateRepository(env.storage, env.tenant_id, env.services.cipher)
    row_key = f"{ROW_PREFIX}acknowledge|{check_key('oid', OPERATOR)}"
    theirs = {"PartitionKey": gate_id, "RowKey": row_key, "at": datetime.now(UTC), "comment": {"note": "theirs"}}
    logs: list[_AuditFailsAfter] = []

    def audit_for(tenant: str) -> _AuditFailsAfter:
        if not logs:
            logs.append(_AuditFailsAfter(env.services.audit_for(tenant), lambda: repo.upsert(theirs)))
        return logs[0]

    service = FollowUpService(
        env.storage,
        env.services.cipher,
        entra_tenants_for=lambda _t: (ENTRA_TENANT,),
        operators_for=lambda _t: (OPERATOR,),
        audit_for=audit_for,
    )
    with pytest.raises(Exception, match="audit storage unavailable"):
        service.act(gate_id, Principal(oid=OPERATOR, tid=ENTRA_TENANT, auth="teams"), "acknowledge")
    assert logs and logs[0].failed, "the audit append met the outage"
    row = repo.get(gate_id, row_key)
    assert row is not None, "the row written meanwhile is still there"
    assert row["comment"] == {"note": "theirs"}


def test_a_follow_up_put_back_still_hands_its_own_row_back(storage_connection_string, tmp_path):
    """The normal outage: nothing changed the row, so the conditional put-back removes it and the retry records."""
    env = make_env(storage_connection_string, tmp_path / "keys")
    gate_id = executed_l1_gate(env)
    failing = _AuditFailsAfter(env.services.audit_for(env.tenant_id), lambda: None)
    service = FollowUpService(
        env.storage,
        env.services.cipher,
        entra_tenants_for=lambda _t: (ENTRA_TENANT,),
        operators_for=lambda _t: (OPERATOR,),
        audit_for=lambda _t: failing,
    )
    person = Principal(oid=OPERATOR, tid=ENTRA_TENANT, auth="teams")
    with pytest.raises(RuntimeError):
        service.act(gate_id, person, "acknowledge")
    repo = GateRepository(env.storage, env.tenant_id, env.services.cipher)
    assert repo.get(gate_id, f"{ROW_PREFIX}acknowledge|{OPERATOR}") is None, "handed back"
    assert service.act(gate_id, person, "acknowledge")["status"] == "recorded"
    with pytest.raises(Conflict):
        service.act(gate_id, person, "acknowledge")


def _current_put(models_table: str) -> Callable[[str, bytes], bool]:
    def when(method: str, path: str, body: bytes) -> bool:
        return method == "PUT" and f"{models_table}(PartitionKey='{PARTITION}',RowKey='{CURRENT}')" in unquote(path)

    return lambda method, path, *_: when(method, path, b"")


def test_a_refit_that_keeps_losing_the_race_for_the_model_in_use_says_so(storage_connection_string, tmp_path):
    """Another refit rewrites the `current` row right before each of this refit's conditional writes: it used
    to give up after five lost races silently, so the timer logged the model as in use while the older one
    stayed. Now it raises Conflict naming the tenant, which the timer reports with the tenant's other failures."""
    with TablesProxy(storage_connection_string) as proxy:
        env = make_env(proxy.connection_string, tmp_path / "keys")
        tenant = "t" + uuid.uuid4().hex[:12]
        store = ModelStore(env.storage, tenant, env.services.sealer)
        direct = StorageAccount(connection_string=storage_connection_string)  # another refit, past the proxy
        start = datetime(2031, 1, 1, 2, 40, tzinfo=UTC)
        older, newer = fit(tenant, [], start), fit(tenant, [], start + timedelta(minutes=1))
        for model in (older, newer):
            store.add_version(model)
        store.make_current(older)
        table = tenant_table_name(tenant, TablePurpose.MODELS)
        raced: list[int] = []
        when = _current_put(table)

        def other_refit_writes_current() -> None:
            raced.append(1)
            row = direct.table(table).get_entity(PARTITION, CURRENT)
            direct.table(table).upsert_entity(row)  # its own write of the row: a new ETag
            proxy.interleave(when, other_refit_writes_current)  # and again before the next attempt

        proxy.interleave(when, other_refit_writes_current)
        with pytest.raises(Conflict, match=tenant) as raised:
            store.make_current(newer)
        proxy.clear()
        assert len(raced) == MAKE_CURRENT_ATTEMPTS, "every attempt lost its race"
        assert raised.value.code == "model-current-contended"
        current = store.current()
        assert current is not None and current.version == older.version, "and nothing claims otherwise"
        store.make_current(newer)  # the next refit, uncontended, puts it in use
        assert (store.current() or older).version == newer.version


def test_a_watch_close_answers_the_state_it_stored_not_the_one_it_read_first(storage_connection_string, tmp_path):
    """An "asked" close keeps the watch's state, read again at its conditional write: a person's rollback request
    that moved the watch on between the close's first read and that write is kept, and the close used to answer
    the state of its first read, not the one it stored."""
    with TablesProxy(storage_connection_string) as proxy:
        env = make_env(proxy.connection_string, tmp_path / "keys")
        direct = WatchStore(
            StorageAccount(connection_string=storage_connection_string), env.tenant_id, env.services.cipher
        )
        at = datetime.now(UTC)
        watch_id = "watch-" + uuid.uuid4().hex
        record = WatchRecord(
            instance_id=watch_id,
            tenant_id=env.tenant_id,
            deployment=Deployment(source="github", repository="contoso/shop", environment="production"),
            state=WatchState.INCONCLUSIVE,
            started_at=at,
            updated_at=at,
        )
        direct.save(record)

        def read_of_the_watch(method: str, path: str, *_: Any) -> bool:
            return method == "GET" and f"RowKey='{watch_id}'" in unquote(path)

        def a_person_requests_a_rollback() -> None:  # between the close's first read and its write
            direct.save(record.model_copy(update={"state": WatchState.ROLLING_BACK, "requested_by": OPERATOR}))

        proxy.interleave(read_of_the_watch, lambda: proxy.interleave(read_of_the_watch, a_person_requests_a_rollback))
        closed = close(
            env.services,
            WatchCloseInput(
                instance_id=watch_id, tenant_id=env.tenant_id, outcome="asked", reason="probes erred", at=at
            ),
        )
        stored = direct.load(watch_id)
        assert stored is not None and stored.state is WatchState.ROLLING_BACK, "the request's state is kept"
        assert closed.state == stored.state.value, "and the close answers what it stored"


def test_a_creator_slower_than_its_lease_never_reopens_the_lease_of_the_re_request_that_took_over(
    storage_connection_string, tmp_path
):
    """The creator claims the key and is slow; after its announce lease one re-request takes over. The creator
    then fails and hands the claim back: its hand-back used to reset the lease whatever it held by then, so a
    third request took over from the re-request still announcing and audited `action_requested` a second
    time. Now only the lease the caller holds is reopened; a hand-back by its holder still reopens it at once."""
    env = make_env(storage_connection_string, tmp_path / "keys")
    store = ActionStore(env.storage, env.tenant_id, env.services.cipher)
    created = datetime.now(UTC)
    mine = stored_action_record(env.tenant_id, created)
    assert store.claim(mine).created
    later = created + ANNOUNCE_LEASE * 2
    assert store.take_over(mine, later), "the re-request takes over after the creator's lease"
    store.hand_back(mine, created + ANNOUNCE_LEASE)  # the slow creator fails and hands back
    assert not store.take_over(mine, later + timedelta(seconds=1)), "the re-request still holds its lease"
    assert store.claim(mine).failed, "the queueing hint is kept: the next re-request queues at once"
    store.hand_back(mine, later + ANNOUNCE_LEASE)  # the re-request fails too: its own lease, reopened at once
    assert store.take_over(mine, later + timedelta(seconds=2))


def test_a_creator_that_hands_back_within_its_lease_lets_the_retry_announce_at_once(
    storage_connection_string, tmp_path
):
    """The normal outage: the creator's hand-back (its own lease, nothing changed) still reopens the lease at once."""
    env = make_env(storage_connection_string, tmp_path / "keys")
    store = ActionStore(env.storage, env.tenant_id, env.services.cipher)
    created = datetime.now(UTC)
    mine = stored_action_record(env.tenant_id, created)
    assert store.claim(mine).created
    store.mark_submitted(mine, ok=False)  # a flag write next to the lease: the hand-back still reopens it
    store.hand_back(mine, created + ANNOUNCE_LEASE)
    again = store.claim(mine)
    assert again.failed and not again.announced
    assert store.take_over(mine, created + timedelta(seconds=1)), "at once, well within the creator's lease"
