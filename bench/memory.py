"""Memory a client can make the service hold: resident size before and after.

From the repository root:  .venv/bin/python bench/memory.py [--count 100000]

For each throttle backend (memory, then Redis at --redis) a fresh process runs the
app in-process on a fresh PostgreSQL database (bench_memory, migrated) and sends it,
through Quart's ASGI test client, --count failed logins with distinct emails, then
--count requests with made-up methods, printing its RSS before, between and after.

The address budget is raised out of the way (one client sends everything) so that
every failure reaches an account counter; the password check answers "wrong" at
once instead of spending 100 ms of scrypt: what is measured is what the requests
leave behind (throttle counters, metrics series), not the hash pool.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATABASE = "bench_memory"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(
    logins: int, methods: int, direct: int, concurrency: int
) -> dict[str, object]:
    from service import create_app
    from service.api.hashing import HASHER_KEY
    from service.config import Settings
    from service.security.passwords import PasswordHasher
    from service.throttle.lifecycle import THROTTLE_KEY

    class WrongAtOnce(PasswordHasher):
        async def verify(self, password_hash: str | None, password: str) -> bool:
            return False

    app = create_app(Settings.from_env())
    async with app.test_app():
        app.extensions[HASHER_KEY].shutdown()
        app.extensions[HASHER_KEY] = WrongAtOnce(1)
        client = app.test_client()
        statuses: dict[str, int] = {}
        slots = asyncio.Semaphore(concurrency)
        run = uuid.uuid4().hex[:8]

        async def login(number: int) -> None:
            async with slots:
                response = await client.post(
                    "/api/v1/auth/login",
                    json={"email": f"m{run}-{number}@example.com", "password": "x"},
                )
            key = f"login {response.status_code}"
            statuses[key] = statuses.get(key, 0) + 1

        async def made_up(number: int) -> None:
            async with slots:
                no_body: dict[str, Any] = {}
                response = await client.open(
                    "/healthz", method=f"X{run}{number}", **no_body
                )
            key = f"method {response.status_code}"
            statuses[key] = statuses.get(key, 0) + 1

        async def batch(work: object, start: int, stop: int) -> float:
            began = time.perf_counter()
            for low in range(start, stop, 1000):
                await asyncio.gather(
                    *(work(n) for n in range(low, min(low + 1000, stop)))  # type: ignore[operator]
                )
            return time.perf_counter() - began

        throttle = app.extensions[THROTTLE_KEY]

        async def failure(number: int) -> None:
            # What the login route does around a wrong password, without the
            # request around it: fast enough for 100k on a busy database.
            async with (
                slots,
                throttle.guess(f"d{run}-{number}@x.example", "192.0.2.1") as guess,
            ):
                guess.failed()

        # Warm up: imports, pools, caches, the first series of each kind.
        await batch(login, 0, 200)
        await batch(made_up, 0, 200)
        await batch(failure, 0, 200)
        gc.collect()
        rss = {"before": rss_mib()}
        seconds = {}
        for name, work, count in (
            ("http_logins", login, logins),
            ("throttle_failures", failure, direct),
            ("http_methods", made_up, methods),
        ):
            seconds[name] = await batch(work, 1000, 1000 + count)
            gc.collect()
            rss[f"after_{name}"] = rss_mib()
        store = throttle.store
        kept = len(store) if hasattr(store, "__len__") else None
    return {
        "counts": {
            "http_logins": logins,
            "throttle_failures": direct,
            "http_methods": methods,
        },
        "rss_mib": {k: round(v, 1) for k, v in rss.items()},
        "per_second": {
            name: round(count / seconds[name])
            for name, count in (
                ("http_logins", logins),
                ("throttle_failures", direct),
                ("http_methods", methods),
            )
        },
        "memory_store_keys": kept,
        "statuses": statuses,
    }


def psql(pg: str, sql: str) -> None:
    command = ["psql", f"{pg}/postgres", "-q", "-c", sql]
    # psql from PATH, as bench/run.py uses it.
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=100_000, help="over the app")
    parser.add_argument("--failures", type=int, default=100_000, help="throttle only")
    parser.add_argument("--methods", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--backends", default="memory,redis")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = asyncio.run(
            measure(args.logins, args.methods, args.failures, args.concurrency)
        )
        sys.stdout.write(json.dumps(result) + "\n")
        return

    psql(args.pg, f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    psql(args.pg, f'CREATE DATABASE "{DATABASE}"')
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"{args.pg}/{DATABASE}",
        "LOGIN_MAX_FAILURES_PER_IP": "1000000000",
        "LOG_LEVEL": "WARNING",
    }
    try:
        subprocess.run(  # noqa: S603 (the venv's alembic)
            [str(BIN / "alembic"), "upgrade", "head"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        for backend in args.backends.split(","):
            child_env = dict(env)
            if backend == "redis":
                child_env["REDIS_URL"] = args.redis
                # Its own keys: they expire with the window, and meet no one's.
                child_env["REDIS_KEY_PREFIX"] = f"bench-memory-{uuid.uuid4().hex[:8]}:"
            began = time.perf_counter()
            done = subprocess.run(  # noqa: S603 (this script, as a child)
                [
                    sys.executable,
                    __file__,
                    "--child",
                    backend,
                    "--logins",
                    str(args.logins),
                    "--methods",
                    str(args.methods),
                    "--failures",
                    str(args.failures),
                    "--concurrency",
                    str(args.concurrency),
                ],
                cwd=ROOT,
                env=child_env,
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            result["backend"] = backend
            result["seconds"] = round(time.perf_counter() - began)
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    finally:
        psql(args.pg, f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


if __name__ == "__main__":
    main()
