"""The three PSA clients (gatekeeper/psa/) against local servers speaking each vendor's wire format:
authentication as documented, tickets found or opened once, notes, statuses, priorities, time, retries on
429/5xx only, credentials never in a result, and the documented answer samples (tests/fixtures/psa/) read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devstack.autotask import LocalAutotask
from devstack.connectwise import LocalConnectWise
from devstack.halopsa import LocalHaloPsa
from devstack.server import LocalServer, Response, json_response
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.ports import TicketNote, TicketSpec, TimeEntry
from gatekeeper.psa.autotask import AutotaskTickets
from gatekeeper.psa.connectwise import ConnectWiseTickets
from gatekeeper.psa.halopsa import HaloTickets
from gatekeeper.psa.http import PsaConfigError, base_url
from gatekeeper.psa.systems import TicketSystems
from gatekeeper.tenancy.model import TenantRecord
from gatekeeper.tenancy.psa_settings import AutotaskSettings, ConnectWiseSettings, HaloSettings
from gatekeeper.tenancy.secrets import SecretResolver

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "psa"
AT_USER, AT_SECRET, AT_CODE = "gk-api@contoso-msp.example", "at-secret-9f8e7d6c5b4a", "AT-INTEGRATION-CODE-0123456"
CW_PUBLIC, CW_PRIVATE, CW_CLIENT = "pub-1a2b3c", "priv-4d5e6f7a8b9c0d1e", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
HALO_ID, HALO_SECRET = "halo-client-id", "halo-client-secret-abcdef0123456789"
SPEC = TicketSpec(key="GK-0123456789abcdef-change", kind="change", summary="Change: deploy webshop to production")
NOTE = TicketNote(title="Gatekeeper: L2 gate requested", text="Level: L2\nReason: production")
AT = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)


def policy(sleeps: list[float] | None = None, attempts: int = 3) -> RetryPolicy:
    sink = sleeps if sleeps is not None else []
    return RetryPolicy(max_attempts=attempts, initial_wait=0.1, max_wait=0.2, jitter=0, sleep=sink.append)


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text())


def autotask_settings(server: LocalServer, **extra: Any) -> AutotaskSettings:
    return AutotaskSettings.model_validate(
        {
            "vendor": "autotask",
            "url": f"{server.url}/atservicesrest",
            "company": "174",
            "board": "29682833",
            "statuses": {"in_progress": "8", "approved": "13", "rejected": "14", "rolled_back": "15"},
            "rollback_priority": "1",
            "time_resource_id": "29682885",
            "credentials": {"username": "env:U", "secret": "env:S", "integration_code": "env:C"},
            **extra,
        }
    )


def halo_settings(url: str, **extra: Any) -> HaloSettings:
    return HaloSettings.model_validate(
        {
            "vendor": "halopsa",
            "url": url,
            "company": "12",
            "board": "Change Advisory",
            "statuses": {"in_progress": "2", "approved": "21", "rejected": "22"},
            "rollback_priority": "1",
            "credentials": {"client_id": "env:HID", "client_secret": "env:HS"},
            **extra,
        }
    )


def connectwise_settings(url: str) -> ConnectWiseSettings:
    return ConnectWiseSettings.model_validate(
        {
            "vendor": "connectwise",
            "url": url,
            "login_company": "fabrikammsp",
            "company": "ContosoLtd",
            "board": "Change Management",
            "statuses": {"approved": "Change Approved"},
            "rollback_priority": "Priority 1 - Emergency Response",
            "credentials": {
                "public_key": "env:GK_CONTOSO_P",
                "private_key": "env:GK_CONTOSO_K",
                "client_id": "env:GK_CONTOSO_I",
            },
        }
    )


# ----- Autotask --------------------------------------------------------------------------------------------


def test_autotask_discovers_its_zone_once_then_opens_notes_moves_and_logs_time():
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        client = AutotaskTickets(
            autotask_settings(server),
            AT_USER,
            AT_SECRET,
            AT_CODE,
            policy=policy(),
            allow_loopback_http=True,
            clock=lambda: AT,
        )
        opened = client.find_or_open(SPEC)
        assert opened.ok and opened.ref is not None and opened.ref.opened
        ticket = server.tickets[int(opened.ref.id)]
        assert (ticket.company, ticket.board, ticket.status, ticket.external_id) == ("174", "29682833", "8", SPEC.key)
        again = client.find_or_open(SPEC)  # a retried activity finds the ticket by its externalID
        assert again.ref == opened.ref and len(server.tickets) == 1
        assert client.add_note(opened.ref, NOTE).ok
        assert ticket.notes[0]["title"] == NOTE.title and ticket.notes[0]["noteType"] == 1
        assert client.set_status(opened.ref, "approved").ok and ticket.status == "13"
        assert client.raise_priority(opened.ref).ok and ticket.priority == "1"
        assert client.log_time(opened.ref, TimeEntry(minutes=30, started_at=AT, notes="CAB review")).ok
        assert ticket.time[0]["hoursWorked"] == 0.5 and ticket.time[0]["resourceID"] == 29682885
        assert len(server.requests_to("zoneInformation")) == 1
        for request in server.requests:
            if "zoneInformation" not in request.path:
                assert request.headers["secret"] == AT_SECRET and request.headers["apiintegrationcode"] == AT_CODE


def test_autotask_a_linked_ticket_that_does_not_exist_is_a_failure_named():
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        client = AutotaskTickets(
            autotask_settings(server), AT_USER, AT_SECRET, AT_CODE, policy=policy(), allow_loopback_http=True
        )
        result = client.find_or_open(SPEC.model_copy(update={"ticket_id": "999999"}))
        assert not result.ok and "not found" in result.detail


class HostileZone(LocalAutotask):
    """Zone discovery that points the client somewhere else (a tampered or wrong answer)."""

    def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
        if "zoneinformation" in path.lower():
            return json_response(200, {"zoneName": "x", "url": "https://collector.example/ATServicesRest/"})
        return super().route(method, path, query, headers, body)


def test_autotask_never_sends_credentials_to_a_zone_outside_autotask():
    with HostileZone(AT_USER, AT_SECRET, AT_CODE) as server:
        client = AutotaskTickets(
            autotask_settings(server), AT_USER, AT_SECRET, AT_CODE, policy=policy(), allow_loopback_http=True
        )
        result = client.find_or_open(SPEC)
        assert not result.ok and "not an Autotask zone" in result.detail
        assert [r.path for r in server.requests] == ["/atservicesrest/v1.0/zoneInformation"]
        assert all("secret" not in r.headers for r in server.requests)


def test_autotask_a_wrong_secret_is_refused_once_and_never_echoed():
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        client = AutotaskTickets(
            autotask_settings(server), AT_USER, "not-the-secret-123", AT_CODE, policy=policy(), allow_loopback_http=True
        )
        result = client.find_or_open(SPEC)
        assert not result.ok and result.status_code == 401 and result.attempts == 1  # a 4xx is never retried
        assert "not-the-secret-123" not in result.model_dump_json()


def test_autotask_an_outage_is_retried_with_backoff_and_returned():
    sleeps: list[float] = []
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        client = AutotaskTickets(
            autotask_settings(server), AT_USER, AT_SECRET, AT_CODE, policy=policy(sleeps), allow_loopback_http=True
        )
        server.outage(503)
        result = client.find_or_open(SPEC)
        assert not result.ok and result.attempts == 3 and result.status_code == 503 and sleeps == [0.1, 0.2]
        server.restore()
        assert client.find_or_open(SPEC).ok  # the zone was not cached from a failure


# ----- HaloPSA ---------------------------------------------------------------------------------------------


def test_halopsa_fetches_one_token_reuses_it_and_fetches_another_after_a_401():
    with LocalHaloPsa(HALO_ID, HALO_SECRET) as server:
        client = HaloTickets(halo_settings(server.url), HALO_ID, HALO_SECRET, policy=policy(), allow_loopback_http=True)
        opened = client.find_or_open(SPEC)
        assert opened.ok and opened.ref is not None
        ticket = server.tickets[int(opened.ref.id)]
        assert ticket.company == "12" and ticket.board == "Change Advisory" and SPEC.key in ticket.summary
        assert client.find_or_open(SPEC).ref == opened.ref and len(server.tickets) == 1
        assert client.add_note(opened.ref, NOTE).ok and ticket.notes[0]["hiddenfromuser"] is True
        assert server.tokens_issued == 1
        server.expire_tokens()
        assert client.set_status(opened.ref, "approved").ok and ticket.status == "21"
        assert server.tokens_issued == 2
        assert client.raise_priority(opened.ref).ok and ticket.priority == "1"
        assert client.set_status(opened.ref, "rolled_back").skipped  # no status mapped: nothing sent
        token_form = server.requests_to("/auth/token")[0].body.decode()
        assert "grant_type=client_credentials" in token_form and "scope=all" in token_form


def test_halopsa_a_wrong_client_secret_is_a_result_without_the_secret():
    with LocalHaloPsa(HALO_ID, HALO_SECRET) as server:
        client = HaloTickets(
            halo_settings(server.url), HALO_ID, "wrong-secret-value-0000", policy=policy(), allow_loopback_http=True
        )
        result = client.find_or_open(SPEC)
        assert not result.ok and result.status_code == 400 and "wrong-secret-value-0000" not in result.detail


# ----- ConnectWise -----------------------------------------------------------------------------------------


def test_connectwise_refuses_a_wrong_key_pair_and_the_key_never_shows():
    with LocalConnectWise("fabrikammsp", CW_PUBLIC, CW_PRIVATE, CW_CLIENT) as server:
        client = ConnectWiseTickets(
            connectwise_settings(server.url),
            CW_PUBLIC,
            "priv-wrong-000000",
            CW_CLIENT,
            policy=policy(),
            allow_loopback_http=True,
        )
        result = client.find_or_open(SPEC)
        assert not result.ok and result.status_code == 401 and result.attempts == 1
        assert "priv-wrong-000000" not in result.model_dump_json() and "wrong" not in repr(client)


def test_connectwise_opens_once_notes_and_logs_time():
    with LocalConnectWise("fabrikammsp", CW_PUBLIC, CW_PRIVATE, CW_CLIENT) as server:
        client = ConnectWiseTickets(
            connectwise_settings(server.url),
            CW_PUBLIC,
            CW_PRIVATE,
            CW_CLIENT,
            policy=policy(),
            allow_loopback_http=True,
        )
        opened = client.find_or_open(SPEC)
        assert opened.ok and opened.ref is not None and client.find_or_open(SPEC).ref == opened.ref
        assert client.log_time(opened.ref, TimeEntry(minutes=15, started_at=AT)).ok
        entry = server.tickets[int(opened.ref.id)].time[0]
        assert entry["chargeToType"] == "ServiceTicket" and entry["timeEnd"] == "2030-06-03T10:15:00Z"


def test_a_linked_ticket_of_another_client_company_is_never_taken_by_any_vendor():
    """The request names the ticket; the MSP's PSA holds every client's tickets: only the tenant's company's."""
    linked = SPEC.model_copy(update={"ticket_id": None})
    with LocalConnectWise("fabrikammsp", CW_PUBLIC, CW_PRIVATE, CW_CLIENT) as server:
        cw = connectwise_settings(server.url)
        client = ConnectWiseTickets(cw, CW_PUBLIC, CW_PRIVATE, CW_CLIENT, policy=policy(), allow_loopback_http=True)
        ours, theirs = server.add_ticket("ours", company="contosoltd"), server.add_ticket("theirs", company="Tailspin")
        assert client.find_or_open(linked.model_copy(update={"ticket_id": str(ours.id)})).ref is not None
        refused = client.find_or_open(linked.model_copy(update={"ticket_id": str(theirs.id)}))
        assert not refused.ok and refused.ref is None and "not a ticket of the tenant's company" in refused.detail
        assert "Tailspin" not in refused.detail
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        client = AutotaskTickets(
            autotask_settings(server), AT_USER, AT_SECRET, AT_CODE, policy=policy(), allow_loopback_http=True
        )
        ours, theirs = server.add_ticket("ours", company="174"), server.add_ticket("theirs", company="175")
        assert client.find_or_open(linked.model_copy(update={"ticket_id": str(ours.id)})).ref is not None
        refused = client.find_or_open(linked.model_copy(update={"ticket_id": str(theirs.id)}))
        assert not refused.ok and refused.ref is None and "not a ticket of the tenant's company" in refused.detail
    with LocalHaloPsa(HALO_ID, HALO_SECRET) as server:
        client = HaloTickets(halo_settings(server.url), HALO_ID, HALO_SECRET, policy=policy(), allow_loopback_http=True)
        ours, theirs = server.add_ticket("ours", company="12"), server.add_ticket("theirs", company="13")
        assert client.find_or_open(linked.model_copy(update={"ticket_id": str(ours.id)})).ref is not None
        refused = client.find_or_open(linked.model_copy(update={"ticket_id": str(theirs.id)}))
        assert not refused.ok and refused.ref is None and "not a ticket of the tenant's company" in refused.detail


# ----- the documented answers ------------------------------------------------------------------------------


class Documented(LocalServer):
    """Answers each path with a documented sample body (tests/fixtures/psa/)."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        super().__init__()
        self.answers = answers

    def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
        found = self.answers.get((method, path))
        return json_response(200, found) if found is not None else json_response(404, {"message": "none"})


