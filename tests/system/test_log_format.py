"""Every line a served instance writes, on stdout and stderr, is in LOG_FORMAT
(issue 24, item 3): Hypercorn's own lines included, each once."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx

from tests.support import ROOT
from tests.system.harness import ServedApp, clean_environment

# A record as service.telemetry.logs.TextFormatter writes it.
TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"[\w.]+: \S"
)


async def served_lines(database_url: str, folder: Path, log_format: str) -> list[str]:
    """Every line an instance wrote (stdout and stderr, one file), from start
    to SIGTERM, having served a request."""
    env = clean_environment(
        DATABASE_URL=database_url, LOG_FORMAT=log_format, LOG_LEVEL="INFO"
    )
    instance = await asyncio.to_thread(ServedApp, env, ROOT, folder)
    try:
        async with httpx.AsyncClient(base_url=instance.base_url) as client:
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await asyncio.to_thread(instance.stop)
    return instance.read_log().splitlines()


async def test_every_line_is_json_and_hypercorn_starts_once(
    served_database_url: str, tmp_path: Path
) -> None:
    lines = await served_lines(served_database_url, tmp_path, "json")

    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    running = [e for e in entries if e["message"].startswith("Running on ")]
    assert [e["logger"] for e in running] == ["hypercorn.error"]
    assert any(e["logger"] == "service.access" for e in entries)


async def test_every_line_is_text_and_hypercorn_starts_once(
    served_database_url: str, tmp_path: Path
) -> None:
    lines = await served_lines(served_database_url, tmp_path, "text")

    assert [line for line in lines if not TEXT_LINE.match(line)] == []
    assert len([line for line in lines if "hypercorn.error: Running on " in line]) == 1
    assert any(" service.access: GET /healthz 200" in line for line in lines)
