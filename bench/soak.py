"""Soak the elastic fleet: a mixed workload through HAProxy while replicas come and go.

From the repository root (PostgreSQL at 127.0.0.1:5432, Redis at 127.0.0.1:6379,
Debian's haproxy installed):

    .venv/bin/python bench/soak.py                     # 10 min, 256 connections
    .venv/bin/python bench/soak.py --duration 120 --replace-every 30   # short

It builds the image the way tests/system/stack.py does (the Dockerfile's commands into a
fresh virtualenv, compose's migrate, the image's ENTRYPOINT/CMD per replica on
its own 127.0.0.x address), puts the real HAProxy with deploy/haproxy.cfg in
front, finding replicas through a DNS server on the loopback, and then:

- keeps the first replica the whole run (the long-lived one) and samples its
  RSS every `--sample-every` seconds;
- every `--replace-every` seconds replaces the oldest of the others: a new one
  at a new address, in DNS, then the old one out of DNS and SIGTERMed
  (`up --build`);
- at 1/3 of the run scales 2 -> 3 replicas, at 2/3 back to 2 (`--scale`);
- drives `--connections` keep-alive clients through HAProxy: reads of the
  caller, the users and posts pages, a post written, a profile patched.

Every answer that is not the expected 2xx, and every connection error, is a
failure. It prints requests, failures, statuses, the RSS of HAProxy (the
other process that lives through the run), of each replica when it started
serving and when it was stopped, and the long-lived replica's samples: after
`--warmup` seconds, each must stay within `--rss-tolerance` (5 %) of the first
sample after it. Exit status 1 on any failure or RSS past that. It uses its
own database (soak_<pid>) and drops it at the end; every loop is bounded by
the duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import (  # noqa: E402
    ADMIN_DSN,
    bearer,
    drop_database,
    recreate_database,
)
from tests.system.stack import (  # noqa: E402
    Deployment,
    HTTPConnection,
    Replica,
    fetch,
    make_workdir,
)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def group_rss_mib(leader: int) -> float:
    """RSS of every process in the group `leader` leads (hypercorn and its worker)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) != leader:  # pgrp
                continue
            total += int((entry / "statm").read_text().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


START = time.monotonic()


def clock() -> str:
    """Seconds since the script started, to line failures up with the events."""
    return f"{time.monotonic() - START:7.1f} s"


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def pid_of(process: Any) -> int:
    if process is None:
        raise RuntimeError("the process is not running")
    pid: int = process.pid
    return pid


def rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE / 2**20


@dataclass
class Tally:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    per_kind: Counter[str] = field(default_factory=Counter)


async def client(
    port: int, token: str, user_id: int, stop_at: float, tally: Tally, seed: int
) -> None:
    rng = random.Random(seed)  # noqa: S311 (a workload mix, not a secret)
    connection = HTTPConnection(port)
    auth = bearer(token)
    try:
        while time.monotonic() < stop_at:
            roll = rng.random()
            if roll < 0.35:
                kind, method, path, body, ok = (
                    "me",
                    "GET",
                    "/api/v1/users/me",
                    None,
                    200,
                )
            elif roll < 0.55:
                kind, method, path, body, ok = (
                    "users",
                    "GET",
                    "/api/v1/users?per_page=20",
                    None,
                    200,
                )
            elif roll < 0.75:
                kind, method, path, body, ok = (
                    "posts",
                    "GET",
                    "/api/v1/posts?per_page=20",
                    None,
                    200,
                )
            elif roll < 0.85:
                kind, method, path, body, ok = (
                    "post",
                    "POST",
                    "/api/v1/posts",
                    {"title": f"soak {seed}", "content": "a post written by the soak"},
                    201,
                )
            elif roll < 0.95:
                kind, method, path, body, ok = (
                    "patch",
                    "PATCH",
                    f"/api/v1/users/{user_id}",
                    {"last_name": f"Soak{rng.randrange(1000)}"},
                    200,
                )
            else:
                kind, method, path, body, ok = "healthz", "GET", "/healthz", None, 200
            tally.sent += 1
            tally.per_kind[kind] += 1
            try:
                async with asyncio.timeout(30):
                    reply = await connection.request(
                        method, path, json_body=body, headers=auth
                    )
            except (OSError, EOFError, ValueError, TimeoutError) as error:
                tally.failures.append(f"{clock()} {method} {path}: {error!r}")
                await connection.close()
                continue
            tally.statuses[reply.status] += 1
            if reply.status != ok:
                tally.failures.append(
                    f"{clock()} {method} {path}: {reply.status} {reply.body[:200]!r}"
                )
    finally:
        await connection.close()


@dataclass
class Fleet:
    stack: Deployment
    # Never replaced nor scaled away: the replica whose memory is watched.
    kept: Replica
    events: list[str] = field(default_factory=list)
    replica_rss: list[tuple[str, float, float]] = field(default_factory=list)
    started_rss: dict[str, float] = field(default_factory=dict)
    kept_rss: list[tuple[float, float]] = field(default_factory=list)

    def note(self, text: str) -> None:
        line = f"{clock()}  {text}"
        self.events.append(line)
        say(line)

    async def add(self) -> Replica:
        replica = self.stack.add_replica()
        await asyncio.to_thread(self.stack.start_replica, replica)
        await asyncio.to_thread(self.stack.wait_replica, replica, 60)
        self.stack.publish()
        self.started_rss[replica.host] = group_rss_mib(pid_of(replica.process))
        return replica

    async def remove(self, replica: Replica) -> None:
        process = replica.process
        if process is None:
            raise RuntimeError(f"{replica.host} never started")
        end_rss = group_rss_mib(process.pid)
        self.stack.publish([r for r in self.stack.replicas if r is not replica])
        self.stack.replicas.remove(replica)
        # Docker stops a container after its DNS record is gone; HAProxy asks
        # every second and drops a missing address after `hold obsolete`.
        await asyncio.sleep(3)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 30)
        self.replica_rss.append(
            (replica.host, self.started_rss.get(replica.host, 0.0), end_rss)
        )
        self.note(f"removed {replica.host} (exit {code}, RSS {end_rss:.0f} MiB)")

    def others(self) -> list[Replica]:
        """The replicas that come and go, oldest first."""
        return [r for r in self.stack.replicas if r is not self.kept]

    async def sample_kept(self, stop_at: float, every: float) -> None:
        """The long-lived replica's RSS, (seconds since the load began, MiB)."""
        started = time.monotonic()
        leader = pid_of(self.kept.process)
        while time.monotonic() < stop_at:
            self.kept_rss.append(
                (round(time.monotonic() - started, 1), group_rss_mib(leader))
            )
            await asyncio.sleep(min(every, max(0.0, stop_at - time.monotonic())))

    async def run(self, duration: float, replace_every: float) -> None:
        t0 = time.monotonic()
        stop_at = t0 + duration
        scale_up_at = t0 + duration / 3
        scale_down_at = t0 + 2 * duration / 3
        next_replace = t0 + replace_every
        scaled_up = scaled_down = False
        while time.monotonic() < stop_at - 5:
            now = time.monotonic()
            if not scaled_up and now >= scale_up_at:
                scaled_up = True
                replica = await self.add()
                self.note(f"scaled 2 -> 3: added {replica.host}")
            elif scaled_up and not scaled_down and now >= scale_down_at:
                scaled_down = True
                await self.remove(self.others()[-1])
                self.note("scaled 3 -> 2")
            elif now >= next_replace:
                next_replace += replace_every
                old = self.others()[0]
                new = await self.add()
                self.note(f"replacing {old.host} with {new.host}")
                await self.remove(old)
            await asyncio.sleep(0.5)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    database = f"soak_{os.getpid()}"
    base = ADMIN_DSN.rsplit("/", 1)[0]
    await recreate_database(database)
    workdir = make_workdir("soak-")
    stack = Deployment(
        workdir, f"{base}/{database}", args.redis_url, replica_count=args.replicas
    )
    try:
        say("building the image's venv ...")
        await asyncio.to_thread(stack.build)
        migrated = await asyncio.to_thread(stack.migrate)
        if migrated.returncode != 0:
            raise SystemExit(f"migrate failed:\n{migrated.stderr}")
        await asyncio.to_thread(stack.ensure_replicas)
        await asyncio.to_thread(stack.start_lb)
        if stack.lb is None:
            raise SystemExit("HAProxy did not start")
        lb_pid = pid_of(stack.lb.process)
        port = stack.lb_port
        deadline = time.monotonic() + 30
        while (await fetch(port, "GET", "/readyz")).status != 200:
            if time.monotonic() > deadline:
                raise SystemExit("the fleet never became ready behind HAProxy")
            await asyncio.sleep(0.2)
        login = await fetch(
            port,
            "POST",
            "/api/v1/auth/login",
            json_body={
                "email": stack.secrets["ADMIN_EMAIL"],
                "password": stack.secrets["ADMIN_PASSWORD"],
            },
        )
        token = login.json()["access_token"]
        me = await fetch(port, "GET", "/api/v1/users/me", headers=bearer(token))
        user_id = me.json()["id"]
        fleet = Fleet(stack, kept=stack.replicas[0])
        for replica in stack.replicas:
            fleet.started_rss[replica.host] = group_rss_mib(pid_of(replica.process))
        lb_rss_start = rss_mib(lb_pid)
        tally = Tally()
        stop_at = time.monotonic() + args.duration
        fleet.note(f"load: {args.connections} connections for {args.duration:.0f} s")
        started = time.monotonic()
        await asyncio.gather(
            fleet.run(args.duration, args.replace_every),
            fleet.sample_kept(stop_at, args.sample_every),
            *(
                client(port, token, user_id, stop_at, tally, seed)
                for seed in range(args.connections)
            ),
        )
        elapsed = time.monotonic() - started
        lb_rss_end = rss_mib(lb_pid)
        for replica in list(stack.replicas):
            fleet.replica_rss.append(
                (
                    replica.host,
                    fleet.started_rss.get(replica.host, 0.0),
                    group_rss_mib(pid_of(replica.process)),
                )
            )
        retried = [e for e in stack.lb.log() if e.get("retries", "0") != "0"]
        after_warmup = [mib for at, mib in fleet.kept_rss if at >= args.warmup]
        drift = (
            max(abs(mib - after_warmup[0]) for mib in after_warmup) / after_warmup[0]
            if after_warmup
            else None
        )
        return {
            "duration_s": round(elapsed, 1),
            "connections": args.connections,
            "requests": tally.sent,
            "requests_per_s": round(tally.sent / elapsed, 1),
            "failed": len(tally.failures),
            "failures_sample": tally.failures[:20],
            "statuses": dict(tally.statuses),
            "mix": dict(tally.per_kind),
            "lb_retried_requests": len(retried),
            "lb_rss_mib": [round(lb_rss_start, 1), round(lb_rss_end, 1)],
            "replica_rss_mib_start_end": [
                (host, round(start, 1), round(end, 1))
                for host, start, end in fleet.replica_rss
            ],
            "kept_replica": fleet.kept.host,
            # "seconds into the load: MiB", one string to keep the report short.
            "kept_replica_rss_mib": ", ".join(
                f"{at:.0f} s: {mib:.1f}" for at, mib in fleet.kept_rss
            ),
            # The largest distance from the first sample after the warm-up.
            "kept_replica_rss_drift_after_warmup": (
                None if drift is None else round(drift, 4)
            ),
            "kept_replica_rss_flat": drift is not None and drift <= args.rss_tolerance,
            "events": fleet.events,
        }
    finally:
        await asyncio.to_thread(stack.stop)
        shutil.rmtree(workdir, ignore_errors=True)
        await drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--replace-every", type=float, default=60.0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds before RSS must be flat"
    )
    parser.add_argument("--rss-tolerance", type=float, default=0.05)
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    args = parser.parse_args()
    if args.replicas < 2:
        parser.error("--replicas: at least 2, one kept and one replaced")
    result = asyncio.run(soak(args))
    say(json.dumps(result, indent=2))
    sys.exit(1 if result["failed"] or not result["kept_replica_rss_flat"] else 0)


if __name__ == "__main__":
    main()
