"""A real DNS server on the loopback whose answers a test changes.

It plays Docker's embedded DNS for the load balancer: one A record per running
replica of a service name, with a TTL of 0 so nothing caches past the answer.
dnslib encodes and decodes the wire format; the server runs in a thread.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from typing import Any

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Zone(BaseResolver):  # type: ignore[misc]
    """Names and their A records; every other question gets NXDOMAIN."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[str]] = {}
        self.questions: Counter[str] = Counter()

    def set(self, name: str, addresses: list[str]) -> None:
        with self._lock:
            self._records[name.rstrip(".").lower()] = list(addresses)

    def addresses(self, name: str) -> list[str]:
        with self._lock:
            return list(self._records.get(name.rstrip(".").lower(), []))

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        with self._lock:
            self.questions[name] += 1
            known = name in self._records
            addresses = list(self._records.get(name, []))
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype in (QTYPE.A, QTYPE.ANY):
            for address in addresses:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=0))
        return reply


class LoopbackDNS:
    """A UDP DNS server for `zone` on 127.0.0.1 and a free port."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.port = free_udp_port()
        self._server = DNSServer(
            zone, address="127.0.0.1", port=self.port, logger=_Quiet()
        )

    def start(self) -> None:
        self._server.start_thread()

    def stop(self) -> None:
        self._server.stop()
        self._server.server.server_close()


class _Quiet:
    """dnslib's logger interface, silent: a test reads `Zone.questions` instead."""

    def log_recv(self, *_: Any) -> None: ...
    def log_send(self, *_: Any) -> None: ...
    def log_request(self, *_: Any) -> None: ...
    def log_reply(self, *_: Any) -> None: ...
    def log_truncated(self, *_: Any) -> None: ...
    def log_error(self, *_: Any) -> None: ...
    def log_data(self, *_: Any) -> None: ...