def test_the_clients_read_the_vendors_documented_answers():
    connectwise = {
        ("GET", "/v4_6_release/apis/3.0/service/tickets"): [],
        ("POST", "/v4_6_release/apis/3.0/service/tickets"): fixture("connectwise/ticket.json"),
    }
    connectwise[("POST", "/v4_6_release/apis/3.0/service/tickets/48213/notes")] = fixture("connectwise/note.json")
    with Documented(connectwise) as server:
        client = ConnectWiseTickets(
            connectwise_settings(server.url),
            CW_PUBLIC,
            CW_PRIVATE,
            CW_CLIENT,
            policy=policy(),
            allow_loopback_http=True,
        )
        ref = client.find_or_open(SPEC).ref
        assert ref is not None and ref.id == "48213" and client.add_note(ref, NOTE).ok

    zone = fixture("autotask/zone-information.json")
    assert set(zone) >= {"zoneName", "url", "webUrl", "ci"} and zone["url"].startswith("https://webservices")
    autotask = {
        ("GET", "/ATServicesRest/v1.0/Tickets/query"): {"items": [], "pageDetails": {"count": 0}},
        ("POST", "/ATServicesRest/v1.0/Tickets"): fixture("autotask/ticket-created.json"),
    }
    with Documented(autotask) as server:
        zone_url = server.url + "/ATServicesRest"
        settings = autotask_settings(server).model_copy(update={"url": server.url, "zone_url": zone_url})
        client = AutotaskTickets(settings, AT_USER, AT_SECRET, AT_CODE, policy=policy(), allow_loopback_http=True)
        assert client.find_or_open(SPEC).ref.id == "7311"  # type: ignore[union-attr]
        server.answers[("GET", "/ATServicesRest/v1.0/Tickets/query")] = fixture("autotask/ticket-query.json")
        found = client.find_or_open(SPEC.model_copy(update={"key": "GK-3f2a9c0d1e4b5a67-change"}))
        assert found.ref is not None and found.ref.id == "7311" and found.ref.opened

    halo = {
        ("POST", "/auth/token"): fixture("halopsa/token.json"),
        ("GET", "/api/Tickets"): {"record_count": 0, "tickets": []},
        ("POST", "/api/Tickets"): fixture("halopsa/ticket-created.json"),
        ("POST", "/api/Actions"): fixture("halopsa/action-created.json"),
    }
    with Documented(halo) as server:
        client = HaloTickets(halo_settings(server.url), HALO_ID, HALO_SECRET, policy=policy(), allow_loopback_http=True)
        ref = client.find_or_open(SPEC).ref
        assert ref is not None and ref.id == "5182" and client.add_note(ref, NOTE).ok
        assert server.requests_to("/api/Actions")[0].headers["authorization"].startswith("Bearer eyJ")


