"""docs/MIGRATING.md, run: every `sh` block, in order, as one script.

The starting point is what a Flask deployment has on Friday morning: a
database the Flask service made and seeded (with an address registered twice
in different letter case, which revision 0002 refuses), the Flask original
serving on it, and the Flask deployment's environment.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime

import pytest

from tests.docs import commands
from tests.parity.servers import (
    FLASK_APP,
    Database,
    flask_create_tables,
    flask_env,
    flask_python,
    flask_server,
    service_env,
    unique_database,
    venv_bin,
    workdir,
)
from tests.ports import free_port
from tests.support import ROOT

GUIDE = ROOT / "docs" / "MIGRATING.md"
# Each command starts Python afresh; on a loaded 2-core machine that is slow.
GUIDE_TIMEOUT = 600


def guide_commands() -> list[str]:
    blocks = commands.commands(GUIDE)
    assert len(blocks) >= 6, "the guide lost its commands"
    return blocks


@pytest.mark.skipif(
    not all(os.path.exists(f"/usr/bin/{tool}") for tool in ("psql", "jq", "curl")),
    reason="the guide uses psql, jq and curl",
)
def test_the_guide_runs_from_flask_schema_to_service_and_back() -> None:
    database = Database(unique_database("guide"))
    database.create()
    try:
        with workdir("guide-") as folder:
            flask_create_tables(database.url)
            subprocess.run(  # noqa: S603 (the Flask service's own CLI)
                [str(flask_python()), "-m", "flask", "seed-db"],
                cwd=FLASK_APP,
                env=flask_env(database.url) | {"FLASK_APP": "wsgi:app"},
                check=True,
                capture_output=True,
                timeout=120,
            )
            # What the Flask service's case-sensitive index let in.
            twin = database.fetch(
                "INSERT INTO users (email, password_hash, first_name, last_name, "
                "is_active, is_admin, created_at, updated_at) SELECT "
                "'User1@Example.COM', password_hash, first_name, last_name, true, "
                "false, $1, $1 FROM users WHERE email = 'user1@example.com' "
                "RETURNING id",
                datetime.now(UTC).replace(tzinfo=None),
            )[0]["id"]
            with flask_server(database.url, folder) as flask:
                env = service_env(database.url) | {
                    "PATH": f"{venv_bin('')}:{os.environ['PATH']}",
                    "PORT": str(free_port()),
                    "FLASK_PORT": str(flask.port),
                    "METRICS_TOKEN": "guide-metrics-token",
                    "ADMIN_PASSWORD": "ops-password-123",
                    # Section 2's backup goes there, not into the checkout.
                    "BACKUP_DIR": str(folder),
                }
                run = commands.run(
                    guide_commands(), env=env, cwd=ROOT, timeout=GUIDE_TIMEOUT
                )
        text = run.check()
        assert "http_requests_total" in text
        rows = database.fetch("SELECT version_num FROM alembic_version")
        assert [row["version_num"] for row in rows] == ["0001"]
        deleted = database.fetch("SELECT deleted_at FROM users WHERE id = $1", twin)
        assert deleted[0]["deleted_at"] is not None
    finally:
        database.drop()
