"""The Python client (`gatekeeper.client`) against the action-approval contract, over real HTTP on loopback.

The server here is tests/support/actions_contract_double.py (the contract, not the product); the end-to-end
tests against the real registered functions live in tests/e2e/test_action_clients.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from gatekeeper.client import (
    ActionState,
    Denied,
    GatekeeperClient,
    InvalidRequest,
    Unavailable,
    UnexpectedResponse,
    requires_approval,
)
from gatekeeper.client.api import MAX_COMMAND_CHARS
from tests.support.actions_contract_double import ActionsContractDouble

TENANT, KEY = "contoso", "contoso-api-key-0123456789"
TF = ["terraform", "apply", "plan.tfplan"]


class FakeClock:
    """Time that moves only when the client sleeps: retry budgets tested without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def double() -> Iterator[ActionsContractDouble]:
    with ActionsContractDouble() as server:
        server.api_keys[TENANT] = KEY
        server.tokens["good-token"] = (TENANT, "github:login:octocat")
        yield server


def client_for(double: ActionsContractDouble, **kwargs: object) -> GatekeeperClient:
    return GatekeeperClient(double.url, api_key=KEY, tenant=TENANT, **kwargs)  # type: ignore[arg-type]


def decide_later(double: ActionsContractDouble, status: str, after: float = 0.3) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + 5
        while not double.actions and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(after)
        double.decide(next(iter(double.actions)), status)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_an_l2_request_is_pending_then_long_polls_to_the_decision(double: ActionsContractDouble) -> None:
    client = client_for(double)
    approval = client.request(TF, "infrastructure_change", "production", resource="rg-prod", idempotency_key="run-1")
    assert approval.state.pending and approval.state.level == "L2"
    assert approval.state.approval_url and approval.id == "act-0001"
    sent = double.requests_to("/api/actions", "POST")[0]
    assert sent.json == {
        "command": TF,
        "action": "infrastructure_change",
        "target": {"environment": "production", "resource": "rg-prod"},
        "idempotency_key": "run-1",
    }
    assert sent.headers["x-gatekeeper-tenant"] == TENANT and sent.headers["x-functions-key"] == KEY

    decide_later(double, "approved", after=0.4)
    started = time.monotonic()
    state = approval.wait(timeout=20)
    assert state.approved and state.decided_by == "Jane Approver"
    assert time.monotonic() - started < 3  # answered on the decision, not at the end of the wait
    polls = double.requests_to("/api/actions/act-0001", "GET")
    assert len(polls) == 1 and polls[0].query["wait"] == ["20"]  # one long poll, not a hammering loop


def test_the_long_poll_asks_for_at_most_25_seconds_and_ends_at_the_local_timeout(
    double: ActionsContractDouble,
) -> None:
    approval = client_for(double).request("db-export --all", "data_export", "production", idempotency_key="k2")
    started = time.monotonic()
    state = approval.wait(timeout=1.5)
    assert state.pending
    assert 1.0 <= time.monotonic() - started < 4
    waits = [int(r.query["wait"][0]) for r in double.requests_to("/api/actions/", "GET")]
    assert waits == [2]  # one poll for the whole (rounded-up) local wait


def test_l0_l1_and_l3_answer_at_once_without_polling(double: ActionsContractDouble) -> None:
    levels = iter(["L0", "L1", "L3"])
    double.level_for = lambda body: next(levels)
    client = client_for(double)
    l0 = client.request("make build", "build", "dev", idempotency_key="a")
    l1 = client.request("make deploy", "deploy", "staging", idempotency_key="b")
    l3 = client.request("grant admin", "privilege_escalation", "production", idempotency_key="c")
    assert l0.approved and l0.state.level == "L0" and l1.approved and l1.state.level == "L1"
    assert l3.state.status == "human_only" and l3.state.denied and not l3.approved
    assert l3.wait(timeout=5).status == "human_only"
    assert double.requests_to("/api/actions/", "GET") == []


