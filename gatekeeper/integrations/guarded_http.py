"""The one `requests` session for URLs that tenants or events choose, refusing internal peers on connect.

`check_outbound_url` judges a URL's host by its spelling; a DNS name that resolves to 10.x, 169.254.169.254
or 127.0.0.1 (a rebinding name, a name in the VNet's private DNS, `metadata.azure.internal`) passes it. So
every connection these sessions open is checked again where it lands: right after the TCP connect, before
TLS or a single byte of the request, the socket's peer address (`getpeername()`) goes through the same
classifier (gatekeeper.addresses). Checking the connected peer, not a separate lookup, is what defeats DNS
rebinding: there is no second resolution that could answer differently.

How: urllib3's documented extension points. `HTTPConnection`/`HTTPSConnection` subclasses check the socket
their `_new_conn` opened; pool classes name them as `ConnectionCls`; the adapter's `PoolManager` maps the
schemes to those pools (`pool_classes_by_scheme`). A refusal is raised past urllib3's retry and wrap logic
and reaches the caller as `InternalAddressRefused` (a `requests.RequestException`, never retried: the same
name resolves the same way).

Proxies: a proxy would make the proxy the peer and hide the target, so these sessions never use one:
`trust_env` is off (no HTTPS_PROXY, NO_PROXY or .netrc from the environment) and an explicit proxy is
refused. `trust_env` off also ignores REQUESTS_CA_BUNDLE: certificate checks use the bundle requests ships
(certifi) unless a caller passes `verify` explicitly. Redirects are the caller's choice as before; any
redirect followed opens its connection through the same guard.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from gatekeeper.addresses import IpAddress, is_internal_ip, is_loopback_ip

log = logging.getLogger("gatekeeper.integrations")

REFUSED = (
    "refused: {host} resolves to an internal address (private, loopback, link-local or reserved); nothing was sent"
)


class OutboundRefused(requests.RequestException):
    """A guarded session would not send the request; the message says why and never holds a credential."""


class InternalAddressRefused(OutboundRefused):
    """The connection reached an internal address; it was closed before any byte of the request."""


class _PeerRefused(Exception):
    """Raised inside urllib3 (deliberately not an OSError, so urllib3 neither retries nor rewraps it); the
    adapter turns it into `InternalAddressRefused`."""

    def __init__(self, host: str) -> None:
        super().__init__(REFUSED.format(host=host))


def _peer_address(sock: socket.socket) -> IpAddress:
    import ipaddress

    peer = sock.getpeername()
    text = str(peer[0]).split("%", 1)[0]  # an IPv6 zone id ("fe80::1%eth0") is not part of the address
    return ipaddress.ip_address(text)


def check_peer(sock: socket.socket, host: str, allow_loopback: bool) -> socket.socket:
    """`sock` if its peer may be called; otherwise the socket is closed and `_PeerRefused` raised."""
    try:
        address = _peer_address(sock)
        refused = is_internal_ip(address) and not (allow_loopback and is_loopback_ip(address))
    except (OSError, ValueError):  # no peer (reset at once) or an address family we cannot judge
        refused = True
        address = None
    if refused:
        sock.close()
        log.warning("outbound connection to %s refused: the peer %s is internal", host, address)
        raise _PeerRefused(host)
    return sock


class GuardedHTTPConnection(HTTPConnection):
    """Plain HTTP (development loopback only, the URL checks see to that), peer checked on connect."""

    allow_loopback = False

    def _new_conn(self) -> socket.socket:
        return check_peer(super()._new_conn(), self.host, self.allow_loopback)


class GuardedHTTPSConnection(HTTPSConnection):
    """HTTPS whose peer is checked before the TLS handshake starts."""

    allow_loopback = False

    def _new_conn(self) -> socket.socket:
        return check_peer(super()._new_conn(), self.host, self.allow_loopback)


class LoopbackHTTPConnection(GuardedHTTPConnection):
    allow_loopback = True


class LoopbackHTTPSConnection(GuardedHTTPSConnection):
    allow_loopback = True


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class LoopbackHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = LoopbackHTTPConnection


class LoopbackHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = LoopbackHTTPSConnection


GUARDED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": GuardedHTTPConnectionPool,
    "https": GuardedHTTPSConnectionPool,
}
LOOPBACK_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": LoopbackHTTPConnectionPool,
    "https": LoopbackHTTPSConnectionPool,
}


class GuardedAdapter(HTTPAdapter):
    """An `HTTPAdapter` whose connections refuse internal peers (loopback too, unless allowed)."""

    def __init__(self, *, allow_loopback: bool = False, **kwargs: Any) -> None:
        self.allow_loopback = allow_loopback  # set before HTTPAdapter.__init__ builds the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = LOOPBACK_POOLS if self.allow_loopback else GUARDED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise OutboundRefused("refused: a guarded session connects directly, never through a proxy")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().send(request, *args, **kwargs)
        except _PeerRefused as exc:
            raise InternalAddressRefused(str(exc), request=request) from None


def guarded_session(allow_loopback_http: bool = False) -> requests.Session:
    """The session for every URL a tenant or an event chooses: connections to internal peers refused
    (loopback allowed only where the process allows loopback http: development, tests, the demo), no
    proxies or credentials from the environment."""
    session = requests.Session()
    session.trust_env = False
    adapter = GuardedAdapter(allow_loopback=allow_loopback_http)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
