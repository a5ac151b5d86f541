"""service.db.replicas without a standby: LSN arithmetic, the setting, and no trace
of replicas without DATABASE_REPLICA_URL (tests/system/test_standby*.py start real
standbys)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from service.config import ConfigError, Settings
from service.db.replicas import format_lsn, parse_lsn, settled_position
from service.models import User
from tests.support import METRICS_TOKEN, AppMaker, bearer


@pytest.fixture
async def app(make_app: AppMaker) -> AsyncIterator[Quart]:
    async with make_app(metrics_token=METRICS_TOKEN) as app:
        yield app


async def test_reads_log_no_targets_and_export_no_replica_metrics(
    client: Client,
    user: User,
    user_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "service.access")
    for path in ("/api/v1/users", f"/api/v1/users/{user.id}", "/api/v1/posts"):
        response = await client.get(path, headers=user_headers)
        assert response.status_code == 200
    metrics = await client.get("/metrics", headers=bearer(METRICS_TOKEN))

    logged = [r.fields for r in caplog.records if r.name == "service.access"]  # type: ignore[attr-defined]
    assert len(logged) == 4
    assert not [
        entry for entry in logged if "db_reads" in entry or "db_fallbacks" in entry
    ]
    assert "db_replica" not in await metrics.get_data(as_text=True)
    assert await (await client.get("/readyz")).get_json() == {"status": "ready"}


def test_lsn_round_trip() -> None:
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"


@pytest.mark.parametrize(
    ("position", "settled"),
    [
        (8192 + 24, 8192),  # past a short page header
        (16 * 1024 * 1024 + 40, 16 * 1024 * 1024),  # past a segment's long header
        (8192 + 40, 8192 + 40),  # a record that really ends there
        (8192 + 64, 8192 + 64),
    ],
)
def test_settled_position_steps_back_over_empty_page_headers(
    position: int, settled: int
) -> None:
    assert settled_position(position, 8192, 16 * 1024 * 1024) == settled


def test_replica_urls_come_from_one_comma_separated_setting() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@primary/db",
            "DATABASE_REPLICA_URL": "postgresql://u@r1/db, postgres://u@r2:5433/db",
            "DB_REPLICA_MAX_LAG": "2.5",
        }
    )
    assert settings.database_replica_urls == (
        "postgresql+asyncpg://u@r1/db",
        "postgresql+asyncpg://u@r2:5433/db",
    )
    assert settings.db_replica_max_lag == 2.5
    assert Settings.from_env({}).database_replica_urls == ()


@pytest.mark.parametrize(
    "environ",
    [
        {"DATABASE_REPLICA_URL": "postgresql://u@r1/db"},  # on the SQLite default
        {"DATABASE_URL": "postgresql://u@p/db", "DATABASE_REPLICA_URL": "sqlite:///x"},
    ],
)
def test_replicas_need_postgresql(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="DATABASE_REPLICA_URL"):
        Settings.from_env(environ)
