"""Benchmark the service on Hypercorn + PostgreSQL against a bare ASGI app, same run.

From the repository root:  .venv/bin/python bench/run.py [--scenarios S1,S2 --reps 3]

Creates a fresh database bench_service (migrated, seeded in SQL), starts the service
and bench/bare_app.py on the same `hypercorn -c hypercorn.toml`, drives them with wrk,
prints a table of medians with ratios to the bare app measured in the same run, and
writes it to bench/results/<timestamp>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
# The service runs as the image deploys it, on the locked runtime packages only:
# .venv also holds the dev group, and with pydantic there quart-schema imports
# it (about 8 MiB of every worker's memory that production never has).
SERVE_VENV = ROOT / ".venv-runtime"
SERVE_BIN = SERVE_VENV / "bin"
RESULTS = ROOT / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
EMAIL, PASSWORD = "bench0@example.com", "benchpass123"
BENCH_SECRET = "bench-run-only-secret-0f3c9a7e5d1b2468ace13579bdf02468"  # noqa: S105
# S3/S5 log one account in from one IP, again and again, with the right password:
# the throttle charges failures only, so its defaults refuse none of them.
THROTTLE = "service defaults"
TOKEN_MAX_AGE = 300.0  # access tokens live 15 min: log in again well before
ME, LIST = "/api/v1/users/me", "/api/v1/users?page=1&per_page=20"
POSTS = "/api/v1/posts?page=1&per_page=20"
# bench0 (id 1 in a fresh database) is the seed's most prolific author.
AUTHOR_POSTS = "/api/v1/users/1/posts?page=1&per_page=20"
# Near the end of 1,000,000 users (every user, active or not: 990,000 live).
DEEP = "/api/v1/users?page=49000&per_page=20&active_only=false"
LOGIN = "/api/v1/auth/login"
LOGIN_BODY = {"email": EMAIL, "password": PASSWORD}


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def log(text: str) -> None:
    out(f"[{time.strftime('%H:%M:%S')}] {text}")


# ------------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Stream:
    row: str  # the table row it reports
    target: str  # "service" or "bare"
    method: str
    path: str
    conc: int
    auth: bool = False
    body: dict[str, str] | None = None
    # HTTP/2 without TLS (h2c, prior knowledge) through h2load, `conc` streams
    # spread over this many connections; 0: HTTP/1.1 through wrk.
    h2_connections: int = 0


# A run is one measurement: its streams hit one server at the same time.
RUNS: dict[str, list[Stream]] = {
    "S0-bare": [Stream("S0 bare GET /", "bare", "GET", "/", 64)],
    "S0-healthz": [Stream("S0 GET /healthz", "service", "GET", "/healthz", 64)],
    "S1": [Stream("S1 GET /me", "service", "GET", ME, 64, auth=True)],
    "S2": [Stream("S2 GET /users", "service", "GET", LIST, 64, auth=True)],
    "S3": [Stream("S3 POST /login", "service", "POST", LOGIN, 16, body=LOGIN_BODY)],
    "S4": [Stream("S4 GET /me c1000", "service", "GET", ME, 1000, auth=True)],
    "S5": [
        Stream("S5 /me in storm", "service", "GET", ME, 32, auth=True),
        Stream("S5 login storm", "service", "POST", LOGIN, 16, body=LOGIN_BODY),
    ],
    "S5ctl": [Stream("S5ctl /me alone", "service", "GET", ME, 32, auth=True)],
    # S1 over h2c: 4 connections x 64 concurrent streams (a load balancer's few
    # multiplexed connections), beside S1's 64 HTTP/1.1 connections.
    "S6": [
        Stream(
            "S6 GET /me h2c 4x64",
            "service",
            "GET",
            ME,
            256,
            auth=True,
            h2_connections=4,
        )
    ],
    # The same build with REVOCATION_CHECK=false: what the per-request check costs.
    "R1": [Stream("R1 /me, check off", "unchecked", "GET", ME, 64, auth=True)],
    # Scale: the lists on --users/--posts (S2's database) and on a second database
    # of --scale-users/--scale-posts (a second instance of the same build).
    "SC-posts": [Stream("SC GET /posts", "service", "GET", POSTS, 64, auth=True)],
    "SC-author": [
        Stream("SC GET /users/1/posts", "service", "GET", AUTHOR_POSTS, 64, auth=True)
    ],
    "SC-S2": [Stream("SC S2 GET /users, scale", "scale", "GET", LIST, 64, auth=True)],
    "SC-posts-scale": [
        Stream("SC GET /posts, scale", "scale", "GET", POSTS, 64, auth=True)
    ],
    "SC-author-scale": [
        Stream(
            "SC GET /users/1/posts, scale", "scale", "GET", AUTHOR_POSTS, 64, auth=True
        )
    ],
    "SC-deep": [
        Stream("SC deep page 49,000, scale", "scale", "GET", DEEP, 4, auth=True)
    ],
}
SCENARIOS = ["S0", "S1", "S2", "S3", "S4", "S5", "S5ctl", "S6", "SC", "R1"]
DEFAULT_SCENARIOS = SCENARIOS[:-1]
# Scale rows against the row they are compared with: (scale, small), target ratio.
SCALE_PAIRS = (
    ("SC S2 GET /users, scale", "S2 GET /users"),
    ("SC GET /posts, scale", "SC GET /posts"),
    ("SC GET /users/1/posts, scale", "SC GET /users/1/posts"),
)


def expand(scenarios: list[str]) -> list[str]:
    """Run names for the scenarios asked for; the bare baseline always runs."""
    wanted = set(scenarios) | {"S0"}
    if "S5" in wanted:
        wanted.add("S5ctl")  # S5's /me latency means nothing without its control
    if "R1" in wanted or "S6" in wanted:
        wanted.add("S1")  # the check's cost is S1 against R1; S6 is S1 over h2c
    if "SC" in wanted:
        wanted.add("S2")  # the scale S2 is compared with S2
    return [run for run in RUNS if run.split("-")[0] in wanted]


# ------------------------------------------------------------------------- postgres
class Postgres:
    def __init__(self, base: str, db: str) -> None:
        self.base, self.db = base.rstrip("/"), db

    def url(self, db: str | None = None) -> str:
        return f"{self.base}/{db or self.db}"

    def psql(self, sql: str, db: str | None = None) -> str:
        cmd = ["psql", "-d", self.url(db), "-v", "ON_ERROR_STOP=1", "-Atq"]
        res = subprocess.run(cmd, input=sql, capture_output=True, text=True)  # noqa: S603
        if res.returncode != 0:
            raise RuntimeError(f"psql: {res.stderr.strip()}\nSQL: {sql[:500]}")
        return res.stdout.strip()

    def recreate(self) -> None:
        self.drop()
        self.psql(f'CREATE DATABASE "{self.db}"', "postgres")

    def drop(self) -> None:
        if not re.fullmatch(r"bench_[a-z0-9_]+", self.db):  # never touch anything else
            raise ValueError(self.db)
        self.psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)', "postgres")

    def xacts(self) -> int | None:
        """Transactions committed + rolled back in our database so far."""
        with contextlib.suppress(RuntimeError, ValueError):
            return int(
                self.psql(
                    f"SELECT xact_commit + xact_rollback FROM pg_stat_database"  # noqa: S608
                    f" WHERE datname = '{self.db}'",
                    "postgres",
                )
            )
        return None


def seed(pg: Postgres, n_users: int, n_posts: int) -> str:
    """Users and posts in SQL: one werkzeug hash, computed once, for every user."""
    from werkzeug.security import generate_password_hash

    missing = pg.psql(
        "SELECT table_name || '.' || column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name IN ('users', 'posts')"
        " AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'"
        " AND column_name NOT IN ('email', 'password_hash', 'first_name', 'last_name',"
        " 'is_active', 'is_admin', 'created_at', 'updated_at', 'title', 'content',"
        " 'author_id')"
    )
    if missing:
        raise RuntimeError(
            f"seed: bench/run.py must fill new NOT NULL columns: {missing}"
        )
    pw_hash = generate_password_hash(PASSWORD).replace("'", "''")
    # bench0 logs in (active, not admin); bench1 is the one admin; every 50th user is
    # inactive, every 100th soft-deleted; created_at scattered over a year, not in id
    # order; posts by live users, a few authors many, most a few, bodies of varied size.
    pg.psql(f"""
        INSERT INTO users (email, password_hash, first_name, last_name, is_active,
                           is_admin, created_at, updated_at, deleted_at)
        SELECT 'bench' || g || '@example.com', '{pw_hash}', 'First' || g, 'Last' || g,
               g = 0 OR g % 50 <> 0, g = 1, t, t + make_interval(hours => g % 48),
               CASE WHEN g > 0 AND g % 100 = 0 THEN now() AT TIME ZONE 'utc' END
        FROM generate_series(0, {n_users - 1}) AS g,
             LATERAL (SELECT now() AT TIME ZONE 'utc'
                      - make_interval(secs => (g * 7919::bigint) % 31536000 + g))
             AS c(t);
        WITH a AS (SELECT array_agg(id ORDER BY id) AS ids FROM users
                   WHERE deleted_at IS NULL)
        INSERT INTO posts (title, content, author_id, created_at, updated_at)
        SELECT 'Post ' || g || ' about benchmarks',
               repeat('Lorem ipsum dolor sit amet, consectetur. ', 1 + g % 40),
               a.ids[1 + floor(cardinality(a.ids)
                     * power(((g::bigint * 7919) % 10007) / 10007.0, 2))::int],
               t, t
        FROM a, generate_series(1, {n_posts}) AS g,
             LATERAL (SELECT now() AT TIME ZONE 'utc'
                      - make_interval(secs => (g::bigint * 104729) % 31536000)) AS c(t);
        ANALYZE;""")  # noqa: S608
    counts = pg.psql(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM posts)"
    )
    log(
        f"seeded {counts.replace('|', ' users, ')} posts (hash {pw_hash.split('$')[0]})"
    )
    return pw_hash.split("$")[0]


# ------------------------------------------------------------------------- /proc
def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()  # fields from the 3rd (state) on


def tree(root: int) -> list[int]:
    """root and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))):
            children.setdefault(int(st[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_ticks(root: int) -> int:
    """utime + stime (all threads) of the process tree under root."""
    return sum(int(st[11]) + int(st[12]) for p in tree(root) if (st := _stat(p)))


def rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------- servers
def raise_nofile() -> None:
    """preexec_fn: wrk and the servers need 1000+ sockets (S4)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def request(
    port: int, method: str, path: str, body: Any = None, token: str | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(
            method, path, json.dumps(body) if body is not None else None, headers
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Server:
    name: str
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes]
    pg: Postgres | None = None  # its database, when not the run's main one
    token: str = ""
    token_at: float = 0.0

    def workers(self) -> list[int]:
        """Hypercorn's spawned workers; the master itself when it serves alone."""
        pids = [p for p in tree(self.proc.pid) if p != self.proc.pid]
        spawned = [p for p in pids if b"spawn_main" in _cmdline(p)]
        return spawned or [self.proc.pid]

    def rss(self) -> tuple[int, int]:
        """(sum over workers, largest worker) resident memory, KiB."""
        sizes = [rss_kib(p) for p in self.workers()]
        return sum(sizes), max(sizes, default=0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: no exit 15 s after SIGTERM, SIGKILL")
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group too
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def start_server(
    name: str, app: str, port: int, env: dict[str, str], args: Any
) -> Server:
    cmd = [str(SERVE_BIN / "hypercorn"), "-c", "hypercorn.toml"]
    cmd += ["-b", f"127.0.0.1:{port}"]
    cmd += ["-w", str(args.workers)] if args.workers else []
    log_path = RESULTS / f"{args.stamp}-{name}.log"
    with log_path.open("ab") as fh:
        proc = subprocess.Popen(  # noqa: S603
            [*cmd, app],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one
            preexec_fn=raise_nofile,
        )
    log(f"{name}: pid {proc.pid}, port {port}: {' '.join(cmd)} {app}")
    return Server(name, port, log_path, proc)


def wait_ready(server: Server, path: str, workers: int, timeout: float = 60) -> None:
    """200 on path, then every worker's "Running on" in the log."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited: see {server.log_path}")
        with contextlib.suppress(OSError):
            if request(server.port, "GET", path)[0] == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: no 200 on {path} in {timeout:.0f} s")
        time.sleep(0.2)
    while running_workers(server.log_path.read_bytes()) < workers:
        if time.monotonic() > deadline:
            log(f"{server.name}: fewer than {workers} 'Running on' lines; going on")
            break
        time.sleep(0.2)


def running_workers(log_text: bytes) -> int:
    """Workers that logged "Running on": in hypercorn's format, or as a JSON line."""
    pids = set(re.findall(rb"\[(\d+)\] \[INFO\] Running on http", log_text))
    return max(len(pids), len(re.findall(rb'"message": ?"Running on http', log_text)))


def login(server: Server) -> None:
    status, body = request(server.port, "POST", LOGIN, LOGIN_BODY)
    if status != 200:
        raise RuntimeError(f"login gave {status}: {body[:300]!r}")
    server.token, server.token_at = json.loads(body)["access_token"], time.monotonic()


def preflight(servers: dict[str, Server], runs: list[str]) -> dict[str, str]:
    """One request per stream: a 2xx with the right shape, or the run is skipped."""
    skipped = {}
    for run in runs:
        for s in RUNS[run]:
            srv = servers[s.target]
            status, body = request(
                srv.port, s.method, s.path, s.body, srv.token if s.auth else None
            )
            problem = f"{s.method} {s.path}: {status} {body[:200]!r}"
            if 200 <= status < 300:
                problem = shape_problem(s.path, json.loads(body))
            if problem:
                skipped[run] = problem
                log(f"{run} SKIPPED: {problem}")
    return skipped


def shape_problem(path: str, doc: Any) -> str:
    if path == ME and doc.get("email") != EMAIL:
        return f"/me is not {EMAIL}: {doc}"
    if path in (LIST, DEEP) and len(doc.get("users", [])) != 20:
        return f"{path}: not 20 users"
    if path in (POSTS, AUTHOR_POSTS) and len(doc.get("posts", [])) != 20:
        return f"{path}: not 20 posts"
    if path == LOGIN and "access_token" not in doc:
        return f"{path}: no access_token"
    return ""


# ------------------------------------------------------------------------- wrk
LUA = """-- generated by bench/run.py
wrk.method = {method}
{setup}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"status":%d,"p50":%d,"p99":%d,"max":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    e.status, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk(s: Stream, srv: Server, seconds: float, tmp: Path) -> subprocess.Popen[str]:
    setup = ""
    if s.body is not None:
        setup += f"wrk.body = {json.dumps(json.dumps(s.body))}\n"
        setup += 'wrk.headers["Content-Type"] = "application/json"\n'
    if s.auth:
        setup += f'wrk.headers["Authorization"] = {json.dumps("Bearer " + srv.token)}\n'
    script = tmp / f"{s.row.replace(' ', '_').replace('/', '')}.lua"
    script.write_text(LUA.format(method=json.dumps(s.method), setup=setup))
    url = f"http://127.0.0.1:{srv.port}{s.path}"
    cmd = ["wrk", "-t1", f"-c{s.conc}", f"-d{max(1, round(seconds))}s", "--latency"]
    cmd += ["--timeout", "5s", "-s", str(script), url]
    return subprocess.Popen(  # noqa: S603
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=raise_nofile,
    )


def h2load(s: Stream, srv: Server, seconds: float, tmp: Path) -> subprocess.Popen[str]:
    """nghttp2's h2load: h2c by prior knowledge (its default for http://)."""
    url = f"http://127.0.0.1:{srv.port}{s.path}"
    cmd = ["h2load", "-t1", f"-c{s.h2_connections}", f"-m{s.conc // s.h2_connections}"]
    cmd += [f"-D{max(1, round(seconds))}", "-T5", "--log-file", str(h2_log(s, tmp))]
    if s.auth:
        cmd += ["-H", f"Authorization: Bearer {srv.token}"]
    if s.body is not None:
        body = tmp / f"{s.row.replace(' ', '_').replace('/', '')}.json"
        body.write_text(json.dumps(s.body))
        cmd += ["-d", str(body), "-H", "Content-Type: application/json"]
    return subprocess.Popen(  # noqa: S603
        [*cmd, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=raise_nofile,
    )


def h2_log(s: Stream, tmp: Path) -> Path:
    return tmp / f"{s.row.replace(' ', '_').replace('/', '')}.h2load.log"


def h2load_summary(text: str, log_file: Path) -> dict[str, Any]:
    """h2load's output as wrk's BENCHJSON; latencies from its per-request log
    (start time, status, microseconds), which the output gives no percentile of."""
    finished = re.search(r"^finished in ([\d.]+)(m?s)", text, re.M)
    counts = re.search(
        r"^requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
        re.M,
    )
    codes = re.search(
        r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M
    )
    if not (finished and counts and codes):
        raise RuntimeError(f"h2load gave no summary: {text[-500:]}")
    scale = 1e6 if finished[2] == "s" else 1e3
    latencies = sorted(
        int(line.split()[2])
        for line in log_file.read_text().splitlines()
        if len(line.split()) == 3
    )

    def percentile(q: float) -> int:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))]
            if latencies
            else 0
        )

    return {
        "requests": int(counts[1]),
        "duration_us": float(finished[1]) * scale,
        "connect": 0,
        "read": int(counts[3]),
        "write": 0,
        "timeout": int(counts[4]),
        # wrk's "status": answers outside 2xx and 3xx.
        "status": int(codes[3]) + int(codes[4]),
        "p50": percentile(0.50),
        "p99": percentile(0.99),
        "max": latencies[-1] if latencies else 0,
    }


LIVE_WRK: list[subprocess.Popen[str]] = []


def run_wrk(
    streams: list[Stream], srv: Server, seconds: float, tmp: Path
) -> list[dict[str, Any]]:
    procs = [
        (h2load if s.h2_connections else wrk)(s, srv, seconds, tmp) for s in streams
    ]
    LIVE_WRK.extend(procs)
    outputs = [p.communicate()[0] for p in procs]
    LIVE_WRK.clear()
    results = []
    for s, text in zip(streams, outputs, strict=True):
        if s.h2_connections:
            results.append(h2load_summary(text, h2_log(s, tmp)))
            continue
        m = re.search(r"^BENCHJSON (\{.*\})$", text, re.M)
        if not m:
            raise RuntimeError(f"wrk gave no summary: {text[-500:]}")
        results.append(json.loads(m.group(1)))
    return results


class RssSampler(threading.Thread):
    """Peak resident memory of a server's workers, sampled every 0.5 s."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server, self.total, self.largest = server, 0, 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.5):
            total, largest = self.server.rss()
            self.total, self.largest = (
                max(self.total, total),
                max(self.largest, largest),
            )


HYPERCORN_LINE = re.compile(rb'^\S+ "[A-Z]+ [^"]*" (\d{3}) ', re.M)
JSON_STATUS = re.compile(rb'"status": ?(\d{3})')


def log_since(server: Server, offset: int) -> tuple[dict[str, int], int]:
    """Statuses answered (from the access log) and error lines logged since offset."""
    with server.log_path.open("rb") as fh:
        fh.seek(offset)
        chunk = fh.read()
    codes = HYPERCORN_LINE.findall(chunk) or JSON_STATUS.findall(chunk)
    statuses: dict[str, int] = {}
    for code in codes:
        statuses[code.decode()] = statuses.get(code.decode(), 0) + 1
    errors = len(re.findall(rb"Traceback|\bERROR\b|\"level\": ?\"error\"", chunk))
    return statuses, errors


def measure(
    run: str,
    servers: dict[str, Server],
    pg: Postgres,
    seconds: float,
    tmp: Path,
    pause: float,
) -> list[dict[str, Any]]:
    streams = RUNS[run]
    srv = servers[streams[0].target]
    if srv.token and time.monotonic() - srv.token_at > TOKEN_MAX_AGE:
        login(srv)
    offset = srv.log_path.stat().st_size
    pg = srv.pg or pg
    xacts0 = pg.xacts() if srv.name != "bare" else None
    sampler = RssSampler(srv)
    sampler.start()
    cpu0, t0 = cpu_ticks(srv.proc.pid), time.monotonic()
    results = run_wrk(streams, srv, seconds, tmp)
    cpu_s, elapsed = (cpu_ticks(srv.proc.pid) - cpu0) / CLK_TCK, time.monotonic() - t0
    sampler.halt.set()
    time.sleep(max(pause, 1.1))  # PostgreSQL publishes a backend's stats once a second
    xacts1 = pg.xacts() if srv.name != "bare" else None
    statuses, log_errors = log_since(srv, offset)
    total = sum(r["requests"] for r in results)
    rows = []
    for s, r in zip(streams, results, strict=True):
        secs = r["duration_us"] / 1e6
        socket_errors = {k: r[k] for k in ("connect", "read", "write", "timeout")}
        rows.append(
            {
                "row": s.row,
                "run": run,
                "server": srv.name,
                "conc": s.conc,
                "requests": r["requests"],
                "rps": r["requests"] / secs,
                "p50_ms": r["p50"] / 1000,
                "p99_ms": r["p99"] / 1000,
                "max_ms": r["max"] / 1000,
                "socket_errors": socket_errors,
                "non2xx": r["status"],
                "errors": sum(socket_errors.values()) + r["status"],
                # the server tree's CPU over every request of the run (S5: both)
                "cpu_ms_per_req": cpu_s * 1000 / total if total else None,
                "server_cores": cpu_s / elapsed,
                "xacts_per_req": (xacts1 - xacts0) / total
                if xacts0 is not None and xacts1 is not None and total
                else None,
                "rss_peak_kib": sampler.total,
                "rss_peak_worker_kib": sampler.largest,
                "statuses": statuses,
                "log_errors": log_errors,
            }
        )
    return rows


# ------------------------------------------------------------------------- report
MEDIANS = ["rps", "p50_ms", "p99_ms", "max_ms", "cpu_ms_per_req", "server_cores"]
MEDIANS += ["xacts_per_req"]


def aggregate(runs: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in order:
        rs = [r for r in runs if r["row"] == name]
        if not rs:
            continue
        row = {k: rs[0][k] for k in ("row", "run", "server", "conc")}
        for key in MEDIANS:  # None: no responses (CPU/req) or no database (xacts)
            values = [r[key] for r in rs if r[key] is not None]
            row[key] = statistics.median(values) if values else None
        row["rps_all_reps"] = [round(r["rps"], 1) for r in rs]
        row["errors_all_reps"] = sum(r["errors"] for r in rs)
        row["rss_peak_kib"] = max(r["rss_peak_kib"] for r in rs)
        row["reps"] = len(rs)
        rows.append(row)
    base = next((r for r in rows if r["run"] == "S0-bare"), None)
    for row in rows:
        if base and base["rps"]:
            row["rps_x_bare"] = row["rps"] / base["rps"]
            if row["cpu_ms_per_req"] and base["cpu_ms_per_req"]:
                row["cpu_x_bare"] = row["cpu_ms_per_req"] / base["cpu_ms_per_req"]
    return rows


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's within-run targets."""
    by = {r["row"]: r for r in rows}
    s3, s4 = by.get(RUNS["S3"][0].row), by.get(RUNS["S4"][0].row)
    s5, s5_login = (by.get(s.row) for s in RUNS["S5"])
    s5ctl = by.get(RUNS["S5ctl"][0].row)
    found: dict[str, Any] = {}
    if s5 and s5ctl and s5ctl["p99_ms"]:
        found["S5 /me p99 / S5ctl p99 (target <= 3)"] = s5["p99_ms"] / s5ctl["p99_ms"]
    if s5_login and s3 and s3["rps"]:
        found["S5 login rps / S3 rps (target >= 0.33)"] = s5_login["rps"] / s3["rps"]
    if s4:
        found["S4 errors, all reps (target 0)"] = s4["errors_all_reps"]
    for scale, small in SCALE_PAIRS:
        if by.get(scale) and by.get(small) and by[small]["rps"]:
            found[f"{scale} rps / {small} rps (target >= 0.67)"] = (
                by[scale]["rps"] / by[small]["rps"]
            )
    s1, r1 = by.get(RUNS["S1"][0].row), by.get(RUNS["R1"][0].row)
    if s1 and r1 and r1["rps"]:
        found["S1 rps / R1 rps: revocation check on / off (target >= 0.90)"] = (
            s1["rps"] / r1["rps"]
        )
    return found


def exact_totals(server: Server, pg: Postgres) -> dict[str, Any]:
    """Each list's `total` as the service answers it, against a scan of the tables."""
    scans = {
        LIST: "SELECT count(*) FROM users WHERE deleted_at IS NULL AND is_active",
        DEEP: "SELECT count(*) FROM users WHERE deleted_at IS NULL",
        POSTS: "SELECT count(*) FROM posts p JOIN users u ON u.id = p.author_id"
        " WHERE u.deleted_at IS NULL",
        AUTHOR_POSTS: "SELECT count(*) FROM posts WHERE author_id = 1",
    }
    found = {}
    for path, sql in scans.items():
        status, body = request(server.port, "GET", path, None, server.token)
        answered = json.loads(body).get("total") if status == 200 else status
        scanned = int(pg.psql(sql))
        found[path] = {"total": answered, "scan": scanned, "exact": answered == scanned}
    return found


# ------------------------------------------------------------------------- py-spy
def profile(
    run: str, servers: dict[str, Server], pg: Postgres, args: Any, tmp: Path
) -> dict[str, Any]:
    """One extra measurement of `run` (not in the medians) with py-spy on a worker:
    a flame graph (SVG) and collapsed stacks, from which the top frames."""
    worker = servers[RUNS[run][0].target].workers()[0]
    stem = RESULTS / f"{args.stamp}-{run}"
    spy = [str(BIN / "py-spy"), "record", "--nonblocking", "-p", str(worker)]
    spy += ["-d", str(max(1, round(args.duration)))]
    spies = [
        subprocess.Popen(  # noqa: S603
            [*spy, "-f", fmt_, "-o", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fmt_, path in (("flamegraph", f"{stem}.svg"), ("raw", f"{stem}.txt"))
    ]
    measure(run, servers, pg, args.duration, tmp, args.pause)
    for spying in spies:
        spying.wait(timeout=60)
    return {"svg": f"{stem}.svg", **top_frames(Path(f"{stem}.txt"))}


def top_frames(collapsed: Path, n: int = 12) -> dict[str, Any]:
    """Share of samples per function: on top of the stack (self), anywhere (total)."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    if not collapsed.exists():
        return {"samples": 0, "self": [], "total": []}
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # "function (path/file.py:line)": one entry per function, whatever the line
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        samples += int(count)
        own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + int(count)

    def top(counts: dict[str, int]) -> list[tuple[str, float]]:
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        # Frames under nearly every sample are the worker's bootstrap: not news.
        ranked = [(f, c) for f, c in ranked if c < 0.8 * samples][:n]
        return [(_short(frame), 100 * c / samples) for frame, c in ranked]

    return {"samples": samples, "self": top(own), "total": top(total)}


def _short(frame: str) -> str:
    return re.sub(r"\(.*?site-packages/|\(" + re.escape(str(ROOT)) + "/", "(", frame)


def fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def table(result: dict[str, Any]) -> str:
    lines = [
        "| scenario | c | rps | x bare rps | p50 ms | p99 ms | errors (all reps) "
        "| CPU ms/req | x bare CPU | srv cores | DB xacts/req | RSS peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['row']} | {r['conc']} | {r['rps']:.0f} | {fmt(r.get('rps_x_bare'))} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors_all_reps']} "
            f"| {fmt(r['cpu_ms_per_req'], '.3f')} | {fmt(r.get('cpu_x_bare'))} "
            f"| {r['server_cores']:.2f} | {fmt(r['xacts_per_req'])} "
            f"| {r['rss_peak_kib'] / 1024:.0f} |"
        )
    for run, why in result["skipped"].items():
        lines.append(f"| {run} | skipped: {why} |")
    lines.append("")
    for name, value in result["targets"].items():
        lines.append(
            f"{name}: {value:.2f}" if isinstance(value, float) else f"{name}: {value}"
        )
    mem = result["memory"]
    for key, label in (
        ("service_rest", "service at rest (after warm-up, idle)"),
        ("service_s4_peak", "service under S4, c=1000 (peak, 0.5 s samples)"),
        ("service_rest_end", "service at rest after all runs"),
        ("bare_rest", "bare app at rest"),
        ("scale_rest", "scale instance at rest (before its runs)"),
    ):
        if key in mem:
            total, largest = mem[key]
            lines.append(
                f"RSS {label}: {total / 1024:.0f} MiB,"
                f" largest worker {largest / 1024:.0f} MiB"
                + (" (target <= 70)" if key == "service_rest" else "")
            )
    for path, seen in result.get("scale_totals", {}).items():
        lines.append(
            f"scale total of {path}: {seen['total']} (scan {seen['scan']}):"
            f" {'exact' if seen['exact'] else 'WRONG'}"
        )
    for run, prof in result.get("profiles", {}).items():
        lines.append(f"\npy-spy, one worker under {run} ({prof['samples']} samples,")
        lines.append(f"flame graph {prof['svg']}); % of samples, self and total:")
        for (frame, pct), (frame_t, pct_t) in zip(
            prof["self"], prof["total"], strict=False
        ):
            lines.append(f"  self {pct:5.1f}% {frame:<60.60} | {pct_t:5.1f}% {frame_t}")
    for r in result["runs"]:
        odd = {k: v for k, v in r["statuses"].items() if not k.startswith("2")}
        errs = {k: v for k, v in r["socket_errors"].items() if v}
        if r["requests"] < r["conc"]:
            lines.append(
                f"! {r['row']} rep {r['rep']}: {r['requests']} responses for "
                f"{r['conc']} connections (requests unanswered at the end: not counted)"
            )
        if odd or errs or r["log_errors"]:
            lines.append(
                f"! {r['row']} rep {r['rep']}: socket errors {errs or 0}, "
                f"non-2xx {odd or r['non2xx']}, "
                f"error lines in server log {r['log_errors']}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------- main
def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def metadata(args: argparse.Namespace, pg: Postgres) -> dict[str, Any]:
    def cmd(*argv: str) -> str:
        res = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)  # noqa: S603
        return (res.stdout or res.stderr).strip().split("\n")[0]

    packages = ("hypercorn", "quart", "sqlalchemy", "asyncpg", "werkzeug")
    # The servers' interpreter and packages: SERVE_VENV's, not this script's.
    served = subprocess.run(  # noqa: S603
        [
            str(SERVE_BIN / "python"),
            "-c",
            "import json, sys; from importlib.metadata import version; "
            "print(json.dumps({'python': sys.version.split()[0]} "
            f"| {{p: version(p) for p in {packages!r}}}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k != "stamp"
        },
        "hypercorn_toml": tomllib.loads((ROOT / "hypercorn.toml").read_text()),
        "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg(),
        "git": cmd("git", "--no-optional-locks", "describe", "--always", "--dirty"),
        "serve_venv": str(SERVE_VENV),
        "versions": json.loads(served.stdout)
        | {"wrk": cmd("wrk", "-v")}
        | {"postgres": pg.psql("SHOW server_version", "postgres")},
        "throttle": f"LOGIN_MAX_FAILURES(_PER_IP)={args.throttle or THROTTLE}",
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = ap.add_argument
    add(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help="S0 (baseline) always runs; R1 (S1, revocation check off) on request",
    )
    add("--reps", type=int, default=3, help="measurements per scenario (median)")
    add("--duration", type=float, default=10, help="seconds per measurement")
    add("--warmup", type=float, default=2, help="seconds of load before each")
    add("--pause", type=float, default=1, help="idle seconds after each")
    add("--users", type=int, default=1000)
    add("--posts", type=int, default=3000)
    add("--scale-users", type=int, default=1_000_000, help="SC's second database")
    add("--scale-posts", type=int, default=1_000_000)
    add(
        "--profile",
        action="store_true",
        help="py-spy S1, S2 and S6 (those asked for; one extra run each)",
    )
    add("--workers", type=int, help="hypercorn -w N (default: hypercorn.toml's)")
    add("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL")
    add("--db", default="bench_service", help="database to (re)create: bench_*")
    add("--keep-db", action="store_true", help="do not drop it at the end")
    add("--throttle", help="LOGIN_MAX_FAILURES(_PER_IP) (default: the service's)")
    add(
        "--serve-venv",
        type=Path,
        help="serve from this venv as it is, unsynced (e.g. one on another Python); "
        "default: .venv-runtime, synced from uv.lock",
    )
    args = ap.parse_args()
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        ap.error(f"unknown scenarios {sorted(unknown)}; known: {SCENARIOS}")
    if not re.fullmatch(r"bench_[a-z0-9_]+", args.db):
        ap.error("--db must be bench_<lowercase letters, digits, _>")
    if args.users < 2 or args.posts < 1:
        ap.error("--users >= 2 and --posts >= 1")
    args.stamp = time.strftime("%Y%m%d-%H%M%S")
    return args


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """This shell's environment, set up as a production deployment on `database_url`."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "VIRTUAL_ENV")}
    return env | {
        "APP_ENV": "production",
        "DATABASE_URL": database_url,
        "SECRET_KEY": BENCH_SECRET,
        "JWT_SECRET_KEY": BENCH_SECRET[::-1],
        "MFA_ENCRYPTION_KEY": BENCH_SECRET.upper(),
        # Production's mail choice; no reset mail is sent while measuring.
        "MAIL_BACKEND": "log",
        "PASSWORD_RESET_URL": "https://bench.invalid/reset-password?token={token}",
        "EMAIL_VERIFY_URL": "https://bench.invalid/verify-email?token={token}",
        "EMAIL_CHANGE_URL": "https://bench.invalid/confirm-email?token={token}",
        "WEBAUTHN_RP_ID": "bench.invalid",
        "WEBAUTHN_ORIGINS": "https://bench.invalid",
        **extra,
    }


def sync_serving_venv() -> None:
    """SERVE_VENV made (or brought up to date) from uv.lock, without the dev group."""
    subprocess.run(  # noqa: S603 (the project's own uv)
        [str(ROOT / ".tools" / "bin" / "uv"), "sync", "--frozen", "--no-dev", "-q"],
        cwd=ROOT,
        env=os.environ | {"UV_PROJECT_ENVIRONMENT": str(SERVE_VENV)},
        check=True,
    )


def migrate(env: dict[str, str]) -> None:
    res = subprocess.run(  # noqa: S603
        [str(SERVE_BIN / "alembic"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise RuntimeError(f"alembic upgrade head failed:\n{res.stderr[-2000:]}")


def main() -> int:
    global SERVE_VENV, SERVE_BIN  # --serve-venv: one choice per run
    args = parse_args()
    if args.serve_venv is not None:
        SERVE_VENV = args.serve_venv.absolute()
        SERVE_BIN = SERVE_VENV / "bin"
    for tool in ("wrk", "psql"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not on PATH (apt-get install -y {tool})")
    if "S6" in args.scenarios and not shutil.which("h2load"):
        sys.exit("h2load is not on PATH (apt-get install -y nghttp2-client)")

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)  # `finally` cleans up

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started in the background (SIG_IGN)
    RESULTS.mkdir(parents=True, exist_ok=True)
    lock = (RESULTS / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(
            "another bench/run.py is running (it would share the CPU and the database)"
        )
    log(f"{SERVE_VENV.name}: the runtime packages the service is served with")
    if args.serve_venv is None:
        sync_serving_venv()
    pg = Postgres(args.pg, args.db)
    tmp = Path(tempfile.mkdtemp(prefix="bench_"))
    servers: dict[str, Server] = {}
    all_runs: list[dict[str, Any]] = []
    result: dict[str, Any] = {"meta": metadata(args, pg), "skipped": {}, "memory": {}}
    runs = expand(args.scenarios)
    scale_pg = Postgres(args.pg, f"{args.db}_scale") if "SC-S2" in runs else None
    failure: BaseException | None = None
    workers = args.workers or result["meta"]["hypercorn_toml"].get("workers", 1) or 1
    try:
        log(f"database {args.db}: create, migrate, seed")
        pg.recreate()
        env = service_env(pg.url())
        if args.throttle:
            env["LOGIN_MAX_FAILURES"] = env["LOGIN_MAX_FAILURES_PER_IP"] = args.throttle
        migrate(env)
        result["meta"]["password_hash_method"] = seed(pg, args.users, args.posts)
        if scale_pg is not None:
            log(f"database {scale_pg.db}: create, migrate, seed (SC)")
            scale_pg.recreate()
            migrate(env | {"DATABASE_URL": scale_pg.url()})
            started = time.monotonic()
            seed(scale_pg, args.scale_users, args.scale_posts)
            result["meta"]["scale_seed_seconds"] = time.monotonic() - started
        log(f"login throttle: {args.throttle or THROTTLE} (S3/S5: one account, one IP)")
        port_service, port_bare = free_ports(2)
        servers["service"] = start_server(
            "service", "service.asgi:app", port_service, env, args
        )
        servers["bare"] = start_server(
            "bare", "bench/bare_app.py:app", port_bare, env, args
        )
        if "R1" in runs:
            port_unchecked = free_ports(1)[0]
            servers["unchecked"] = start_server(
                "unchecked",
                "service.asgi:app",
                port_unchecked,
                # Production refuses the check off; development differs from it
                # only in what start-up accepts.
                env | {"REVOCATION_CHECK": "false", "APP_ENV": "development"},
                args,
            )
            wait_ready(servers["unchecked"], "/healthz", workers)
        if scale_pg is not None:
            servers["scale"] = start_server(
                "scale",
                "service.asgi:app",
                free_ports(1)[0],
                env | {"DATABASE_URL": scale_pg.url()},
                args,
            )
            servers["scale"].pg = scale_pg
            wait_ready(servers["scale"], "/healthz", workers)
        wait_ready(servers["service"], "/healthz", workers)
        wait_ready(servers["bare"], "/", workers)
        login(servers["service"])
        for name in ("unchecked", "scale"):
            if name in servers:
                login(servers[name])
        result["skipped"] = preflight(servers, runs)
        runs = [r for r in runs if r not in result["skipped"]]
        log(f"warm-up, then resident memory at rest ({workers} worker(s) each)")
        for run in ("S0-bare", "S1", "S2"):
            if run in runs and args.warmup > 0:
                measure(run, servers, pg, args.warmup, tmp, 0)
        time.sleep(2)
        result["memory"]["service_rest"] = servers["service"].rss()
        result["memory"]["bare_rest"] = servers["bare"].rss()
        if "scale" in servers:
            result["memory"]["scale_rest"] = servers["scale"].rss()
        for rep in range(args.reps):
            for run in runs if rep % 2 == 0 else runs[::-1]:
                if args.warmup > 0:
                    measure(run, servers, pg, args.warmup, tmp, 0)
                for row in measure(run, servers, pg, args.duration, tmp, args.pause):
                    all_runs.append(row | {"rep": rep})
                    log(
                        f"rep {rep} {row['row']:<17} {row['rps']:8.1f} rps  p50 "
                        f"{row['p50_ms']:7.1f}  p99 {row['p99_ms']:7.1f} ms  errors "
                        f"{row['errors']}  CPU {fmt(row['cpu_ms_per_req'], '.3f')} ms"
                    )
                    if row["run"] == "S4":
                        peak = result["memory"].get("service_s4_peak", (0, 0))
                        result["memory"]["service_s4_peak"] = (
                            max(peak[0], row["rss_peak_kib"]),
                            max(peak[1], row["rss_peak_worker_kib"]),
                        )
        time.sleep(2)
        result["memory"]["service_rest_end"] = servers["service"].rss()
        if scale_pg is not None:
            result["scale_totals"] = exact_totals(servers["scale"], scale_pg)
        if args.profile:
            result["profiles"] = {
                run: profile(run, servers, pg, args, tmp)
                for run in ("S1", "S2", "S6")
                if run in runs
            }
    except (Exception, KeyboardInterrupt, SystemExit) as error:
        failure = error
        log(f"stopped early ({type(error).__name__}: {error}); cleaning up")
    finally:
        # a second Ctrl-C must not skip this
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in LIVE_WRK:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for server in servers.values():
            log(f"{server.name}: stopping")
            server.stop()
        if not args.keep_db:
            for db in (pg, scale_pg):
                if db is None:
                    continue
                try:
                    db.drop()
                except RuntimeError as error:
                    log(f"could not drop {db.db}: {error}")
        shutil.rmtree(tmp, ignore_errors=True)
        for server in servers.values():  # access logs: MBs; keep them, compressed
            with (
                server.log_path.open("rb") as src,
                gzip.open(f"{server.log_path}.gz", "wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
            server.log_path.unlink()
    order = [s.row for run in RUNS for s in RUNS[run]]
    result["rows"] = aggregate(all_runs, order)
    result["targets"] = targets(result["rows"])
    result["runs"] = all_runs
    result["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["meta"]["loadavg_after"] = os.getloadavg()
    path = RESULTS / f"{args.stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    out()
    out(
        f"{workers} worker(s) per server; login throttle {args.throttle or THROTTLE} "
        f"for S3/S5; medians of {args.reps} x {args.duration:g} s; "
        "x bare = ratio to S0 bare, same run; S5 rows: CPU over both streams"
    )
    load = result["meta"]["loadavg_before"][0], result["meta"]["loadavg_after"][0]
    out(
        f"load average before/after: {load[0]:.1f}/{load[1]:.1f}, {os.cpu_count()} CPUs"
    )
    if "S4" in runs and args.duration <= 5:
        out("note: runs of 5 s or less cannot show wrk's 5 s timeouts (S4)")
    out(table(result))
    out(f"\nwrote {path.relative_to(ROOT)} (server logs: {args.stamp}-*.log.gz)")
    if failure is not None:
        out(f"INCOMPLETE: {type(failure).__name__}: {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
