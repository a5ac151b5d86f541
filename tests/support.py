"""Test database set-up shared by the fixtures and the migration tests."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import normalize_database_url
from tests import backends

ROOT = Path(__file__).resolve().parent.parent
# The server the suite talks to (tests/backends.py picks it); it creates and
# drops its own databases there.
ADMIN_DSN = backends.postgres_dsn()


def database_url(name: str) -> str:
    base = ADMIN_DSN.rsplit("/", 1)[0]
    return normalize_database_url(f"{base}/{name}")


async def recreate_database(name: str) -> str:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return database_url(name)


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def alembic_config() -> Config:
    return Config(toml_file=str(ROOT / "pyproject.toml"))


async def migrate(
    engine: AsyncEngine, command_name: str = "upgrade", revision: str = "head"
) -> None:
    config = alembic_config()

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        getattr(command, command_name)(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)