def test_a_psa_url_at_a_private_or_link_local_address_never_gets_the_credentials():
    """The rule every other credentialed client applies (gatekeeper.integrations.urls.check_outbound_url), also
    for a record stored before the import-time check: the client is never built, the field is named."""
    for url in ("https://169.254.169.254", "https://10.0.0.5", "https://[fd00::1]:8443"):
        settings = connectwise_settings("https://api-na.myconnectwise.net").model_copy(update={"url": url})
        with pytest.raises(PsaConfigError, match=r"psa\.url: must not point at a private"):
            ConnectWiseTickets(settings, CW_PUBLIC, CW_PRIVATE, CW_CLIENT, policy=policy())
        with pytest.raises(PsaConfigError, match=r"psa\.url: must not point at a private"):
            HaloTickets(
                halo_settings("https://x.halopsa.com").model_copy(update={"url": url}), "i", "s", policy=policy()
            )


def test_a_halopsa_token_lifetime_no_float_can_hold_is_not_a_crash():
    halo = {
        ("POST", "/auth/token"): {"access_token": "tok-abc", "token_type": "Bearer", "expires_in": 10**400},
        ("POST", "/api/Tickets"): fixture("halopsa/ticket-created.json"),
        ("GET", "/api/Tickets"): {"record_count": 0, "tickets": []},
    }
    with Documented(halo) as server:
        client = HaloTickets(halo_settings(server.url), HALO_ID, HALO_SECRET, policy=policy(), allow_loopback_http=True)
        result = client.find_or_open(SPEC)  # the bounded parser refuses the number: no token, a result
        assert not result.ok and result.ref is None and "token" in result.detail and HALO_SECRET not in result.detail


