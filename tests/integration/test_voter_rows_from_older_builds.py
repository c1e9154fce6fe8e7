"""Voter rows written by a build from before session 10's `audited` and `audit_from` columns (the vote's
delivery: raised to the chain, then audited). Such a row that says `raised` was audited right after the raise,
so it reads as delivered and nobody delivers (or audits) it again; one not raised reads as undelivered, and the
same person's retry still delivers it after the claim. Against Azurite, with the real sealed repository."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gatekeeper.approvals.chain import Decision
from gatekeeper.gates.store import VOTE_CLAIM_LEASE, VOTER_PREFIX, GateRepository, GateStore
from tests.support.gatekeeper_env import GatekeeperEnv, make_env

pytestmark = pytest.mark.azurite

VOTER = "0a0a0a0a-0000-4000-8000-00000000a000"


@pytest.fixture
def env(storage_connection_string: str, tmp_path: Path) -> Iterator[GatekeeperEnv]:
    yield make_env(storage_connection_string, tmp_path / "keys")


def older_voter_row(env: GatekeeperEnv, instance_id: str, *, raised: bool) -> None:
    """Rewrite the voter row with only the columns a build from before `audited`/`audit_from` wrote."""
    repo = GateRepository(env.storage, env.tenant_id, env.services.cipher).ready()
    row = repo.get(instance_id, VOTER_PREFIX + VOTER)
    assert row is not None
    kept = ("PartitionKey", "RowKey", "voter_id", "decision", "stage", "at", "seq", "claim_until", "comment")
    repo.upsert({**{k: v for k, v in row.items() if k in kept}, "raised": raised})  # replace: nothing else left
    assert "audited" not in (repo.get(instance_id, VOTER_PREFIX + VOTER) or {})


@pytest.mark.parametrize("raised", [True, False])
def test_a_voter_row_from_an_older_build_reads_as_delivered_exactly_when_it_was_raised(env, raised):
    store = GateStore(env.storage, env.tenant_id, env.services.cipher)
    instance_id = "gate-" + uuid.uuid4().hex
    at = datetime.now(UTC)
    store.record_vote(instance_id, VOTER, Decision.APPROVE, 0, at, "ship it")
    older_voter_row(env, instance_id, raised=raised)
    vote = store.vote_of(instance_id, VOTER)
    assert vote is not None
    assert (vote.raised, vote.audited, vote.audit_from, vote.comment) == (raised, raised, None, "ship it")
    later = at + VOTE_CLAIM_LEASE + timedelta(seconds=1)
    claimed = store.claim_delivery(instance_id, VOTER, later)
    if raised:
        assert claimed is None, "delivered and audited by the older build: nothing to deliver again"
    else:
        assert claimed is not None and (claimed.raised, claimed.audited, claimed.audit_from) == (False, False, None)
        assert store.claim_delivery(instance_id, VOTER, later) is None, "one delivery at a time"
