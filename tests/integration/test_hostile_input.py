"""Hostile and unusual input through the real registered functions: a clear 4xx naming the problem, never a
500, nothing written; and valid requests up to the body limit accepted, the large ones by claim check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from types import SimpleNamespace

import azure.functions as func
import pytest

from devstack.durable_api import DurableApiServer
from devstack.entra_issuer import LocalEntraIssuer
from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import EventSource
from gatekeeper.gates.common import load_event
from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.ingest.queue import decode_message
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import set_services
from gatekeeper.store.tables import TablePurpose
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import (
    ADO_CHECK_SECRET,
    ADO_HOOK_SECRET,
    API_KEY,
    ENTRA_TENANT,
    GITHUB_SECRET,
    http_function,
    make_env,
    problem,
)
from tests.support.worker_loop import run_on_worker

CHECK_SAMPLE = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())
GENERIC = json.loads((ROOT / "tests/fixtures/generic/gate-request.json").read_text())
CONNECTOR = json.loads((ROOT / "tests/fixtures/connectors/halopsa.ticket-approved.json").read_text())
DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())


@pytest.fixture
def env(storage_connection_string, tmp_path):
    extra = tuple(source_identities(EventSource(CONNECTOR["connector"]), CONNECTOR))
    env = make_env(storage_connection_string, tmp_path / "keys", extra_identities=extra)
    set_services(env.services)
    yield env
    set_services(None)


@pytest.fixture
def durable():
    with DurableApiServer() as server:
        yield server


def nothing_written(env) -> bool:
    """No queue message, no claim-check blob and no Events table row for the tenant."""
    if env.queued_texts():
        return False
    container = env.services.large_events.container
    if container.exists() and list(container.list_blobs(name_starts_with=env.tenant_id + "/")):
        return False
    events = env.storage.tenant_table(env.tenant_id, TablePurpose.EVENTS)
    try:
        return not list(events.list_entities())
    except Exception:  # the table does not exist: nothing was written
        return True


def post(route: str, body: bytes, headers: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest("POST", f"http://localhost/api/{route}", headers=headers, body=body)
    return http_function(route)(request)


def github_headers(body: bytes, event: str = "deployment_protection_rule") -> dict[str, str]:
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature,
    }


def check_headers(**overrides: str) -> dict[str, str]:
    headers = dict(CHECK_SAMPLE["headers"], AuthToken="job-token")
    headers["X-Gatekeeper-Check-Secret"] = ADO_CHECK_SECRET
    headers.update(overrides)
    return headers


def route_request(route: str, env, body: bytes) -> func.HttpResponse:
    """`body` on `route`, with the route's valid credentials (signed over exactly these bytes)."""
    if route == "github_webhook":
        return _call(route, body, github_headers(body))
    if route == "azure_devops_check":
        return _call(route, body, check_headers())
    if route == "azure_devops_service_hook":
        auth = "Basic " + base64.b64encode(f"gatekeeper:{ADO_HOOK_SECRET}".encode()).decode()
        return _call(route, body, {"Content-Type": "application/json", "Authorization": auth})
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": env.tenant_id, "x-functions-key": API_KEY}
    return _call(route, body, headers)


def _call(route: str, body: bytes, headers: dict[str, str]) -> func.HttpResponse:
    request = func.HttpRequest("POST", "http://localhost/api/" + route, headers=headers, body=body)
    return http_function(route)(request)


