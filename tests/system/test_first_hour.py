"""A new user's first hour: a .env file, migrate, seed, serve, the example client.

The instance is what `make run` serves: migrated by alembic, seeded by the CLI,
served under hypercorn.toml, each run as a user runs it, from a folder whose
.env names the database (a SQLite file of its own) and nothing else does.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port
from tests.support import ROOT
from tests.system.harness import ServedApp, clean_environment, run_entry_point

EXAMPLE = ROOT / "examples" / "client.py"


ALEMBIC_CONFIG = str(ROOT / "pyproject.toml")


@dataclass
class FirstHour:
    folder: Path
    database: Path
    app: ServedApp
    migrate: subprocess.CompletedProcess[str]
    seed: subprocess.CompletedProcess[str]


def tables_and_users(database: Path) -> tuple[set[str], list[str]]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
        users = [email for (email,) in connection.execute("SELECT email FROM users")]
    return tables, sorted(users)


@pytest.fixture(scope="module")
def first_hour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstHour]:
    folder = tmp_path_factory.mktemp("first-hour")
    database = folder / "from-dotenv.db"
    (folder / ".env").write_text(
        "# as copied from .env.example, with a database of its own\n"
        f"DATABASE_URL=sqlite:///{database}\n"
        "PASSWORD_HASH_THREADS=1\n"
        "LOG_LEVEL=WARNING\n"
    )
    # INFO: the reset mail, which the example client reads its token from.
    env = clean_environment(LOG_LEVEL="INFO")
    migrate = run_entry_point(
        "alembic", "-c", ALEMBIC_CONFIG, "upgrade", "head", env=env, cwd=folder
    )
    seed = run_entry_point(
        "quart", "--app", "service.asgi", "seed-db", env=env, cwd=folder
    )
    with ServedApp(env, cwd=folder) as app:
        yield FirstHour(folder, database, app, migrate, seed)


@pytest.fixture(scope="module")
def served(first_hour: FirstHour) -> ServedApp:
    return first_hour.app


def test_dotenv_database_url_reaches_migration_seed_and_server(
    first_hour: FirstHour,
) -> None:
    tables, users = tables_and_users(first_hour.database)

    assert {"alembic_version", "users", "auth_sessions"} <= tables
    assert users == sorted(
        ["admin@example.com", *(f"user{i}@example.com" for i in range(1, 6))]
    )
    # The default SQLite file would be instance/service.db under the folder.
    assert not (first_hour.folder / "instance").exists()
    # The server reads the same file: the seeded admin logs in, and the login
    # writes its session there.
    reply = login(first_hour.app.base_url, "admin@example.com", "admin123")
    assert reply["token_type"] == "bearer"
    with contextlib.closing(sqlite3.connect(first_hour.database)) as connection:
        (sessions,) = connection.execute(
            "SELECT count(*) FROM auth_sessions"
        ).fetchone()
    assert sessions >= 1


def test_environment_wins_over_dotenv(first_hour: FirstHour, tmp_path: Path) -> None:
    elsewhere = tmp_path / "from-environment.db"
    env = clean_environment(DATABASE_URL=f"sqlite:///{elsewhere}")

    run_entry_point(
        "alembic",
        "-c",
        ALEMBIC_CONFIG,
        "upgrade",
        "head",
        env=env,
        cwd=first_hour.folder,
    )

    tables, users = tables_and_users(elsewhere)
    assert "users" in tables
    assert users == []


def login(base_url: str, email: str, password: str) -> dict[str, str]:
    request = urllib.request.Request(  # noqa: S310 (the loopback URL built here)
        f"{base_url}/api/v1/auth/login",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
        body: dict[str, str] = json.load(reply)
    return body


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    """The example on the standard library alone (-I -S: no site-packages)."""
    return subprocess.run(  # noqa: S603 (this interpreter, the repo's example)
        [sys.executable, "-I", "-S", str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def served_log(first_hour: FirstHour) -> Path:
    return first_hour.folder / f"hypercorn-{first_hour.app.port}.log"


def test_example_client_session_runs_every_step(first_hour: FirstHour) -> None:
    log = served_log(first_hour)
    result = run_example("--base-url", first_hour.app.base_url, "--log", str(log))

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        r"registered tour-[0-9a-f]{8}@example\.com \(id \d+\)", lines[0]
    )
    assert lines[1].startswith("logged in as tour-")
    assert lines[1].endswith("admin: False)")
    assert re.fullmatch(
        r"\d+ active users, 2 per page, newest first: tour-.*", lines[2]
    )
    assert re.fullmatch(r"published post \d+; 1 on Ada Tour's list", lines[3])
    assert "refreshed the access token" in lines
    assert "the phone's session is revoked: 'Token has been revoked'" in lines
    assert "wrong password: 401 'Invalid email or password'" in lines
    assert "password changed; the old tokens answer 401, logged in again" in lines
    assert (
        f"reset the password with the token from {log.name}; logged in again" in lines
    )
    assert lines[-1] == "logged out; the old tokens answer 401 'Token has been revoked'"


def test_example_client_runs_again_with_an_account_of_its_own(
    served: ServedApp,
) -> None:
    result = run_example("--base-url", served.base_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "reset skipped: --log names the file with the service's output"
        in result.stdout.splitlines()
    )


def test_example_client_exits_1_at_an_unexpected_answer(served: ServedApp) -> None:
    # Not the API's root: every path answers 404.
    result = run_example("--base-url", f"{served.base_url}/elsewhere")

    assert result.returncode == 1
    assert "unexpected answer: 404: " in result.stderr


def test_example_client_without_a_server_says_so() -> None:
    result = run_example("--base-url", f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 2
    assert "cannot reach http://127.0.0.1:" in result.stderr