def test_the_same_key_returns_the_same_action_and_another_command_is_refused(double: ActionsContractDouble) -> None:
    client = client_for(double)
    first = client.request(TF, "infrastructure_change", "production", idempotency_key="run-7")
    again = client.request(TF, "infrastructure_change", "production", idempotency_key="run-7")
    assert again.id == first.id and len(double.actions) == 1
    with pytest.raises(InvalidRequest) as caught:
        client.request(["terraform", "destroy"], "infrastructure_change", "production", idempotency_key="run-7")
    assert caught.value.status == 409 and caught.value.code == "idempotency-key-reused"
    assert caught.value.field == "idempotency_key" and caught.value.exit_code == 2


def test_without_a_key_each_request_is_a_new_action(double: ActionsContractDouble) -> None:
    client = client_for(double)
    one = client.request(TF, "infrastructure_change", "production")
    two = client.request(TF, "infrastructure_change", "production")
    assert one.id != two.id and one.idempotency_key != two.idempotency_key


def test_429_and_503_are_retried_honouring_retry_after_with_the_same_key(double: ActionsContractDouble) -> None:
    clock = FakeClock()
    client = client_for(double, sleep=clock.sleep, clock=clock)
    double.fail_next(1, 429, path_contains="/api/actions", retry_after=7)
    double.fail_next(1, 503, path_contains="/api/actions", retry_after=3)
    approval = client.request(TF, "infrastructure_change", "production", idempotency_key="retry-1")
    assert approval.state.pending
    assert len(clock.sleeps) == 2 and 7 <= clock.sleeps[0] < 8 and 3 <= clock.sleeps[1] < 4
    posts = double.requests_to("/api/actions", "POST")
    assert [p.status for p in posts] == [429, 503, 202]
    assert {p.json["idempotency_key"] for p in posts} == {"retry-1"}


def test_a_server_that_stays_down_is_unavailable_once_the_budget_is_spent(double: ActionsContractDouble) -> None:
    clock = FakeClock()
    client = client_for(double, sleep=clock.sleep, clock=clock, retry_budget=30)
    double.fail_next(1000, 503, path_contains="/api/actions")
    with pytest.raises(Unavailable) as caught:
        client.request(TF, "infrastructure_change", "production", idempotency_key="down")
    assert caught.value.status == 503 and caught.value.exit_code == 3
    assert sum(clock.sleeps) <= 30 and len(clock.sleeps) >= 3  # backed off, within the budget
    assert all(b >= a * 0.0 for a, b in zip(clock.sleeps, clock.sleeps[1:], strict=False))


def test_nothing_listening_is_unavailable() -> None:
    with ActionsContractDouble() as gone:
        url = gone.url
    clock = FakeClock()
    client = GatekeeperClient(url, token="t", sleep=clock.sleep, clock=clock, retry_budget=5)
    with pytest.raises(Unavailable):
        client.get("act-0001")


def test_a_redirect_is_refused_and_the_key_never_reaches_the_other_host(double: ActionsContractDouble) -> None:
    with ActionsContractDouble() as elsewhere:
        double.redirect_next = elsewhere.url
        with pytest.raises(UnexpectedResponse, match="redirect refused"):
            client_for(double).request(TF, "infrastructure_change", "production", idempotency_key="r")
        assert elsewhere.requests == []


def test_a_refused_token_is_renewed_once_from_the_provider(double: ActionsContractDouble) -> None:
    tokens = iter(["expired-token", "good-token", "never-used"])
    client = GatekeeperClient(double.url, token_provider=lambda: next(tokens))
    approval = client.request(TF, "infrastructure_change", "production", idempotency_key="oidc-1")
    assert approval.state.pending
    assert [r.status for r in double.requests_to("/api/actions", "POST")] == [401, 202]
    stuck = GatekeeperClient(double.url, token_provider=lambda: "expired-token")
    with pytest.raises(InvalidRequest) as caught:
        stuck.get("act-0001")
    assert caught.value.status == 401 and caught.value.field == "credentials"
    assert len(double.requests_to("/api/actions/act-0001", "GET")) == 2  # one retry with a fresh token, no more