def test_a_psa_answer_nested_without_bound_is_a_result_not_a_crash():
    deep = "[" * 100_000 + "]" * 100_000

    class Deep(Documented):
        def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
            if (method, path) == ("GET", "/v4_6_release/apis/3.0/service/tickets"):
                return 200, {"Content-Type": "application/json"}, deep.encode()
            return super().route(method, path, query, headers, body)

    with Deep({("POST", "/v4_6_release/apis/3.0/service/tickets"): fixture("connectwise/ticket.json")}) as server:
        client = ConnectWiseTickets(
            connectwise_settings(server.url),
            CW_PUBLIC,
            CW_PRIVATE,
            CW_CLIENT,
            policy=policy(),
            allow_loopback_http=True,
        )
        result = client.find_or_open(SPEC)  # the search answer is unreadable: nothing found, one ticket opened
        assert result.ok and result.ref is not None and result.ref.id == "48213"


# ----- building a tenant's client --------------------------------------------------------------------------


def test_a_credential_reference_not_set_is_named_and_plain_http_is_refused():
    record = TenantRecord(
        tenant_id="contoso",
        display_name="Contoso",
        psa=connectwise_settings("https://api-eu.myconnectwise.net").model_dump(),
    )
    systems = TicketSystems(lambda _t: record, SecretResolver({"GK_CONTOSO_P": "pub", "GK_CONTOSO_I": "client"}))
    with pytest.raises(PsaConfigError, match=r"psa\.credentials\.private_key: the reference env:GK_CONTOSO_K is not"):
        systems.for_tenant("contoso")
    every = {"GK_CONTOSO_P": "pub", "GK_CONTOSO_K": "key", "GK_CONTOSO_I": "client"}
    full = TicketSystems(lambda _t: record, SecretResolver(every))
    assert full.for_tenant("contoso") is full.for_tenant("contoso")  # one client per tenant and settings
    assert TicketSystems(lambda _t: None, SecretResolver({})).for_tenant("contoso") is None
    with pytest.raises(PsaConfigError, match=r"psa\.url: http is allowed for local servers only"):
        base_url("http://127.0.0.1:8080", False, "psa.url")


