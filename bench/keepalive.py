"""Keep-alive clients and early answers: does the request after one get through?

From the repository root (PostgreSQL at 127.0.0.1:5432; haproxy for --haproxy):

    .venv/bin/python bench/keepalive.py            # 5,000 pairs a kind; 64 clients 60 s
    .venv/bin/python bench/keepalive.py --haproxy  # the same through deploy/haproxy.cfg
    .venv/bin/python bench/keepalive.py --pairs 400 --duration 10    # a quick look
    .venv/bin/python bench/keepalive.py --target http://127.0.0.1:8080  # one running

Without --target it serves this tree as production does, `hypercorn -c
hypercorn.toml service.asgi:app` (tests/system/harness.py's ServedApp), on a
database of its own (keepalive_<pid>, dropped at the end). --haproxy puts
deploy/haproxy.cfg in front of the instance (tests/system/stack.py's
load_balancer), whether served here or --target.

Two measurements, with the kinds of tests/system/keepalive.py (401, 422, 404,
405, 413 with bodies of 1 to 10 MiB, 415, 400 bad JSON: each answered before
the service reads the body):

1. pairs: per kind, one keep-alive connection sends `--pairs` times the early
   answer and then GET /healthz;
2. mixed: `--clients` keep-alive clients for `--duration` seconds, half early
   answers, half ordinary requests (reads and a write with a token).

It prints a table per measurement: requests, transport errors (on the early
answer / on the request after it), unexpected statuses, connections opened.
Exit status 1 when any transport error was counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import migrated_database  # noqa: E402
from tests.system.harness import ServedApp, clean_environment  # noqa: E402
from tests.system.keepalive import (  # noqa: E402
    KINDS,
    KINDS_BY_NAME,
    Tally,
    account_token,
    error_samples,
    mixed_clients,
    pairs_on_one_connection,
    table,
    wait_until_serving,
)
from tests.system.stack import load_balancer  # noqa: E402


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def in_front(base_url: str, haproxy: bool) -> Iterator[str]:
    """The URL clients use: `base_url`, or HAProxy's in front of it."""
    if not haproxy:
        yield base_url
        return
    address = urllib.parse.urlsplit(base_url)
    if address.hostname is None or address.port is None:
        raise SystemExit(f"--target needs a host and a port: {base_url}")
    with load_balancer([address.hostname], address.port) as lb:
        url = f"http://127.0.0.1:{lb.port}"
        wait_until_serving(url)
        yield url


async def measure(url: str, args: argparse.Namespace) -> int:
    kinds = tuple(KINDS_BY_NAME[name] for name in args.kinds) if args.kinds else KINDS
    errors = 0
    if args.pairs:
        say(f"pairs: {args.pairs} per kind on one keep-alive connection ...")
        tallies: dict[str, Tally] = {}
        for index, kind in enumerate(kinds):
            started = time.monotonic()
            tallies[kind.name] = await pairs_on_one_connection(
                url, kind, args.pairs, seed=args.seed + index
            )
            say(f"  {kind.name}: {time.monotonic() - started:.1f} s")
        say()
        say(table(f"{args.pairs} pairs (early answer, then GET /healthz)", tallies))
        say()
        errors += sum(tally.errors for tally in tallies.values())
        for line in error_samples(tallies):
            say(f"  {line}")
    if args.duration:
        token = await account_token(
            url, f"keepalive-{os.getpid()}@example.com", "keepalive-password"
        )
        say(f"mixed: {args.clients} keep-alive clients for {args.duration:.0f} s ...")
        mixed = await mixed_clients(
            url,
            token,
            clients=args.clients,
            seconds=args.duration,
            seed=args.seed,
            kinds=kinds,
        )
        say()
        say(
            table(
                f"{args.clients} clients, {args.duration:.0f} s",
                dict(sorted(mixed.items())),
            )
        )
        say()
        errors += sum(tally.errors for tally in mixed.values())
        for line in error_samples(mixed):
            say(f"  {line}")
    return errors


def describe() -> str:
    revision = subprocess.run(  # noqa: S603
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("hypercorn", "quart", "h11")
    )
    return f"tree {revision or '?'}; {packages}; load {os.getloadavg()[0]:.2f}"


async def main_async(args: argparse.Namespace) -> int:
    say(f"$ {shlex.join([sys.executable, *sys.argv])}")
    say(describe())
    if args.target:
        with in_front(args.target.rstrip("/"), args.haproxy) as url:
            return await measure(url, args)
    async with migrated_database(f"keepalive_{os.getpid()}") as engine:
        database_url = engine.url.render_as_string(hide_password=False)
        env = clean_environment(DATABASE_URL=database_url)
        logs = Path(tempfile.mkdtemp(prefix="keepalive-"))
        served = await asyncio.to_thread(ServedApp, env, ROOT, logs)
        errors = 1
        try:
            with in_front(served.base_url, args.haproxy) as url:
                errors = await measure(url, args)
                return errors
        finally:
            await asyncio.to_thread(served.stop)
            if errors:
                say(f"the instance's log: {served.out}")
            else:
                shutil.rmtree(logs, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5000, help="per kind; 0 skips")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0, help="0 skips")
    parser.add_argument("--target", help="a running instance's base URL")
    parser.add_argument(
        "--haproxy", action="store_true", help="through deploy/haproxy.cfg"
    )
    parser.add_argument(
        "--kinds", nargs="*", choices=sorted(KINDS_BY_NAME), metavar="KIND"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    errors = asyncio.run(main_async(args))
    say(f"transport errors: {errors}")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
