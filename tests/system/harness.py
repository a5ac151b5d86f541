"""Starting the processes the system tests need: one way for every kind of server.

- `Process`: one server process leading its own process group, its output in
  files; `start()` returns once `ready()` holds and fails with the output if the
  process exits or the wait times out; `stop()` signals the whole group.
- `Server`: a Process that answers HTTP on host:port (`base_url`, httpx clients
  from a loopback address of their own, its JSON log lines).
- `ServedApp`: this service as `hypercorn -c hypercorn.toml service.asgi:app`
  serves it on a free loopback port: the one way the suite serves it.
- `PostgresCluster` and `PgBouncer`: throwaway database servers. PostgreSQL and
  PgBouncer refuse to run as root, so when the suite runs as root their commands
  run as the `postgres` OS user (`run_as`), in a temporary folder it owns.
- `run_entry_point`: a one-off command of the venv (alembic, quart) as a user runs it.

The helpers are synchronous; async tests call them through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HYPERCORN_TOML = ROOT / "hypercorn.toml"
# How long a server may take to get ready. A cold start of the service imports
# the whole package: on a loaded machine that alone took over 30 s.
START_TIMEOUT = 30.0
SERVE_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


class ProcessError(RuntimeError):
    """A process that exited or never got ready; the message carries its output."""


# ------------------------------------------------------------------ readiness


def http_status(url: str) -> int | None:
    """The status a GET of `url` answers, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def responds(url: str, status: int | None = 200) -> Callable[[], bool]:
    """Ready when a GET of `url` answers `status` (any status when None)."""

    def ready() -> bool:
        answered = http_status(url)
        return answered is not None and status in (None, answered)

    return ready


def listens(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """Ready when `host:port` accepts a TCP connection."""

    def ready() -> bool:
        with socket.socket() as probe:
            probe.settimeout(1)
            return probe.connect_ex((host, port)) == 0

    return ready


# ---------------------------------------------------------------------- users


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# PostgreSQL refuses to run as root: as root, its commands run as this user.
SERVICE_USER = "postgres" if _user_exists("postgres") else "nobody"


def run_as(uid: int, gid: int, groups: list[int] | None = None) -> dict[str, Any]:
    """Popen arguments that drop root to uid:gid (none when not root): the pid
    stays the server's own, so signals reach it directly."""
    if os.geteuid() != 0:
        return {}
    return {"user": uid, "group": gid, "extra_groups": groups or []}


def run_as_service_user() -> dict[str, Any]:
    owner = pwd.getpwnam(SERVICE_USER)
    return run_as(
        owner.pw_uid, owner.pw_gid, os.getgrouplist(SERVICE_USER, owner.pw_gid)
    )


def private_folder(prefix: str) -> Path:
    """A temporary folder of the service user's (of this process's when not root)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SERVICE_USER)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    return folder


def require(binary: Path, package: str) -> None:
    if not binary.exists():
        pytest.skip(f"{binary} is not installed (package: {package})")


# ------------------------------------------------------------------ processes


def stop_group(
    process: subprocess.Popen[bytes],
    timeout: float = STOP_TIMEOUT,
    first: signal.Signals = signal.SIGTERM,
) -> None:
    """`first` to the process group the process leads, SIGKILL to what lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, first)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    # Children (hypercorn's worker) may outlive the leader: sweep the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(5)


def _tail(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")[-4000:]


class Process:
    """One server process in a process group of its own, its output in files.

    `out` takes stdout, and stderr too unless `err` names a file of its own;
    both are appended to, so a process started again keeps its earlier output.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        out: Path,
        err: Path | None = None,
        ready: Callable[[], bool] | None = None,
        timeout: float = START_TIMEOUT,
        user: Mapping[str, Any] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        name: str | None = None,
    ) -> None:
        self.argv = argv
        self.name = name or Path(argv[0]).name
        self.env = dict(env)
        self.cwd = cwd
        self.out = out
        self.err = err
        self.ready = ready
        self.timeout = timeout
        self.user = dict(user or {})
        self.stop_signal = stop_signal
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it to get ready."""
        with (
            self.out.open("ab") as stdout,
            (self.err or self.out).open("ab") as stderr,
        ):
            self.process = subprocess.Popen(  # noqa: S603 (argv built by the suite)
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                process_group=0,
                **self.user,
            )
        return self.process

    def start(self) -> Self:
        """Start the process and wait until it is ready; stopped again if not."""
        self.spawn()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.ready is not None and not self.ready():
            if not self.running:
                raise ProcessError(
                    f"{self.name} did not start: it exited:\n{self.read_log()}"
                )
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{self.name} did not start: not ready within {self.timeout} s:"
                    f"\n{self.read_log()}"
                )
            time.sleep(0.05)

    def read_log(self) -> str:
        """The end of what the process wrote (stdout, then stderr)."""
        return _tail(self.out) + _tail(self.err)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_group(process, timeout, self.stop_signal)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def loopback_address() -> str:
    """A random address of 127.0.0.0/8 (Linux routes all of it to lo)."""
    octets = [random.randint(1, 254) for _ in range(3)]
    return "127.{}.{}.{}".format(*octets)


