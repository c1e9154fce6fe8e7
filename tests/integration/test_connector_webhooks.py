"""`POST /api/connectors/{vendor}`: vendor webhook bodies (tests/fixtures/connectors/<vendor>/) through the
real trigger into Azurite, authenticated each vendor's way; every bad credential gets the one 401 the other
routes give; duplicates are deduped by the dispatcher; hostile bodies are named and nothing is queued."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import azure.functions as func
import pytest

from gatekeeper.ingest.connector_webhooks import autotask_signature
from gatekeeper.ingest.dispatcher import Disposition
from gatekeeper.ingest.queue import decode_message
from gatekeeper.services import set_services
from gatekeeper.tenancy.model import SecretPurpose, TenantRecord
from tests.conftest import ROOT
from tests.integration.test_dispatch import gateway_for
from tests.support.gatekeeper_env import http_function, make_env, problem

FIXTURES = ROOT / "tests/fixtures/connectors"
SECRETS = {
    "autotask": "autotask-webhook-secret-key-0123456789",
    "connectwise": "connectwise-callback-secret-0123456789",
    "halopsa": "halopsa-webhook-password-0123456789",
    "ninjaone": "ninjaone-webhook-header-0123456789",
    "dattormm": "dattormm-webhook-header-0123456789",
}
PURPOSE = {
    "autotask": SecretPurpose.AUTOTASK_WEBHOOK,
    "connectwise": SecretPurpose.CONNECTWISE_WEBHOOK,
    "halopsa": SecretPurpose.HALOPSA_WEBHOOK,
    "ninjaone": SecretPurpose.NINJAONE_WEBHOOK,
    "dattormm": SecretPurpose.DATTORMM_WEBHOOK,
}
# The accounts the fixture bodies name (Autotask CompanyID, ConnectWise CompanyId, NinjaOne organizationId,
# Datto RMM siteUid) and the HaloPSA instance: registered for the MSP client that owns them.
IDENTITIES = (
    "autotask:account:29683501",
    "connectwise:company:fabrikammsp",
    "halopsa:instance:contoso.halopsa.com",
    "ninjarmm:org:42",
    "dattormm:site:3c1f7e2a-8b4d-4f6e-9a0c-5d2e8b7f1a64",
)
VENDOR_FIXTURES = sorted(FIXTURES.glob("*/*.json"))
OTHER_SECRET = "the-other-tenants-secret-0123456789"
# Tenant ids are fresh per test: the Keys table in Azurite outlives each test's local key directory.
IDS: dict[str, str] = {}


def tenant(tenant_id: str, identities: tuple[str, ...], env_prefix: str, **extra: object) -> TenantRecord:
    return TenantRecord(
        tenant_id=tenant_id,
        display_name=tenant_id,
        identities=identities,
        secrets={purpose: (f"env:{env_prefix}_{vendor.upper()}",) for vendor, purpose in PURPOSE.items()},
        **extra,  # type: ignore[arg-type]
    )


def _autotask_psa(tenant_id: str) -> dict[str, object]:
    """The tenant's Autotask: its client company is the fixtures' `CompanyID`, so their decisions are its own."""
    ref = f"env:GK_{tenant_id.upper()}_AUTOTASK"
    return {
        "vendor": "autotask",
        "url": "https://webservices.autotask.net/atservicesrest",
        "company": "29683501",
        "board": "5",
        "credentials": {"username": ref + "_USER", "secret": ref + "_SECRET", "integration_code": ref + "_CODE"},
    }


@pytest.fixture
def env(storage_connection_string, tmp_path):
    environ = {f"GKW_{v.upper()}": s for v, s in SECRETS.items()}
    environ |= {f"GKO_{v.upper()}": OTHER_SECRET for v in SECRETS}
    environ |= {f"GKN_{v.upper()}": SECRETS[v] for v in SECRETS}
    IDS.update({name: name[:6] + uuid.uuid4().hex[:10] for name in ("client", "other", "allowlisted")})
    env = make_env(
        storage_connection_string,
        tmp_path / "keys",
        extra_tenants=(
            tenant(IDS["client"], IDENTITIES, "GKW", psa=_autotask_psa(IDS["client"])),
            tenant(IDS["other"], ("autotask:account:555", "ninjarmm:org:77", "connectwise:company:other"), "GKO"),
            tenant(
                IDS["allowlisted"],
                ("connectwise:company:fabrikammsp3", "ninjarmm:org:42x"),
                "GKN",
                connector_allowed_networks=("203.0.113.0/24", "2001:db8:5::/48"),
            ),
        ),
        extra_environ=environ,
    )
    set_services(env.services)
    yield env
    set_services(None)


def credential(vendor: str, body: bytes, secret: str | None = None) -> tuple[dict[str, str], str]:
    """The headers and query a correctly configured vendor webhook sends."""
    secret = SECRETS[vendor] if secret is None else secret
    if vendor == "autotask":
        return {"X-Hook-Signature": autotask_signature(secret.encode(), body)}, ""
    if vendor == "connectwise":
        return {}, f"&secret={secret}"
    if vendor == "halopsa":
        return {"Authorization": "Basic " + base64.b64encode(f"gatekeeper:{secret}".encode()).decode()}, ""
    return {"X-Gatekeeper-Connector-Secret": secret}, ""


def post(
    vendor: str,
    body: bytes,
    *,
    tenant_id: str | None = None,
    secret: str | None = None,
    headers: dict[str, str] | None = None,
    signed: bool = True,
) -> func.HttpResponse:
    tenant_id = IDS["client"] if tenant_id is None else tenant_id
    auth, query = credential(vendor, body, secret) if signed else ({}, "")
    return deliver(vendor, f"tenant={tenant_id}{query}", {**auth, **(headers or {})}, body)


def deliver(vendor: str, query: str, headers: dict[str, str], body: bytes) -> func.HttpResponse:
    """A vendor's POST to `/api/connectors/{vendor}?{query}` with a JSON content type, through the trigger."""
    request = func.HttpRequest(
        "POST",
        f"http://localhost/api/connectors/{vendor}?{query}",
        headers={"Content-Type": "application/json", **headers},
        body=body,
        route_params={"vendor": vendor},
    )
    return http_function("connector_webhook")(request)


