"""The `sh` blocks of docs/client.md and docs/operations.md, run as a reader runs them.

client.md's commands run, in order, as one script against an instance that is
what `make run` serves (migrated, seeded, development settings, the reset mail
in its log), on a PostgreSQL database of its own. operations.md's commands
migrate, seed, create an admin, serve and scrape a fresh database themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs import commands
from tests.parity.servers import Database, unique_database
from tests.ports import free_port
from tests.support import ROOT
from tests.system.harness import (
    VENV_BIN,
    ServedApp,
    clean_environment,
    run_entry_point,
)

CLIENT_GUIDE = ROOT / "docs" / "client.md"
OPERATIONS = ROOT / "docs" / "operations.md"
# Each command starts Python or a login's hash afresh; a loaded machine is slow.
TIMEOUT = 300
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
# The folder and package `openapi-python-client generate` makes of the document.
TYPED_CLIENT = "users-auth-and-posts-api-client"


@pytest.fixture
def database() -> Iterator[Database]:
    database = Database(unique_database("docs"))
    database.create()
    try:
        yield database
    finally:
        database.drop()


def environment(database: Database, **values: str) -> dict[str, str]:
    """A reader's shell: the venv's commands on PATH, no .env, this database."""
    env = clean_environment(DATABASE_URL=database.url, ENV_FILE="", **values)
    return env | {"PATH": f"{VENV_BIN}:{env['PATH']}"}


def json_lines(output: str) -> list[dict[str, object]]:
    """The JSON objects the commands printed, one a line (curl's answers)."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_client_guide_runs_against_what_make_run_serves(
    database: Database, tmp_path: Path
) -> None:
    env = environment(database, LOG_LEVEL="INFO")
    run_entry_point("alembic", "upgrade", "head", env=env, cwd=ROOT)
    run_entry_point("quart", "--app", "service.asgi", "seed-db", env=env, cwd=ROOT)
    with ServedApp(env, cwd=ROOT, log_folder=tmp_path) as served:
        log = tmp_path / f"hypercorn-{served.port}.log"
        run = commands.run(
            commands.commands(CLIENT_GUIDE),
            env=env | {"PORT": str(served.port), "SERVICE_LOG": str(log)},
            timeout=TIMEOUT,
        )
    output = run.check()

    # What the page says each answer is.
    bodies = json_lines(output)
    assert bodies[0]["email"] == "ada@example.com"
    assert {"page": 2, "per_page": 2, "pages": 4, "total": 7}.items() <= bodies[
        3
    ].items()
    lines = output.splitlines()
    assert "20" in lines  # per_page=0 answers the default page size
    assert '{"error":"Invalid email or password"}' in lines
    # Other sessions ended, fresh again, password changed, reset, address verified.
    assert lines.count("204") == 5
    assert "True" in lines  # email_verified
    assert '{"error":"Token has been revoked","msg":"Token has been revoked"}' in lines
    # The example client's whole tour, the reset through the log included.
    assert "reset the password with the token from " in output
    assert lines[-1].startswith("logged out; the old tokens answer 401")


def test_operations_commands_migrate_seed_serve_and_scrape(database: Database) -> None:
    port = free_port()
    env = environment(
        database,
        PORT=str(port),
        ADMIN_PASSWORD="ops-password-123",
        METRICS_TOKEN="docs-metrics-token",
    )

    output = commands.run(
        commands.commands(OPERATIONS), env=env, timeout=TIMEOUT
    ).check()

    assert '{"status":"ready"}' in output
    assert "http_requests_total" in output
    admins = database.fetch("SELECT email FROM users WHERE is_admin ORDER BY email")
    assert [row["email"] for row in admins] == ["admin@example.com", "ops@example.com"]


def test_client_guide_typed_client_runs_as_written(
    database: Database, tmp_path: Path
) -> None:
    """The page's Python block, on the client its commands generate, against
    what `make run` serves (its base URL the served one)."""
    env = environment(database)
    run_entry_point("alembic", "upgrade", "head", env=env, cwd=ROOT)
    run_entry_point("quart", "--app", "service.asgi", "seed-db", env=env, cwd=ROOT)
    (program,) = [
        text for language, text in commands.fences(CLIENT_GUIDE) if language == "python"
    ]
    assert 'base = "http://127.0.0.1:8000"' in program
    with ServedApp(env, cwd=ROOT, log_folder=tmp_path) as served:
        generated = subprocess.run(  # noqa: S603 (the dev group's generator)
            [GENERATOR, "generate", "--url", f"{served.base_url}/openapi.json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=TIMEOUT,
        )
        assert (tmp_path / TYPED_CLIENT).is_dir(), generated.stdout + generated.stderr
        ran = subprocess.run(  # noqa: S603 (the page's own program)
            [
                sys.executable,
                "-c",
                program.replace("http://127.0.0.1:8000", served.base_url),
            ],
            cwd=tmp_path,
            env=env | {"PYTHONPATH": str(tmp_path / TYPED_CLIENT)},
            capture_output=True,
            text=True,
            check=False,
            timeout=TIMEOUT,
        )

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.splitlines() == ["admin@example.com"]