def json_log_lines(path: Path, containing: str = "") -> list[dict[str, Any]]:
    """A server's JSON log records, read from its output file."""
    entries: list[dict[str, Any]] = []
    if not path.exists():
        return entries
    for line in path.read_text(errors="replace").splitlines():
        if containing not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


class Server(Process):
    """A Process that answers HTTP on host:port."""

    def __init__(
        self, argv: list[str], *, host: str, port: int, **options: Any
    ) -> None:
        super().__init__(argv, **options)
        self.host, self.port = host, port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, address: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        """A keep-alive client whose connections come from `address` of 127.0.0.0/8
        (a fresh random one if None): per-address budgets without X-Forwarded-For."""
        transport = httpx.AsyncHTTPTransport(
            local_address=address or loopback_address()
        )
        return httpx.AsyncClient(
            base_url=self.base_url, transport=transport, timeout=60, **kwargs
        )

    def log_lines(self, containing: str = "") -> list[dict[str, Any]]:
        """Its JSON log records, over every start."""
        return json_log_lines(self.out, containing)


class ServedApp(Server):
    """`hypercorn -c hypercorn.toml service.asgi:app` (or another `app`) on a
    loopback port, started at once and ready when /healthz answers 200; its output
    in `log_folder` (the working folder when None)."""

    def __init__(
        self,
        env: Mapping[str, str],
        cwd: Path = ROOT,
        log_folder: Path | None = None,
        app: str = "service.asgi:app",
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        port = free_port() if port is None else port
        super().__init__(
            [
                str(VENV_BIN / "hypercorn"),
                "-c",
                str(HYPERCORN_TOML),
                "-b",
                f"{host}:{port}",
                app,
            ],
            host=host,
            port=port,
            env=env,
            cwd=cwd,
            out=(log_folder or cwd) / f"hypercorn-{port}.log",
            ready=responds(f"http://{host}:{port}/healthz"),
            timeout=SERVE_TIMEOUT,
        )
        self.start()


def clean_environment(**values: str) -> dict[str, str]:
    """The caller's environment without the service's own settings."""
    keep = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    }
    return {**keep, "PASSWORD_HASH_THREADS": "1", "LOG_LEVEL": "WARNING", **values}


