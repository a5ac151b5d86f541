"""docs/configuration.md and .env.example against service/config.py's Settings.

Every setting has a row in docs/configuration.md (its default, when a literal,
the field's own) and a line in .env.example; neither lists a variable nothing
reads; .env.example loads as it is. The failure messages say what to add where,
for whoever adds a setting.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import dotenv
import pytest

from service.config import ConfigError, Settings
from tests.support import ROOT

CONFIGURATION = ROOT / "docs" / "configuration.md"
ENV_EXAMPLE = ROOT / ".env.example"
# The section of the page for variables read by something else than Settings.
OUTSIDE = "## Read outside Settings"
# Where those are read: each must still be named there.
READERS = [
    ROOT / "service",
    ROOT / "deploy" / "docker-entrypoint.py",
    ROOT / "Makefile",
]
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \|", re.MULTILINE)
ENV_LINE = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def settings_fields() -> dict[str, dataclasses.Field[Any]]:
    return {each.metadata["env"]: each for each in dataclasses.fields(Settings)}


def documented() -> tuple[dict[str, str], set[str]]:
    """{variable: default cell} of the settings' tables, and the variables of
    the section for the ones Settings does not read."""
    text = CONFIGURATION.read_text()
    settings_part, _, outside_part = text.partition(OUTSIDE)
    rows = {name: cell.strip() for name, cell in ROW.findall(settings_part)}
    # The next section after it, if any, is the settings' again.
    outside_part, _, rest = outside_part.partition("\n## ")
    rows |= {name: cell.strip() for name, cell in ROW.findall(rest)}
    return rows, {name for name, _ in ROW.findall(outside_part)}


def default_of(each: dataclasses.Field[Any]) -> Any:
    if each.default is not dataclasses.MISSING:
        return each.default
    return dataclasses.MISSING  # a default_factory: the page says it in words


def as_written(value: Any) -> str:
    """A default as it would be set in the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def row_example(name: str, each: dataclasses.Field[Any]) -> str:
    default = default_of(each)
    if default is dataclasses.MISSING:
        cell = "what it is, in words"
    elif default is None or default in ("", ()):
        cell = "unset (what that means)"
    else:
        cell = f"`{as_written(default)}`"
    return f"| `{name}` | {cell} | what it does |"


def test_every_setting_has_a_row_in_configuration_md() -> None:
    rows, _ = documented()
    missing = {
        name: each for name, each in settings_fields().items() if name not in rows
    }

    assert not missing, (
        "docs/configuration.md has no row for "
        + ", ".join(missing)
        + ". Add to the table of the section the setting belongs to (a feature's own "
        "section goes before '## Read outside Settings'):\n"
        + "\n".join(row_example(name, each) for name, each in missing.items())
    )


def test_configuration_md_lists_no_setting_that_settings_lacks() -> None:
    rows, _ = documented()
    stale = sorted(set(rows) - set(settings_fields()))

    assert not stale, (
        f"docs/configuration.md documents {stale}, which service/config.py's Settings "
        "does not read: remove the rows, or move a variable read elsewhere to "
        f"'{OUTSIDE}'"
    )


def test_literal_defaults_on_the_page_are_the_fields_defaults() -> None:
    rows, _ = documented()
    wrong = []
    for name, each in settings_fields().items():
        cell = rows.get(name, "")
        literal = re.fullmatch(r"`([^`]*)`", cell)
        default = default_of(each)
        if literal is None or default is dataclasses.MISSING:
            continue
        if isinstance(default, int | float) and not isinstance(default, bool):
            same = float(literal[1]) == float(default)
        else:
            same = literal[1] == as_written(default)
        if not same:
            wrong.append(
                f"{name}: the page says `{literal[1]}`, Settings has {default!r}"
            )

    assert not wrong, "docs/configuration.md's defaults are stale:\n" + "\n".join(wrong)


def test_variables_read_outside_settings_are_still_read() -> None:
    _, outside = documented()
    sources = "\n".join(
        path.read_text()
        for reader in READERS
        for path in ([reader] if reader.is_file() else sorted(reader.rglob("*.py")))
    )
    unread = sorted(name for name in outside if name not in sources)

    assert outside >= {"FLASK_ENV", "ENV_FILE", "ADMIN_EMAIL", "ADMIN_PASSWORD"}
    assert not unread, (
        f"docs/configuration.md's '{OUTSIDE}' lists {unread}, which nothing in "
        "service/, deploy/docker-entrypoint.py or the Makefile reads: remove the rows"
    )


def env_example_names() -> list[str]:
    return ENV_LINE.findall(ENV_EXAMPLE.read_text())


def test_env_example_names_every_setting() -> None:
    listed = set(env_example_names())
    missing = [name for name in settings_fields() if name not in listed]

    assert not missing, (
        ".env.example lacks "
        + ", ".join(missing)
        + ". Add a line `NAME=value` with a safe development value (Settings.from_env "
        "must accept it), or `# NAME=example` when there is none."
    )


def test_env_example_names_nothing_that_is_not_read() -> None:
    _, outside = documented()
    known = set(settings_fields()) | outside
    stale = [name for name in env_example_names() if name not in known]

    assert not stale, (
        f".env.example sets {stale}, which neither Settings nor "
        f"docs/configuration.md's '{OUTSIDE}' knows: remove them"
    )


def test_env_example_lists_each_variable_once() -> None:
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M)

    assert len(names) == len(set(names)), names


def env_example_values() -> dict[str, str]:
    return {
        name: value or "" for name, value in dotenv.dotenv_values(ENV_EXAMPLE).items()
    }


def test_env_example_loads_as_it_is() -> None:
    settings = Settings.from_env(env_example_values())

    assert settings.env == "development"
    assert settings.is_sqlite


def test_env_example_secrets_are_refused_in_production() -> None:
    values = env_example_values() | {
        "APP_ENV": "production",
        "DATABASE_URL": "postgresql://db/app",
    }

    with pytest.raises(ConfigError, match="SECRET_KEY is missing or a placeholder"):
        Settings.from_env(values)


def test_the_file_row_names_every_secret_the_entrypoint_reads_from_a_file() -> None:
    entrypoint = (ROOT / "deploy" / "docker-entrypoint.py").read_text()
    block = re.search(r"^FILE_VARIABLES = \((.*?)^\)", entrypoint, re.S | re.M)
    assert block is not None
    readable = set(re.findall(r'"([A-Z_]+)"', block[1]))
    row = re.search(r"^\| `…_FILE` \|.*$", CONFIGURATION.read_text(), re.M)
    assert row is not None
    named = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", row[0])) - {"SECRET_KEY_FILE"}

    assert named == readable, (
        "docs/configuration.md's `…_FILE` row and deploy/docker-entrypoint.py's "
        f"FILE_VARIABLES differ: missing {sorted(readable - named)}, "
        f"stale {sorted(named - readable)}"
    )
