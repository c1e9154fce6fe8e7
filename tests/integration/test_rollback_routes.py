"""The watch's HTTP routes as the host runs them: the registered functions (`deployment_state`,
`deployment_hold`, `deployment_rollback`, `azure_monitor_alert`) with the real DurableOrchestrationClient
against the local Durable HTTP API, state in Azurite, Entra tokens from a local issuer, problem+json."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devstack.durable_api import DurableApiServer
from devstack.entra_issuer import LocalEntraIssuer
from gatekeeper.contracts.watch import RoundInput
from gatekeeper.errors import DependencyUnavailable
from gatekeeper.gates.store import GateIndex
from gatekeeper.policy.store import PolicyStore
from gatekeeper.rollback import steps
from gatekeeper.rollback.control import DeploymentControl
from gatekeeper.rollback.probes import ProbeResult
from gatekeeper.rollback.store import Deployment, WatchRecord, WatchState, WatchStore
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.security.principal import Principal
from gatekeeper.services import set_services
from tests.support.gatekeeper_env import API_KEY, ENTRA_TENANT, http_function, make_env, problem
from tests.support.worker_loop import run_on_worker

pytestmark = pytest.mark.azurite

AUDIENCE = "api://gatekeeper-rollback-routes"
OPERATOR = "0000000c-0000-4000-8000-00000000000c"
STRANGER = "0000000d-0000-4000-8000-00000000000d"
FIRED = json.loads(
    (
        Path(__file__).resolve().parents[1] / "fixtures/azure-monitor/common-alert-schema.metric-static.fired.json"
    ).read_text()
)
TARGET = FIRED["data"]["essentials"]["alertTargetIDs"][0]
POLICY = {
    "version": 1,
    "watch": [
        {
            "environments": ["production"],
            "probes": [{"name": "health", "url": "https://shop.contoso.com/health"}],
            "alert_resources": [TARGET],
        }
    ],
}


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalEntraIssuer]:
    with LocalEntraIssuer() as server:
        yield server


@pytest.fixture
def env(azurite, tmp_path, issuer) -> Iterator[dict[str, Any]]:
    runtime = make_env(azurite.connection_string, tmp_path / "keys")
    runtime.services.token_validator = EntraTokenValidator(
        AUDIENCE, authority_host=issuer.authority_host, allowed_tenants=lambda tid: True
    )
    runtime.services.__dict__["operators_for"] = lambda _t: (OPERATOR,)
    set_services(runtime.services)
    PolicyStore(runtime.storage, runtime.tenant_id).publish(json.dumps(POLICY), published_by="tests")
    watch_id = "watch-" + uuid.uuid4().hex[:40]
    now = datetime.now(UTC)
    WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).save(
        WatchRecord(
            instance_id=watch_id,
            tenant_id=runtime.tenant_id,
            deployment=Deployment(source="github", repository="contoso/shop", environment="production"),
            started_at=now,
            updated_at=now,
        )
    )
    GateIndex(runtime.storage).put(watch_id, runtime.tenant_id)
    with DurableApiServer() as durable:
        durable.instances[watch_id] = {"name": "post_deploy_watch", "runtimeStatus": "Running"}
        try:
            yield {"runtime": runtime, "watch": watch_id, "durable": durable, "issuer": issuer}
        finally:
            set_services(None)


def call(
    env: dict[str, Any],
    function: str,
    route: str,
    *,
    oid: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> func.HttpResponse:
    sent = dict(headers or {})
    if oid is not None:
        token = env["issuer"].issue(oid, ENTRA_TENANT, AUDIENCE, issued_at=datetime.now(UTC).timestamp())
        sent["Authorization"] = f"Bearer {token}"
    request = func.HttpRequest(
        method,
        f"http://localhost/api/{route}",
        headers={"Content-Type": "application/json", **sent},
        body=b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode()),
        route_params={"instance_id": env["watch"]},
    )
    handler = http_function(function)
    if function == "deployment_state":
        return handler(req=request)
    return run_on_worker(handler(req=request, client=env["durable"].client_binding))


def raised(env: dict[str, Any]) -> list[tuple[str, Any]]:
    return env["durable"].instances[env["watch"]].get("events", [])


def test_an_operator_holds_and_rolls_back_through_the_routes(env):
    watch = env["watch"]
    seen = call(env, "deployment_state", f"deployments/{watch}", oid=OPERATOR, method="GET")
    assert seen.status_code == 200 and json.loads(seen.get_body())["state"] == "watching"
    held = call(env, "deployment_hold", f"deployments/{watch}/hold", oid=OPERATOR, body={"reason": "looking"})
    assert held.status_code == 200 and json.loads(held.get_body())["held"] is True
    rolled = call(env, "deployment_rollback", f"deployments/{watch}/rollback", oid=OPERATOR, body={})
    assert rolled.status_code == 202
    assert [name for name, _ in raised(env)] == ["watch-wake-0", "watch-wake-1"]
    again = call(env, "deployment_rollback", f"deployments/{watch}/rollback", oid=OPERATOR, body={})
    assert again.status_code == 409 and problem(again)["type"].endswith("/rollback-started")


def test_strangers_and_anonymous_callers_are_refused_with_problem_json(env):
    watch = env["watch"]
    stranger = call(env, "deployment_hold", f"deployments/{watch}/hold", oid=STRANGER, body={})
    assert stranger.status_code == 403 and problem(stranger)["type"].endswith("/not-allowed")
    anonymous = call(env, "deployment_rollback", f"deployments/{watch}/rollback", body={})
    assert anonymous.status_code == 401 and problem(anonymous)["status"] == 401
    bad = call(env, "deployment_hold", f"deployments/{watch}/hold", oid=OPERATOR, body={"hold": "maybe"})
    assert bad.status_code == 422 and problem(bad)["field"] == "hold"
    assert raised(env) == []


def test_a_common_schema_alert_wakes_the_watch_through_the_route(env):
    headers = {"X-Gatekeeper-Tenant": env["runtime"].tenant_id, "x-functions-key": API_KEY}
    answer = call(env, "azure_monitor_alert", "azure-monitor/alerts", body=FIRED, headers=headers)
    assert answer.status_code == 202
    assert json.loads(answer.get_body()) == {"status": "accepted", "watches": [env["watch"]], "condition": "Fired"}
    assert [name for name, _ in raised(env)] == ["watch-wake-0"]
    forged = call(
        env, "azure_monitor_alert", "azure-monitor/alerts", body=FIRED, headers={**headers, "x-functions-key": "x"}
    )
    assert forged.status_code == 401 and problem(forged)["status"] == 401
    assert len(raised(env)) == 1


# -- who may act, and on which watch ---------------------------------------------------------------------

APPROVER = "0000000e-0000-4000-8000-00000000000e"
OPS_GROUP = "5f0c7a52-3b8e-4c1d-9a6f-2e4b8d7c1a90"
OTHER_ENTRA_TENANT = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d"


def as_person(env: dict[str, Any], oid: str, *, tid: str = ENTRA_TENANT, groups: tuple[str, ...] = ()) -> str:
    return "Bearer " + env["issuer"].issue(oid, tid, AUDIENCE, groups=groups, issued_at=datetime.now(UTC).timestamp())


def test_the_rollback_approvers_of_the_environment_may_act_on_its_watch_and_nobody_else(env):
    runtime, watch = env["runtime"], env["watch"]
    with_approval = json.loads(json.dumps(POLICY))
    with_approval["watch"][0]["rollback"] = {
        "level": "L2",
        "approval": {"stages": [{"name": "ops", "approvers": [APPROVER, f"group:{OPS_GROUP}"], "timeout": "PT1H"}]},
    }
    PolicyStore(runtime.storage, runtime.tenant_id).publish(json.dumps(with_approval), published_by="tests")
    route = f"deployments/{watch}"
    approver = call(env, "deployment_state", route, method="GET", headers={"Authorization": as_person(env, APPROVER)})
    assert approver.status_code == 200
    member = as_person(env, STRANGER, groups=(OPS_GROUP,))  # a member of the approvers' group
    assert call(env, "deployment_state", route, method="GET", headers={"Authorization": member}).status_code == 200
    stranger = call(env, "deployment_state", route, method="GET", headers={"Authorization": as_person(env, STRANGER)})
    assert stranger.status_code == 403 and problem(stranger)["type"].endswith("/not-allowed")


def test_an_operator_of_another_entra_tenant_is_refused_as_the_wrong_tenant(env):
    foreign = as_person(env, OPERATOR, tid=OTHER_ENTRA_TENANT)  # the same object id, another directory
    route = f"deployments/{env['watch']}/rollback"
    answer = call(env, "deployment_rollback", route, body={}, headers={"Authorization": foreign})
    assert answer.status_code == 403 and problem(answer)["type"].endswith("/wrong-tenant")
    assert raised(env) == []


def test_a_watch_indexed_without_a_record_is_not_found(env):
    runtime = env["runtime"]
    orphan = "watch-" + uuid.uuid4().hex[:40]
    GateIndex(runtime.storage).put(orphan, runtime.tenant_id)
    env = {**env, "watch": orphan}
    answer = call(env, "deployment_hold", f"deployments/{orphan}/hold", oid=OPERATOR, body={})
    assert answer.status_code == 404 and problem(answer)["status"] == 404


def test_an_ended_watch_can_be_neither_held_nor_rolled_back(env):
    runtime, watch = env["runtime"], env["watch"]
    WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).update(watch, state=WatchState.HEALTHY)
    held = call(env, "deployment_hold", f"deployments/{watch}/hold", oid=OPERATOR, body={})
    rolled = call(env, "deployment_rollback", f"deployments/{watch}/rollback", oid=OPERATOR, body={})
    for answer in (held, rolled):
        assert answer.status_code == 410 and problem(answer)["type"].endswith("/watch-ended")
    assert raised(env) == []


@pytest.mark.parametrize("orchestration", ["Completed", "Failed", "unknown to the task hub"])
def test_a_watch_whose_orchestration_already_ended_answers_gone(env, orchestration):
    """The record still says watching (it has not caught up), but the task hub refuses the wake: 410 from the
    extension for an ended instance, 404 for one it no longer knows; either way the watch has ended."""
    if orchestration in ("Completed", "Failed"):
        env["durable"].instances[env["watch"]]["runtimeStatus"] = orchestration
    else:
        del env["durable"].instances[env["watch"]]
    answer = call(env, "deployment_hold", f"deployments/{env['watch']}/hold", oid=OPERATOR, body={})
    assert answer.status_code == 410 and problem(answer)["type"].endswith("/watch-ended")
    runtime = env["runtime"]
    stored = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).load(env["watch"])
    assert stored is not None and (stored.held, stored.wakes) == (False, 0), "nothing kept for an ended watch"
    assert rollback_entries(env) == [], "nor audited as held"


def test_a_task_hub_failing_to_take_the_wake_is_not_reported_as_an_ended_watch(env):
    env["durable"].fail_next(1, 500, path_contains="/raiseEvent/")
    answer = call(env, "deployment_hold", f"deployments/{env['watch']}/hold", oid=OPERATOR, body={})
    assert answer.status_code >= 500 and not problem(answer)["type"].endswith("/watch-ended")


def test_the_approvers_of_the_deployments_gate_may_act_on_its_watch(env):
    from gatekeeper.approvals.chain import ChainPlan
    from gatekeeper.contracts.gate import GateStatus
    from gatekeeper.gates.store import GateRecord, GateStore

    runtime, watch = env["runtime"], env["watch"]
    gate_id, now = "gate-" + uuid.uuid4().hex[:40], datetime.now(UTC)
    plan = ChainPlan.from_policy(
        {"stages": [{"name": "leads", "approvers": [APPROVER, f"group:{OPS_GROUP}"], "timeout": "PT1H"}]}
    )
    GateStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).save(
        GateRecord(
            instance_id=gate_id,
            tenant_id=runtime.tenant_id,
            status=GateStatus.APPROVED,
            level="L2",
            title="deploy",
            subject={"repository": "contoso/shop"},
            requester=("dev@contoso.com",),
            plan=plan,
            created_at=now,
            updated_at=now,
        )
    )
    route = f"deployments/{watch}"
    before = call(env, "deployment_state", route, method="GET", headers={"Authorization": as_person(env, APPROVER)})
    assert before.status_code == 403  # not yet: the watch names no gate
    WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).update(watch, gate_id=gate_id)
    for person in (as_person(env, APPROVER), as_person(env, STRANGER, groups=(OPS_GROUP,))):
        assert call(env, "deployment_state", route, method="GET", headers={"Authorization": person}).status_code == 200
    stranger = call(env, "deployment_state", route, method="GET", headers={"Authorization": as_person(env, STRANGER)})
    assert stranger.status_code == 403


# -- a route's read and its write: the watch as it is stored when the change is written ------------------


def rollback_entries(env: dict[str, Any]) -> list[dict[str, Any]]:
    runtime = env["runtime"]
    return [r.data for r in runtime.services.audit_for(runtime.tenant_id).records() if r.kind == "rollback"]


def between_read_and_write(env: dict[str, Any], change: Any) -> None:
    """Run `change` on the stored watch after the route has read it (while it looks up who may act) and before
    it writes: the orchestration's last write, or another person's request, landing in between."""
    runtime, done = env["runtime"], []

    def operators(_tenant: str) -> tuple[str, ...]:
        if not done:
            done.append(True)
            change(WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer), env["watch"])
        return (OPERATOR,)

    runtime.services.__dict__["operators_for"] = operators


@pytest.mark.parametrize("route", ["hold", "rollback"])
def test_a_watch_that_ends_while_the_request_is_checked_is_neither_changed_audited_nor_woken(env, route):
    between_read_and_write(env, lambda store, watch: store.update(watch, state=WatchState.HEALTHY))
    function = {"hold": "deployment_hold", "rollback": "deployment_rollback"}[route]
    answer = call(env, function, f"deployments/{env['watch']}/{route}", oid=OPERATOR, body={"reason": "late"})
    assert answer.status_code == 410 and problem(answer)["type"].endswith("/watch-ended")
    runtime = env["runtime"]
    stored = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).load(env["watch"])
    assert stored is not None and stored.state is WatchState.HEALTHY
    assert (stored.held, stored.requested_by, stored.wakes) == (False, None, 0)
    assert rollback_entries(env) == [] and raised(env) == []


def test_of_two_people_rolling_back_at_once_the_second_is_told_it_started_and_changes_nothing(env):
    first = "0000000f-0000-4000-8000-00000000000f"  # the other person, whose request was stored first
    between_read_and_write(env, lambda store, watch: store.update(watch, requested_by=first))
    answer = call(env, "deployment_rollback", f"deployments/{env['watch']}/rollback", oid=OPERATOR, body={})
    assert answer.status_code == 409 and problem(answer)["type"].endswith("/rollback-started")
    runtime = env["runtime"]
    stored = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).load(env["watch"])
    assert stored is not None and stored.requested_by == first and stored.wakes == 0
    assert rollback_entries(env) == [] and raised(env) == []


# -- the orchestration's step and a person's change: the step writes only what it decided -----------------


class HoldWhileProbing:
    """The environment's probe: while it runs (after the probe round read the watch, before it writes), an
    operator holds automatic rollback through the route; then the probe fails."""

    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env

    def run(self, spec: Any, tenant_id: str, deployed_at: datetime) -> ProbeResult:
        route = f"deployments/{self.env['watch']}/hold"
        held = call(self.env, "deployment_hold", route, oid=OPERATOR, body={"reason": "looking into it"})
        assert held.status_code == 200
        return ProbeResult(name=spec.name, outcome="fail", detail="HTTP 503")


def test_a_hold_stored_while_a_probe_round_runs_is_kept_and_stops_the_automatic_rollback(env):
    """The probe round used to write back the whole watch as it read it: the hold (answered 200) and its wake
    count were lost, and the round decided "roll back" on the record from before the hold."""
    runtime = env["runtime"]
    runtime.services.__dict__["health_probe"] = HoldWhileProbing(env)
    round_in = RoundInput(tenant_id=runtime.tenant_id, instance_id=env["watch"], round=0, at=datetime.now(UTC))
    result = steps.probe_round(runtime.services, round_in)
    stored = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer).load(env["watch"])
    assert stored is not None and (stored.held, stored.held_by, stored.wakes) == (True, OPERATOR, 1)
    assert stored.rounds == ("fail",) and stored.state is WatchState.UNHEALTHY
    assert result.action == "ask", "held: people decide; never an automatic rollback past a stored hold"
    assert result.wakes == 1, "the orchestration waits for the next wake, not the one the hold already raised"
    assert [name for name, _ in raised(env)] == ["watch-wake-0"]


class DurableDownOnce:
    """The orchestration's wake gateway, unreachable for its first call (a Durable API outage)."""

    def __init__(self) -> None:
        self.down, self.raised = True, []

    def raise_event(self, instance_id: str, event_name: str, data: Any) -> None:
        if self.down:
            self.down = False
            raise ConnectionError("the Durable API did not answer")
        self.raised.append((instance_id, event_name, data))