def check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise ProcessError(
            f"{' '.join(map(str, result.args))} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )


def run(
    argv: list[str | Path],
    *,
    timeout: float = 120,
    **options: Any,
) -> subprocess.CompletedProcess[str]:
    """A one-off command, its output captured as text; the caller checks it."""
    return subprocess.run(  # noqa: S603 (argv built by the suite)
        [str(part) for part in argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        **options,
    )


def run_entry_point(
    *command: str, env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """One of the venv's console scripts (alembic, quart), as a user runs it."""
    result = run([VENV_BIN / command[0], *command[1:]], cwd=cwd, env=dict(env))
    check(result)
    return result


# ----------------------------------------------------------------- PostgreSQL


def _pgserver_bin() -> Path | None:
    """The binaries the pgserver wheel ships, found without importing it (its
    import warns when XDG_RUNTIME_DIR is unset, and the suite errors on warnings)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "pginstall" / "bin"
    return folder if (folder / "pg_ctl").exists() else None


MACHINE_POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
PGSERVER_BIN = _pgserver_bin()
POSTGRES_BIN = Path(
    os.environ.get("TEST_POSTGRES_BIN")
    or (MACHINE_POSTGRES_BIN if MACHINE_POSTGRES_BIN.exists() else PGSERVER_BIN)
    or MACHINE_POSTGRES_BIN
)
# The suite's own server when the machine's is not used: pgserver's PostgreSQL.
EMBEDDED_POSTGRES_BIN = PGSERVER_BIN or POSTGRES_BIN
PGBOUNCER = Path(os.environ.get("TEST_PGBOUNCER", "/usr/sbin/pgbouncer"))


def run_postgres_tool(*command: str | Path) -> subprocess.CompletedProcess[str]:
    """A PostgreSQL program (initdb, pg_ctl, ...) as the service user."""
    return run(list(command), timeout=START_TIMEOUT, **run_as_service_user())


class PostgresCluster:
    """A cluster of its own on its own port, trusting local connections except
    those of `password_roles`, which must give their password (SCRAM): a new
    one (initdb), or, given `make_data`, one whose data folder that makes."""

    def __init__(
        self,
        bin_folder: Path = POSTGRES_BIN,
        *,
        make_data: Callable[[Path], list[str | Path]] | None = None,
        prefix: str = "ops-postgres-",
        password_roles: tuple[str, ...] = (),
    ) -> None:
        self.bin = bin_folder
        require(self.bin / "pg_ctl", "postgresql (Debian) or pgserver (PyPI)")
        self.root = private_folder(prefix)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.frozen: list[int] = []
        initdb: list[str | Path] = [
            self.bin / "initdb",
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
            "-D",
            self.data,
        ]
        try:
            check(run_postgres_tool(*(make_data or (lambda _: initdb))(self.data)))
            if password_roles:
                # The first matching line decides: these roles before initdb's
                # `trust` lines.
                hba = self.data / "pg_hba.conf"
                lines = "".join(
                    f"host all {role} 127.0.0.1/32 scram-sha-256\n"
                    for role in password_roles
                )
                # Rewritten in place: the file keeps its owner.
                hba.write_text(lines + hba.read_text())
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, *, wait: bool = True) -> None:
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
            # A throwaway cluster: durability buys nothing here but slower tests.
            "-c fsync=off -c full_page_writes=off"
        )
        check(
            run_postgres_tool(
                self.bin / "pg_ctl",
                "start",
                "-D",
                self.data,
                "-l",
                self.log,
                "-o",
                options,
                "-w" if wait else "-W",
            )
        )

    def stop(self, mode: str = "fast") -> None:
        check(
            run_postgres_tool(
                self.bin / "pg_ctl", "stop", "-D", self.data, "-m", mode, "-w"
            )
        )

    def is_running(self) -> bool:
        status = run_postgres_tool(self.bin / "pg_ctl", "status", "-D", self.data)
        return status.returncode == 0

    def is_ready(self) -> bool:
        """pg_isready's answer: the server accepts connections."""
        ready = run(
            [self.bin / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            timeout=START_TIMEOUT,
        )
        return ready.returncode == 0

    def _processes(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
        return [postmaster, *(int(pid) for pid in children.read_text().split())]

    def freeze(self) -> None:
        """Stop every process of the cluster (SIGSTOP), as a host that vanished.

        Connections neither fail nor answer: the kernel still accepts and ACKs,
        so only the client's own timeouts can end a wait.
        """
        self.frozen = self._processes()
        for pid in self.frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        frozen, self.frozen = self.frozen, []
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def remove(self) -> None:
        self.thaw()
        if self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PgBouncer(Process):
    """PgBouncer in transaction pooling mode in front of one PostgreSQL database."""

    def __init__(
        self,
        *,
        database: str,
        server_host: str = "127.0.0.1",
        server_port: int = 5432,
        pool_size: int = 2,
    ) -> None:
        require(PGBOUNCER, "pgbouncer (Debian)")
        self.root = private_folder("ops-pgbouncer-")
        self.port = free_port()
        self.database = database
        users = self.root / "userlist.txt"
        users.write_text(f'"{SERVICE_USER}" ""\n')
        config = self.root / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"{database} = host={server_host} port={server_port} dbname={database}\n"
            "\n[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.root}\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 200\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        self.logfile = self.root / "pgbouncer.log"
        super().__init__(
            [str(PGBOUNCER), str(config)],
            env=os.environ,
            cwd=self.root,
            # Not its logfile: a file root opens first would be root's.
            out=self.root / "pgbouncer.out",
            ready=listens(self.port),
            user=run_as_service_user(),
            # SIGINT: close clients and server connections, then exit.
            stop_signal=signal.SIGINT,
        )

    def url(self) -> str:
        return (
            f"postgresql+asyncpg://{SERVICE_USER}@127.0.0.1:{self.port}/{self.database}"
        )

    def read_log(self) -> str:
        return super().read_log() + _tail(self.logfile)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