HUGE = 64 * 1024 * 1024  # an answer that never ends, as far as a client that reads everything can tell


def huge_written(server: LocalServer) -> list[int]:
    """What the server's huge answers wrote before the client hung up (the server thread notices a moment
    after the client closed)."""
    import time

    deadline = time.monotonic() + 10
    while not server.huge_written and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(server.huge_written)


def test_a_psa_answer_over_the_bound_is_read_no_further_and_fails_naming_the_bound():
    """`requests` reads the whole answer before any size check unless it streams: the client stops at its
    bound (MAX_BODY), hangs up, and the call is a failed result naming the bound; nothing is retried."""
    from gatekeeper.psa.http import MAX_BODY

    with LocalConnectWise("fabrikammsp", CW_PUBLIC, CW_PRIVATE, CW_CLIENT) as server:
        ticket = server.add_ticket("Deploy", company="ContosoLtd", board="Change Management")
        server.answer_huge(1, HUGE, path_contains="/service/tickets")
        client = ConnectWiseTickets(
            connectwise_settings(server.url),
            CW_PUBLIC,
            CW_PRIVATE,
            CW_CLIENT,
            policy=policy(),
            allow_loopback_http=True,
        )
        result = client.find_or_open(SPEC.model_copy(update={"ticket_id": str(ticket.id)}))
        assert not result.ok and f"over the {MAX_BODY}-byte bound" in (result.detail or "")
        assert result.attempts == 1
        [written] = huge_written(server)
        assert written < 16 * 1024 * 1024  # the client hung up near its bound (socket buffers aside)
        assert client.find_or_open(SPEC.model_copy(update={"ticket_id": str(ticket.id)})).ok  # served as usual


