"""The connection-time SSRF guard (gatekeeper.integrations.guarded_http) with the real `requests` and urllib3
against local servers that record every request they receive.

A URL check judges a host by its spelling; a DNS name that resolves to an internal address passes it. Here
`localhost` (and, where the machine maps its own name to 127.0.0.1, that name) plays such a name: the
guarded session refuses the connection once it sees the peer is internal, before TLS or a byte of the
request, so the servers record nothing, no credential header included. Where a client test builds its
client with loopback allowed for its URL check, that stands in for a DNS name the check cannot see
through; the session it is given is the product's guarded session with loopback not allowed.
"""

from __future__ import annotations

import json
import socket

import pytest
import requests

from devstack.autotask import LocalAutotask
from devstack.connectwise import LocalConnectWise
from devstack.halopsa import LocalHaloPsa
from devstack.ninjaone import NinjaOneServer
from devstack.server import LocalServer, Response, json_response
from devstack.webhook import LocalWebhookReceiver
from gatekeeper.errors import DependencyUnavailable
from gatekeeper.ingest.connectwise_signature import SigningKeys
from gatekeeper.integrations.guarded_http import InternalAddressRefused, OutboundRefused, guarded_session
from gatekeeper.integrations.ninjaone import NinjaOne
from gatekeeper.integrations.retry import RetryPolicy
from gatekeeper.integrations.urls import check_outbound_url
from gatekeeper.integrations.webhook import WebhookSender
from gatekeeper.policy.watch import HttpProbeSpec
from gatekeeper.ports import TicketSpec
from gatekeeper.psa.autotask import AutotaskTickets
from gatekeeper.psa.connectwise import ConnectWiseTickets
from gatekeeper.psa.halopsa import HaloTickets
from gatekeeper.rollback.probes import HttpHealthProbe
from gatekeeper.tenancy.psa_settings import AutotaskSettings, ConnectWiseSettings, HaloSettings
from gatekeeper.tenancy.rmm_settings import RmmSettings

REFUSAL = "resolves to an internal address"
SPEC = TicketSpec(key="GK-0123456789abcdef-change", kind="change", summary="Change: deploy webshop to production")
CW_PUBLIC, CW_PRIVATE, CW_CLIENT = "pub-1a2b3c", "priv-4d5e6f7a8b9c0d1e", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
AT_USER, AT_SECRET, AT_CODE = "gk-api@contoso-msp.example", "at-secret-9f8e7d6c5b4a", "AT-INTEGRATION-CODE-0123456"
HALO_ID, HALO_SECRET = "halo-client-id", "halo-client-secret-abcdef0123456789"


class Recorder(LocalServer):
    name = "recording server"

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        return json_response(200, {"ok": True})


def policy(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, initial_wait=0.01, max_wait=0.02, jitter=0, sleep=lambda s: None)


def by_name(server: LocalServer, scheme: str = "http", host: str = "localhost") -> str:
    """The server's URL by a host name rather than its address: what the guard must look through."""
    return f"{scheme}://{host}:{server.port}"


def connectwise(url: str) -> ConnectWiseSettings:
    return ConnectWiseSettings.model_validate(
        {
            "vendor": "connectwise",
            "url": url,
            "login_company": "fabrikammsp",
            "company": "ContosoLtd",
            "board": "Change Management",
            "credentials": {
                "public_key": "env:GK_CONTOSO_P",
                "private_key": "env:GK_CONTOSO_K",
                "client_id": "env:GK_CONTOSO_I",
            },
        }
    )


# ----- the session ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_name_resolving_to_loopback_is_refused_on_connect_and_nothing_reaches_the_server(scheme):
    with Recorder() as server:
        with pytest.raises(InternalAddressRefused, match=f"localhost {REFUSAL} .*; nothing was sent"):
            guarded_session(allow_loopback_http=False).post(
                f"{by_name(server, scheme)}/api/tickets",
                headers={"Authorization": "Basic c2VjcmV0"},
                json={"summary": "x"},
                timeout=5,
            )
        assert server.requests == []  # no request line, no Authorization header, no body


