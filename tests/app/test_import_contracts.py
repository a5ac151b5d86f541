"""The import-linter contracts in pyproject.toml (run by `make lint`) can fail."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the project's own tool on a copy of it
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )


def copy_of_the_service(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "service",
        tmp_path / "service",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold_on_a_copy_of_the_service(tmp_path: Path) -> None:
    result = lint_imports(copy_of_the_service(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        # Telemetry depending on the web layer (metrics.py once did).
        (
            "telemetry/metrics.py",
            "service.api.deps",
            "Only the app imports the web layer",
        ),
        # A service reaching up into a route module.
        ("services/posts.py", "service.api.posts", "Layers: api, then services, then"),
        # A security primitive reaching for the database.
        ("security/tokens.py", "service.db.engine", "Security primitives use nothing"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, forbidden: str, contract: str
) -> None:
    tree = copy_of_the_service(tmp_path)
    path = tree / "service" / module
    path.write_text(path.read_text() + f"\nimport {forbidden}\n")

    result = lint_imports(tree)

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(x.startswith(contract) and x.endswith("BROKEN") for x in lines)


# Settings are read in one place, so every setting has a row in
# docs/configuration.md (tests/docs/test_configuration.py) and none hides elsewhere.
ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv"}


def environment_reads(source: str) -> list[int]:
    """The lines of `source` that touch os's environment functions or mapping."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENVIRONMENT_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ENVIRONMENT_NAMES for alias in node.names)
        ):
            lines.append(node.lineno)
    return lines


def test_only_config_reads_the_environment() -> None:
    readers = {
        path.relative_to(ROOT).as_posix(): lines
        for path in sorted((ROOT / "service").rglob("*.py"))
        if path != ROOT / "service" / "config.py"
        if (lines := environment_reads(path.read_text()))
    }

    assert readers == {}


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import os\nURL = os.environ['DATABASE_URL']\n", [2]),
        ("import os\nURL = os.getenv('DATABASE_URL')\n", [2]),
        ("from os import environ\nURL = environ.get('DATABASE_URL')\n", [1]),
        ("import os\nHOME = os.path.expanduser('~')\n", []),
    ],
)
def test_an_environment_read_is_found(source: str, found: list[int]) -> None:
    assert environment_reads(source) == found
