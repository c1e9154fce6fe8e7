"""Action requests that must recover: a creator that claimed the key and then could not
write the action's row, and rows written by a build from before the claim row's `announced`/`audit_from` and the
action record's close fields (they must read as announced, with no close to finish). Storage is Azurite behind a
loopback proxy speaking the Tables wire format (`tests/support/tables_proxy.py`) that answers one write 503
`ServerBusy`, as the service does when it cannot serve."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from gatekeeper.actions.store import ACTION_ROW, ANNOUNCE_LEASE, CLAIM_ROW, ActionRepository, ActionStore, action_key
from gatekeeper.policy.store import PolicyStore
from tests.integration.test_announce_flag_outage import ACTION_ROW_CREATE, rig  # noqa: F401 - the fixture, by name
from tests.integration.test_edge_concurrency import L2_POLICY, action_request, action_status, after_request
from tests.support.gatekeeper_env import GatekeeperEnv

pytestmark = pytest.mark.azurite


def kinds(env: GatekeeperEnv, action_id: str, kind: str) -> list[str]:
    log = env.services.audit_for(env.tenant_id)
    return [r.kind for r in getattr(log, "log", log).records() if r.kind == kind and r.instance_id == action_id]


def test_an_action_whose_row_write_failed_after_the_key_was_claimed_is_announced_and_queued_by_the_retry(rig, durable):
    """The creator claims the key, then its write of the action's row meets an outage. It used to hand nothing
    back: the retry (a duplicate, within the announce lease) wrote the row and answered "pending", yet nobody
    audited `action_requested` or queued the event until a re-request came 30 s later, which a client that got
    its answer never sends (it polls the status route)."""
    env, proxy, now = rig
    key = "run-61:apply-" + uuid.uuid4().hex[:8]
    proxy.refuse(lambda method, path, body: method == "POST" and ACTION_ROW_CREATE.search(body) is not None)
    first = action_request(env.tenant_id, key)
    assert proxy.refused, "the action row's write met the outage"
    assert first.status_code == 503, first.get_body()
    proxy.clear()
    again = action_request(env.tenant_id, key)  # at once: the same clock, well within the announce lease
    assert again.status_code in (200, 202), again.get_body()
    action_id = json.loads(again.get_body())["id"]
    assert kinds(env, action_id, "action_requested") == ["action_requested"], "audited as requested by the retry"
    assert len(env.queued_texts()) == 1, "its event queued by the retry"
    assert action_status(env.tenant_id, action_id, durable).status_code == 200
    now[0] += ANNOUNCE_LEASE * 4
    assert json.loads(action_request(env.tenant_id, key).get_body())["id"] == action_id
    assert len(kinds(env, action_id, "action_requested")) == 1 and len(env.queued_texts()) == 1, "and only once"


NEW_RECORD_FIELDS = ("close_audit_from", "close_audit_until", "chain_ended")


def as_older_build(repo: ActionRepository, partition: str, row: str, drop: tuple[str, ...]) -> dict[str, Any]:
    """Rewrite a row as a build from before this session wrote it: without the claim row's `announced`,
    `announce_until` and `audit_from`, and without the action record's close fields."""
    entity = repo.get(partition, row)
    assert entity is not None
    old = {k: v for k, v in entity.items() if k not in drop}
    old["record"] = {k: v for k, v in entity["record"].items() if k not in NEW_RECORD_FIELDS}
    repo.upsert(old)  # replace: only these properties are left
    return old


def test_rows_an_older_build_wrote_read_as_announced_with_no_close_to_finish(rig, durable):
    """A claim row without `announced`/`audit_from` is announced (a later re-request takes nothing over and
    audits nothing again); an action record without `close_audit_from`, `close_audit_until`, `chain_ended` has
    no close to finish, is answered by the status route and is cancelled (and audited) once."""
    env, _proxy, now = rig
    PolicyStore(env.storage, env.tenant_id).publish(json.dumps(L2_POLICY), published_by="tests")  # stays pending
    key = "run-62:apply-" + uuid.uuid4().hex[:8]
    asked = action_request(env.tenant_id, key)
    assert asked.status_code == 202, asked.get_body()
    action_id = json.loads(asked.get_body())["id"]
    repo = ActionRepository(env.storage, env.tenant_id, env.services.cipher).ready()
    run_key = action_key(env.tenant_id, key)
    claim = as_older_build(repo, run_key, CLAIM_ROW, ("announced", "announce_until", "audit_from"))
    assert {"announced", "announce_until", "audit_from"}.isdisjoint(claim)
    as_older_build(repo, action_id, ACTION_ROW, ())
    store = ActionStore(env.storage, env.tenant_id, env.services.cipher)
    loaded = store.load(action_id)
    assert loaded is not None
    record = loaded[0]
    assert (record.close_audit_from, record.close_audit_until, record.chain_ended) == (None, None, None)
    later = now[0] + ANNOUNCE_LEASE * 4
    again = store.claim(record)
    assert (again.created, again.announced, again.audit_from) == (False, True, None), "announced, as it was"
    assert not store.take_over(record, later), "nothing to take over"
    now[0] = later
    repeated = action_request(env.tenant_id, key)
    assert repeated.status_code in (200, 202) and json.loads(repeated.get_body())["id"] == action_id
    assert kinds(env, action_id, "action_requested") == ["action_requested"], "not audited again"
    status = action_status(env.tenant_id, action_id, durable)
    assert status.status_code == 200 and json.loads(status.get_body())["status"] == "pending", status.get_body()
    cancelled = after_request(env.tenant_id, action_id, "cancel", durable)
    assert cancelled.status_code == 200, cancelled.get_body()
    assert kinds(env, action_id, "action_cancelled") == ["action_cancelled"]
    closed = store.load(action_id)
    assert closed is not None and closed[0].closed == "cancelled" and closed[0].close_audit_from is None


class CountingLog:
    """A tenant's audit log that counts its scans (`entries`); everything reaches the real log."""

    def __init__(self, log: Any, scans: list[int]) -> None:
        self.log, self._scans = log, scans

    def entries(self, *args: Any, **kwargs: Any) -> Any:
        self._scans.append(1)
        return self.log.entries(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)


def test_the_request_that_claims_a_key_does_not_scan_the_audit_log_for_its_own_entry(rig):
    """The creator has just claimed the key: no `action_requested` for it can be in the log, so looking for one
    (a query over the log's tail on every new action, the hot path) is a round trip for nothing. Only one taking
    over from a creator looks."""
    env, _proxy, _now = rig
    scans: list[int] = []
    audit_for = env.services.audit_for
    env.services.__dict__["audit_for"] = lambda tenant_id: CountingLog(audit_for(tenant_id), scans)
    key = "run-63:apply-" + uuid.uuid4().hex[:8]
    asked = action_request(env.tenant_id, key)
    assert asked.status_code in (200, 202), asked.get_body()
    assert scans == [], "no scan of the audit log on the creator's path"
    action_id = json.loads(asked.get_body())["id"]
    assert kinds(env, action_id, "action_requested") == ["action_requested"]
