"""A vote delivered to the approval chain and audited, whose last write (the voter row's `raised`/`audited`
flags, `GateStore.mark_raised`) meets a storage outage. Its claim expires after VOTE_CLAIM_LEASE and the same
person's retry takes it over: that retry used to raise the vote again and append a second `approval_decided`
for one vote. The rig is tests/e2e/test_vote_races.py's (real chain and gate orchestrations in the local runner,
Azurite, the tenant's real audit log), with the gate tables behind a loopback proxy speaking the Tables wire
format that answers the flag write 503 `ServerBusy`, as the service does when it cannot serve."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates
from gatekeeper.audit.log import AuditLog
from gatekeeper.gates.store import VOTE_CLAIM_LEASE
from gatekeeper.store.tables import StorageAccount
from tests.e2e.test_vote_races import ANNA, POLICY, decisions_of, open_gate, rig_with, vote
from tests.support.tables_proxy import TablesProxy

pytestmark = pytest.mark.azurite

FLAGGED_DELIVERED = re.compile(rb'"audited":\s*true')


@pytest.fixture
def rig(azurite: Any, tmp_path: Any) -> Iterator[tuple[LocalGates, LocalEntraIssuer, Any, AuditLog, str, TablesProxy]]:
    """tests/e2e/test_vote_races.py's rig, its gate tables behind the proxy with request-path budgets (one
    attempt per write), as the decision route's storage has in the app."""
    with TablesProxy(azurite.connection_string) as proxy:
        storage = StorageAccount(connection_string=proxy.connection_string, request_path=True)
        for gates, issuer, receiver, audit, tenant_id in rig_with(azurite, tmp_path, POLICY, gate_storage=storage):
            yield gates, issuer, receiver, audit, tenant_id, proxy


def test_a_vote_whose_delivered_flag_could_not_be_written_is_audited_once_by_the_retry_after_the_lease(rig):
    gates, issuer, receiver, audit, tenant_id, proxy = rig
    gate = open_gate(gates, receiver, tenant_id)
    proxy.refuse(lambda method, path, body: method in ("PATCH", "MERGE") and FLAGGED_DELIVERED.search(body) is not None)
    try:
        first: Any = vote(gates, issuer, gate, ANNA, "approve")
    except Exception as exc:  # the code before the fix let the storage error out (a 500)
        first = exc
    assert len(proxy.refused) == 1, "the flag write met the outage"
    proxy.clear()
    gates.clock.advance(VOTE_CLAIM_LEASE + timedelta(seconds=1))  # the first request's claim has expired
    status, body = vote(gates, issuer, gate, ANNA, "approve")
    assert (status, body.get("vote")) == (202, 0), body
    people = [r for r in decisions_of(audit, gate) if "vote" in r.data]
    assert [(r.actor, r.data["vote"]) for r in people] == [(ANNA, 0)], "one vote, one approval_decided"
    assert vote(gates, issuer, gate, ANNA, "approve")[0] == 409, "delivered now: asked again, refused"
    assert first[0] == 202, "raised and audited: the vote was delivered, only its flag was not written"
    gates.runner.run_until_idle()
    output = gates.runner.status(gate).output
    assert output["status"] == "approved" and [v["voter_id"] for v in output["chain"]["votes"]] == [ANNA]
