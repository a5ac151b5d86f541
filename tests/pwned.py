"""A range service of the HIBP form, as a small HTTP server on a thread: GET
{url}/{prefix} answers SUFFIX:COUNT lines, padded; it can be made slow."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.support import serve_get


def sha1(password: str) -> str:
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


@dataclass
class RangeService:
    """The HIBP range API's form: GET /{prefix} answers SUFFIX:COUNT lines."""

    breached: set[str] = field(default_factory=set)
    delay: float = 0.0
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def answer(self, prefix: str) -> str:
        lines = [f"{h[5:]}:{3}" for h in map(sha1, self.breached) if h[:5] == prefix]
        # Padding, as the real service adds when asked: count 0.
        lines += [f"{'0' * 34}{n:01X}:0" for n in range(6)]
        return "\r\n".join(lines)


@contextmanager
def serve_range(breached: set[str]) -> Iterator[tuple[RangeService, str]]:
    """The service and its URL, until the block ends."""
    service = RangeService(breached=breached)

    def answer(request: BaseHTTPRequestHandler) -> tuple[str, bytes]:
        service.requests.append((request.path, request.headers.get("Add-Padding")))
        if service.delay:
            time.sleep(service.delay)
        return "text/plain", service.answer(request.path.rsplit("/", 1)[-1]).encode()

    with serve_get(answer) as port:
        yield service, f"http://127.0.0.1:{port}/range"
