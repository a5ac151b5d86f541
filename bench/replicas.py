"""S2 (GET /users) with one read replica against without, in one run.

From the repository root:  .venv/bin/python bench/replicas.py [--reps 3 --duration 5]

Makes its own primary and streaming hot standby (tests/system/standbys.py:
initdb on a free port, pg_basebackup -R; never the server on 5432), migrates
and seeds a bench_replicas database on the primary as bench/run.py does, and
starts two services on the same `hypercorn -c hypercorn.toml`: "primary" (no
replica) and "replica" (DATABASE_REPLICA_URL = the standby). Then, alternating
the two, S2 under wrk in two phases:

  quiet    the standby caught up, nothing writing
  behind   the standby applying WAL 2 s late (recovery_min_apply_delay) while
           a writer commits a row every 50 ms: every read must go to the primary

and prints, per phase and service, rps, latency, errors, the service's and each
PostgreSQL's CPU per request, transactions per request on the standby, and
where the replica service says its reads went (its /metrics). Writes
bench/results/<timestamp>-replicas.json. bench/run.py is left alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    CLK_TCK,
    LIST,
    RESULTS,
    SERVE_BIN,
    Postgres,
    Server,
    Stream,
    cpu_ticks,
    free_ports,
    log,
    login,
    out,
    run_wrk,
    seed,
    service_env,
    start_server,
    sync_serving_venv,
    wait_ready,
)
from tests.system.standbys import ReplicatedPair  # noqa: E402

DB = "bench_replicas"
METRICS_TOKEN = "bench-metrics-token-0123456789abcdef"  # noqa: S105
S2 = Stream("S2 GET /users", "service", "GET", LIST, 64, auth=True)
WRITE_EVERY = 0.05


def postmaster(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().split()[0])


def replica_metrics(server: Server) -> dict[str, float]:
    conn_status, body = request_with_token(server.port, "/metrics", METRICS_TOKEN)
    if conn_status != 200:
        return {}
    found = {}
    for line in body.decode().splitlines():
        if line.startswith(("db_replica_reads_total", "db_replica_fallbacks_total")):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def request_with_token(port: int, path: str, token: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Writer(threading.Thread):
    """A row committed on the primary every WRITE_EVERY seconds, until halted."""

    def __init__(self, pg: Postgres) -> None:
        super().__init__(daemon=True)
        self.pg, self.halt, self.writes = pg, threading.Event(), 0

    def run(self) -> None:
        cmd = ["psql", "-d", self.pg.url(), "-v", "ON_ERROR_STOP=1", "-Atq"]
        with subprocess.Popen(  # noqa: S603
            cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        ) as psql:
            if psql.stdin is None:
                return
            while not self.halt.wait(WRITE_EVERY):
                psql.stdin.write(
                    "UPDATE users SET updated_at = now() AT TIME ZONE 'utc' "
                    "WHERE email = 'bench2@example.com';\n"
                )
                psql.stdin.flush()
                self.writes += 1
            psql.stdin.close()


def measure(
    server: Server,
    pair: ReplicatedPair,
    standby_pg: Postgres,
    seconds: float,
    tmp: Path,
) -> dict[str, Any]:
    primary_pid = postmaster(pair.primary.data)
    standby_pid = postmaster(pair.replica.data)
    metrics0 = replica_metrics(server)
    standby_xacts0 = standby_pg.xacts()
    cpu0 = [cpu_ticks(pid) for pid in (server.proc.pid, primary_pid, standby_pid)]
    [result] = run_wrk([S2], server, seconds, tmp)
    cpu1 = [cpu_ticks(pid) for pid in (server.proc.pid, primary_pid, standby_pid)]
    time.sleep(1.1)  # PostgreSQL publishes a backend's stats once a second
    standby_xacts1 = standby_pg.xacts()
    metrics1 = replica_metrics(server)
    requests = result["requests"]
    per_request = [
        (after - before) / CLK_TCK * 1000 / requests if requests else None
        for before, after in zip(cpu0, cpu1, strict=True)
    ]
    return {
        "server": server.name,
        "rps": requests / (result["duration_us"] / 1e6),
        "p50_ms": result["p50"] / 1000,
        "p99_ms": result["p99"] / 1000,
        "errors": result["status"]
        + sum(result[k] for k in ("connect", "read", "write", "timeout")),
        "service_cpu_ms": per_request[0],
        "primary_cpu_ms": per_request[1],
        "standby_cpu_ms": per_request[2],
        "standby_xacts_per_req": (standby_xacts1 - standby_xacts0) / requests
        if standby_xacts0 is not None and standby_xacts1 is not None and requests
        else None,
        "reads": {
            key: metrics1[key] - metrics0.get(key, 0.0)
            for key in metrics1
            if metrics1[key] - metrics0.get(key, 0.0)
        },
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"reps": len(rows), "server": rows[0]["server"]}
    for key in (
        "rps",
        "p50_ms",
        "p99_ms",
        "service_cpu_ms",
        "primary_cpu_ms",
        "standby_cpu_ms",
        "standby_xacts_per_req",
    ):
        values = [row[key] for row in rows if row[key] is not None]
        summary[key] = statistics.median(values) if values else None
    summary["errors"] = sum(row["errors"] for row in rows)
    summary["rps_all_reps"] = [round(row["rps"]) for row in rows]
    reads: dict[str, float] = {}
    for row in rows:
        for key, value in row["reads"].items():
            reads[key] = reads.get(key, 0.0) + value
    summary["reads"] = reads
    return summary


def fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--posts", type=int, default=3000)
    ap.add_argument("--workers", type=int, help="hypercorn -w N")
    args = ap.parse_args()
    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    return args


def main() -> int:
    args = parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    log("primary + streaming standby: initdb, pg_basebackup -R")
    pair = ReplicatedPair()
    servers: dict[str, Server] = {}
    results: dict[str, list[dict[str, Any]]] = {}
    writer: Writer | None = None
    try:
        pg = Postgres(f"postgresql://postgres@127.0.0.1:{pair.primary.port}", DB)
        standby_pg = Postgres(
            f"postgresql://postgres@127.0.0.1:{pair.replica.port}", DB
        )
        pg.recreate()
        sync_serving_venv()
        env = service_env(pg.url(), METRICS_TOKEN=METRICS_TOKEN, LOG_LEVEL="WARNING")
        migrated = subprocess.run(  # noqa: S603
            [str(SERVE_BIN / "alembic"), "upgrade", "head"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if migrated.returncode != 0:
            raise RuntimeError(f"alembic: {migrated.stderr[-2000:]}")
        seed(pg, args.users, args.posts)
        asyncio.run(pair.wait_caught_up())
        ports = free_ports(2)
        servers["primary"] = start_server(
            "primary", "service.asgi:app", ports[0], env, args
        )
        servers["replica"] = start_server(
            "replica",
            "service.asgi:app",
            ports[1],
            env | {"DATABASE_REPLICA_URL": standby_pg.url()},
            args,
        )
        for server in servers.values():
            wait_ready(server, "/healthz", args.workers or 1)
            login(server)
        asyncio.run(pair.wait_caught_up())  # the logins wrote sessions
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            for server in servers.values():
                run_wrk([S2], server, args.warmup, tmp)
            for phase in ("quiet", "behind"):
                if phase == "behind":
                    asyncio.run(pair.hold_back(2.0))
                    writer = Writer(pg)
                    writer.start()
                    time.sleep(2.5)  # the delay applies to what arrives from now on
                else:
                    asyncio.run(pair.wait_caught_up())
                log(f"phase {phase}: S2 x {args.reps} reps x {args.duration} s each")
                for rep in range(args.reps):
                    order = list(servers.values())
                    for server in order if rep % 2 == 0 else order[::-1]:
                        row = measure(server, pair, standby_pg, args.duration, tmp)
                        results.setdefault(f"{phase}/{server.name}", []).append(row)
                        log(
                            f"  {phase} {server.name}: {row['rps']:.0f} rps, "
                            f"p99 {row['p99_ms']:.1f} ms, reads {row['reads']}"
                        )
                if writer is not None:
                    writer.halt.set()
                    writer.join()
                    log(f"writer committed {writer.writes} rows")
    finally:
        if writer is not None:
            writer.halt.set()
        for server in servers.values():
            server.stop()
        with contextlib.suppress(Exception):
            asyncio.run(pair.hold_back(0))
        pair.remove()
    summary = {key: summarize(rows) for key, rows in results.items()}
    out()
    out(
        "| phase / service | rps | p50 ms | p99 ms | errors | service CPU ms/req "
        "| primary PG CPU ms/req | standby PG CPU ms/req | standby xacts/req "
        "| reads (replica service) |"
    )
    out("|---|---|---|---|---|---|---|---|---|---|")
    for key, row in summary.items():
        reads = ", ".join(
            f"{name.split('{')[1].rstrip('}')}: {value:.0f}"
            for name, value in sorted(row["reads"].items())
        )
        out(
            f"| {key} | {row['rps']:.0f} {row['rps_all_reps']} | {row['p50_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {row['errors']} | {fmt(row['service_cpu_ms'])} "
            f"| {fmt(row['primary_cpu_ms'])} | {fmt(row['standby_cpu_ms'])} "
            f"| {fmt(row['standby_xacts_per_req'])} | {reads or '-'} |"
        )
    path = RESULTS / f"{args.stamp}-replicas.json"
    path.write_text(json.dumps({"summary": summary, "runs": results}, indent=2))
    log(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
