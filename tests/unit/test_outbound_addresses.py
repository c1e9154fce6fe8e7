"""The one internal-address classifier (gatekeeper.addresses) and the URL checks built on it: every spelling a
resolver reads as an internal address is refused when the URL is checked, by the callbacks' check, the PSA
settings and the RMM settings alike, and public hosts keep passing."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gatekeeper.addresses import host_address, is_internal_host, is_internal_ip, parse_inet_aton
from gatekeeper.integrations.urls import OutboundUrlError, check_outbound_url, is_loopback
from gatekeeper.tenancy.psa_settings import check_url, is_internal_address
from gatekeeper.tenancy.rmm_settings import RmmSettings

INTERNAL_V4 = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",  # link-local: the instance metadata and identity endpoints
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "192.0.2.0/24",
    "198.18.0.0/15",
]
REFUSED = "must not point at a private, loopback or link-local address"


@st.composite
def internal_ipv4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    network = ipaddress.IPv4Network(draw(st.sampled_from(INTERNAL_V4)))
    offset = draw(st.integers(min_value=0, max_value=network.num_addresses - 1))
    return network[offset]


def spellings(ip: ipaddress.IPv4Address, style: str) -> str:
    """`ip` as a URL host in one of the forms resolvers accept (inet_aton's and IPv6's)."""
    n = int(ip)
    a, b, c, d = ip.packed
    return {
        "dotted": str(ip),
        "decimal": str(n),
        "hex": hex(n),
        "octal": "0" + format(n, "o"),
        "two-part": f"{a}.{n & 0xFFFFFF}",
        "three-part": f"{a}.{b}.{(c << 8) | d}",
        "hex-dotted": ".".join(hex(x) for x in (a, b, c, d)),
        "octal-dotted": ".".join("0" + format(x, "o") for x in (a, b, c, d)),
        "mapped": f"[::ffff:{ip}]",
        "mapped-hex": f"[::ffff:{(n >> 16):x}:{(n & 0xFFFF):x}]",
        "6to4": f"[2002:{(n >> 16):x}:{(n & 0xFFFF):x}::1]",
        "nat64": f"[64:ff9b::{ip}]",
        "trailing-dot": f"{ip}.",
    }[style]


STYLES = [
    "dotted",
    "decimal",
    "hex",
    "octal",
    "two-part",
    "three-part",
    "hex-dotted",
    "octal-dotted",
    "mapped",
    "mapped-hex",
    "6to4",
    "nat64",
    "trailing-dot",
]


@settings(derandomize=True, max_examples=300, deadline=None)
@given(ip=internal_ipv4(), style=st.sampled_from(STYLES))
def test_an_internal_ipv4_address_in_any_spelling_is_refused_when_the_url_is_checked(ip, style):
    host = spellings(ip, style)
    url = f"https://{host}:8443/api"
    with pytest.raises(OutboundUrlError, match=REFUSED):
        check_outbound_url(url, field="callback.url")
    assert is_internal_host(host)
    if not ip.is_loopback:  # the settings allow plain loopback for local servers; nothing else internal
        assert is_internal_address(host)
        with pytest.raises(ValueError, match="must not point at a private"):
            check_url(url)
        with pytest.raises(ValidationError, match="api_url"):
            RmmSettings.model_validate(
                {"vendor": "ninjaone", "api_url": f"https://{host}", "client_id": "x", "client_secret": "env:N"}
            )


@settings(derandomize=True, max_examples=100, deadline=None)
@given(ip=internal_ipv4(), style=st.sampled_from(["decimal", "hex", "octal", "two-part", "three-part"]))
def test_the_inet_aton_forms_denote_the_address_a_resolver_reaches(ip, style):
    assert parse_inet_aton(spellings(ip, style)) == ip
    assert host_address(spellings(ip, style)) == (ip, False)


@pytest.mark.parametrize(
    "host",
    ["127.1", "2130706433", "0x7f.1", "017700000001", "0", "0x7f000001", "[::ffff:10.0.0.1]", "[::ffff:a9fe:a9fe]"],
)
def test_the_odd_spellings_of_loopback_and_private_addresses_are_refused(host):
    with pytest.raises(OutboundUrlError, match=REFUSED):
        check_outbound_url(f"https://{host}/", field="f")
    # loopback written oddly is refused even where development allows loopback: nobody writes a local server so
    with pytest.raises(OutboundUrlError):
        check_outbound_url(f"https://{host}/", field="f", allow_loopback_http=True)


@pytest.mark.parametrize(
    "address",
    [
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "fec0::1",  # site-local
        "ff02::1",
        "::ffff:192.168.1.1",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo tunnels to an IPv4 peer of the writer's choosing
        "2002:a9fe:a9fe::",  # 6to4 of 169.254.169.254
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2001:db8::1",
        "100.64.0.1",
        "100.127.255.254",
        "169.254.169.254",
        "255.255.255.255",
    ],
)
def test_the_classifier_refuses_internal_ipv6_and_special_ipv4(address):
    assert is_internal_ip(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "20.190.160.1", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]
)
def test_public_addresses_and_their_embedded_forms_are_not_internal(address):
    assert not is_internal_ip(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url", ["https://api-na.myconnectwise.net", "https://8.8.8.8/x", "https://[2606:4700::1111]/", "https://ex.io:8443"]
)
def test_public_hosts_still_pass(url):
    assert check_outbound_url(url, field="f") == url


@pytest.mark.parametrize("host", ["8.8.2056", "134744072", "0x8080808", "010.010.010.010"])
def test_a_public_address_in_an_odd_spelling_is_refused_naming_the_form(host):
    with pytest.raises(OutboundUrlError, match="four decimal parts"):
        check_outbound_url(f"https://{host}/", field="psa.url")


@pytest.mark.parametrize("host", ["1.2.3.4.5", "999.1", "10.0.0.256", "0x1ffffffff", "example.123"])
def test_a_numeric_host_that_is_no_address_is_refused(host):
    with pytest.raises(OutboundUrlError, match="not a valid host name or IP address"):
        check_outbound_url(f"https://{host}/", field="psa.url")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "api.localhost", "ip6-localhost", "[::ffff:127.0.0.1]"])
def test_loopback_names_are_loopback_and_only_allowed_in_development(host):
    assert is_loopback(host)
    with pytest.raises(OutboundUrlError, match=REFUSED):
        check_outbound_url(f"https://{host}:8443/", field="f")
    assert check_outbound_url(f"http://{host}:8443/", field="f", allow_loopback_http=True)


def test_full_width_digits_are_read_as_the_address_they_become():
    """International host names are encoded before resolution, and full-width digits become ASCII digits."""
    with pytest.raises(OutboundUrlError, match=REFUSED):
        check_outbound_url("https://\uff11\uff10.0.0.1/", field="f")
