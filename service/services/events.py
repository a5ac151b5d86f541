"""Who is calling (address, user agent), and the security log of what they did."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

# Failed and throttled logins, for whoever watches for attacks: the address is
# the client's as TRUSTED_PROXIES lets it be known, not the nearest proxy's.
security_logger = logging.getLogger("service.security")


@dataclass(frozen=True, slots=True)
class Client:
    ip: str | None
    user_agent: str | None


def security_event(event: str, client: Client, **fields: Any) -> None:
    details = " ".join(f"{name}={value}" for name, value in fields.items())
    security_logger.warning(
        "%s client_ip=%s %s",
        event,
        client.ip,
        details,
        extra={"fields": {"event": event, "client_ip": client.ip, **fields}},
    )
