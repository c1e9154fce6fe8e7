"""Tests for the survivors of the `outbound` mutation group in gatekeeper/integrations/guarded_http.py, with the
real `requests` and urllib3 against local servers (plain and TLS) and real sockets: the defaults must refuse
loopback, loopback https must work where loopback is allowed, a peer that cannot be read is refused and its
socket closed, and the operator's log line names the peer without an IPv6 zone id."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import requests

from devstack.server import LocalServer, Response, json_response
from devstack.tls import TlsLocalServer
from gatekeeper.integrations.guarded_http import (
    GuardedAdapter,
    InternalAddressRefused,
    _PeerRefused,
    check_peer,
    guarded_session,
)

REFUSAL = "resolves to an internal address"


class Recorder(LocalServer):
    name = "recording server"

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        return json_response(200, {"ok": True})


class TlsRecorder(TlsLocalServer):
    name = "recording TLS server"

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        return json_response(200, {"ok": True})


# ----- defaults ----------------------------------------------------------------------------------------------------


def test_a_guarded_session_by_default_refuses_loopback():
    """Loopback is allowed only when the caller says so: a session built without the flag is production's."""
    with Recorder() as server:
        with pytest.raises(InternalAddressRefused, match=REFUSAL):
            guarded_session().get(f"http://localhost:{server.port}/", headers={"Authorization": "Bearer t"}, timeout=5)
        assert server.requests == []


def test_a_guarded_adapter_by_default_refuses_loopback():
    with Recorder() as server:
        session = requests.Session()
        session.trust_env = False
        session.mount("http://", GuardedAdapter())
        with pytest.raises(InternalAddressRefused, match=REFUSAL):
            session.get(f"http://127.0.0.1:{server.port}/", timeout=5)
        assert server.requests == []


def test_allowing_loopback_on_the_adapter_is_keyword_only():
    """HTTPAdapter's first positional parameter is `pool_connections`: a count passed positionally must never be
    read as "loopback allowed"."""
    with pytest.raises(TypeError):
        GuardedAdapter(10)  # type: ignore[misc]
    assert GuardedAdapter(pool_connections=10).allow_loopback is False


def test_the_pool_manager_keeps_the_adapters_non_blocking_default():
    """`init_poolmanager` overrides HTTPAdapter's with the same default (`block=False`): a pool never waits for a
    free connection unless asked to."""
    adapter = GuardedAdapter()
    adapter.init_poolmanager(2, 3)
    assert adapter.poolmanager.connection_pool_kw["block"] is False
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 3
    adapter.init_poolmanager(2, 3, block=True)
    assert adapter.poolmanager.connection_pool_kw["block"] is True


# ----- loopback https where allowed -------------------------------------------------------------------------------


def test_loopback_https_is_reached_where_loopback_is_allowed_and_refused_where_not():
    with TlsRecorder() as server:
        url = f"https://127.0.0.1:{server.port}/ping"
        answer = guarded_session(allow_loopback_http=True).get(
            url, headers={"Authorization": "Bearer t"}, verify=server.ca_file, timeout=5
        )
        assert answer.status_code == 200 and answer.json() == {"ok": True}
        [request] = server.requests
        assert request.path == "/ping" and request.headers["authorization"] == "Bearer t"
        with pytest.raises(InternalAddressRefused, match=REFUSAL):
            guarded_session(allow_loopback_http=False).get(url, verify=server.ca_file, timeout=5)
        assert len(server.requests) == 1


# ----- a peer that cannot be read ----------------------------------------------------------------------------------


def test_a_socket_without_a_peer_is_refused_and_closed():
    """getpeername() fails (OSError) on a socket that is not connected, as after a reset right at connect."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(_PeerRefused, match="api.example.com " + REFUSAL):
        check_peer(sock, "api.example.com", True)
    assert sock.fileno() == -1


def test_a_peer_of_an_address_family_the_classifier_cannot_judge_is_refused_and_closed(tmp_path: Path):
    """A Unix-domain peer's name is a path, not an IP address (ValueError): refused, even with loopback allowed."""
    path = str(tmp_path / "peer.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
        with pytest.raises(_PeerRefused, match=REFUSAL):
            check_peer(client, "api.example.com", True)
        assert client.fileno() == -1
    finally:
        client.close()
        listener.close()


def test_a_loopback_peer_passes_only_where_allowed():
    with Recorder() as server:
        for allowed in (True, False):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            try:
                if allowed:
                    assert check_peer(sock, "localhost", True) is sock and sock.fileno() != -1
                else:
                    with pytest.raises(_PeerRefused, match="localhost " + REFUSAL):
                        check_peer(sock, "localhost", False)
                    assert sock.fileno() == -1
            finally:
                sock.close()


class _LinkLocalPeer:
    """What `getpeername()` returns for an IPv6 link-local peer: the address with its zone id (`%eth0`)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False

    def getpeername(self) -> tuple[str, int, int, int]:
        return (self.address, 443, 0, 2)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("peer", "logged"), [("fe80::1%eth0", "fe80::1"), ("fe80::abcd%2", "fe80::abcd")])
def test_a_link_local_peer_with_a_zone_id_is_refused_and_logged_without_it(peer, logged, caplog):
    sock = _LinkLocalPeer(peer)
    with caplog.at_level(logging.WARNING, logger="gatekeeper.integrations"), pytest.raises(_PeerRefused, match=REFUSAL):
        check_peer(sock, "intranet.example", False)  # type: ignore[arg-type]
    assert sock.closed
    [record] = [r for r in caplog.records if r.name == "gatekeeper.integrations"]
    assert record.getMessage() == f"outbound connection to intranet.example refused: the peer {logged} is internal"
