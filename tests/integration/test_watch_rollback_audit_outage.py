"""Review of session 10's watch control fixes: the rollback request is audited after its wake (so a request
whose wake fails is undone, not audited). An audit outage after the wake left a request the orchestration had
heard and acts on that was never audited, and the person's retry was refused as "rollback-started". Real
Azurite stores and audit log; the task hub is a recording gateway; the audit outage is a port double."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.errors import DependencyUnavailable
from gatekeeper.rollback.store import WatchStore
from gatekeeper.security.principal import Principal
from tests.integration.test_rollback_routes import (  # noqa: F401 - the fixtures these tests run on
    ENTRA_TENANT,
    OPERATOR,
    control_over,
    env,
    issuer,
    rollback_entries,
)
from tests.support.outage import audit_down_once

pytestmark = pytest.mark.azurite


class Recording:
    """The orchestration's wake gateway: takes every wake and records it."""

    def __init__(self) -> None:
        self.raised: list[tuple[str, str, Any]] = []

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        self.raised.append((instance_id, event_name, data))


def test_a_rollback_request_woken_but_not_audited_is_audited_by_the_persons_retry_once(env):
    runtime = env["runtime"]
    gateway = Recording()
    control = control_over(runtime, gateway, audit_down_once(runtime.services.audit_for, "rollback"))
    person = Principal(oid=OPERATOR, tid=ENTRA_TENANT, auth="bearer")
    with pytest.raises(DependencyUnavailable):
        control.rollback(env["watch"], person, b'{"reason": "error rate"}')
    assert [name for _, name, _ in gateway.raised] == ["watch-wake-0"], "the orchestration heard the request"
    assert rollback_entries(env) == []
    status, seen = control.rollback(env["watch"], person, b'{"reason": "error rate"}')
    assert status == 202, seen
    assert [(e["step"], e["by"]) for e in rollback_entries(env)] == [("requested", OPERATOR)], "audited by the retry"
    assert [name for _, name, _ in gateway.raised] == ["watch-wake-0"], "and not raised again"
    stored = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).load(env["watch"])
    assert stored is not None and (stored.requested_by, stored.wakes) == (OPERATOR, 1)
    with pytest.raises(Exception) as refused:
        control.rollback(env["watch"], person, b"{}")
    assert getattr(refused.value, "code", None) == "rollback-started", "then it is done"
    assert len(rollback_entries(env)) == 1
