"""The deploy path's migration: `alembic upgrade head`, adopting the Flask
service's database when it was never stamped (`quart --app service.asgi migrate`).

A plain `alembic upgrade head` on a database the Flask service made with
`db.create_all()` tries to create its tables again and fails with a long
traceback. Before upgrading, this looks at the database:

- it has Alembic's version table, or no table at all: upgrade;
- it has exactly the Flask service's tables and no version table: their
  columns, types, keys and index are compared with revision 0001's (which
  creates that schema); if they match, the database is stamped 0001 and
  upgraded, rewriting no row (docs/MIGRATING.md, section 2);
- anything else: it stops, changing nothing, with one line saying why and what
  to run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.config import (
    database_url_from_env,
    default_database_url,
    prepare_sqlite_file,
)

FLASK_REVISION = "0001"
GUIDE = "docs/MIGRATING.md, section 2"
# pg_advisory_lock's key for migrations: any constant no other code takes.
LOCK_KEY = 0x5E12_0001


class MigrateError(Exception):
    """Why the database was left as it was: one line."""


def alembic_config(directory: Path) -> Config:
    """Alembic's settings from pyproject.toml in `directory` (the image's /app)."""
    return Config(toml_file=str(directory / "pyproject.toml"))


def flask_schema(config: Config) -> MetaData:
    """Revision 0001's tables: the schema db.create_all() made."""
    revision = ScriptDirectory.from_config(config).get_revision(FLASK_REVISION)
    if revision is None:
        raise MigrateError(f"revision {FLASK_REVISION} is missing from migrations/")
    schema: MetaData = revision.module.flask_schema()
    return schema


def describe(difference: Any) -> str:
    """One autogenerate difference, e.g. `add_column posts.summary`."""
    if isinstance(difference, list):
        difference = difference[0]
    kind, *details = difference
    names = [
        str(getattr(detail, "name", detail))
        for detail in details
        if isinstance(detail, str) or hasattr(detail, "name")
    ]
    return " ".join([kind, ".".join(names[:2])]).strip()


def unstamped_flask_schema(connection: Connection, expected: MetaData) -> bool:
    """True for a never-stamped Flask database that matches revision 0001;
    False when Alembic's version table is there or no table is; else refuses."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or not tables:
        return False
    if tables != set(expected.tables):
        raise MigrateError(
            f"the database has tables ({', '.join(sorted(tables))}) but no "
            "alembic_version, and they are not the Flask service's "
            f"({', '.join(sorted(expected.tables))}): nothing was changed; "
            "point DATABASE_URL at the Flask service's database or an empty one"
        )
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences = compare_metadata(context, expected)
    if differences:
        raise MigrateError(
            "the database has the Flask service's tables but they differ from "
            f"revision {FLASK_REVISION} ({describe(differences[0])}, "
            f"{len(differences)} difference(s)): nothing was changed; back it up, "
            f"then follow {GUIDE}, running `alembic stamp {FLASK_REVISION}` "
            "yourself once the schema is the Flask service's"
        )
    return True


async def _migrate(url: str, config: Config) -> bool:
    expected = flask_schema(config)
    prepare_sqlite_file(url)
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                # One migration at a time: pods starting together (the k8s
                # init container) queue here; each then finds the work done.
                await connection.execute(
                    text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY}
                )
                await connection.commit()
            adopt = await connection.run_sync(unstamped_flask_schema, expected)
            await connection.commit()

            def upgrade(sync: Connection) -> None:
                config.attributes["connection"] = sync
                if adopt:
                    command.stamp(config, FLASK_REVISION)
                command.upgrade(config, "head")

            await connection.run_sync(upgrade)
            await connection.commit()
            return adopt
    finally:
        await engine.dispose()


def migrate(config: Config, url: str | None = None) -> bool:
    """Upgrade to head, adopting a never-stamped Flask database first: True
    when it adopted one. Raises MigrateError, having changed nothing."""
    url = url or database_url_from_env() or default_database_url()
    return asyncio.run(_migrate(url, config))
