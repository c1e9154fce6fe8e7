"""An action request whose creator indexed the action and appended `action_requested`, then met a storage outage
on its last write (the claim row's `announced` flag, `ActionStore.mark_announced`). After the announce lease a
re-request takes the announcing over: it used to append a second `action_requested` for the one action. Storage
is Azurite behind a loopback proxy speaking the Tables wire format that answers that flag write 503 `ServerBusy`,
as the service does when it cannot serve; everything else reaches Azurite unchanged."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.actions.store import ANNOUNCE_LEASE
from gatekeeper.services import set_services
from tests.integration.test_edge_concurrency import action_request, action_status
from tests.support.gatekeeper_env import GatekeeperEnv, make_env
from tests.support.tables_proxy import TablesProxy

pytestmark = pytest.mark.azurite

ANNOUNCED = re.compile(rb'"announced":\s*true')
ACTION_ROW_CREATE = re.compile(rb'"RowKey":\s*"action"')


@pytest.fixture
def rig(storage_connection_string: str, tmp_path: Path) -> Iterator[tuple[GatekeeperEnv, TablesProxy, list[datetime]]]:
    with TablesProxy(storage_connection_string) as proxy:
        env = make_env(proxy.connection_string, tmp_path / "keys")
        now = [datetime.now(UTC)]
        env.services.clock = lambda: now[0]  # before the action service is built, so it takes this clock
        set_services(env.services)
        try:
            yield env, proxy, now
        finally:
            set_services(None)


def requested(env: GatekeeperEnv, action_id: str) -> list[Any]:
    log = env.services.audit_for(env.tenant_id)
    return [r for r in log.records() if r.kind == "action_requested" and r.instance_id == action_id]


def test_an_action_whose_announced_flag_could_not_be_written_is_audited_as_requested_once(rig, durable):
    env, proxy, now = rig
    key = "run-51:apply-" + uuid.uuid4().hex[:8]
    proxy.refuse(lambda method, path, body: method in ("PATCH", "MERGE") and ANNOUNCED.search(body) is not None)
    first = action_request(env.tenant_id, key)
    assert len(proxy.refused) == 1, "the flag write met the outage"
    proxy.clear()
    now[0] += ANNOUNCE_LEASE + timedelta(seconds=1)  # the creator's announce lease has run out
    again = action_request(env.tenant_id, key)
    assert again.status_code in (200, 202), again.get_body()
    action_id = json.loads(again.get_body())["id"]
    assert [r.instance_id for r in requested(env, action_id)] == [action_id], "audited as requested once"
    assert first.status_code in (200, 202), "indexed and audited: the action was announced, only its flag failed"
    assert json.loads(first.get_body())["id"] == action_id
    now[0] += ANNOUNCE_LEASE * 4
    third = action_request(env.tenant_id, key)  # announced now: a later re-request takes nothing over
    assert json.loads(third.get_body())["id"] == action_id and len(requested(env, action_id)) == 1
    status = action_status(env.tenant_id, action_id, durable)
    assert status.status_code == 200, status.get_body()
    assert len(env.queued_texts()) == 1, "its event queued once"


def test_a_creator_slower_than_its_lease_finds_the_entry_of_the_re_request_that_took_over(rig, durable):
    """The creator claims the key, then stalls past its announce lease; meanwhile a re-request takes over and
    announces the action. The creator, announcing late, used to append a second `action_requested`; past its
    lease it now looks in the log first (within the lease it never needs to)."""
    env, proxy, now = rig
    key = "run-52:apply-" + uuid.uuid4().hex[:8]
    answers: list[Any] = []

    def a_re_request_after_the_lease() -> None:
        now[0] += ANNOUNCE_LEASE + timedelta(seconds=1)
        answers.append(action_request(env.tenant_id, key))

    proxy.interleave(
        lambda method, path, body: method == "POST" and ACTION_ROW_CREATE.search(body) is not None,
        a_re_request_after_the_lease,
    )
    first = action_request(env.tenant_id, key)
    assert proxy.fired and len(answers) == 1, "the re-request ran while the creator stalled"
    assert first.status_code in (200, 202) and answers[0].status_code in (200, 202), first.get_body()
    action_id = json.loads(first.get_body())["id"]
    assert json.loads(answers[0].get_body())["id"] == action_id
    assert [r.instance_id for r in requested(env, action_id)] == [action_id], "audited as requested once"
