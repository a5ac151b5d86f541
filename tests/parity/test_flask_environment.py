"""The Flask deployment's interface: its environment variables and CLI commands."""

from __future__ import annotations

import re
import subprocess

import click
import pytest

from service import create_app
from service.config import ConfigError, Settings
from tests.parity.servers import (
    FLASK_APP,
    JWT_KEY,
    SECRET_KEY,
    flask_env,
    flask_python,
    service_env,
    venv_bin,
)
from tests.support import RESET_MAIL, ROOT

FLASK_URL = "postgresql://app:pw@db.internal:5432/app"


def flask_deployment(**changes: str) -> dict[str, str]:
    """What the Flask service's container had (FLASK_ENV, DATABASE_URL, two keys),
    plus the reset-mail settings production needs here."""
    return {
        "FLASK_ENV": "production",
        "DATABASE_URL": FLASK_URL,
        "SECRET_KEY": SECRET_KEY,
        "JWT_SECRET_KEY": JWT_KEY,
        **RESET_MAIL,
    } | changes


def test_flask_env_selects_production_when_app_env_is_unset() -> None:
    settings = Settings.from_env(flask_deployment())
    assert settings.env == "production"
    assert settings.database_url == "postgresql+asyncpg://app:pw@db.internal:5432/app"
    assert (settings.secret_key, settings.jwt_secret_key) == (SECRET_KEY, JWT_KEY)


@pytest.mark.parametrize("name", ["development", "testing"])
def test_flask_env_selects_the_other_configurations_too(name: str) -> None:
    assert Settings.from_env(flask_deployment(FLASK_ENV=name)).env == name


def test_app_env_wins_over_flask_env() -> None:
    env = flask_deployment(FLASK_ENV="production", APP_ENV="development")
    assert Settings.from_env(env).env == "development"
    env = flask_deployment(FLASK_ENV="development", APP_ENV="production")
    assert Settings.from_env(env).env == "production"


def test_neither_set_is_development() -> None:
    assert Settings.from_env({}).env == "development"


def test_an_unknown_flask_env_stops_the_start_naming_flask_env() -> None:
    with pytest.raises(ConfigError, match=r"^FLASK_ENV must be .* not 'staging'$"):
        Settings.from_env(flask_deployment(FLASK_ENV="staging"))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"SECRET_KEY": "dev-secret-key-change-me-0123456789"}, "SECRET_KEY"),
        ({"JWT_SECRET_KEY": "short"}, "JWT_SECRET_KEY"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        # The Flask service had no reset mail: production asks where it goes.
        ({"MAIL_BACKEND": ""}, "SMTP_URL"),
        ({"PASSWORD_RESET_URL": ""}, "PASSWORD_RESET_URL"),
        # Nor address verification: production asks where its links go.
        ({"EMAIL_VERIFY_URL": ""}, "EMAIL_VERIFY_URL"),
        ({"EMAIL_CHANGE_URL": ""}, "EMAIL_CHANGE_URL"),
    ],
)
def test_what_cannot_carry_over_stops_the_start_naming_the_setting(
    changes: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{named} "):
        Settings.from_env(flask_deployment(**changes))


def test_with_the_flask_environment_the_service_runs_in_production() -> None:
    """seed-db refuses in production only: FLASK_ENV=production took effect."""
    result = subprocess.run(  # noqa: S603 (our own CLI)
        [venv_bin("quart"), "--app", "service.asgi", "seed-db"],
        cwd=ROOT,
        env=service_env(FLASK_URL),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "it does not run in production" in result.stderr


def commands(help_text: str) -> set[str]:
    section = help_text.split("Commands:", 1)[1]
    return set(re.findall(r"^  (\S+)", section, re.MULTILINE))


def test_the_flask_cli_commands_keep_their_names() -> None:
    flask_help = subprocess.run(  # noqa: S603 (the original's own CLI)
        [str(flask_python()), "-m", "flask", "--help"],
        cwd=FLASK_APP,
        env=flask_env(FLASK_URL) | {"FLASK_APP": "wsgi:app"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    service_cli = create_app(Settings.from_env(flask_deployment())).cli
    with click.Context(service_cli) as context:
        service_commands = set(service_cli.list_commands(context))
    flask_own = commands(flask_help) - {"routes", "run", "shell"}
    assert flask_own == {"seed-db", "create-admin"}
    assert flask_own <= service_commands
