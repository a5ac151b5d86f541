"""What budgets are counted under: emails folded as PostgreSQL folds them, client
addresses (an IPv6 /64 as one), and digests so that a store never holds an address."""

from __future__ import annotations

import hashlib

from service.security.client_address import client_key, parse_address


def fold_email(email: str) -> str:
    """What PostgreSQL's lower() makes of an address (glibc/C.UTF-8 towlower: one
    code point at a time), which is how the login lookup compares it."""
    return "".join(_fold_char(char) for char in email.strip())


def _fold_char(char: str) -> str:
    lowered = char.lower()
    # str.lower() applies full case mapping; towlower the simple one. They differ
    # only where the full mapping is longer: U+0130 (İ) lowers to i + U+0307.
    if len(lowered) == 1:
        return lowered
    return "i" if char == "\u0130" else char


def account_key(email: str) -> str:
    """The address folded as the login lookup folds it, so that every spelling of
    one account shares its budget; hashed so that Redis never holds it."""
    return f"login:account:{digest(fold_email(email))}"


def ip_key(ip: str) -> str:
    """The client's key as every route limit has it (an IPv6 /64 as one, a
    mapped or NAT64 address as its IPv4); anything else by its digest."""
    key = client_key(ip)
    if parse_address(key.partition("/")[0]) is None:
        return f"login:ip:{digest(key)}"
    return f"login:ip:{key}"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