def control_over(runtime: Any, gateway: Any, audit_for: Any = None) -> DeploymentControl:
    """The watch control routes' service over the runtime's stores, with `gateway` as its task hub (and
    `audit_for` as its audit logs, the runtime's by default)."""
    return DeploymentControl(
        runtime.storage,
        runtime.services.sealer,
        gateway,
        entra_tenants_for=runtime.services.entra_tenants_for,
        operators_for=lambda _t: (OPERATOR,),
        policy_for=runtime.services.policy_for,
        audit_for=audit_for or runtime.services.audit_for,
        clock=runtime.services.clock,
    )


def test_a_rollback_request_whose_wake_cannot_be_raised_is_not_kept_so_its_retry_wakes_the_watch(env):
    """The request used to be stored and audited, then the wake failed (500): the retry was refused as
    "rollback-started" and the orchestration, waiting for that wake while people were asked, never heard of it."""
    runtime = env["runtime"]
    gateway = DurableDownOnce()
    control = control_over(runtime, gateway)
    person = Principal(oid=OPERATOR, tid=ENTRA_TENANT, auth="bearer")
    store = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer)
    with pytest.raises(DependencyUnavailable):
        control.rollback(env["watch"], person, b"{}")
    stored = store.load(env["watch"])
    assert stored is not None and (stored.requested_by, stored.wakes) == (None, 0), "nothing kept"
    assert rollback_entries(env) == []
    status, _ = control.rollback(env["watch"], person, b"{}")
    assert status == 202
    stored = store.load(env["watch"])
    assert stored is not None and (stored.requested_by, stored.wakes) == (OPERATOR, 1)
    assert [name for _, name, _ in gateway.raised] == ["watch-wake-0"], "the wake the orchestration waits for"
    assert [e["step"] for e in rollback_entries(env)] == ["requested"], "audited once"