def unauthenticated_answer(env) -> dict:
    """What another route (the generic events API) answers a wrong key with: the reference 401, less the
    `instance` (the request's own URL)."""
    headers = {"Content-Type": "application/json", "X-Gatekeeper-Tenant": env.tenant_id, "x-functions-key": "nope"}
    request = func.HttpRequest("POST", "http://localhost/api/events", headers=headers, body=b"{}")
    response = http_function("generic_events")(request)
    assert response.status_code == 401
    return without_instance(response)


def without_instance(response: func.HttpResponse) -> dict:
    return {k: v for k, v in problem(response).items() if k != "instance"}


@pytest.mark.parametrize("path", VENDOR_FIXTURES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_vendor_webhook_samples_are_accepted_and_queued_once(env, path: Path):
    response = post(path.parent.name, path.read_bytes())
    assert response.status_code == 202, response.get_body()
    answer = json.loads(response.get_body())
    assert answer["status"] == "accepted"
    [text] = env.queued_texts()
    event = decode_message(env.services.sealer, text).event
    assert event.tenant_id == IDS["client"]
    assert event.kind.value in {"change_approved", "change_rejected", "alert"}
    assert answer["businessKey"] == event.business_key


def test_the_decisions_mean_what_the_vendor_said(env):
    kinds = {}
    for name in ("ticket-change-approved", "ticket-change-rejected"):
        assert post("autotask", (FIXTURES / "autotask" / f"{name}.json").read_bytes()).status_code == 202
    for text in env.drain():
        event = decode_message(env.services.sealer, text).event
        kinds[event.status] = event.kind.value
    assert kinds == {"approved": "change_approved", "rejected": "change_rejected"}


def test_a_duplicate_delivery_is_deduped_on_the_vendors_event(env, durable):
    body = (FIXTURES / "dattormm" / "alert-triggered.json").read_bytes()
    assert post("dattormm", body).status_code == 202
    assert post("dattormm", body).status_code == 202  # the vendor retries: same alert uid
    dispatcher = env.services.dispatcher(gateway_for(durable))
    results = [dispatcher.dispatch(q.event, q.event_id) for q in map(_decode(env), env.drain())]
    assert [r.disposition for r in results] == [Disposition.RECORDED, Disposition.DUPLICATE]
    resolved = (FIXTURES / "dattormm" / "alert-resolved.json").read_bytes()
    assert post("dattormm", resolved).status_code == 202  # the resolution is news, not a duplicate
    [queued] = map(_decode(env), env.drain())
    assert dispatcher.dispatch(queued.event, queued.event_id).disposition is Disposition.RECORDED


def _decode(env):
    return lambda text: decode_message(env.services.sealer, text)


@pytest.mark.parametrize("vendor", sorted(SECRETS))
def test_forged_unsigned_and_wrong_tenant_deliveries_get_the_same_401(env, vendor):
    body = next((FIXTURES / vendor).glob("*.json")).read_bytes()
    reference = unauthenticated_answer(env)
    tampered = body.replace(b"}", b' , "x": 1}', 1) if vendor == "autotask" else body
    attempts = [
        post(vendor, body, secret="wrong-secret-0123456789"),  # forged
        post(vendor, body, signed=False),  # unsigned / no secret
        post(vendor, body, tenant_id=IDS["other"]),  # another tenant's URL with this tenant's secret
        post(vendor, body, tenant_id="nosuchtenant"),  # unknown tenant
        post(vendor, body, tenant_id="../../etc"),  # not a tenant id at all
    ]
    if vendor == "autotask":  # the signature covers the body: a changed body is a forgery
        headers, _ = credential(vendor, body)
        attempts.append(deliver("autotask", f"tenant={IDS['client']}", headers, tampered))
    for response in attempts:
        assert response.status_code == 401, response.get_body()
        assert without_instance(response) == reference
    assert env.queued_texts() == []


def test_autotask_signature_is_the_documented_base64_hmac_sha1(env):
    body = (FIXTURES / "autotask" / "ticket-change-approved.json").read_bytes()
    digest = hmac.new(SECRETS["autotask"].encode(), body, hashlib.sha1).digest()
    documented = base64.b64encode(digest).decode()
    for header in (documented, "sha1=" + documented):
        response = post("autotask", body, signed=False, headers={"X-Hook-Signature": header})
        assert response.status_code == 202, response.get_body()


def test_halopsa_accepts_its_bearer_token_option_too(env):
    body = (FIXTURES / "halopsa" / "ticket-approved.json").read_bytes()
    response = post("halopsa", body, signed=False, headers={"Authorization": "Bearer " + SECRETS["halopsa"]})
    assert response.status_code == 202, response.get_body()


def test_an_allow_list_refuses_other_addresses_with_the_same_401(env):
    body = (
        (FIXTURES / "ninjaone" / "condition-triggered.json")
        .read_bytes()
        .replace(b'"organizationId": 42', b'"organizationId": "42x"')
    )
    reference = unauthenticated_answer(env)
    outside = post("ninjaone", body, tenant_id=IDS["allowlisted"], headers={"X-Forwarded-For": "198.51.100.7:50312"})
    assert outside.status_code == 401 and without_instance(outside) == reference
    # a caller cannot prepend an allowed address: the platform's right-most entry counts
    spoofed = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7:50312"}
    assert post("ninjaone", body, tenant_id=IDS["allowlisted"], headers=spoofed).status_code == 401
    inside = post("ninjaone", body, tenant_id=IDS["allowlisted"], headers={"X-Forwarded-For": "203.0.113.9:50312"})
    assert inside.status_code == 202, inside.get_body()


def test_an_account_of_another_tenant_in_the_body_is_refused_naming_the_field(env):
    document = json.loads((FIXTURES / "autotask" / "ticket-change-approved.json").read_text())
    document["Fields"]["CompanyID"] = 555  # the other tenant's Autotask account
    body = json.dumps(document).encode()
    response = post("autotask", body)
    assert response.status_code == 422
    assert problem(response)["field"] == "Fields.CompanyID"
    document = json.loads((FIXTURES / "ninjaone" / "condition-triggered.json").read_text())
    document["device"]["organizationId"] = 77
    response = post("ninjaone", json.dumps(document).encode())
    assert response.status_code == 422
    assert problem(response)["field"] == "device.organizationId"
    assert env.queued_texts() == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (b"[" * 200 + b"]" * 200, 400, None),  # depth
        (b'{"alertUid": "a", "alertUid": "b"}', 400, None),  # duplicate keys
        (b'{"alertUid": 1' + b"0" * 5000 + b"}", 400, None),  # huge number
        (b'{"alertMessage": "no uid"}', 422, "alertUid"),
        (b'{"alertUid": "[alert_uid]"}', 422, "alertUid"),  # a variable Datto RMM did not fill
        (b'{"alertUid": "x", "resolved": "yes"}', 422, "resolved"),
        (b'{"alertUid": "x", "siteUid": "someone-elses-site"}', 422, "siteUid"),
    ],
)
def test_hostile_bodies_are_named_and_nothing_is_queued(env, body, status, field):
    response = post("dattormm", body)
    assert response.status_code == status, response.get_body()
    if field is not None:
        assert problem(response)["field"] == field
    assert env.queued_texts() == []