@pytest.mark.parametrize("ref", ["env:AzureWebJobsStorage", "env:GK_FABRIKAM_CW_PRIVATE", "env:CW_PRIVATE"])
def test_a_stored_record_naming_an_app_setting_not_its_own_never_gets_a_client(ref: str):
    """A record stored before the rule (references name only `GK_<TENANT>_...`): the client is never built,
    so that value never goes to the configured host; the error names the field, never the value."""
    settings = connectwise_settings("https://api-eu.myconnectwise.net").model_dump()
    settings["credentials"]["private_key"] = ref
    record = TenantRecord(tenant_id="contoso", display_name="Contoso", psa=settings)
    environ = {"GK_CONTOSO_P": "pub", "GK_CONTOSO_I": "client", ref.removeprefix("env:"): "platform-secret-value"}
    with pytest.raises(PsaConfigError, match=r"psa\.credentials\.private_key: ") as caught:
        TicketSystems(lambda _t: record, SecretResolver(environ)).for_tenant("contoso")
    assert "platform-secret-value" not in str(caught.value)


def test_a_psa_answer_declaring_a_length_over_the_bound_is_refused_before_reading():
    from gatekeeper.psa.http import MAX_BODY

    with LocalConnectWise("fabrikammsp", CW_PUBLIC, CW_PRIVATE, CW_CLIENT) as server:
        ticket = server.add_ticket("Deploy", company="ContosoLtd", board="Change Management")
        server.fail_next(1, 200, path_contains="/service/tickets", body=["x" * 1000] * 1100)  # ~1.1 MB, declared
        client = ConnectWiseTickets(
            connectwise_settings(server.url),
            CW_PUBLIC,
            CW_PRIVATE,
            CW_CLIENT,
            policy=policy(),
            allow_loopback_http=True,
        )
        result = client.find_or_open(SPEC.model_copy(update={"ticket_id": str(ticket.id)}))
        assert not result.ok and f"over the {MAX_BODY}-byte bound (Content-Length" in (result.detail or "")