def test_an_alert_whose_wake_cannot_be_raised_leaves_no_gap_in_the_wake_numbers(env):
    """An alert is recorded (one more wake counted), but the task hub does not take its wake. The count used
    to stay: the orchestration kept waiting for that number, and a person's rollback request, raised with the
    next one, went unheard until a timer (while people were asked: the deadline, and the request lost)."""
    from gatekeeper.rollback.alerts import AlertRouter, Essentials

    runtime = env["runtime"]
    gateway = DurableDownOnce()
    router = AlertRouter(
        runtime.storage,
        runtime.services.sealer,
        gateway,
        policy_for=runtime.services.policy_for,
        audit_for=runtime.services.audit_for,
        clock=runtime.services.clock,
    )
    status, answer = router.deliver(runtime.tenant_id, Essentials.model_validate(FIRED["data"]["essentials"]))
    assert status == 202 and answer["watches"] == [env["watch"]]
    store = WatchStore(runtime.storage, runtime.tenant_id, runtime.services.sealer)
    stored = store.load(env["watch"])
    assert stored is not None and len(stored.alerts) == 1 and stored.wakes == 0, "recorded, its wake taken back"
    control = control_over(runtime, gateway)
    assert control.rollback(env["watch"], Principal(oid=OPERATOR, tid=ENTRA_TENANT, auth="bearer"), b"{}")[0] == 202
    assert [name for _, name, _ in gateway.raised] == ["watch-wake-0"], "the number the orchestration waits for"