def test_oversize_bodies_and_headers_are_refused_before_anything_is_read(env):
    big = b'{"alertUid": "x", "alertMessage": "' + b"a" * 1_100_000 + b'"}'
    assert post("dattormm", big).status_code == 413
    response = post("dattormm", b"{}", headers={"X-Gatekeeper-Connector-Secret": "s" * 9000})
    assert response.status_code == 401  # a credential header: too long is "not authenticated"
    response = post("connectwise", b"{}", headers={"x-content-signature": "s" * 9000})
    assert response.status_code == 401  # ConnectWise's signature is a credential too, never a 431
    response = post("dattormm", b"{}", headers={"X-Other": "s" * 9000})
    assert response.status_code == 431
    assert env.queued_texts() == []


def test_an_unknown_vendor_is_named(env):
    response = post("servicenow", b"{}", signed=False)
    assert response.status_code == 404
    assert problem(response)["field"] == "path:vendor"


def test_a_tenant_without_the_vendor_account_cannot_use_the_route(env):
    body = (FIXTURES / "halopsa" / "ticket-approved.json").read_bytes()
    allowed = {"X-Forwarded-For": "203.0.113.9"}
    response = post(
        "halopsa", body, tenant_id=IDS["allowlisted"], headers=allowed
    )  # authenticates; no HaloPSA instance
    assert response.status_code == 422
    assert problem(response)["field"] == "account"


