"""The Flask service's CLI: `quart --app service.asgi seed-db | create-admin`,
and `migrate`, the deploy path's `alembic upgrade head` (service/db/migrate.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from marshmallow import ValidationError
from quart import Quart
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.db.engine import create_engine, make_sessionmaker
from service.db.migrate import FLASK_REVISION, MigrateError, alembic_config, migrate
from service.schemas.user import NewUser, UserCreateSchema
from service.security.passwords import PasswordHasher
from service.services.users import UserService

T = TypeVar("T")

SEED_USERS = [("admin@example.com", "admin123", "Admin", "User", True)] + [
    (f"user{i}@example.com", "password123", "User", str(i), False) for i in range(1, 6)
]


def register(app: Quart, settings: Settings) -> None:
    @app.cli.command("migrate")
    def migrate_database() -> None:
        """alembic upgrade head; a never-stamped Flask database is checked
        against revision 0001 and adopted (stamped) first."""
        try:
            adopted = migrate(alembic_config(Path.cwd()), settings.database_url)
        except MigrateError as error:
            raise click.ClickException(str(error)) from None
        if adopted:
            click.echo(
                f"Adopted the Flask service's database: its tables match "
                f"revision {FLASK_REVISION}, stamped it and upgraded to head"
            )

    @app.cli.command("seed-db")
    def seed_db() -> None:
        """Seed the database with the Flask service's demo admin and five users."""
        if settings.env == "production":
            raise click.ClickException(
                "seed-db creates accounts with known passwords; "
                "it does not run in production"
            )
        click.echo("Seeding database...")
        asyncio.run(_with_users(settings, _seed))
        click.echo("Database seeded successfully!")

    @app.cli.command("create-admin")
    @click.argument("email", envvar="ADMIN_EMAIL")
    @click.argument("password", envvar="ADMIN_PASSWORD", required=False)
    @click.option(
        "--bootstrap",
        is_flag=True,
        help="Do nothing if any admin ever existed (deleted ones too): the "
        "deployments' first-admin step, safe to run on every rollout.",
    )
    @click.option(
        "--restore",
        is_flag=True,
        help="If the address belongs to a deleted account, bring that account "
        "back (as an admin, with its own password) instead of refusing.",
    )
    def create_admin(
        email: str, password: str | None, bootstrap: bool, restore: bool
    ) -> None:
        """Create an admin user; prompts for the password when it is left out.

        Never over a deleted account with that address: that is refused, naming
        it, unless --restore brings it back.
        """

        fields = _admin_fields(email, _admin_password(password))

        async def create(users: UserService) -> None:
            if bootstrap and await users.any_admin_ever():
                click.echo("An admin exists or existed: nothing to bootstrap")
                return
            if await users.get_by_email(email) is not None:
                click.echo(f"User {email} already exists")
                return
            deleted = await users.deleted_by_email(email)
            if deleted is not None and restore:
                await users.restore_as_admin(deleted.id)
                click.echo(
                    f"Deleted user {deleted.email} (id {deleted.id}) restored as "
                    "an admin, with its own password"
                )
                return
            if deleted is not None:
                raise click.ClickException(
                    f"{deleted.email} is a deleted account (id {deleted.id}, "
                    f"deleted {deleted.deleted_at:%Y-%m-%d %H:%M} UTC): no admin is "
                    "created over it. Restore it with --restore, or choose "
                    "another ADMIN_EMAIL"
                )
            await users.register(fields, is_admin=True)
            click.echo(f"Admin user {email} created successfully!")

        asyncio.run(_with_users(settings, create))


def _admin_password(password: str | None) -> str:
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _admin_fields(email: str, password: str) -> NewUser:
    data: NewUser = {
        "email": email,
        "password": password,
        "first_name": "Admin",
        "last_name": "User",
    }
    try:
        UserCreateSchema().load(data)
    except ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else {}
        problems = "; ".join(
            f"{field}: {' '.join(map(str, texts))}"
            for field, texts in sorted(messages.items())
        )
        raise click.ClickException(f"invalid admin: {problems}") from None
    return data


async def _seed(users: UserService) -> None:
    for email, password, first_name, last_name, is_admin in SEED_USERS:
        if await users.get_by_email(email) is not None:
            continue
        await users.register(
            {
                "email": email,
                "password": password,
                "first_name": first_name,
                "last_name": last_name,
            },
            is_admin=is_admin,
        )
        click.echo("Created admin user" if is_admin else f"Created user: {email}")


async def _with_users(
    settings: Settings, work: Callable[[UserService], Awaitable[T]]
) -> T:
    engine = create_engine(settings)
    hasher = PasswordHasher(settings.password_hash_threads)
    try:
        session: AsyncSession
        async with make_sessionmaker(engine)() as session:
            return await work(UserService(session, hasher))
    finally:
        hasher.shutdown()
        await engine.dispose()
