"""The service, except that a request naming this replica in `X-Hang-On` gets no
answer: the service handles it in full (a POST commits), the replica then notes
it in HANG_MARKER_FOLDER and holds the connection, answering nothing, until the
test kills it. What a replica killed between its commit and its answer looks
like to the load balancer: `hypercorn ... tests.system.hang_after_commit:app`.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

from service.asgi import app as service_app

HOST = os.environ.get("REPLICA_HOST", "")
MARKERS = Path(os.environ.get("HANG_MARKER_FOLDER", "."))


def _hang_on(scope: HTTPScope) -> str:
    for name, value in scope["headers"]:
        if name.lower() == b"x-hang-on":
            return value.decode()
    return ""


async def app(
    scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
) -> None:
    if scope["type"] != "http" or not HOST or _hang_on(scope) != HOST:
        await service_app(scope, receive, send)
        return
    answer: list[int] = []

    async def hold(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            answer.append(int(str(message["status"])))
        if message["type"] == "http.response.body" and not message.get("more_body"):
            (MARKERS / f"{HOST}.done").write_text(str(answer[0]))

    await service_app(scope, receive, hold)  # type: ignore[arg-type]
    await asyncio.Event().wait()
