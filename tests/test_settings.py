"""Settings: each field is read from the variable it names; strict booleans."""

from __future__ import annotations

from dataclasses import fields
from importlib.metadata import version
from typing import Any

import pytest

from service import create_app
from service.config import ConfigError, Settings

# A valid value per field type, unlike every default, and what it reads as.
SAMPLES: dict[str, tuple[str, Any]] = {
    "int": ("7", 7),
    "float": ("2.5", 2.5),
    "bool": ("no", False),
    "str": ("sample-{token}", "sample-{token}"),
    "str | None": ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0"),
    "tuple[str, ...]": ("10.0.0.1, 10.0.0.2", ("10.0.0.1", "10.0.0.2")),
}
SPECIAL: dict[str, tuple[str, Any]] = {
    "env": ("testing", "testing"),
    "database_url": ("postgres://db/x", "postgresql+asyncpg://db/x"),
    "log_level": ("debug", "DEBUG"),
    "log_format": ("text", "text"),
    "secret_key": (" kept as is ", " kept as is "),
    "jwt_secret_key": (" kept as is ", " kept as is "),
    "cors_origins": ("https://a.example", ("https://a.example",)),
    "database_replica_urls": (
        "postgres://r1/x, postgresql://r2/x",
        ("postgresql+asyncpg://r1/x", "postgresql+asyncpg://r2/x"),
    ),
}
# What a field needs beside it to be accepted at all.
ALONGSIDE: dict[str, dict[str, str]] = {
    "database_replica_urls": {"DATABASE_URL": "postgresql://db/x"},
}
BOOLEANS = [each.metadata["env"] for each in fields(Settings) if each.type == "bool"]


def test_every_field_names_its_own_variable() -> None:
    names = [each.metadata.get("env") for each in fields(Settings)]

    assert None not in names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("field", fields(Settings), ids=lambda each: each.name)
def test_each_field_is_read_from_its_variable(field: Any) -> None:
    raw, expected = SPECIAL.get(field.name) or SAMPLES[str(field.type)]
    if field.type == "bool" and getattr(Settings(), field.name) is False:
        raw, expected = "YES", True

    environ = {**ALONGSIDE.get(field.name, {}), field.metadata["env"]: raw}
    settings = Settings.from_env(environ)

    assert getattr(settings, field.name) == expected


@pytest.mark.parametrize("name", BOOLEANS)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(word, True) for word in ("true", "1", "yes", "on", "TRUE", "On")],
        *[(word, False) for word in ("false", "0", "no", "off", "False", "OFF")],
    ],
)
def test_booleans_read_the_usual_words(name: str, raw: str, expected: bool) -> None:
    settings = Settings.from_env({name: raw})
    [field] = [each for each in fields(Settings) if each.metadata["env"] == name]

    assert getattr(settings, field.name) is expected


@pytest.mark.parametrize("raw", ["disable", "enabled", "2", "y", "nope"])
@pytest.mark.parametrize("name", BOOLEANS)
def test_booleans_refuse_anything_else_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} must be true or false.*{raw!r}"):
        Settings.from_env({name: raw})


def test_the_documented_version_is_the_packages() -> None:
    app = create_app(Settings(env="testing"))

    assert app.extensions["QUART_SCHEMA"].openapi_provider.schema()["info"][
        "version"
    ] == version("service")
