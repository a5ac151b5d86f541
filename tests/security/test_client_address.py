"""The client key every budget is counted under (service/security/client_address.py)."""

from __future__ import annotations

import pytest

from service.security.client_address import client_address, client_key
from service.throttle.keys import ip_key

KEYS = {
    "ipv4": ("203.0.113.9", "203.0.113.9"),
    "ipv6-by-its-64": ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    "another-address-of-the-same-64": ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
    "ipv4-mapped": ("::ffff:198.51.100.4", "198.51.100.4"),
    "nat64": ("64:ff9b::c633:6404", "198.51.100.4"),
    "with-a-port": ("198.51.100.4:4444", "198.51.100.4"),
    "none": (None, "unknown"),
    "not-an-address": ("<local>", "<local>"),
}


@pytest.mark.parametrize(("address", "key"), KEYS.values(), ids=list(KEYS))
def test_client_key(address: str | None, key: str) -> None:
    assert client_key(address) == key


def test_login_throttle_and_route_limits_share_the_key() -> None:
    for address in ("::ffff:198.51.100.4", "198.51.100.4", "64:ff9b::c633:6404"):
        assert ip_key(address) == "login:ip:198.51.100.4"
    assert ip_key("2001:db8:1:2::1") == ip_key("2001:db8:1:2:ffff::2")


def test_every_hop_trusted_gives_the_leftmost_through_a_chain() -> None:
    proxies = ("10.0.0.0/8", "192.168.0.0/16")

    address = client_address("10.0.0.1", "192.168.1.1, 10.1.1.1, 10.2.2.2", proxies)

    assert address == "192.168.1.1"


def test_forged_hops_left_of_the_first_untrusted_one_are_ignored() -> None:
    address = client_address(
        "10.0.0.1", "10.66.66.66, 203.0.113.9, 10.0.0.2", ("10.0.0.0/8",)
    )

    assert address == "203.0.113.9"
