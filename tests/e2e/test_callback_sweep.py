"""The gate's callback step (gatekeeper/gates/callback.py): a case a hand sweep of planted bugs found untested
(docs/mutation.md, second sweep). The rig is tests/e2e/test_vote_races.py's."""

from __future__ import annotations

from datetime import timedelta

from tests.e2e.test_vote_races import ANNA, open_gate, rig, vote

__all__ = ["rig"]


def test_a_rejections_callback_is_audited_as_not_approved(rig):
    gates, issuer, receiver, audit, tenant_id = rig
    gate = open_gate(gates, receiver, tenant_id)
    assert vote(gates, issuer, gate, ANNA, "reject")[0] == 202
    gates.runner.run_until_complete(gate, horizon=timedelta(hours=2))
    callbacks = [r.data for r in audit.records() if r.instance_id == gate and r.kind == "callback"]
    assert callbacks and all(c["approved"] is False for c in callbacks)
