"""Who the client is: its address behind trusted proxies, and the key its budgets
are counted under. The one place the login throttle and every route limit ask.

The address (`client_address`) is nginx's `real_ip_recursive on`: when the
socket's peer is a trusted proxy, X-Forwarded-For is walked from its nearest
(rightmost) hop; the first hop that is not a trusted proxy is the client, and
when every hop is trusted the leftmost one is. A hop may carry a port
(`1.2.3.4:5555`, `[2001:db8::1]:443`, as some balancers write it): the port is
dropped. A hop that is not an address stops the walk, and the last trusted view
stands (the hop before it): text a proxy passed on is never a client. Blank
entries (`a, , b`) are skipped. IPv4-mapped (`::ffff:a.b.c.d`) and NAT64
(`64:ff9b::/96`) addresses are their IPv4 client, wherever they appear.

The key (`client_key`) is the address, with an IPv6 client counted as its /64:
one subscriber usually holds a whole /64 and can take a fresh address per
request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# What a client that cannot be told is counted under (no peer address at all).
UNKNOWN = "unknown"


def parse_address(text: str) -> IPAddress | None:
    """An address as a hop or a peer writes it, port and brackets dropped,
    mapped and NAT64 addresses as their IPv4; None when it is not one."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, _rest = text[1:].partition("]")
        if not bracket:
            return None
        text = host
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return unmapped(address)


def unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 client behind an IPv4-mapped or a NAT64 IPv6 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@lru_cache(maxsize=8)
def networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """TRUSTED_PROXIES as networks (a bare address is a /32 or /128)."""
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _trusted(address: IPAddress, proxies: Iterable[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, proxies: tuple[str, ...]
) -> str | None:
    """The client's address as text: the peer's, or the one trusted proxies
    forwarded for (see the module). A peer that is not an address (a Unix
    socket's) is returned as it is."""
    current = parse_address(peer) if peer else None
    if current is None:
        return peer
    trusted = networks(proxies)
    if not trusted or not _trusted(current, trusted) or not forwarded_for:
        return str(current)
    hops = [hop for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break  # not an address: the last trusted view stands
        current = address
        if not _trusted(address, trusted):
            break
    return str(current)


def from_proxy(peer: str | None, proxies: tuple[str, ...]) -> bool:
    """Whether the socket's peer is one of TRUSTED_PROXIES."""
    address = parse_address(peer) if peer else None
    return address is not None and _trusted(address, networks(proxies))


def client_key(address: str | None) -> str:
    """What a client's budgets are counted under: its address, IPv6 by /64."""
    parsed = parse_address(address) if address else None
    if parsed is None:
        return address or UNKNOWN
    if parsed.version == 6:
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return str(parsed)
