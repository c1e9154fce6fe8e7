"""Which network addresses are internal: the one classifier every outbound check uses.

Tenants and events name the URLs Gatekeeper calls (callbacks, PSA and RMM API hosts, health probes), and a
credential sent there must never reach the Function App's own network: the instance metadata and identity
endpoints (169.254.169.254), VNet-private services, the host's loopback. One rule decides it, for a URL's
host at check time (`gatekeeper.integrations.urls`, the tenant settings) and for the connected socket's peer
at connection time (`gatekeeper.integrations.guarded_http`), so the two can never disagree.

It lives outside `integrations/` because the tenant settings (`tenancy/`) check URLs on import too, and
`integrations/` already imports `tenancy/`: stdlib only, imports nothing of the product.
"""

from __future__ import annotations

import ipaddress
import re

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 carrier-grade NAT; not global
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits name an IPv4 host
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

_DECIMAL = re.compile(r"[1-9][0-9]{0,11}")
_OCTAL = re.compile(r"0[0-7]{0,15}")
_HEX = re.compile(r"0[xX][0-9a-fA-F]{0,10}")
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0[xX][0-9a-fA-F]*)")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 host an IPv6 address stands for: IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16), NAT64."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_internal_ip(ip: IpAddress) -> bool:
    """True for every address no vendor API or callback receiver lives at: private, loopback, link-local
    (the metadata endpoint), shared (100.64/10), reserved, multicast, unspecified, site-local, anything not
    globally routable, and IPv6 forms that carry such an IPv4 address (mapped, 6to4, NAT64). Teredo
    (2001::/32) is refused whole: it tunnels to an IPv4 peer chosen by whoever wrote the address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None:
            return True
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_internal_ip(embedded)
        if ip.is_site_local:
            return True
    elif ip in SHARED_ADDRESS_SPACE:
        return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    )


def is_loopback_ip(ip: IpAddress) -> bool:
    """127/8, ::1 and their IPv4-mapped form: the only internal addresses development may call."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """`text` read the way `inet_aton` (and so `getaddrinfo`) reads it: one to four parts, each decimal,
    octal (leading 0) or hex (0x), the last filling the remaining bytes. `127.1`, `2130706433`, `0x7f.1`
    and `017700000001` are all 127.0.0.1 to a resolver, though `ipaddress` calls them names."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        if _HEX.fullmatch(part):
            values.append(int(part[2:] or "0", 16))
        elif _OCTAL.fullmatch(part):
            values.append(int(part, 8))
        elif _DECIMAL.fullmatch(part):
            values.append(int(part))
        else:
            return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for value in head:
        number = number * 256 + value
    return ipaddress.IPv4Address(number * 256 ** (4 - len(head)) + last)


def normalise_host(host: str) -> str:
    """A URL's host as a resolver sees it: brackets and trailing dots gone, lower case, international
    names in their ASCII form (full-width digits become digits). Raises ValueError for a host no resolver
    would take."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name:
        raise ValueError("empty host")
    if not name.isascii():
        name = name.encode("idna").decode("ascii").lower()  # UnicodeError is a ValueError
    return name


def host_address(host: str) -> tuple[IpAddress | None, bool]:
    """(the address a host spelling denotes, whether it is the canonical spelling). A DNS name is (None,
    True); `127.1` is (127.0.0.1, False). Raises ValueError for a numeric host that is no address
    (`1.2.3.4.5`, `999.1`): a resolver would send it to DNS, and no public name ends in a number."""
    name = normalise_host(host)
    try:
        return ipaddress.ip_address(name), True
    except ValueError:
        pass
    loose = parse_inet_aton(name)
    if loose is not None:
        return loose, False
    if _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
        raise ValueError("a numeric host that is not an address")
    return None, True


def is_loopback_name(host: str) -> bool:
    """`localhost` and the names every system maps to the loopback (`*.localhost`, RFC 6761)."""
    try:
        name = normalise_host(host)
    except ValueError:
        return False
    return name in LOOPBACK_NAMES or name.endswith(".localhost")


def is_internal_host(host: str, *, allow_loopback: bool = False) -> bool:
    """Whether a URL's host names an internal address by its spelling alone: an IP literal in any form a
    resolver accepts, or a loopback name. A host that is not a valid one counts as internal (refused), and
    so does loopback spelled oddly (`127.1`) even where loopback is allowed.
    A DNS name is not judged here: where it leads is checked on the connected socket."""
    if is_loopback_name(host):
        return not allow_loopback
    try:
        ip, canonical = host_address(host)
    except ValueError:
        return True
    if ip is None:
        return False
    if allow_loopback and canonical and is_loopback_ip(ip):  # a local server, written plainly
        return False
    return is_internal_ip(ip)


def is_local_host(host: str) -> bool:
    """Where plain http may go in development: a loopback name (`localhost`, `*.localhost`) or a loopback
    address written plainly (`127.0.0.1`, `127.0.0.2`, `::1`). Loopback spelled oddly (`127.1`) never is, and a
    name that merely starts with `127.` is a name. The one rule of every "http only for a local server" check."""
    return is_internal_host(host) and not is_internal_host(host, allow_loopback=True)
