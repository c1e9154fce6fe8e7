"""`requires_approval` (gatekeeper/client/guard.py): the guarded call runs only on `approved`, a denial of any
kind is a quiet skip, and what happened is reported once. Against the actions contract double; cases a hand
sweep of planted bugs found untested (docs/mutation.md, second sweep)."""

from __future__ import annotations

from typing import Any

import pytest

from gatekeeper.client import Denied, requires_approval
from gatekeeper.client.guard import MAX_REPR_CHARS, default_command, report_quietly
from tests.integration.test_action_client import TF, client_for, double  # noqa: F401 - the fixture by name
from tests.support.actions_contract_double import ActionsContractDouble


def test_the_decorator_never_calls_on_a_human_only_or_withdrawn_answer(double: ActionsContractDouble) -> None:
    calls: list[str] = []

    def guarded(**kw: Any) -> Any:
        @requires_approval(client_for(double), action="secret_access", environment="production", command="x", **kw)
        def read_secret() -> str:
            calls.append("ran")
            return "secret"

        return read_secret()

    double.level_for = lambda body: "L3"
    human = guarded()
    assert isinstance(human, Denied) and human.status == "human_only" and not human
    double.level_for = lambda body: "L2"  # nobody decides within the local wait: withdrawn
    withdrawn = guarded(idempotency_key="late-1", wait_timeout=1)
    assert isinstance(withdrawn, Denied) and withdrawn.status == "cancelled"
    assert calls == []
    assert [a.reports for a in double.actions.values()] == [
        [{"outcome": "skipped", "detail": "not run: human_only"}],
        [{"outcome": "skipped", "detail": "not run: cancelled"}],
    ]


def test_the_context_manager_is_falsy_for_human_only(double: ActionsContractDouble) -> None:
    double.level_for = lambda body: "L3"
    with requires_approval(client_for(double), command=TF, action="secret_access", environment="production") as gate:
        assert isinstance(gate, Denied) and gate.status == "human_only"
    assert double.only_action().reports == [{"outcome": "skipped", "detail": "not run: human_only"}]


def test_a_body_that_skips_is_reported_skipped_only_and_a_raising_body_exits_1(double: ActionsContractDouble) -> None:
    double.level_for = lambda body: "L0"
    client = client_for(double)
    with requires_approval(client, command=TF, action="deploy", environment="dev", idempotency_key="s-1") as gate:
        assert gate
        gate.skip("nothing to apply")
    assert double.actions["act-0001"].reports == [{"outcome": "skipped", "detail": "nothing to apply"}]
    raising = requires_approval(client, command=TF, action="deploy", environment="dev", idempotency_key="s-2")
    with pytest.raises(ValueError), raising:
        raise ValueError("boom")
    assert double.actions["act-0002"].reports == [
        {"outcome": "executed", "exit_code": 1, "detail": "raised ValueError"}
    ]


def test_one_guard_used_twice_reports_each_time(double: ActionsContractDouble) -> None:
    double.level_for = lambda body: "L0"
    guard = requires_approval(client_for(double), command="deploy.sh", action="deploy", environment="dev")
    with guard as gate:
        assert gate
    with guard as gate:
        assert gate
    assert [a.reports for a in double.actions.values()] == [[{"outcome": "executed", "exit_code": 0}]] * 2


def test_the_context_manager_needs_the_exact_command_not_a_callable(double: ActionsContractDouble) -> None:
    guard = requires_approval(client_for(double), command=lambda: "x", action="deploy", environment="dev")
    with pytest.raises(TypeError), guard:
        pass
    assert double.actions == {}


def test_people_get_the_request_timeout_and_the_process_its_own_wait(double: ActionsContractDouble) -> None:
    with requires_approval(
        client_for(double), command=TF, action="deploy", environment="production", timeout=3600, wait_timeout=1
    ) as gate:
        assert not gate
    assert double.only_action().body["timeout"] == "PT1H"


def test_the_default_command_is_cut_only_past_its_bound() -> None:
    def call() -> None: ...

    base = len(f"{call.__module__}.()")
    call.__qualname__ = "f" * (MAX_REPR_CHARS - base)
    at = default_command(call, (), {})
    assert len(at) == MAX_REPR_CHARS and not at.endswith("...")
    call.__qualname__ += "f"
    over = default_command(call, (), {})
    assert len(over) == MAX_REPR_CHARS and over.endswith("...")


class _Broken:
    def report(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug, not an answer from Gatekeeper")


def test_only_the_clients_own_errors_are_quiet_in_a_report() -> None:
    with pytest.raises(RuntimeError):
        report_quietly(_Broken(), "executed", 0)  # type: ignore[arg-type]


def test_without_a_wait_timeout_the_process_waits_no_longer_than_the_request_timeout() -> None:
    """A decision arriving after the request's own timeout approves nothing: the local wait defaults to it
    (checked on the guard: the shortest request timeout, a minute, is too long to wait out in a test)."""
    guard = requires_approval(object(), action="deploy", environment="production", command="x", timeout=60)  # type: ignore[arg-type]
    assert guard.wait_timeout == 60
    assert requires_approval(object(), action="d", environment="p", timeout=60, wait_timeout=5).wait_timeout == 5  # type: ignore[arg-type]
