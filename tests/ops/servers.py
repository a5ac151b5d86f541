"""Throwaway PostgreSQL clusters and PgBouncer instances for the operations tests.

PostgreSQL and PgBouncer refuse to run as root, so when the suite runs as root
every command runs as the `postgres` OS user, in a temporary folder it owns.
The helpers are synchronous; async tests call them through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.ports import free_port


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


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
# PostgreSQL refuses to run as root: as root, its commands run as this user.
SERVICE_USER = "postgres" if _user_exists("postgres") else "nobody"
START_TIMEOUT = 30.0


def _as_service_user(*command: str | Path) -> list[str]:
    args = [str(part) for part in command]
    if os.geteuid() != 0:
        return args
    # setpriv execs the command itself (runuser would stay as its parent), so a
    # Popen's pid is the server's own and signals reach it directly.
    return [
        "/usr/bin/setpriv",
        f"--reuid={SERVICE_USER}",
        f"--regid={SERVICE_USER}",
        "--init-groups",
        "--",
        *args,
    ]


def _run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (fixed binaries, arguments built here)
        _as_service_user(*command),
        capture_output=True,
        text=True,
        check=False,
        timeout=START_TIMEOUT,
    )


def _check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(result.args)} failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )


def _private_folder(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(SERVICE_USER)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    return folder


def require(binary: Path, package: str) -> None:
    if not binary.exists():
        pytest.skip(f"{binary} is not installed (package: {package})")


class PostgresCluster:
    """A cluster of its own (initdb), on its own port, trusting local connections
    except those of `password_roles`, which must give their password (SCRAM)."""

    def __init__(
        self, bin_folder: Path = POSTGRES_BIN, password_roles: tuple[str, ...] = ()
    ) -> None:
        self.bin = bin_folder
        require(self.bin / "pg_ctl", "postgresql (Debian) or pgserver (PyPI)")
        self.root = _private_folder("ops-postgres-")
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.frozen: list[int] = []
        try:
            _check(
                _run(
                    self.bin / "initdb",
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--no-sync",
                    "-D",
                    self.data,
                )
            )
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
        _check(
            _run(
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
        _check(_run(self.bin / "pg_ctl", "stop", "-D", self.data, "-m", mode, "-w"))

    def is_running(self) -> bool:
        return _run(self.bin / "pg_ctl", "status", "-D", self.data).returncode == 0

    def is_ready(self) -> bool:
        """pg_isready's answer: the server accepts connections."""
        result = subprocess.run(  # noqa: S603 (fixed binary and arguments)
            [
                str(self.bin / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
            ],
            check=False,
            timeout=START_TIMEOUT,
        )
        return result.returncode == 0

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


class PgBouncer:
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
        self.root = _private_folder("ops-pgbouncer-")
        self.port = free_port()
        self.database = database
        self.log = self.root / "pgbouncer.log"
        users = self.root / "userlist.txt"
        users.write_text(f'"{SERVICE_USER}" ""\n')
        self.config = self.root / "pgbouncer.ini"
        self.config.write_text(
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
            f"logfile = {self.log}\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def url(self) -> str:
        return (
            f"postgresql+asyncpg://{SERVICE_USER}@127.0.0.1:{self.port}/{self.database}"
        )

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (fixed binary, our config)
            _as_service_user(PGBOUNCER, self.config),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited:\n{self.read_log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"pgbouncer did not listen:\n{self.read_log()}")

    def read_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # SIGINT: close clients and server connections, then exit.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


VENV_BIN = Path(sys.executable).parent
HYPERCORN_TOML = Path(__file__).resolve().parents[2] / "hypercorn.toml"
SERVE_TIMEOUT = 120.0


def clean_environment(**values: str) -> dict[str, str]:
    """The caller's environment without the service's own settings."""
    keep = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")
    }
    return {**keep, "PASSWORD_HASH_THREADS": "1", "LOG_LEVEL": "WARNING", **values}


def run_entry_point(
    *command: str, env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """One of the venv's console scripts (alembic, quart), as a user runs it."""
    result = subprocess.run(  # noqa: S603 (the venv's own scripts)
        [str(VENV_BIN / command[0]), *command[1:]],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    _check(result)
    return result


class ServedApp:
    """`hypercorn -c hypercorn.toml service.asgi:app` on a free loopback port."""

    def __init__(
        self, env: Mapping[str, str], cwd: Path, log_folder: Path | None = None
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = (log_folder or cwd) / f"hypercorn-{self.port}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(  # noqa: S603 (the venv's hypercorn)
                [
                    str(VENV_BIN / "hypercorn"),
                    "-c",
                    str(HYPERCORN_TOML),
                    "-b",
                    f"127.0.0.1:{self.port}",
                    "service.asgi:app",
                ],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        try:
            self._wait_until_serving()
        except BaseException:
            self.stop()
            raise

    def _wait_until_serving(self) -> None:
        # A cold start imports the whole service: on a loaded machine that alone
        # took over 30 s.
        deadline = time.monotonic() + SERVE_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hypercorn exited:\n{self.read_log()}")
            try:
                with urllib.request.urlopen(  # noqa: S310 (loopback URL built here)
                    f"{self.base_url}/healthz", timeout=2
                ):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"hypercorn did not answer /healthz:\n{self.read_log()}")

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)

    def __enter__(self) -> ServedApp:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
