"""`gatekeeper.gates.once`: what a re-run after a half-way run may take for its own earlier entry, and what it
must append anew. A re-run reuses an entry only if the dead run could have written it: the same kind, the same
gate, the same step time, and not already taken by this run. Anything looser loses entries from the audit
trail; the activity re-run tests (tests/e2e/test_activity_reruns_*.py) show the other half, that nothing is
appended twice. Real Azurite tables and the tenant's real audit log."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.audit.records import format_time
from gatekeeper.gates.common import append_audit
from gatekeeper.gates.once import run_once
from tests.support.gatekeeper_env import GatekeeperEnv, make_env

pytestmark = pytest.mark.azurite

AT = datetime(2026, 12, 5, 17, 0, tzinfo=UTC)


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path) -> Iterator[GatekeeperEnv]:
    yield make_env(storage_connection_string, tmp_path / "keys")


class DiedHalfWay(Exception):
    """The worker running the step died after its first entry."""


def entries_of(env: GatekeeperEnv) -> Counter[tuple[str, str, str]]:
    """(kind, gate, time) of every entry in the tenant's log, counted."""
    log = env.services.audit_for(env.tenant_id)
    return Counter((str(e["kind"]), str(e["instance_id"]), str(e["at"])) for e in log.entries(0))


def test_a_re_run_reuses_only_what_the_dead_run_wrote_and_appends_the_rest(env):
    services, tenant = env.services, env.tenant_id
    gate, other = "gate-" + uuid.uuid4().hex, "gate-" + uuid.uuid4().hex
    payload: dict[str, Any] = {"tenant_id": tenant, "instance_id": gate, "at": AT.isoformat()}

    def dead_run() -> dict[str, Any]:
        append_audit(services, tenant, "callback", gate, "step", {"n": 1}, AT)
        raise DiedHalfWay

    with pytest.raises(DiedHalfWay):
        run_once(services, "step", tenant, gate, payload, dead_run)

    log = services.audit_for(tenant)  # what others append meanwhile: none of it is the step's
    log.append("notification", "system:gatekeeper", other, "another gate", {}, at=AT)
    log.append("notification", "system:gatekeeper", gate, "a later step", {}, at=AT + timedelta(seconds=1))
    log.append("decision", "system:gatekeeper", gate, "another kind", {}, at=AT)

    def full_run() -> dict[str, Any]:
        for kind, n in (("callback", 1), ("callback", 2), ("notification", 1), ("notification", 2)):
            append_audit(services, tenant, kind, gate, "step", {"n": n}, AT)
        return {"ok": True}

    assert run_once(services, "step", tenant, gate, payload, full_run) == {"ok": True}
    at, later = format_time(AT), format_time(AT + timedelta(seconds=1))
    assert entries_of(env) == Counter(
        {
            ("callback", gate, at): 2,  # the dead run's first, reused; the second, appended
            ("notification", gate, at): 2,  # both appended: neither the other gate's nor the later step's is the step's
            ("notification", other, at): 1,
            ("notification", gate, later): 1,
            ("decision", gate, at): 1,  # another kind at the same time is not the step's second "callback"
        }
    )
    assert run_once(services, "step", tenant, gate, payload, full_run) == {"ok": True}, "completed: its result"
    assert sum(entries_of(env).values()) == 7, "and nothing appended again"


def test_a_first_run_appends_every_entry_even_when_one_like_it_lands_meanwhile(env):
    """Only a re-run looks for earlier entries: a first run has none, so an entry of the same kind, gate and time
    written by another writer while it runs is not taken for its own."""
    services, tenant = env.services, env.tenant_id
    gate = "gate-" + uuid.uuid4().hex
    payload: dict[str, Any] = {"tenant_id": tenant, "instance_id": gate, "at": AT.isoformat()}

    def first_run() -> dict[str, Any]:
        services.audit_for(tenant).append("notification", "system:gatekeeper", gate, "another writer", {}, at=AT)
        append_audit(services, tenant, "notification", gate, "step", {"n": 1}, AT)
        return {"ok": True}

    assert run_once(services, "step", tenant, gate, payload, first_run) == {"ok": True}
    assert entries_of(env) == Counter({("notification", gate, format_time(AT)): 2})