def test_secrets_never_reach_the_queue_or_the_answer(env, caplog):
    body = (FIXTURES / "connectwise" / "ticket-approved.json").read_bytes()
    response = post("connectwise", body)
    assert response.status_code == 202
    assert SECRETS["connectwise"] not in response.get_body().decode()
    assert all(SECRETS["connectwise"] not in text for text in env.queued_texts())
    assert SECRETS["connectwise"] not in caplog.text


def test_the_dispatcher_trigger_raises_a_psa_approval_to_the_linked_gates_chain(env, durable):
    """The queue trigger, as the host runs it: the Autotask approval recorded, then raised as the vote of
    `psa:autotask:<ticket>` to the chain of the gate waiting at its psa_change_approval stage."""
    from datetime import UTC, datetime

    from gatekeeper.approvals.chain import ChainPlan
    from gatekeeper.contracts.gate import GateStatus, vote_event_name
    from gatekeeper.gates.store import GateRecord
    from tests.integration.test_dispatch import trigger

    now = datetime.now(UTC)
    gate, chain_id = "gate-" + uuid.uuid4().hex, "chain-" + uuid.uuid4().hex
    plan = ChainPlan.model_validate({"stages": [{"name": "cab", "kind": "psa_change_approval", "timeout": "P2D"}]})
    store = env.services.gates(IDS["client"])
    store.save(
        GateRecord(
            instance_id=gate,
            tenant_id=IDS["client"],
            status=GateStatus.AWAITING_APPROVAL,
            level="L2",
            created_at=now,
            updated_at=now,
            chain_instance_id=chain_id,
            plan=plan,
            stage=0,
            stage_started_at=now,
            ticket="autotask:7311",
        )
    )
    store.link_ticket("7311", gate)
    durable.instances[chain_id] = {"runtimeStatus": "Running", "name": "approval_chain"}
    assert post("autotask", (FIXTURES / "autotask" / "ticket-change-approved.json").read_bytes()).status_code == 202
    for text in env.drain():
        trigger(text.encode(), durable)
    [(path, body)] = durable.posts("/raiseEvent/")
    assert path.endswith(f"/instances/{chain_id}/raiseEvent/{vote_event_name(0)}")
    vote = json.loads(body) if isinstance(body, str) else body
    assert vote["voter_id"] == "psa:autotask:7311" and vote["decision"] == "approve" and vote["stage"] == 0
    [stored] = store.votes(gate)
    assert stored.raised and stored.voter_id == "psa:autotask:7311"