ROUTES = ["github_webhook", "azure_devops_check", "azure_devops_service_hook", "generic_events"]
HOSTILE = {
    "depth-5000": (b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", "json-out-of-bounds", "body"),
    "int-5000-digits": (b'{"runId": ' + b"7" * 5000 + b"}", "json-out-of-bounds", "runId"),
    "nan": (b'{"environment": "production", "x": NaN}', "json-out-of-bounds", "x"),
    "infinity": (b'{"x": [1, -Infinity]}', "json-out-of-bounds", "x[1]"),
    "float-overflow": (b'{"x": 1e999}', "json-out-of-bounds", "x"),
    "duplicate-key": (b'{"environment": "staging", "environment": "production"}', "duplicate-key", "environment"),
    "lone-surrogate": (b'{"actor": "\\ud800"}', "json-out-of-bounds", "actor"),
    "not-utf8": (b'{"x": "\xff"}', "malformed-json", "body"),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_json_is_a_400_naming_the_problem_on_every_route(env, route, case):
    body, slug, field = HOSTILE[case]
    response = route_request(route, env, body)
    assert response.status_code == 400, response.get_body()[:300]
    details = problem(response)
    assert details["type"].endswith("/" + slug) and details["field"] == field
    assert nothing_written(env)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_connector_messages_are_dead_lettered_with_the_reason(env, case):
    body, slug, _ = HOSTILE[case]
    http_function("connector_events")(func.QueueMessage(id="h1", body=body))
    assert nothing_written(env)
    letters = [d for d in DeadLetters(env.storage).list("connector-events") if d.message.startswith(body[:5].decode())]
    assert letters and f"400 {slug}" in letters[-1].reason


def test_a_pipeline_events_message_nested_too_deep_is_dead_lettered_not_a_crash(env, durable):
    body = b'{"v": 1, "tenant": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    run_on_worker(
        http_function("dispatch_pipeline_events")(func.QueueMessage(id="p", body=body), client=durable.client_binding)
    )
    letters = [d for d in DeadLetters(env.storage).list("pipeline-events") if d.message == body.decode()]
    assert letters and "nested deeper" in letters[-1].reason
    assert durable.posts("/orchestrators/") == []


@pytest.mark.parametrize(
    ("route", "headers"),
    [
        ("generic_events", {"X-Gatekeeper-Tenant": "a" * 100_000, "x-functions-key": API_KEY}),
        ("generic_events", {"X-Gatekeeper-Tenant": "a" * 5_000, "x-functions-key": API_KEY}),  # under 8 KiB
        ("generic_events", {"X-Gatekeeper-Tenant": "TENANT", "x-functions-key": "k" * 100_000}),
        ("generic_events", {"Authorization": "Bearer " + "e" * 100_000}),
        ("azure_devops_check", check_headers(**{"X-Gatekeeper-Check-Secret": "s" * 100_000})),
        ("github_webhook", {"X-GitHub-Event": "deployment_protection_rule", "X-Hub-Signature-256": "x" * 100_000}),
    ],
)
def test_oversized_credential_headers_are_a_401(env, route, headers):
    body = json.dumps(DPR if route == "github_webhook" else GENERIC).encode()
    response = _call(route, body, {"Content-Type": "application/json", **headers})
    assert response.status_code == 401, response.get_body()[:300]
    assert nothing_written(env)


def test_an_oversized_plan_url_is_refused_naming_the_header(env):
    response = _call("azure_devops_check", b"{}", check_headers(PlanUrl="https://dev.azure.com/" + "f" * 100_000))
    assert response.status_code == 431
    assert problem(response)["field"] == "header:planurl"
    assert nothing_written(env)


def test_a_long_plan_url_under_the_header_limit_is_a_401_not_a_storage_error(env):
    response = _call("azure_devops_check", b"{}", check_headers(PlanUrl="https://dev.azure.com/" + "f" * 8000))
    assert response.status_code == 401
    assert nothing_written(env)


def test_an_oversized_auth_token_beyond_the_large_header_limit_is_refused(env):
    response = _call("azure_devops_check", b"{}", check_headers(AuthToken="t" * 70_000))
    assert response.status_code == 431 and problem(response)["field"] == "header:authtoken"
    assert nothing_written(env)


@pytest.mark.parametrize("declared", ["9" * 5000, "\u00b2", "-1", "1e9", " 12 "])
def test_an_odd_content_length_is_never_a_500(env, declared):
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": env.tenant_id, "x-functions-key": API_KEY}
    response = _call("generic_events", json.dumps(GENERIC).encode(), {**headers, "Content-Length": declared})
    assert response.status_code in (202, 413), response.get_body()[:300]
    assert (response.status_code == 413) == (declared == "9" * 5000)
    env.drain()


def test_a_body_over_the_limit_is_413_naming_it(env):
    body = json.dumps(dict(GENERIC, labels=["x" * 100] * 11_000)).encode()
    response = route_request("generic_events", env, body)
    assert response.status_code == 413 and "1048576" in problem(response)["detail"]
    assert nothing_written(env)


def test_an_event_too_large_to_keep_is_413_naming_the_limit_before_anything_is_written(env):
    evidence = [{"kind": "tests", "data": {"cases": ["x" * 1000] * 300}}]  # 300 KB inline, under the body limit
    response = route_request("generic_events", env, json.dumps(dict(GENERIC, evidence=evidence)).encode())
    assert response.status_code == 413, response.get_body()[:300]
    details = problem(response)
    assert details["field"] == "evidence" and "262144" in details["detail"]
    assert nothing_written(env)


# -- valid requests up to the limits: the claim check -------------------------------------------------------


def dispatch_all(env, durable) -> None:
    for text in env.drain():
        run_on_worker(
            http_function("dispatch_pipeline_events")(
                func.QueueMessage(id="d", body=text.encode()), client=durable.client_binding
            )
        )


def claim_check_blobs(env) -> list[str]:
    container = env.services.large_events.container
    return [b.name for b in container.list_blobs(name_starts_with=env.tenant_id + "/")] if container.exists() else []


def test_a_gate_request_with_40_kib_of_inline_evidence_is_accepted_and_dispatched(env, durable):
    evidence = [{"kind": "tests", "data": {"cases": [f"case-{i:05d}-passed" for i in range(2_200)]}}]
    body = json.dumps(dict(GENERIC, evidence=evidence)).encode()
    assert len(body) > 40 * 1024
    response = route_request("generic_events", env, body)
    assert response.status_code == 202, response.get_body()[:300]
    [text] = env.queued_texts()
    assert len(text) < 1024 and '"blob"' in text  # only a reference travels on the queue
    [blob] = claim_check_blobs(env)
    assert blob == f"{env.tenant_id}/{json.loads(text)['id']}.sealed"
    stored = env.services.large_events.get(blob)
    assert stored is not None and "case-00001" not in stored  # sealed, like the queue message
    instance_id = json.loads(response.get_body())["instanceId"]
    dispatch_all(env, durable)
    [(path, _)] = durable.posts("/orchestrators/")
    assert path.endswith("/" + instance_id)
    assert claim_check_blobs(env) == []  # deleted after a successful dispatch


def test_an_azure_devops_check_with_a_44_kib_auth_token_is_accepted_and_dispatched(env, durable):
    token = "eyJ" + "A" * (44 * 1024)
    body = json.dumps({"environment": "production", "repository": "fabrikam/web", "runId": "1234"}).encode()
    response = _call("azure_devops_check", body, check_headers(AuthToken=token))
    assert response.status_code == 200, response.get_body()[:300]
    [text] = env.queued_texts()
    assert token[:100] not in text
    queued = decode_message(env.services.sealer, text, env.services.large_events)
    assert queued.event.callback.auth_token.get_secret_value() == token
    assert token[:100] not in (env.services.large_events.get(queued.blob) or token)
    dispatch_all(env, durable)
    [(_, gate)] = durable.posts("/orchestrators/")
    assert claim_check_blobs(env) == []
    # the gate's activities read the event back from the Events table, where it spans several properties
    row = env.storage.tenant_table(env.tenant_id, TablePurpose.EVENTS).get_entity("event", gate["event_key"])
    assert "sealed_event_1" in row and token[:100] not in json.dumps(dict(row), default=str)
    services = SimpleNamespace(storage=env.storage, cipher=env.services.sealer)
    stored = load_event(services, env.tenant_id, gate["event_key"])  # type: ignore[arg-type]
    assert stored.callback.auth_token.get_secret_value() == token


def test_a_claim_check_message_cannot_name_another_tenants_blob(env, durable):
    body = json.dumps(dict(GENERIC, evidence=[{"kind": "tests", "data": {"x": "y" * 60_000}}])).encode()
    assert route_request("generic_events", env, body).status_code == 202
    [text] = env.drain()
    forged = json.loads(text)
    forged["blob"] = "tother/" + forged["id"] + ".sealed"
    run_on_worker(
        http_function("dispatch_pipeline_events")(
            func.QueueMessage(id="f", body=json.dumps(forged).encode()), client=durable.client_binding
        )
    )
    assert durable.posts("/orchestrators/") == []
    letters = [d for d in DeadLetters(env.storage).list("pipeline-events") if d.message == json.dumps(forged)]
    assert letters and "not the one of this event" in letters[-1].reason
    assert len(claim_check_blobs(env)) == 1  # kept for the dead-letter path


def test_a_claim_check_blob_moved_to_another_name_does_not_open(env):
    body = json.dumps(dict(GENERIC, evidence=[{"kind": "tests", "data": {"x": "y" * 60_000}}])).encode()
    assert route_request("generic_events", env, body).status_code == 202
    [text] = env.drain()
    message = json.loads(text)
    [name] = claim_check_blobs(env)
    other_id = uuid.uuid4().hex
    env.services.large_events.put(f"{env.tenant_id}/{other_id}.sealed", env.services.large_events.get(name) or "")
    moved = json.dumps(dict(message, id=other_id, blob=f"{env.tenant_id}/{other_id}.sealed"))
    with pytest.raises(Exception, match="does not open"):
        decode_message(env.services.sealer, moved, env.services.large_events)


# -- audit export query bounds -----------------------------------------------------------------------------

AUDIENCE = "api://gatekeeper-hostile-tests"


@pytest.mark.parametrize(
    ("name", "value"),
    [("from", "0001-01-01T00:00:00+14:00"), ("to", "9999-12-31T23:59:59-14:00"), ("from", "2026-13-01T00:00:00Z")],
)
def test_audit_export_bounds_outside_the_representable_range_are_400(env, name, value):
    with LocalEntraIssuer() as issuer:
        env.services.token_validator = EntraTokenValidator(
            AUDIENCE, issuer.authority_host, allowed_tenants=lambda t: True
        )
        token = issuer.issue(
            "a0000000-0000-0000-0000-000000000001", ENTRA_TENANT, AUDIENCE, roles=("Gatekeeper.Auditor",)
        )
        request = func.HttpRequest(
            "GET",
            f"http://localhost/api/tenants/{env.tenant_id}/audit/export",
            headers={"Authorization": f"Bearer {token}"},
            body=b"",
            params={"format": "bundle", name: value},
            route_params={"tenant": env.tenant_id},
        )
        response = http_function("audit_export")(request)
    assert response.status_code == 400, response.get_body()[:300]
    assert problem(response)["field"] == name


# -- forged or damaged pipeline-events messages: dead-lettered with the reason, no gate started --------------


def _forged_messages(env) -> dict[str, tuple[str, str]]:
    """Each case: (the message as the dispatcher receives it, the reason its dead letter must give)."""
    from gatekeeper.events.codec import event_to_sealable
    from gatekeeper.ingest.queue import SEAL_TABLE

    assert route_request("generic_events", env, json.dumps(GENERIC).encode()).status_code == 202
    [text] = env.drain()
    real = json.loads(text)
    tenant, fresh = env.tenant_id, uuid.uuid4().hex
    event = decode_message(env.services.sealer, text).event
    theirs = event.model_copy(update={"tenant_id": "tother"})  # sealed by this tenant's key, naming another
    sealed = env.services.sealer.seal_json(tenant, SEAL_TABLE, tenant, fresh, event_to_sealable(theirs))
    return {
        "future version": (json.dumps({**real, "v": 2}), "unsupported message version"),
        "sealed and a blob": (
            json.dumps({**real, "blob": f"{tenant}/{real['id']}.sealed"}),
            "exactly one of 'sealed' and 'blob'",
        ),
        "neither sealed nor a blob": (
            json.dumps({k: v for k, v in real.items() if k != "sealed"}),
            "exactly one of 'sealed' and 'blob'",
        ),
        "a path for an event id": (
            json.dumps({"v": 1, "tenant": tenant, "id": "../x", "blob": f"{tenant}/../x.sealed"}),
            "bad tenant or event id",
        ),
        "a claim-check blob that is gone": (
            json.dumps({"v": 1, "tenant": tenant, "id": fresh, "blob": f"{tenant}/{fresh}.sealed"}),
            f"the claim-check blob {tenant}/{fresh}.sealed is missing",
        ),
        "an event of another tenant": (
            json.dumps({"v": 1, "tenant": tenant, "id": fresh, "sealed": sealed}),
            "message tenant does not match the sealed event",
        ),
    }


FORGED_CASES = (
    "future version",
    "sealed and a blob",
    "neither sealed nor a blob",
    "a path for an event id",
    "a claim-check blob that is gone",
    "an event of another tenant",
)


@pytest.mark.parametrize("case", FORGED_CASES)
def test_a_forged_or_damaged_pipeline_events_message_is_dead_lettered_with_its_reason(env, durable, case):
    message, reason = _forged_messages(env)[case]
    run_on_worker(
        http_function("dispatch_pipeline_events")(
            func.QueueMessage(id="f", body=message.encode()), client=durable.client_binding
        )
    )
    assert durable.posts("/orchestrators/") == []
    letters = [d.reason for d in DeadLetters(env.storage).list("pipeline-events") if d.message == message]
    assert len(letters) == 1 and letters[0].startswith("undecodable: ") and reason in letters[0], letters


def test_a_claim_check_message_needs_a_blob_store_and_an_oversize_event_needs_one_to_be_queued(env):
    from gatekeeper.ingest.queue import encode_message

    body = json.dumps(dict(GENERIC, evidence=[{"kind": "tests", "data": {"x": "y" * 60_000}}])).encode()
    assert route_request("generic_events", env, body).status_code == 202
    [text] = env.drain()
    with pytest.raises(ValueError, match="no blob store to read it from"):
        decode_message(env.services.sealer, text)
    queued = decode_message(env.services.sealer, text, env.services.large_events)
    with pytest.raises(ValueError, match="exceed the queue limit"):
        encode_message(env.services.sealer, queued.event, uuid.uuid4().hex)
    again = encode_message(env.services.sealer, queued.event, "e2", env.services.large_events)  # store ready
    assert json.loads(again)["blob"] == f"{env.tenant_id}/e2.sealed"
    assert decode_message(env.services.sealer, again, env.services.large_events).event == queued.event


def test_forged_dead_letters_never_stop_the_operators_listing_them(env, durable, capsys, monkeypatch, tmp_path):
    """A claim-check message whose event id is a path names a blob outside the container's naming; listing
    the dead letters (which tells whether each one's key still exists) must say `unknown` for it, not fail
    for every dead letter."""
    from gatekeeper.cli import main

    forged = _forged_messages(env)
    for message, _ in forged.values():
        run_on_worker(
            http_function("dispatch_pipeline_events")(
                func.QueueMessage(id="f", body=message.encode()), client=durable.client_binding
            )
        )
    monkeypatch.setenv("GATEKEEPER_KEY_MODE", "local")
    monkeypatch.setenv("GATEKEEPER_LOCAL_KEY_DIR", str(tmp_path / "cli-keys"))
    capsys.readouterr()
    connection = env.storage.connection_string
    assert (
        main(["deadletters", "list", "--queue", "pipeline-events", "--json", "--storage-connection", connection]) == 0
    )
    keys = {r["row_key"]: r["key"] for r in json.loads(capsys.readouterr().out)}
    row_of = {d.message: d.row_key for d in DeadLetters(env.storage).list("pipeline-events")}
    assert keys[row_of[forged["a path for an event id"][0]]] == "unknown"
    assert keys[row_of[forged["a claim-check blob that is gone"][0]]] == "blob-gone"
