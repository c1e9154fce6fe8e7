"""The pure parts of action approvals: the strict request model, the command's display form, what an
idempotency key stands for, the status mapping, the chain's withdrawal and the GitHub repository narrowing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.actions.caller import repository_allowed
from gatekeeper.actions.model import ActionRequest, command_text, parse_model
from gatekeeper.actions.service import fingerprint
from gatekeeper.actions.state import action_state, immediate_answer
from gatekeeper.actions.store import ActionRecord
from gatekeeper.approvals import chain
from gatekeeper.approvals.chain import ChainPlan
from gatekeeper.contracts.gate import GateStatus
from gatekeeper.errors import InvalidInput
from gatekeeper.gates.store import GateRecord
from gatekeeper.tenancy.model import TenantRecord

NOW = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)
BASE = {"command": "ls", "action": "data_export", "target": {"environment": "prod"}, "idempotency_key": "k-1"}


def test_argv_is_shown_shell_quoted_so_an_argument_with_spaces_reads_unambiguously():
    assert command_text(["rm", "-rf", "/tmp/my dir", "it's"]) == "rm -rf '/tmp/my dir' 'it'\"'\"'s'"
    assert command_text("terraform apply  plan") == "terraform apply  plan"  # a string stays verbatim


def test_the_key_stands_for_command_kind_and_target():
    first = parse_model(ActionRequest, BASE)
    assert fingerprint(first) == fingerprint(parse_model(ActionRequest, {**BASE, "timeout": "PT5M"}))
    for change in ({"command": "ls -la"}, {"action": "deploy"}, {"target": {"environment": "dev"}}):
        assert fingerprint(first) != fingerprint(parse_model(ActionRequest, {**BASE, **change})), change


def test_strict_types_are_not_coerced():
    for bad, field in (({"command": 1}, "command"), ({"idempotency_key": 12}, "idempotency_key")):
        with pytest.raises(InvalidInput) as caught:
            parse_model(ActionRequest, {**BASE, **bad})
        assert caught.value.field == field


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*BASE, "context", "timeout", "x"]), JSONISH, max_size=6))
def test_any_document_is_accepted_or_refused_naming_a_field(document: dict[str, Any]):
    try:
        parse_model(ActionRequest, document)
    except InvalidInput as problem:
        assert problem.field and problem.detail.startswith(problem.field)


def record(**changes: Any) -> ActionRecord:
    values: dict[str, Any] = {
        "action_id": "gate-" + "a" * 40,
        "tenant_id": "contoso",
        "idempotency_key": "k",
        "fingerprint": "f",
        "command": "ls",
        "action": "data_export",
        "environment": "prod",
        "credential": "entra",
        "caller_key": "entra:oid:x",
        "level": "L2",
        "created_at": NOW,
    }
    return ActionRecord(**{**values, **changes})


def gate(status: GateStatus, reason: str | None = None) -> GateRecord:
    return GateRecord(
        instance_id="gate-" + "a" * 40,
        tenant_id="contoso",
        status=status,
        level="L2",
        created_at=NOW,
        updated_at=NOW,
        outcome_reason=reason,
        decided_at=NOW,
    )


@pytest.mark.parametrize(
    ("row", "gate_record", "expected"),
    [
        (record(), None, ("pending", None)),
        (record(), gate(GateStatus.AWAITING_APPROVAL), ("pending", None)),
        (record(), gate(GateStatus.APPROVED, "approval chain approved (quorum)"), ("approved", "approved")),
        (record(), gate(GateStatus.REJECTED, "approval chain rejected (rejected)"), ("denied", "denied")),
        (record(), gate(GateStatus.REJECTED, "approval chain rejected (timeout)"), ("expired", "denied")),
        (record(), gate(GateStatus.REJECTED, "blocked by policy"), ("denied", "denied")),
        (record(closed="cancelled", closed_at=NOW), gate(GateStatus.REJECTED, "x (cancelled)"), ("cancelled", None)),
        (record(closed="expired", closed_at=NOW), None, ("expired", "denied")),
        (record(level="L0", immediate="approved"), None, ("approved", "approved")),
        (record(level="L3", immediate="human_only"), gate(GateStatus.HUMAN_TASK), ("human_only", "denied")),
        (record(immediate="denied"), None, ("denied", "denied")),
        (record(expires_at=NOW - timedelta(seconds=1)), None, ("expiring", None)),
        (record(expires_at=NOW - timedelta(seconds=1)), gate(GateStatus.APPROVED), ("approved", "approved")),
    ],
)
def test_status_comes_from_the_row_first_then_the_gate(row, gate_record, expected):
    state = action_state(row, gate_record, NOW)
    assert (state.status, state.decision) == expected


def test_a_withdrawn_chain_closes_rejected_and_refuses_later_votes():
    stage = {"name": "ops", "approvers": ["a@x.com"], "quorum": 1, "timeout": "PT1H"}
    plan = ChainPlan.model_validate({"stages": [stage]})
    state = chain.start(plan, (), NOW)
    closed, outcome = chain.cancel(state, NOW + timedelta(minutes=1), "cancelled")
    assert closed.status is chain.ChainStatus.REJECTED and closed.reason == "cancelled"
    assert isinstance(outcome, chain.ChainRejected) and outcome.reason == "cancelled"
    again, outcome = chain.cancel(closed, NOW + timedelta(minutes=2))
    assert again == closed and isinstance(outcome, chain.ChainClosed)


def test_named_repositories_narrow_a_github_owner_binding():
    whole = TenantRecord(tenant_id="contoso", display_name="C", identities=("github:owner-id:1",))
    assert repository_allowed(whole, "Contoso", "Contoso/Anything")
    narrow = TenantRecord(
        tenant_id="contoso", display_name="C", identities=("github:owner-id:1", "github:repo:contoso/infra")
    )
    assert repository_allowed(narrow, "contoso", "contoso/INFRA") and not repository_allowed(
        narrow, "contoso", "contoso/web"
    )
    org = TenantRecord(
        tenant_id="contoso",
        display_name="C",
        identities=("github:owner-id:1", "github:repo:contoso/infra", "github:org:contoso"),
    )
    assert repository_allowed(org, "contoso", "contoso/web")


@pytest.mark.parametrize(
    ("level", "blocked", "expected"),
    [
        ("L0", False, "approved"),
        ("L1", False, "approved"),
        ("L2", False, None),
        ("L3", False, "human_only"),
        ("L0", True, "denied"),
        ("L2", True, "denied"),
    ],
)
def test_the_immediate_answer_follows_the_level_and_a_block_always_denies(level, blocked, expected):
    answer, reason = immediate_answer(level, blocked, ("change freeze",) if blocked else ())
    assert answer == expected
    assert (reason == "change freeze") if blocked else (bool(reason) == (expected is not None))
