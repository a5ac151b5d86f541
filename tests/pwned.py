"""A range service of the HIBP form, as a small HTTP server on a thread: GET
{url}/{prefix} answers SUFFIX:COUNT lines, padded; it can be made slow."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            service.requests.append((self.path, self.headers.get("Add-Padding")))
            if service.delay:
                time.sleep(service.delay)
            body = service.answer(self.path.rsplit("/", 1)[-1]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield service, f"http://127.0.0.1:{server.server_address[1]}/range"
    finally:
        server.shutdown()
        server.server_close()
