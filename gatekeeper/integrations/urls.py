"""Checks on URLs we send credentials or signed payloads to.

Callback URLs arrive in (authenticated) requests, so they are still input: a token must never be sent over
plain HTTP or to an internal address such as the Functions host's own loopback endpoints. Loopback HTTP is
allowed only when the composition root says so (local development, tests, the demo).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

from gatekeeper.addresses import host_address, is_internal_ip, is_loopback_ip, is_loopback_name

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class OutboundUrlError(ValueError):
    """The URL may not be called; the message names the field and says why."""


def is_loopback(host: str) -> bool:
    """A loopback name or address, in any spelling a resolver accepts (`127.1`, `[::ffff:127.0.0.1]`)."""
    if is_loopback_name(host):
        return True
    try:
        ip, _ = host_address(host)
    except ValueError:
        return False
    return ip is not None and is_loopback_ip(ip)


def check_outbound_url(url: str, *, field: str, allow_loopback_http: bool = False) -> str:
    """Return `url` if it is an absolute https URL to a public host (or loopback, when allowed).

    The host is judged by its spelling (gatekeeper.addresses): IP literals in every form a resolver reads
    (`2130706433`, `0x7f.1`, `::ffff:10.0.0.1`) and loopback names. A DNS name that resolves to an internal
    address passes here; the guarded session (gatekeeper.integrations.guarded_http) refuses it when the
    socket connects."""
    if not isinstance(url, str) or not url.strip():
        raise OutboundUrlError(f"{field}: a URL is required")
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise OutboundUrlError(f"{field}: not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not host:
        raise OutboundUrlError(f"{field}: must be an absolute https URL")
    if parts.username is not None or parts.password is not None:
        raise OutboundUrlError(f"{field}: must not carry credentials in the URL")
    try:
        ip, canonical = host_address(host)
    except ValueError:
        raise OutboundUrlError(f"{field}: the host is not a valid host name or IP address") from None
    loopback = is_loopback_name(host) or (ip is not None and is_loopback_ip(ip))
    loopback_ok = allow_loopback_http and loopback
    if parts.scheme == "http" and not loopback_ok:
        raise OutboundUrlError(f"{field}: must use https")
    internal = loopback or (ip is not None and is_internal_ip(ip))
    if internal and not loopback_ok:
        raise OutboundUrlError(f"{field}: must not point at a private, loopback or link-local address")
    if not canonical:
        raise OutboundUrlError(f"{field}: an IPv4 address must be written as four decimal parts (a.b.c.d)")
    return url.strip()


def safe_url(url: str) -> str:
    """The URL without query, fragment or user info: what may appear in logs and results."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<invalid url>"


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


_QUERY = re.compile(r"\?[^\s\"']*")


class QueryRedactingFilter(logging.Filter):
    """Removes query strings from HTTP libraries' request-line logs: a callback URL's query may carry a
    key (e.g. a function key `?code=`), and urllib3 logs request lines at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_QUERY.sub("?<redacted>", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = _QUERY.sub("?<redacted>", record.msg)
        return True


_FILTER = QueryRedactingFilter()


def install_query_redaction(logger_names: tuple[str, ...] = ("urllib3.connectionpool", "httpx")) -> None:
    """Idempotent: attach the filter to the loggers that print request URLs."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