def test_the_refusal_is_a_request_exception_and_never_retried_by_urllib3():
    """Callers catch `requests.RequestException`; the refusal is one, and not a ConnectionError (which the
    retry helper would try again: the name resolves the same way every time)."""
    with Recorder() as server:
        session = guarded_session(allow_loopback_http=False)
        with pytest.raises(requests.RequestException) as caught:
            session.get(f"{by_name(server)}/", timeout=5)
        assert isinstance(caught.value, OutboundRefused) and not isinstance(caught.value, requests.ConnectionError)
        assert server.requests == []


def test_with_loopback_allowed_the_same_request_arrives_with_its_headers():
    with Recorder() as server:
        answer = guarded_session(allow_loopback_http=True).get(
            f"{by_name(server)}/ping", headers={"Authorization": "Bearer t"}, timeout=5
        )
        assert answer.status_code == 200
        [request] = server.requests
        assert request.path == "/ping" and request.headers["authorization"] == "Bearer t"


def test_environment_proxies_are_ignored_and_an_explicit_proxy_is_refused(monkeypatch):
    """A proxy would be the peer the guard sees, hiding the target, so guarded sessions never use one."""
    with Recorder() as target, Recorder() as proxy:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        plain = requests.Session().get(f"{target.url}/via-env", timeout=5)  # what the environment would do
        assert plain.status_code == 200 and len(proxy.requests) == 1 and target.requests == []
        proxy.clear()
        assert guarded_session(allow_loopback_http=True).get(f"{target.url}/direct", timeout=5).status_code == 200
        assert proxy.requests == [] and [r.path for r in target.requests] == ["/direct"]
        with pytest.raises(OutboundRefused, match="never through a proxy"):
            guarded_session(allow_loopback_http=True).get(f"{target.url}/x", proxies={"http": proxy.url}, timeout=5)
        assert proxy.requests == [] and len(target.requests) == 1


# ----- the clients that carry tenant or event URLs ----------------------------------------------------------


def test_no_psa_client_sends_its_credentials_to_a_name_resolving_internally():
    refused_session = guarded_session(allow_loopback_http=False)
    with LocalConnectWise("fabrikammsp", CW_PUBLIC, CW_PRIVATE, CW_CLIENT) as server:
        client = ConnectWiseTickets(
            connectwise(by_name(server)),
            CW_PUBLIC,
            CW_PRIVATE,
            CW_CLIENT,
            policy=policy(),
            allow_loopback_http=True,
            session=refused_session,
        )
        result = client.find_or_open(SPEC)
        assert not result.ok and REFUSAL in result.detail and result.attempts == 1
        assert server.requests == [] and CW_PRIVATE not in result.detail
    with LocalAutotask(AT_USER, AT_SECRET, AT_CODE) as server:
        settings = AutotaskSettings.model_validate(
            {
                "vendor": "autotask",
                "url": f"{by_name(server)}/atservicesrest",
                "company": "174",
                "board": "29682833",
                "credentials": {"username": "env:U", "secret": "env:S", "integration_code": "env:C"},
            }
        )
        autotask = AutotaskTickets(
            settings, AT_USER, AT_SECRET, AT_CODE, policy=policy(), allow_loopback_http=True, session=refused_session
        )
        result = autotask.find_or_open(SPEC)
        assert not result.ok and REFUSAL in result.detail
        assert server.requests == []  # neither zone discovery nor a call with the Secret/ApiIntegrationCode headers
    with LocalHaloPsa(HALO_ID, HALO_SECRET) as server:
        halo_settings = HaloSettings.model_validate(
            {
                "vendor": "halopsa",
                "url": by_name(server),
                "company": "12",
                "board": "Change Advisory",
                "credentials": {"client_id": "env:HID", "client_secret": "env:HS"},
            }
        )
        halo = HaloTickets(
            halo_settings, HALO_ID, HALO_SECRET, policy=policy(), allow_loopback_http=True, session=refused_session
        )
        result = halo.find_or_open(SPEC)
        assert not result.ok and REFUSAL in result.detail and HALO_SECRET not in result.detail
        assert server.requests == []  # no token request carrying the client secret


