"""Tests for the survivors of the `outbound` mutation group (gatekeeper/addresses.py, integrations/urls.py):
exact bounds of the `inet_aton` reading, the fallbacks taken when a host cannot be read, the keyword-only
flags that allow loopback, and the helpers that keep URLs with secrets out of logs (`safe_url`, the query
filter) and decide which URLs share an origin (`same_origin`)."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from gatekeeper.addresses import (
    _embedded_ipv4,
    host_address,
    is_internal_host,
    is_internal_ip,
    is_loopback_name,
    parse_inet_aton,
)
from gatekeeper.integrations.urls import (
    OutboundUrlError,
    QueryRedactingFilter,
    check_outbound_url,
    is_loopback,
    safe_url,
    same_origin,
)

REFUSED = "must not point at a private, loopback or link-local address"
NOT_A_HOST = "not a valid host name or IP address"

# ----- addresses.py: the inet_aton reading ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["10.0.0.1.0", "1.2.3.4.0", "0.0.0.0.0", "127.0.0.1.0"])
def test_five_parts_are_never_an_address_even_when_the_last_is_zero(text):
    """inet_aton reads one to four parts; a fifth part of 0 would add nothing to the number, so only the part
    count refuses it (a bound of five would read `10.0.0.1.0` as 10.0.0.1)."""
    assert parse_inet_aton(text) is None
    with pytest.raises(ValueError, match="numeric host"):
        host_address(text)
    with pytest.raises(OutboundUrlError, match=NOT_A_HOST):
        check_outbound_url(f"https://{text}/", field="psa.url")


@pytest.mark.parametrize("text", ["1.256.1", "9.256.0.1", "1.2.256.1", "256.1", "0x100.1", "0400.1"])
def test_a_leading_part_above_255_is_no_address(text):
    """Each part but the last is one byte: 256 there is refused, not carried into the next byte
    (`9.256.0.1` would otherwise become 10.0.0.1)."""
    assert parse_inet_aton(text) is None
    with pytest.raises(OutboundUrlError, match=NOT_A_HOST):
        check_outbound_url(f"https://{text}/", field="psa.url")


@pytest.mark.parametrize(
    ("text", "address"),
    [("255.1", "255.0.0.1"), ("1.255.1", "1.255.0.1"), ("1.2.255.1", "1.2.255.1"), ("0xff.0377.1", "255.255.0.1")],
)
def test_a_leading_part_of_255_is_still_a_byte(text, address):
    assert parse_inet_aton(text) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize(
    ("v6", "v4"),
    [
        ("64:ff9b::808:809", "8.8.8.9"),  # an odd last byte: the mask keeps every bit of the IPv4 host
        ("64:ff9b::c000:9", "192.0.0.9"),  # newer Python releases call 192.0.0.9 global but 192.0.0.8 private
        ("64:ff9b::ffff:ffff", "255.255.255.255"),
        ("64:ff9b::1", "0.0.0.1"),
    ],
)
def test_the_nat64_host_is_the_last_32_bits_exactly(v6, v4):
    assert _embedded_ipv4(ipaddress.IPv6Address(v6)) == ipaddress.IPv4Address(v4)
    assert is_internal_ip(ipaddress.IPv6Address(v6)) == is_internal_ip(ipaddress.IPv4Address(v4))


# ----- addresses.py: hosts that cannot be read ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["", "   ", "[]", ".", "..."])
def test_a_host_no_resolver_would_take_is_no_loopback_name_and_counts_as_internal(host):
    """An unreadable host is refused as internal, also where loopback is allowed: it is not a loopback name."""
    assert is_loopback_name(host) is False
    assert is_loopback(host) is False
    assert is_internal_host(host) is True
    assert is_internal_host(host, allow_loopback=True) is True


@pytest.mark.parametrize("host", ["1.2.3.4.5", "999.1", "10.0.0.256", "example.123", "0x1ffffffff"])
def test_a_numeric_host_that_is_no_address_counts_as_internal_and_is_not_loopback(host):
    assert is_internal_host(host) is True
    assert is_internal_host(host, allow_loopback=True) is True
    assert is_loopback(host) is False


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "[::1]", "::1", "localhost", "api.localhost"])
def test_loopback_written_plainly_is_not_internal_where_loopback_is_allowed(host):
    assert is_internal_host(host, allow_loopback=True) is False
    assert is_internal_host(host) is True


def test_allowing_loopback_is_keyword_only():
    """A bare `True` in the second position must not be read as "loopback allowed"."""
    with pytest.raises(TypeError):
        is_internal_host("127.0.0.1", True)  # type: ignore[misc]


# ----- urls.py ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["8.8.8.8", "10.0.0.1", "[2606:4700::1111]", "example.com", "169.254.169.254"])
def test_a_host_that_is_not_loopback_is_not_called_loopback(host):
    assert is_loopback(host) is False


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "2130706433", "[::1]", "[::ffff:127.0.0.1]", "localhost"])
def test_loopback_in_any_spelling_is_loopback(host):
    assert is_loopback(host) is True


@pytest.mark.parametrize(
    "url", ["https://user@api.example.com/", "https://user:@api.example.com/", "https://:pw@api.example.com/"]
)
def test_a_url_with_only_a_user_name_or_only_a_password_is_refused(url):
    with pytest.raises(OutboundUrlError, match=r"callback\.url: must not carry credentials in the URL"):
        check_outbound_url(url, field="callback.url")


@pytest.mark.parametrize("url", ["https://api.example.com:99999/", "https://[::1/x", "https://api.example.com:x/"])
def test_a_url_python_cannot_split_is_refused_as_invalid_naming_the_field(url):
    with pytest.raises(OutboundUrlError, match=r"psa\.url: not a valid URL"):
        check_outbound_url(url, field="psa.url")


def test_the_field_name_is_keyword_only():
    with pytest.raises(TypeError):
        check_outbound_url("https://api.example.com/", "psa.url")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://api.example.com:8443/ci/cb?code=s3cret#frag", "https://api.example.com:8443/ci/cb"),
        ("https://user:pw@api.example.com/ci/cb?code=s3cret", "https://api.example.com/ci/cb"),
        ("https://api.example.com/x", "https://api.example.com/x"),
        ("http://127.0.0.1:7071/api", "http://127.0.0.1:7071/api"),
    ],
)
def test_safe_url_keeps_scheme_host_port_and_path_only(url, safe):
    assert safe_url(url) == safe


@pytest.mark.parametrize("url", ["https://[::1/x?code=s3cret", "https://api.example.com:99999/?code=s3cret"])
def test_safe_url_of_a_url_python_cannot_split_shows_nothing_of_it(url):
    assert safe_url(url) == "<invalid url>"


@pytest.mark.parametrize(
    ("url", "base", "same"),
    [
        ("https://api.github.com/repos/x", "https://api.github.com", True),
        ("https://API.github.com/x", "https://api.github.com", True),  # host names are case-insensitive
        ("https://api.github.com:8443/x", "https://api.github.com", False),
        ("http://api.github.com/x", "https://api.github.com", False),
        ("https://evil.example/x", "https://api.github.com", False),
    ],
)
def test_same_origin_compares_scheme_host_and_port(url, base, same):
    assert same_origin(url, base) is same


def _record(msg: object, args: tuple[object, ...] | None = None) -> logging.LogRecord:
    return logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1, msg, args, None)


def test_the_query_filter_redacts_a_query_in_the_message_and_keeps_the_record():
    record = _record('https://ci.example:443 "POST /api/cb?code=s3cret HTTP/1.1" 200 2')
    assert QueryRedactingFilter().filter(record) is True
    assert record.getMessage() == 'https://ci.example:443 "POST /api/cb?<redacted> HTTP/1.1" 200 2'


def test_the_query_filter_redacts_queries_in_the_arguments():
    args = ("https", "ci.example", 443, "POST", "/cb?code=s3cret", "HTTP/1.1", 200, 2)
    record = _record('%s://%s:%s "%s %s %s" %s %s', args)
    assert QueryRedactingFilter().filter(record) is True
    assert "s3cret" not in record.getMessage() and "/cb?<redacted>" in record.getMessage()


@pytest.mark.parametrize("msg", [42, ValueError("connection reset"), None])
def test_the_query_filter_passes_a_record_whose_message_is_not_text(msg):
    record = _record(msg)
    assert QueryRedactingFilter().filter(record) is True
    assert record.msg is msg


def test_a_record_without_a_query_is_kept_unchanged():
    record = _record("Starting new HTTPS connection (%d): %s:%s", (1, "ci.example", 443))
    assert QueryRedactingFilter().filter(record) is True
    assert record.getMessage() == "Starting new HTTPS connection (1): ci.example:443"
