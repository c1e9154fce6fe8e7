"""Seeded, bounded fuzzing of every ingestion route through the real registered Functions handlers and
Azurite: no answer is ever a 5xx, and a refused request writes nothing (no queue message, no claim-check
blob, no table). Cases are mutations of valid, correctly signed requests (so they get past authentication
and reach the parsers), random JSON, invalid bytes, and mutated or oversized headers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

from devstack.durable_api import DurableApiServer
from gatekeeper import json_bounded
from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import EventSource
from gatekeeper.ingest.deadletter import DeadLetters
from gatekeeper.services import set_services
from gatekeeper.store.tables import TablePurpose, tenant_table_name
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import (
    ADO_CHECK_SECRET,
    ADO_HOOK_SECRET,
    API_KEY,
    GITHUB_SECRET,
    GatekeeperEnv,
    http_function,
    make_env,
    signed_connector,
)
from tests.support.worker_loop import run_on_worker

CASES_PER_ROUTE = 200
RAW = "\u0000RAW\u0000"  # placeholder replaced by a raw (non-JSON-encodable) token after serialising

DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())
WORKFLOW_RUN = json.loads((SHARED_FIXTURES / "github/workflow_run.completed.payload.json").read_text())
CHECK = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())
HOOK = json.loads((SHARED_FIXTURES / "azure-devops/ms.vss-pipelines.run-state-changed-event.json").read_text())
GENERIC = json.loads((ROOT / "tests/fixtures/generic/gate-request.json").read_text())
CONNECTORS = [json.loads(p.read_text()) for p in sorted((ROOT / "tests/fixtures/connectors").glob("*.json"))]
CHECK_BODY = {"environment": "production", "repository": "fabrikam/web", "runId": "1234", "commit": "a1b2c3d"}

RAW_TOKENS = ["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, "-" + "1" * 30, "[" * 3000 + "]" * 3000]
HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    1.5,
    "",
    " ",
    "x" * 9000,
    [],
    {},
    [[[[{}]]]],
    {"nested": {"deeper": [1, {"x": None}]}},
    "\u202e\u0000\ud7ff",
    "../../etc/passwd",
    "$(Environment.Name)",
    "https://evil.example/callback",
    "'; DROP TABLE--",
    "\U0001f600" * 100,
    RAW,
]


def json_paths(document: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            paths += json_paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            paths += json_paths(value, (*prefix, index))
    return paths


def replaced(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = replaced(document[path[0]], path[1:], value)  # type: ignore[index]
    return copy


def mutate_document(rng: random.Random, document: Any) -> bytes:
    """A structural mutation: one node replaced, deleted or duplicated; raw tokens spliced in as text."""
    paths = json_paths(document)
    path = rng.choice(paths[1:] or paths)
    action = rng.random()
    if action < 0.6:
        mutated = replaced(document, path, rng.choice(HOSTILE_VALUES))
    elif action < 0.8 and path:
        parent = replaced(document, (), document)
        target = parent
        for step in path[:-1]:
            target = target[step]
        mutated = (
            replaced(document, path[:-1], {k: v for k, v in target.items() if k != path[-1]})
            if isinstance(target, dict)
            else replaced(document, path[:-1], [v for i, v in enumerate(target) if i != path[-1]])
        )
    else:
        mutated = replaced(document, path, [document] if rng.random() < 0.5 else {"k": document})
    text = json.dumps(mutated, ensure_ascii=rng.random() < 0.5)
    text = text.replace(json.dumps(RAW), rng.choice(RAW_TOKENS))
    if rng.random() < 0.15 and text.startswith("{") and len(text) > 2:  # a duplicated key
        first_key = text[1 : text.index(":")] if ":" in text else '"k"'
        text = "{" + first_key + ": 1, " + text[1:]
    return text.encode("utf-8", errors="surrogatepass")


def mutate_bytes(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        position = rng.randrange(len(data) + 1)
        if choice < 0.3 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif choice < 0.5:
            del data[position : position + rng.randint(1, 50)]
        elif choice < 0.7:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        else:
            data[position:position] = rng.choice([b"[" * 200, b"{", b"\\", b'"', b"\xff\xfe", b"NaN", b"9" * 400])
    return bytes(data)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth > 4 or kind < 0.4:
        return rng.choice([*HOSTILE_VALUES[:-1], "production", "deploy", "gate_request", 42])
    if kind < 0.7:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["kind", "action", "environment", "runId", "repository", "evidence", "payload", "account", "connector"]
    return {rng.choice([*keys, str(rng.random())]): random_json(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def fuzz_body(rng: random.Random, valid: dict[str, Any]) -> bytes:
    choice = rng.random()
    if choice < 0.55:
        return mutate_document(rng, valid)
    if choice < 0.75:
        return mutate_bytes(rng, json.dumps(valid).encode())
    if choice < 0.9:
        return json.dumps(random_json(rng)).encode()
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))


def fuzz_headers(rng: random.Random, headers: dict[str, str]) -> dict[str, str]:
    headers = dict(headers)
    if rng.random() < 0.7:
        return headers
    name = rng.choice([*sorted(headers), "X-Extra", "Content-Length"])
    choice = rng.random()
    if choice < 0.25:
        headers.pop(name, None)
    elif choice < 0.5:
        headers[name] = rng.choice(["a" * 100_000, "A" * 9000, "b" * 50_000])
    elif choice < 0.75:
        headers[name] = "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randint(0, 40)))
    else:
        headers[name] = rng.choice(
            ["", " ", "$(System.PlanId)", "text/plain", "Bearer", "Basic !!!", "sha256=00", "\u00b2", "9" * 5000]
        )
    return headers


def github_case(rng: random.Random, env: GatekeeperEnv) -> tuple[bytes, dict[str, str]]:
    event, valid = rng.choice([("deployment_protection_rule", DPR), ("workflow_run", WORKFLOW_RUN)])
    body = fuzz_body(rng, valid)
    signed = rng.random() < 0.85  # mostly signed over the mutated bytes, so the parsers are reached
    secret = GITHUB_SECRET if signed else "wrong"
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.UUID(int=rng.getrandbits(128))),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }
    return body, fuzz_headers(rng, headers)


def check_case(rng: random.Random, env: GatekeeperEnv) -> tuple[bytes, dict[str, str]]:
    headers = dict(CHECK["headers"], AuthToken="job-token", **{"X-Gatekeeper-Check-Secret": ADO_CHECK_SECRET})
    return fuzz_body(rng, CHECK_BODY), fuzz_headers(rng, headers)


def hook_case(rng: random.Random, env: GatekeeperEnv) -> tuple[bytes, dict[str, str]]:
    auth = "Basic " + base64.b64encode(f"gatekeeper:{ADO_HOOK_SECRET}".encode()).decode()
    return fuzz_body(rng, HOOK), fuzz_headers(rng, {"Content-Type": "application/json", "Authorization": auth})


def generic_case(rng: random.Random, env: GatekeeperEnv) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": env.tenant_id, "x-functions-key": API_KEY}
    return fuzz_body(rng, GENERIC), fuzz_headers(rng, headers)


HTTP_ROUTES: dict[str, Callable[[random.Random, GatekeeperEnv], tuple[bytes, dict[str, str]]]] = {
    "github_webhook": github_case,
    "azure_devops_check": check_case,
    "azure_devops_service_hook": hook_case,
    "generic_events": generic_case,
}


@pytest.fixture
def env(storage_connection_string, tmp_path):
    identities: list[str] = []
    for document in CONNECTORS:
        identities += source_identities(EventSource(document["connector"]), document)
    env = make_env(storage_connection_string, tmp_path / "keys", extra_identities=tuple(sorted(set(identities))))
    set_services(env.services)
    yield env
    set_services(None)


def claim_check_blobs(env: GatekeeperEnv) -> list[str]:
    container = env.services.large_events.container
    return [b.name for b in container.list_blobs(name_starts_with=env.tenant_id + "/")] if container.exists() else []


def table_names(env: GatekeeperEnv) -> set[str]:
    return {t.name for t in env.storage.tables.list_tables()}


def reset_after_accepting(env: GatekeeperEnv, durable: DurableApiServer | None = None) -> None:
    """Take what was queued off the queue; with `durable`, through the real dispatcher trigger, which must
    not raise either (a raise is a retried and finally poisoned message)."""
    for text in env.drain():
        if durable is not None:
            message = func.QueueMessage(id="fuzz", body=text.encode())
            run_on_worker(http_function("dispatch_pipeline_events")(message, client=durable.client_binding))
    assert claim_check_blobs(env) == [] or durable is None, "a dispatched event left its claim-check blob"
    for name in claim_check_blobs(env):
        env.services.large_events.delete(name)


@pytest.fixture(scope="module")
def durable():
    with DurableApiServer() as server:
        yield server


@pytest.mark.parametrize("route", sorted(HTTP_ROUTES))
def test_fuzzed_requests_never_get_a_5xx_and_refused_ones_write_nothing(env, durable, route):
    rng = random.Random(f"gatekeeper-fuzz-{route}")
    warm_up = generic_case(random.Random(0), env)  # the first accepted event creates the tenant's key table
    assert (
        http_function("generic_events")(
            func.HttpRequest(
                "POST", "http://localhost/api/events", headers=warm_up[1], body=json.dumps(GENERIC).encode()
            )
        ).status_code
        == 202
    )
    reset_after_accepting(env)
    tables_before = table_names(env)
    statuses: dict[int, int] = {}
    started = time.monotonic()
    for case in range(CASES_PER_ROUTE):
        body, headers = HTTP_ROUTES[route](rng, env)
        request = func.HttpRequest("POST", f"http://localhost/api/{route}", headers=headers, body=body)
        response = http_function(route)(request)
        status = response.status_code
        statuses[status] = statuses.get(status, 0) + 1
        where = f"case {case}: {status} for {body[:120]!r} with {sorted(headers)}: {response.get_body()[:300]!r}"
        assert status < 500, where
        if status >= 400:
            assert response.mimetype == "application/problem+json", where
            assert env.queued_texts() == [] and claim_check_blobs(env) == [], "written after refusal: " + where
        else:
            reset_after_accepting(env, durable)
    new_tables = table_names(env) - tables_before  # refusals create none; dispatching only the Events table
    assert new_tables <= {tenant_table_name(env.tenant_id, TablePurpose.EVENTS)}, new_tables
    dead = [d for d in DeadLetters(env.storage).list("pipeline-events") if env.tenant_id in d.message]
    assert dead == [], [d.reason for d in dead]  # every accepted event was dispatchable
    assert any(s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses), statuses  # both reached
    assert time.monotonic() - started < 60


def signed_if_object(body: bytes) -> bytes:
    """The connector relay signs what it sends: a body that reads as an object is signed as a whole."""
    try:
        document = json_bounded.loads(body)
    except ValueError:
        return body
    return signed_connector(document) if isinstance(document, dict) else body


def test_fuzzed_connector_messages_are_processed_or_dead_lettered_never_crash(env, durable):
    rng = random.Random("gatekeeper-fuzz-connector-events")
    trigger = http_function("connector_events")
    outcomes = {"queued": 0, "refused": 0}
    for case in range(CASES_PER_ROUTE):
        valid = rng.choice(CONNECTORS)
        body = fuzz_body(rng, valid) if rng.random() < 0.9 else json.dumps(valid).encode()
        if rng.random() < 0.85:  # mostly signed over the mutated envelope, so the parsers are reached
            body = signed_if_object(body)
        trigger(func.QueueMessage(id=f"fuzz-{case}", body=body))  # raising here would retry a bad message
        queued = env.queued_texts()
        assert len(queued) <= 1, f"case {case}: {body[:200]!r}"
        outcomes["queued" if queued else "refused"] += 1
        reset_after_accepting(env, durable)
    assert outcomes["queued"] and outcomes["refused"], outcomes