def test_a_problem_answer_names_the_field(double: ActionsContractDouble) -> None:
    problem = {
        "type": "https://gatekeeper.dev/problems/validation-failed",
        "title": "x",
        "status": 422,
        "detail": "context.ticket: not a ticket of this tenant",
        "field": "context.ticket",
    }
    double.fail_next(1, 422, path_contains="/api/actions", body=problem)
    with pytest.raises(InvalidRequest) as caught:
        client_for(double).request(TF, "infrastructure_change", "production", context={"ticket": "CHG1"})
    assert caught.value.field == "context.ticket" and caught.value.code == "validation-failed"
    assert "not a ticket" in caught.value.detail


def test_cancel_withdraws_and_a_decision_that_won_the_race_counts(double: ActionsContractDouble) -> None:
    client = client_for(double)
    one = client.request("a", "deploy", "production", idempotency_key="c1")
    assert one.cancel().status == "cancelled"
    two = client.request("b", "deploy", "production", idempotency_key="c2")
    double.decide(two.id, "approved")
    assert two.cancel().approved  # 409 already decided -> the decided state
    with pytest.raises(InvalidRequest) as caught:
        one.report("executed", exit_code=0)
    assert caught.value.code == "not-approved" and caught.value.status == 409
    assert ("act-0001", "execution-attempt-refused", "executed") in double.audit


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"command": ""}, "command"),
        ({"command": []}, "command"),
        ({"command": ["ok", 3]}, "command[1]"),
        ({"command": "x" * 9000}, "command"),
        ({"command": "rm \ud800"}, "command"),
        ({"command": ["rm", "\udcff"]}, "command[1]"),
        ({"context": {"ticket": "CHG\ud800"}}, "context.ticket"),
        ({"action": "delete_everything"}, "action"),
        ({"environment": ""}, "target.environment"),
        ({"environment": "prod\nuction"}, "target.environment"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"idempotency_key": "k" * 129}, "idempotency_key"),
        ({"context": {"plan_digest": "sha256:abc"}}, "context.plan_digest"),
        ({"context": {"colour": "red"}}, "context.colour"),
        ({"context": {"version_tags": ["v1", ""]}}, "context.version_tags[1]"),
        ({"context": {"plan_url": "javascript:alert(1)"}}, "context.plan_url"),
        ({"timeout": "P8D"}, "timeout"),
        ({"timeout": "PT59S"}, "timeout"),
        ({"timeout": "soon"}, "timeout"),
        ({"command": [" ", "apply"]}, "command"),
        ({"command": ["x" * (MAX_COMMAND_CHARS + 1)]}, "command"),
        ({"command": 42}, "command"),
        ({"command": {"argv": ["ls"]}}, "command"),
        ({"context": ["ticket", "CHG1"]}, "context"),
        ({"resource": ""}, "target.resource"),
        ({"resource": 7}, "target.resource"),
        ({"environment": 3}, "target.environment"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    double: ActionsContractDouble, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"command": TF, "action": "infrastructure_change", "environment": "production"}
    args.update(kwargs)
    with pytest.raises(InvalidRequest) as caught:
        client_for(double).request(**args)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert double.requests == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"base_url": "http://gatekeeper.example.com", "token": "t"}, "base_url"),
        ({"base_url": "https://user:pw@gatekeeper.example.com", "token": "t"}, "base_url"),
        ({"base_url": "ftp://gatekeeper.example.com", "token": "t"}, "base_url"),
        ({"base_url": "https://gatekeeper.example.com"}, "credentials"),
        ({"base_url": "https://gatekeeper.example.com", "token": "t", "api_key": "k", "tenant": "x"}, "credentials"),
        ({"base_url": "https://gatekeeper.example.com", "api_key": "k"}, "tenant"),
    ],
)
def test_the_client_refuses_an_unsafe_url_or_ambiguous_credentials(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        GatekeeperClient(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_the_client_strips_an_api_suffix_and_never_shows_the_credential() -> None:
    client = GatekeeperClient("https://gk.contoso.com/api/", api_key="s3cret-key", tenant="contoso")
    assert client.base_url == "https://gk.contoso.com"
    assert "s3cret" not in repr(client)


def test_an_answer_with_a_hostile_id_or_status_is_unexpected(double: ActionsContractDouble) -> None:
    double.fail_next(1, 202, path_contains="/api/actions", body={"id": "../../admin", "status": "pending"})
    with pytest.raises(UnexpectedResponse):
        client_for(double).request(TF, "deploy", "production")
    double.fail_next(1, 202, path_contains="/api/actions", body={"id": "a1", "status": "maybe"})
    with pytest.raises(UnexpectedResponse):
        client_for(double).request(TF, "deploy", "production")


# --- requires_approval ---------------------------------------------------------------------------------------


def test_the_decorator_runs_an_approved_call_and_reports_it_executed(double: ActionsContractDouble) -> None:
    double.level_for = lambda body: "L1"
    calls: list[str] = []

    @requires_approval(
        client_for(double), action="data_export", environment="production", command=lambda table: f"export {table}"
    )
    def export(table: str) -> int:
        calls.append(table)
        return 42

    assert export("customers") == 42 and calls == ["customers"]
    action = double.only_action()
    assert action.body["command"] == "export customers"
    assert action.reports == [{"outcome": "executed", "exit_code": 0}] and action.outcome == "executed"


def test_the_decorator_answers_a_quiet_denied_and_never_calls(double: ActionsContractDouble) -> None:
    calls: list[str] = []
    client = client_for(double)

    @requires_approval(client, action="data_export", environment="production", timeout=60)
    def export(table: str) -> int:
        calls.append(table)
        return 42

    decide_later(double, "denied", after=0.2)
    result = export("customers")
    assert isinstance(result, Denied) and not result and result.status == "denied"
    assert result.decided_by == "Jane Approver" and calls == []
    action = double.only_action()
    # without `command`, the function and argument names only: values could be secrets
    assert action.body["command"].endswith("export(<1 positional>)") and "customers" not in action.body["command"]
    assert action.body["timeout"] == "PT1M"
    assert action.reports == [{"outcome": "skipped", "detail": "not run: denied"}]


def test_the_decorator_reports_a_raising_call_and_lets_the_exception_through(double: ActionsContractDouble) -> None:
    double.level_for = lambda body: "L0"

    @requires_approval(client_for(double), action="deploy", environment="dev", command="deploy.sh")
    def deploy() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        deploy()
    assert double.only_action().reports == [{"outcome": "executed", "exit_code": 1, "detail": "raised RuntimeError"}]


def test_the_context_manager_yields_approved_or_denied(double: ActionsContractDouble) -> None:
    client = client_for(double)
    ran: list[str] = []
    decide_later(double, "approved", after=0.1)
    with requires_approval(
        client,
        command=TF,
        action="infrastructure_change",
        environment="production",
        idempotency_key="cm-1",
        wait_timeout=10,
    ) as gate:
        assert gate and gate.state.approved
        ran.append("apply")
    assert ran == ["apply"] and double.actions["act-0001"].outcome == "executed"

    # nobody decides in time: the request is withdrawn and the body sees a falsy Denied
    with requires_approval(
        client,
        command=TF,
        action="infrastructure_change",
        environment="production",
        idempotency_key="cm-2",
        wait_timeout=1,
    ) as gate:
        assert isinstance(gate, Denied) and gate.status == "cancelled"
    assert double.actions["act-0002"].status == "cancelled"
    assert double.actions["act-0002"].reports == [{"outcome": "skipped", "detail": "not run: cancelled"}]


def test_unavailable_is_raised_and_the_guarded_call_never_runs(double: ActionsContractDouble) -> None:
    clock = FakeClock()
    client = client_for(double, sleep=clock.sleep, clock=clock, retry_budget=10)
    double.fail_next(1000, 503, path_contains="/api/actions")
    calls: list[int] = []

    @requires_approval(client, action="deploy", environment="production", command="deploy.sh")
    def deploy() -> None:
        calls.append(1)

    with pytest.raises(Unavailable):
        deploy()
    assert calls == []


def test_the_state_prints_the_contract_fields() -> None:
    state = ActionState.from_answer(
        {"id": "a1", "status": "denied", "level": "L2", "decision": "denied", "reason": "not now", "extra": "ignored"}
    )
    out = state.to_json()
    assert out["approved"] is False and out["reason"] == "not now" and "extra" not in out
