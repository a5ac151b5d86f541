"""Headless Chromium driven over the DevTools protocol, for tests of real pages.

A small client, enough for tests that drive a real browser: `launch()` starts
Debian's `chromium` with a fresh profile and connects to its DevTools
websocket; `Browser.new_page()` opens a tab and attaches to it; `Page.send()`
runs any CDP command in that tab (`WebAuthn.*`, `Network.*`, ...),
`Page.evaluate()` runs a script and awaits its promise, `Page.wait_for_event()`
waits for a CDP event. `serve_html()` serves a page from http://localhost:PORT,
a secure context for APIs such as WebAuthn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from websockets.asyncio.client import ClientConnection, connect

from tests.support import serve_get

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SKIP_REASON = "no chromium (Debian's package `chromium`)"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
START_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0


class CdpError(RuntimeError):
    """A command the browser refused, or a script that threw."""


class Browser:
    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self._reader = asyncio.create_task(self._read())

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """One CDP command; its `result`, or CdpError with the browser's message."""
        message: dict[str, Any] = {
            "id": next(self._ids),
            "method": method,
            "params": params or {},
        }
        if session_id is not None:
            message["sessionId"] = session_id
        reply = asyncio.get_running_loop().create_future()
        self._replies[message["id"]] = reply
        await self._connection.send(json.dumps(message))
        answer = await asyncio.wait_for(reply, COMMAND_TIMEOUT)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error'].get('message')}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def expect_event(
        self, method: str, *, session_id: str | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """A future for the next `method` event; ask before causing it."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((method, session_id, future))
        return future

    async def new_page(self, url: str = "about:blank") -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        if url != "about:blank":
            await page.navigate(url)
        return page

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.send("Browser.close"), 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._connection.close()

    async def _read(self) -> None:
        async for raw in self._connection:
            message = json.loads(raw)
            if "id" in message:
                reply = self._replies.pop(message["id"], None)
                if reply is not None and not reply.done():
                    reply.set_result(message)
                continue
            for waiter in list(self._waiters):
                method, session_id, future = waiter
                if method == message.get("method") and session_id in (
                    None,
                    message.get("sessionId"),
                ):
                    self._waiters.remove(waiter)
                    if not future.done():
                        future.set_result(message.get("params", {}))


class Page:
    """One tab, attached in flat mode: its commands carry its session id."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    async def send(
        self, method: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self.browser.send(method, params, session_id=self.session_id)

    async def wait_for_event(self, method: str) -> dict[str, Any]:
        return await asyncio.wait_for(
            self.browser.expect_event(method, session_id=self.session_id),
            COMMAND_TIMEOUT,
        )

    async def navigate(self, url: str) -> None:
        """Open `url` and wait for its load event."""
        loaded = self.browser.expect_event(
            "Page.loadEventFired", session_id=self.session_id
        )
        result = await self.send("Page.navigate", {"url": url})
        if "errorText" in result:
            raise CdpError(f"{url}: {result['errorText']}")
        await asyncio.wait_for(loaded, COMMAND_TIMEOUT)

    async def evaluate(self, expression: str) -> Any:
        """The script's value (a promise is awaited), as JSON; CdpError if it threw."""
        result = await self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "userGesture": True,
            },
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {})
            raise CdpError(thrown.get("description") or details.get("text"))
        return result["result"].get("value")


@contextlib.asynccontextmanager
async def launch(profile: Path, *extra_args: str) -> AsyncIterator[Browser]:
    """Chromium headless on a fresh profile folder; closed (and reaped) on exit."""
    if CHROMIUM is None:
        raise RuntimeError(SKIP_REASON)
    log = _log_file(profile)
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        *extra_args,
        "about:blank",
        stdout=log,
        stderr=log,
        env={**os.environ, "HOME": str(profile)},
    )
    try:
        endpoint = await _devtools_endpoint(profile, process)
        async with connect(endpoint, max_size=None) as connection:
            browser = Browser(connection)
            try:
                yield browser
            finally:
                await browser.close()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


async def _devtools_endpoint(profile: Path, process: asyncio.subprocess.Process) -> str:
    # With port 0 Chromium picks a free port and writes it, with the browser's
    # websocket path, to DevToolsActivePort in its profile: no port race.
    announced = profile / "DevToolsActivePort"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while loop.time() < deadline:
        if process.returncode is not None:
            break
        lines = _lines(announced)
        if len(lines) >= 2:
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    log = "\n".join(_lines(profile / "chromium.log"))
    raise RuntimeError(f"chromium announced no DevTools port:\n{log[-2000:]}")


def _log_file(profile: Path) -> BinaryIO:
    profile.mkdir(parents=True, exist_ok=True)
    return (profile / "chromium.log").open("wb")


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


@contextlib.contextmanager
def serve_html(html: str, host: str = "localhost") -> Iterator[str]:
    """Serve `html` at every path of http://{host}:PORT/ (yielded); stopped on exit."""
    body = html.encode()
    with serve_get(lambda _: ("text/html; charset=utf-8", body)) as port:
        yield f"http://{host}:{port}"
