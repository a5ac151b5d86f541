"""examples/client.py, run as a user runs it, against a served instance.

The instance is what `make run` serves: migrated by alembic, seeded by the CLI,
on a SQLite file of its own, under hypercorn.toml.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.ops.servers import ServedApp, clean_environment, free_port, run_entry_point
from tests.support import ROOT

EXAMPLE = ROOT / "examples" / "client.py"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    folder = tmp_path_factory.mktemp("example")
    env = clean_environment(DATABASE_URL=f"sqlite:///{folder / 'service.db'}")
    run_entry_point("alembic", "upgrade", "head", env=env, cwd=ROOT)
    run_entry_point("quart", "--app", "service.asgi", "seed-db", env=env, cwd=ROOT)
    with ServedApp(env, cwd=ROOT, log_folder=folder) as app:
        yield app


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (this interpreter, the repo's example)
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_example_client_session_runs_every_step(served: ServedApp) -> None:
    result = run_example("--base-url", served.base_url)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "logged in as admin@example.com (id 1, admin: True)"
    assert lines[1].startswith("6 active users, 2 per page: user5@example.com, ")
    assert "refreshed the access token" in lines
    assert "the phone's session is revoked: 'Token has been revoked'" in lines
    assert "wrong password: 401 'Invalid email or password'" in lines
    assert lines[-1] == "logged out; the old tokens answer 401 'Token has been revoked'"


def test_example_client_wrong_password_exits_non_zero(served: ServedApp) -> None:
    result = run_example("--base-url", served.base_url, "--password", "not-it")

    assert result.returncode == 1
    assert "unexpected answer: 401: Invalid email or password" in result.stderr


def test_example_client_without_a_server_says_so() -> None:
    result = run_example("--base-url", f"http://127.0.0.1:{free_port()}")

    assert result.returncode == 2
    assert "cannot reach http://127.0.0.1:" in result.stderr