def test_the_rmm_client_never_asks_for_a_token_at_a_name_resolving_internally():
    with NinjaOneServer("ninja-id", "ninja-secret-0123456789") as server:
        settings = RmmSettings.model_validate(
            {"vendor": "ninjaone", "api_url": by_name(server), "client_id": "ninja-id", "client_secret": "env:N"}
        )
        client = NinjaOne(
            settings,
            "ninja-secret-0123456789",
            policy=policy(),
            allow_loopback_http=True,
            session=guarded_session(allow_loopback_http=False),
        )
        status = client.device_status("311")
        assert not status.ok and REFUSAL in status.detail and "ninja-secret" not in status.detail
        assert server.requests == []


def test_the_webhook_callback_target_refuses_a_name_resolving_internally():
    secret = b"tenant-webhook-signing-secret-0123456789"
    with LocalWebhookReceiver(secret) as receiver:
        sender = WebhookSender(
            policy=policy(attempts=4), allow_loopback_http=True, session=guarded_session(allow_loopback_http=False)
        )
        result = sender.send(f"{by_name(receiver)}/ci/callback", secret, "gate.completed", {"state": "approved"})
        assert not result.ok and REFUSAL in result.detail and result.attempts == 1  # refused, not retried
        assert receiver.requests == [] and receiver.deliveries == []
        allowed = WebhookSender(policy=policy(), allow_loopback_http=True)  # the product's default session
        assert allowed.send(f"{by_name(receiver)}/ci/callback", secret, "gate.completed", {"state": "ok"}).ok


def test_a_health_probe_and_a_connectwise_key_fetch_refuse_the_same():
    with Recorder() as server:
        probe = HttpHealthProbe(allow_loopback_http=True, session=guarded_session(allow_loopback_http=False))
        result = probe.run(HttpProbeSpec.model_validate({"name": "web", "url": f"{by_name(server)}/health"}))
        assert result.outcome == "error" and REFUSAL in result.detail
        site = f"localhost:{server.port}"
        key_url = f"http://{site}/v4_6_release/system/callbackkey/index.rails?companyName=fabrikammsp&id=1"
        body = json.dumps({"CompanyId": "fabrikammsp", "Metadata": {"key_url": key_url}}).encode()
        keys = SigningKeys(allow_loopback_http=True, session=guarded_session(allow_loopback_http=False))
        with pytest.raises(DependencyUnavailable):  # the site hands out no key: 503, as for an outage
            keys.verify(site, body, "c2lnbmF0dXJl")
        assert keys.fetches == 1 and server.requests == []


# ----- the default path, end to end ---------------------------------------------------------------------------


def _own_name_on_loopback() -> str | None:
    """The machine's own host name when the system maps it to 127.0.0.1 (many container images do): a real
    DNS-style name that no spelling check can recognise as loopback."""
    name = socket.gethostname()
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(name, 443, proto=socket.IPPROTO_TCP)}
    except OSError:
        return None
    return name if resolved == {"127.0.0.1"} else None


def test_a_tenant_psa_url_naming_a_host_that_resolves_to_loopback_is_refused_by_the_clients_own_session():
    """No injected session, loopback not allowed: the URL check passes the name, the client's own guarded
    session refuses the connection, and the server never sees the credentials."""
    name = _own_name_on_loopback()
    if name is None:
        pytest.skip("this machine's host name does not resolve to 127.0.0.1 only")
    with LocalConnectWise("fabrikammsp", CW_PUBLIC, CW_PRIVATE, CW_CLIENT) as server:
        url = by_name(server, "https", name)
        assert check_outbound_url(url, field="psa.url") == url  # the spelling check cannot know
        client = ConnectWiseTickets(connectwise(url), CW_PUBLIC, CW_PRIVATE, CW_CLIENT, policy=policy())
        result = client.find_or_open(SPEC)
        assert not result.ok and f"{name.lower()} {REFUSAL}" in result.detail.lower() and result.attempts == 1
        assert server.requests == []
    with LocalWebhookReceiver(b"s" * 32) as receiver:
        sent = WebhookSender(policy=policy()).send(
            f"{by_name(receiver, 'https', name)}/cb", b"s" * 32, "gate.completed", {"state": "approved"}
        )
        assert not sent.ok and REFUSAL in sent.detail and receiver.requests == []
