"""The Flask original and this service, served side by side for the harness."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.parity import deviations
from tests.parity.differential import FLASK, SERVICE, Harness
from tests.parity.servers import (
    Database,
    flask_create_tables,
    flask_server,
    service_migrate,
    service_server,
    unique_database,
    workdir,
)

# The original has no login throttle and no route limits; out of reach here (0
# turns a route's limit off), they are their own deviations (docs/MIGRATING.md)
# and tested on their own.
NO_THROTTLE = {
    "LOGIN_MAX_FAILURES": "1000000",
    "LOGIN_MAX_FAILURES_PER_IP": "1000000",
    "REGISTRATION_MAX_PER_IP": "0",
    "PASSWORD_RESET_MAX_PER_ADDRESS": "0",
    "PASSWORD_RESET_MAX_PER_IP": "0",
}


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    with ExitStack() as stack:
        folder = stack.enter_context(workdir("differential-"))
        databases = {FLASK: Database(unique_database("diff_flask"))}
        databases[SERVICE] = Database(unique_database("diff_service"))
        for database in databases.values():
            database.create()
            stack.callback(database.drop)
        flask_create_tables(databases[FLASK].url)
        migrated = service_migrate(databases[SERVICE].url)
        assert migrated.returncode == 0, migrated.stderr
        servers = {
            FLASK: stack.enter_context(flask_server(databases[FLASK].url, folder)),
            SERVICE: stack.enter_context(
                service_server(databases[SERVICE].url, folder, NO_THROTTLE)
            ),
        }
        harness = Harness(
            {side: server.port for side, server in servers.items()},
            databases,
            deviations.load(),
        )
        stack.callback(harness.close)
        yield harness