# ----- what each client does when a step cannot be taken ---------------------------------------------------


class _Answering(LocalAutotask):
    """Autotask whose zone discovery or ticket creation answers `answers[path]` instead (a wrong or changed
    answer from the service, or whoever answers in its place)."""

    answers: dict[str, Any] = {}

    def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
        for key, answer in self.answers.items():
            if key == f"{method} {path.lower()}":
                return json_response(200, answer)
        return super().route(method, path, query, headers, body)


def _autotask(server: LocalServer, **extra: Any) -> AutotaskTickets:
    return AutotaskTickets(
        autotask_settings(server, **extra), AT_USER, AT_SECRET, AT_CODE, policy=policy(), allow_loopback_http=True
    )


@pytest.mark.parametrize("zone", ["ftp://zone.autotask.net/ATServicesRest/", "not a url", 42])
def test_autotask_a_zone_that_is_no_https_url_gets_no_credentials(zone):
    class BadZone(_Answering):
        answers = {"GET /atservicesrest/v1.0/zoneinformation": {"zoneName": "x", "url": zone}}

    with BadZone(AT_USER, AT_SECRET, AT_CODE) as server:
        result = _autotask(server).find_or_open(SPEC)
        assert not result.ok and result.detail.startswith("zone discovery: ")
        assert all("secret" not in r.headers for r in server.requests) and len(server.requests) == 1


def test_autotask_every_write_is_a_named_result_when_the_zone_cannot_be_found():
    from gatekeeper.ports import TicketRef

    ref = TicketRef(vendor="autotask", id="7311")
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        client = _autotask(server)
        server.outage(503)
        results = {
            "find_or_open": client.find_or_open(SPEC.model_copy(update={"ticket_id": "7311"})),
            "add_note": client.add_note(ref, NOTE),
            "set_status": client.set_status(ref, "approved"),
            "raise_priority": client.raise_priority(ref),
            "log_time": client.log_time(ref, TimeEntry(minutes=5, started_at=AT, notes="x")),
        }
        for operation, result in results.items():
            assert (result.ok, result.operation, result.status_code) == (False, operation, 503), result
            assert operation == "find_or_open" or result.ref == ref
        assert {r.path for r in server.requests} == {"/atservicesrest/v1.0/zoneInformation"}


def test_autotask_a_ticket_that_cannot_be_opened_or_whose_answer_names_no_id_is_a_failure():
    class NoItemId(_Answering):
        answers = {"POST /atservicesrest/v1.0/tickets": {"item": None}}

    with NoItemId(AT_USER, AT_SECRET, AT_CODE) as server:
        result = _autotask(server).find_or_open(SPEC)
        assert (result.ok, result.detail) == (False, "ticket opened but the answer named no itemId")
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        server.fail_next(3, 500, path_contains="/Tickets")
        client = _autotask(server)
        failed = client.find_or_open(SPEC)
        assert not failed.ok and failed.ref is None and server.tickets == {}


