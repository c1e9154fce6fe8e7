"""ConnectWise PSA callback signatures: `x-content-signature`, checked with the key ConnectWise publishes.

How ConnectWise signs a callback (https://developer.connectwise.com/Best_Practices/PSA_Callbacks, "Callback
payload" and its `Metadata.key_url`, read 2026-12-05; the same scheme as two independent public clients
implement it): the body carries `Metadata.key_url`, a URL on the PSA site
(`https://<site>/<codebase>/system/callbackkey/index.rails?...`). A GET of it answers
`{"signing_key": "<key>"}`; the signature is base64(HMAC-SHA256(SHA-256(signing_key), raw body)).

The key URL comes from the unauthenticated body, so it is followed only when it names the tenant's own
ConnectWise site (`TenantRecord.connectwise_site`, set by the MSP admin): https, that host and port exactly,
no credentials, no fragment, no redirects; and it must name (`companyName`) the company the body's `CompanyId`
names, which the route then checks is the tenant's: a cloud site is shared by every company on it. The fetch
has a bounded timeout (the request path answers within 2 s) and a bounded answer; keys are cached per URL for
an hour, and a mismatch refetches at most once a minute per URL (a rotated key heals, a stream of forgeries
does not become a stream of fetches). A key that cannot be fetched is a dependency outage (503 with
Retry-After); every other failure is the one 401.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import requests
import urllib3

from gatekeeper import json_bounded
from gatekeeper.addresses import is_local_host
from gatekeeper.errors import dependency_unavailable

SIGNATURE_HEADER = "x-content-signature"
MAX_KEY_URL_CHARS = 2048
MAX_KEY_ANSWER_BYTES = 16_384
KEY_TTL_SECONDS = 3600.0
REFETCH_AFTER_SECONDS = 60.0
MAX_CACHED_KEYS = 1024
FETCH_TIMEOUT = (1.0, 1.0)  # connect, read: within the request path's 2 s


def connectwise_signature(signing_key: str, body: bytes) -> str:
    """What ConnectWise sends in x-content-signature: base64(HMAC-SHA256(SHA-256(signing_key), body))."""
    key = hashlib.sha256(signing_key.encode("utf-8")).digest()
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def key_url_of(body: bytes) -> str | None:
    """`Metadata.key_url` of a callback body (bounded parse), or None."""
    try:
        document = json_bounded.loads_object(body)
    except json_bounded.JsonBoundsError:
        return None
    metadata = document.get("Metadata")
    url = metadata.get("key_url") if isinstance(metadata, dict) else None
    return url if isinstance(url, str) and 0 < len(url) <= MAX_KEY_URL_CHARS else None


def key_names_the_callers_company(key_url: str, body: bytes) -> bool:
    """The key URL names (`companyName`, exactly once) the company the body says it comes from (`CompanyId`).

    The site pins the host, not the company: a cloud site (na.myconnectwise.net) serves every company on it,
    and any of them can set up a callback and hold a key URL and key on that host. So the key must be the
    company's the callback claims to be, and that company must be the tenant's (the route's scope check
    refuses a `CompanyId` not registered for the tenant)."""
    try:
        document = json_bounded.loads_object(body)
        names = [v for k, v in parse_qsl(urlsplit(key_url).query, keep_blank_values=True) if k.lower() == "companyname"]
    except (json_bounded.JsonBoundsError, ValueError):
        return False
    company = document.get("CompanyId")
    if not isinstance(company, str) or not company.strip() or len(names) != 1:
        return False
    return names[0].strip().casefold() == company.strip().casefold()


def _host_port(value: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(f"//{value}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def trusted_key_url(key_url: str, site: str, *, allow_loopback_http: bool = False) -> str | None:
    """The key URL when it lies on the tenant's ConnectWise site (host and port exactly), else None."""
    try:
        parts = urlsplit(key_url)
        port = parts.port
    except ValueError:
        return None
    configured = _host_port(site)
    host = (parts.hostname or "").lower()
    if configured is None or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.fragment or any(ch.isspace() for ch in key_url):
        return None
    loopback = is_local_host(host)
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback and allow_loopback_http):
        return None
    default = 443 if parts.scheme == "https" else 80
    if (host, port or default) != (configured[0], configured[1] or default):
        return None
    return key_url