def _ninjaone_for_the_allowlisted_tenant() -> bytes:
    return (
        (FIXTURES / "ninjaone" / "condition-triggered.json")
        .read_bytes()
        .replace(b'"organizationId": 42', b'"organizationId": "42x"')
    )


@pytest.mark.parametrize(
    ("forwarded", "status"),
    [
        ("[2001:db8:5::17]:50312", 202),  # IPv6 as the front end writes it: bracketed, with the port
        ("2001:db8:5::17", 202),  # IPv6 without a port: its colons are not a port separator
        ("198.51.100.7, [2001:db8:5::17]:443", 202),  # the platform's right-most entry counts
        ("[2001:db8:6::17]:50312", 401),  # IPv6 outside the allowed network
        ("unknown", 401),  # what a proxy writes when it does not know: no address, no pass
        ("203.0.113.9:50312:7", 401),
        ("", 401),
    ],
)
def test_the_allow_list_reads_the_callers_address_in_each_form_and_refuses_what_is_not_one(env, forwarded, status):
    """A tenant's allow-list has an IPv4 and an IPv6 network: an address in either passes (any, not all); an
    address in neither, or a header that is not an address, is the same 401 as a wrong secret."""
    response = post(
        "ninjaone",
        _ninjaone_for_the_allowlisted_tenant(),
        tenant_id=IDS["allowlisted"],
        headers={"X-Forwarded-For": forwarded},
    )
    assert response.status_code == status, response.get_body()
    if status == 401:
        assert without_instance(response) == unauthenticated_answer(env)
        assert env.queued_texts() == []


def test_an_allow_listed_tenant_without_a_forwarded_address_is_refused(env):
    response = post("ninjaone", _ninjaone_for_the_allowlisted_tenant(), tenant_id=IDS["allowlisted"])
    assert response.status_code == 401 and env.queued_texts() == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "bearer " + SECRETS["halopsa"]},  # the scheme is case-insensitive (RFC 9110)
        {"Authorization": "Bearer " + SECRETS["halopsa"] + "  "},  # trailing blanks are not part of the token
        {"X-Gatekeeper-Connector-Secret": SECRETS["halopsa"]},  # HaloPSA's API-key header option
    ],
)
def test_halopsa_credentials_in_each_form_its_webhook_form_sends(env, headers):
    body = (FIXTURES / "halopsa" / "ticket-approved.json").read_bytes()
    response = post("halopsa", body, signed=False, headers=headers)
    assert response.status_code == 202, response.get_body()


def test_the_vendor_in_the_route_is_case_insensitive_and_bounded(env):
    body = (FIXTURES / "autotask" / "ticket-change-approved.json").read_bytes()
    headers = credential("autotask", body)[0]
    assert deliver("AutoTask", f"tenant={IDS['client']}", headers, body).status_code == 202
    unknown = deliver("autotask" + "x" * 40, f"tenant={IDS['client']}", headers, body)
    assert unknown.status_code == 404 and problem(unknown)["field"] == "path:vendor"


@pytest.mark.parametrize(
    "query",
    [
        "tenant={client}&pad=" + "x" * 2100,  # a query over 2 KiB is no vendor's callback URL: read as empty
        "tenant={client}%0A",  # a tenant id with a line break is no tenant id
        "tenant=%20{client}",
    ],
)
def test_a_query_that_is_not_a_callback_url_names_no_tenant(env, query):
    body = (FIXTURES / "autotask" / "ticket-change-approved.json").read_bytes()
    response = deliver("autotask", query.format(client=IDS["client"]), credential("autotask", body)[0], body)
    assert response.status_code == 401, response.get_body()
    assert env.queued_texts() == []