def test_autotask_writes_nothing_it_has_no_value_for():
    from gatekeeper.ports import TicketRef

    ref = TicketRef(vendor="autotask", id="7311")
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        client = _autotask(server, statuses={}, rollback_priority=None, time_resource_id=None)
        assert "url=" in repr(client) and AT_SECRET not in repr(client)
        for result, why in (
            (client.set_status(ref, "approved"), "no status mapped for approved"),
            (client.raise_priority(ref), "no rollback priority configured"),
            (client.log_time(ref, TimeEntry(minutes=5, started_at=AT, notes="x")), "no time_resource_id configured"),
        ):
            assert (result.ok, result.skipped, result.detail, result.vendor) == (True, True, why, "autotask")
        assert server.requests == []


def test_halopsa_opens_with_the_ticket_type_logs_time_and_skips_a_priority_it_has_none_for():
    with LocalHaloPsa(HALO_ID, HALO_SECRET) as server:
        client = HaloTickets(
            halo_settings(server.url, ticket_type_id="31", rollback_priority=None),
            HALO_ID,
            HALO_SECRET,
            policy=policy(),
            allow_loopback_http=True,
        )
        assert "url=" in repr(client) and HALO_SECRET not in repr(client) and client.vendor == "halopsa"
        opened = client.find_or_open(SPEC)
        assert opened.ok and opened.ref is not None
        [sent] = json.loads(server.requests_to("/api/Tickets")[-1].body)
        assert sent["tickettype_id"] == 31
        logged = client.log_time(opened.ref, TimeEntry(minutes=90, started_at=AT, notes="CAB review"))
        assert logged.ok and server.tickets[int(opened.ref.id)].time[0]["timetaken"] == 1.5
        skipped = client.raise_priority(opened.ref)
        assert (skipped.ok, skipped.skipped, skipped.detail) == (True, True, "no rollback priority configured")


def test_halopsa_an_open_answered_without_an_id_or_with_an_empty_list_is_a_failure():
    for answer in ([], [{"summary": "x"}], {"summary": "x"}):

        class NoId(LocalHaloPsa):
            created: Any = answer

            def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
                if method == "POST" and path.rstrip("/") == "/api/Tickets":
                    return json_response(201, self.created)
                return super().route(method, path, query, headers, body)

        with NoId(HALO_ID, HALO_SECRET) as server:
            client = HaloTickets(
                halo_settings(server.url), HALO_ID, HALO_SECRET, policy=policy(), allow_loopback_http=True
            )
            result = client.find_or_open(SPEC)
            assert (result.ok, result.detail) == (False, "ticket opened but the answer named no id"), answer


def test_halopsa_a_token_refused_twice_is_a_401_result_after_one_fresh_token():
    class AlwaysExpired(LocalHaloPsa):
        def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
            if path.startswith("/api/"):
                self.expire_tokens()  # every token is already revoked when it arrives
            return super().route(method, path, query, headers, body)

    with AlwaysExpired(HALO_ID, HALO_SECRET) as server:
        client = HaloTickets(halo_settings(server.url), HALO_ID, HALO_SECRET, policy=policy(), allow_loopback_http=True)
        result = client.find_or_open(SPEC)
        assert not result.ok and result.status_code == 401 and server.tokens_issued == 2  # one retry, not a loop


def test_halopsa_an_open_answered_as_a_list_takes_its_first_ticket():
    class ListAnswer(LocalHaloPsa):
        def route(self, method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
            if method == "POST" and path.rstrip("/") == "/api/Tickets":
                return json_response(201, [{"id": 5300, "summary": "x"}, {"id": 5301, "summary": "y"}])
            return super().route(method, path, query, headers, body)

    with ListAnswer(HALO_ID, HALO_SECRET) as server:
        client = HaloTickets(halo_settings(server.url), HALO_ID, HALO_SECRET, policy=policy(), allow_loopback_http=True)
        result = client.find_or_open(SPEC)
        assert result.ok and result.ref is not None and (result.ref.id, result.ref.opened) == ("5300", True)
