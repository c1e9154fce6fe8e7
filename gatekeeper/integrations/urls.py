"""Checks on URLs we send credentials or signed payloads to.

Callback URLs arrive in (authenticated) requests, so they are still input: a token must never be sent over
plain HTTP or to an internal address such as the Functions host's own loopback endpoints. Loopback HTTP is
allowed only when the composition root says so (local development, tests, the demo).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import urlsplit, urlunsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class OutboundUrlError(ValueError):
    """The URL may not be called; the message names the field and says why."""


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    ip = _ip(host)
    return host.lower() in LOOPBACK_NAMES or (ip is not None and ip.is_loopback)


def check_outbound_url(url: str, *, field: str, allow_loopback_http: bool = False) -> str:
    """Return `url` if it is an absolute https URL to a public host (or loopback, when allowed)."""
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
    loopback_ok = allow_loopback_http and is_loopback(host)
    if parts.scheme == "http" and not loopback_ok:
        raise OutboundUrlError(f"{field}: must use https")
    ip = _ip(host)
    internal = host.lower() == "localhost" or (
        ip is not None
        and (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_reserved
            or ip.is_multicast
            or ip.is_unspecified
        )
    )
    if internal and not loopback_ok:
        raise OutboundUrlError(f"{field}: must not point at a private, loopback or link-local address")
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
