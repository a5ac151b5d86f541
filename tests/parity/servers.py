"""The Flask original (gunicorn) and this service (hypercorn), each served for real.

The original runs from tests/parity/flask_original/ in a virtualenv of its own, built
once from its hash-locked requirements with the project's uv and cached under
the user's cache folder (marshmallow 3 there, 4 here). Each server gets a
PostgreSQL database of its own, created and dropped here; the service's is
migrated by Alembic, the original's made by its own `db.create_all()`, as the
Flask deployment did it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import asyncpg

from tests.ports import free_port
from tests.support import ADMIN_DSN, RESET_MAIL, ROOT
from tests.system.harness import SERVE_TIMEOUT, ServedApp, Server, responds

FLASK_APP = ROOT / "tests" / "parity" / "flask_original"
FLASK_LOCK = FLASK_APP / "requirements.lock"
UV = ROOT / ".tools" / "bin" / "uv"
# Both servers sign with this key, so a token minted once is valid on both.
JWT_KEY = "differential-jwt-key-0123456789-abcdefghij"
SECRET_KEY = "differential-secret-key-0123456789-abcdefg"
SERVER_BASE = ADMIN_DSN.rsplit("/", 1)[0]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "service-tests" / "flask-original"


def flask_venv() -> Path:
    """The original's virtualenv, built on first use; keyed by the lock's hash.

    A file lock makes parallel runs wait for one build; a marker written last
    tells a finished build from one that was interrupted.
    """
    digest = hashlib.sha256(FLASK_LOCK.read_bytes()).hexdigest()[:16]
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / digest
    marker = venv / ".complete"
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        uv = str(UV) if UV.exists() else shutil.which("uv")
        if uv is None:
            raise RuntimeError(f"{UV} is missing: run `make install` first")
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        for command in (
            [uv, "venv", "--quiet", "--python", python, str(venv)],
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--require-hashes",
                "--python",
                str(venv / "bin" / "python"),
                "-r",
                str(FLASK_LOCK),
            ],
        ):
            subprocess.run(command, check=True, timeout=600)  # noqa: S603
        marker.write_text(digest)
        return venv


def flask_python() -> Path:
    return flask_venv() / "bin" / "python"


def sync_url(database: str) -> str:
    """The URL as the Flask deployment wrote it: plain postgresql://."""
    return f"{SERVER_BASE}/{database}"


def unique_database(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


class Database:
    """A database of our own on the suite's PostgreSQL, with a private event loop.

    The harness is synchronous (Hypothesis drives it); asyncpg runs on a loop
    this object owns.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = sync_url(name)
        self._runner = asyncio.Runner()
        self._connection: asyncpg.Connection | None = None

    def create(self) -> None:
        self._runner.run(self._admin(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        self.close()
        self._runner.run(
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        )
        self._runner.close()

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(ADMIN_DSN)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    def _connect(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            self._connection = self._runner.run(asyncpg.connect(self.url))
        return self._connection

    def execute(self, sql: str, *args: object) -> str:
        result: str = self._runner.run(self._connect().execute(sql, *args))
        return result

    def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = self._runner.run(self._connect().fetch(sql, *args))
        return rows

    def close(self) -> None:
        if self._connection is not None:
            self._runner.run(self._connection.close())
            self._connection = None


def base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME")
    return {key: os.environ[key] for key in keep if key in os.environ} | {
        "PYTHONDONTWRITEBYTECODE": "1",
        "SECRET_KEY": SECRET_KEY,
        "JWT_SECRET_KEY": JWT_KEY,
    }


def flask_env(database_url: str) -> dict[str, str]:
    """What the Flask deployment set: FLASK_ENV, DATABASE_URL and the two keys."""
    return base_env() | {"FLASK_ENV": "production", "DATABASE_URL": database_url}


def flask_create_tables(database_url: str) -> None:
    script = (
        "from app import create_app\n"
        "from app.extensions import db\n"
        "app = create_app('production')\n"
        "with app.app_context():\n"
        "    db.create_all()\n"
    )
    subprocess.run(  # noqa: S603 (fixed script)
        [str(flask_python()), "-c", script],
        cwd=FLASK_APP,
        env=flask_env(database_url),
        check=True,
        capture_output=True,
        timeout=120,
    )


def flask_server(database_url: str, workdir: Path, *, workers: int = 2) -> Server:
    """The Flask original under gunicorn on a free loopback port, started."""
    port = free_port()
    # The seed's gunicorn.conf.py, with the bind and worker count the host
    # needs; gunicorn >= 27's control socket sits at a fixed path that two
    # servers on one host would share.
    return Server(
        [
            str(flask_python()),
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--no-control-socket",
            "wsgi:app",
        ],
        host="127.0.0.1",
        port=port,
        env=flask_env(database_url),
        cwd=FLASK_APP,
        out=workdir / "flask.out",
        err=workdir / "flask.err",
        # It has no health route: any answer of the API will do.
        ready=responds(f"http://127.0.0.1:{port}/api/v1/users", status=None),
        timeout=SERVE_TIMEOUT,
        name="flask",
    ).start()


def service_env(
    database_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The Flask deployment's variables, as they were, plus the service's own."""
    return (
        flask_env(database_url)
        | {
            "LOG_LEVEL": "WARNING",
            "PASSWORD_HASH_THREADS": "2",
        }
        | RESET_MAIL
        | dict(extra or {})
    )


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def service_migrate(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own alembic)
        [venv_bin("alembic"), *(args or ("upgrade", "head"))],
        cwd=ROOT,
        env=service_env(database_url),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def service_server(
    database_url: str, workdir: Path, extra: Mapping[str, str] | None = None
) -> ServedApp:
    """This service served with the Flask deployment's variables (started)."""
    return ServedApp(service_env(database_url, extra), ROOT, workdir)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