class SigningKeys:
    """Fetches and caches ConnectWise callback signing keys; verifies signatures in constant time."""

    def __init__(
        self,
        *,
        allow_loopback_http: bool = False,
        timeout: tuple[float, float] = FETCH_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self._allow_loopback_http = allow_loopback_http
        self._timeout = timeout
        self._clock = clock
        self._given_session = session  # built on the first fetch otherwise (see `_session`)
        self._keys: dict[str, tuple[float, str]] = {}  # url -> (fetched at, key)
        self._lock = threading.Lock()
        self.fetches = 0

    def _session(self) -> requests.Session:
        """The session of the key fetches, built on first use so that gatekeeper.integrations stays off the
        ingestion routes' cold path. The tenant names the site: a name resolving to an internal address is
        refused on connect (the guarded session), and no proxy settings come from the environment."""
        if self._given_session is None:
            from gatekeeper.integrations.guarded_http import guarded_session

            self._given_session = guarded_session(self._allow_loopback_http)
        self._given_session.trust_env = False
        return self._given_session

    def __repr__(self) -> str:
        return f"SigningKeys(cached={len(self._keys)})"

    def verify(self, site: str | None, body: bytes, offered: str | None) -> bool:
        """True only when `offered` is the signature of `body` under the key at the body's own key URL, and that
        URL is on the tenant's site. Raises DependencyUnavailable when the site does not hand out the key."""
        if not site or not offered or len(offered) > 512:
            return False
        url = key_url_of(body)
        trusted = trusted_key_url(url, site, allow_loopback_http=self._allow_loopback_http) if url else None
        if trusted is None or not key_names_the_callers_company(trusted, body):
            return False
        given = offered.strip().encode("ascii", errors="replace")
        cached = self._cached(trusted)
        key = cached[1] if cached else self._fetch(trusted)
        if hmac.compare_digest(given, connectwise_signature(key, body).encode("ascii")):
            return True
        if cached is None or self._clock() - cached[0] < REFETCH_AFTER_SECONDS:
            return False
        fresh = self._fetch(trusted)  # the key may have been rotated under the same URL
        return fresh != key and hmac.compare_digest(given, connectwise_signature(fresh, body).encode("ascii"))

    def _cached(self, url: str) -> tuple[float, str] | None:
        with self._lock:
            entry = self._keys.get(url)
        if entry is None or self._clock() - entry[0] >= KEY_TTL_SECONDS:
            return None
        return entry

    def _fetch(self, url: str) -> str:
        self.fetches += 1
        try:
            response = self._session().get(
                url,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json"},
            )
            with response:
                raw = response.raw.read(MAX_KEY_ANSWER_BYTES + 1, decode_content=True)
                status = response.status_code
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            # reading the streamed answer raises urllib3's own errors (a read timeout, a connection ended early)
            raise dependency_unavailable("ConnectWise callback key", 30) from None
        if status != 200 or len(raw) > MAX_KEY_ANSWER_BYTES:
            raise dependency_unavailable("ConnectWise callback key", 30)
        try:
            answer = json_bounded.loads_object(raw)
        except (json_bounded.JsonBoundsError, json.JSONDecodeError, UnicodeDecodeError):
            raise dependency_unavailable("ConnectWise callback key", 30) from None
        key = answer.get("signing_key")
        if not isinstance(key, str) or not key or len(key) > 1024:
            raise dependency_unavailable("ConnectWise callback key", 30)
        with self._lock:
            if len(self._keys) >= MAX_CACHED_KEYS:
                self._keys.pop(next(iter(self._keys)))
            self._keys[url] = (self._clock(), key)
        return key
