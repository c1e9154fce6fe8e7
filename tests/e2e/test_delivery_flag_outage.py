"""A vote delivered to the approval chain and audited, whose last write (the voter row's `raised`/`audited`
flags, `GateStore.mark_raised`) meets a storage outage. Its claim expires after VOTE_CLAIM_LEASE and the same
person's retry takes it over: that retry used to raise the vote again and append a second `approval_decided`
for one vote. The rig is tests/e2e/test_vote_races.py's (real chain and gate orchestrations in the local runner,
Azurite, the tenant's real audit log), with the gate tables behind a loopback proxy speaking the Tables wire
format that answers the flag write 503 `ServerBusy`, as the service does when it cannot serve."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.runner import ManualClock
from devstack.webhook import LocalWebhookReceiver
from gatekeeper.audit.log import AuditLog
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.gates.store import VOTE_CLAIM_LEASE
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy import load_policy
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.settings import Settings
from gatekeeper.store.keys import LocalKeyProvider, build_cipher
from gatekeeper.store.tables import StorageAccount
from tests.e2e.test_vote_races import ANNA, AUDIENCE, POLICY, SECRET, TID, decisions_of, open_gate, vote
from tests.support.tables_proxy import TablesProxy

pytestmark = pytest.mark.azurite

FLAGGED_DELIVERED = re.compile(rb'"audited":\s*true')


@pytest.fixture
def rig(azurite: Any, tmp_path: Any) -> Iterator[tuple[LocalGates, LocalEntraIssuer, Any, AuditLog, str, TablesProxy]]:
    tenant_id = "t" + uuid.uuid4().hex[:12]
    direct = StorageAccount(connection_string=azurite.connection_string)
    cipher = build_cipher(direct, LocalKeyProvider(str(tmp_path / "keys")))
    audit = AuditLog(direct, cipher, None, tenant_id, checkpoint_every=10_000, checkpoint_interval=timedelta(days=365))
    policy = load_policy(POLICY)
    receiver = LocalWebhookReceiver(SECRET).start()
    with TablesProxy(azurite.connection_string) as proxy, LocalEntraIssuer() as issuer:
        # request-path budgets (one attempt per write), as the decision route's storage has in the app
        storage = StorageAccount(connection_string=proxy.connection_string, request_path=True)
        gates = local_gates(
            storage,
            cipher,
            decider=PolicyDecider(lambda _t: policy),
            audit_for=lambda _t: audit,
            notifier=OutboxNotifier(tmp_path / "outbox"),
            callbacks=PipelineCallbacks(
                webhooks=WebhookSender(policy=RetryPolicy(max_attempts=1), allow_loopback_http=True),
                webhook_secret=lambda _tenant: SECRET,
            ),
            entra_tenants_for=lambda t: (TID,) if t == tenant_id else (),
            token_validator=EntraTokenValidator(
                AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: tid == TID
            ),
            operators_for=lambda _t: ("ops@contoso.com",),
            clock=ManualClock(datetime(2030, 6, 3, 10, 0, tzinfo=UTC)),
            settings=Settings(trust_easyauth_header=False),
        )
        try:
            yield gates, issuer, receiver, audit, tenant_id, proxy
        finally:
            receiver.stop()


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
