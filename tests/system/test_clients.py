"""The clients people generate from /openapi.json, and front-end code typed by them.

openapi-typescript turns the document into TypeScript types and `tsc --strict`
checks clients/typescript/frontend.ts against them; openapi-python-client turns
it into a Python package and `mypy --strict` checks clients/python/frontend.py.
Both files use every operation the way a front end would, with no casts and no
checks on fields the document calls required: a field made optional again, or
an operation added without a use there, fails here.

The TypeScript toolchain is clients/node_modules, pinned by
clients/package-lock.json (`make install` runs `npm ci` there when npm is
installed). Without node or without that folder the TypeScript test is skipped,
naming what is missing, except under CI (CI set), where it fails.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service import create_app
from service.config import Settings
from tests.support import ROOT

CLIENTS = ROOT / "clients"
NODE_BIN = CLIENTS / "node_modules" / ".bin"
GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "api_client"  # clients/python/openapi-python-client.yaml names it
TIMEOUT = 300


@pytest.fixture(scope="module")
async def document_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/openapi.json as the service answers it (no database needed)."""
    app = create_app(Settings(env="testing"))
    response = await app.test_client().get("/openapi.json")
    assert response.status_code == 200
    path = tmp_path_factory.mktemp("document") / "openapi.json"
    path.write_text(await response.get_data(as_text=True))
    return path


def run(args: list[str | Path], cwd: Path) -> str:
    """The command's output; the test fails with it if the command fails."""
    result = subprocess.run(  # noqa: S603 (our tools, our arguments)
        [str(arg) for arg in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tool = str(args[2]) if args[1:2] == ["-m"] else Path(args[0]).name
        pytest.fail(f"{tool} failed:\n{output}", pytrace=False)
    return output


def require_node_toolchain() -> None:
    if shutil.which("node") is None:
        missing = "node (Debian's package nodejs)"
    elif (
        not (NODE_BIN / "tsc").exists()
        or not (NODE_BIN / "openapi-typescript").exists()
    ):
        missing = "clients/node_modules (`make install` runs `npm ci --prefix clients`)"
    else:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the TypeScript client check needs {missing}")
    pytest.skip(f"the TypeScript client check needs {missing}")


# ------------------------------------------------------------------ TypeScript


def test_typescript_front_end_compiles_against_generated_types(
    document_file: Path, tmp_path: Path
) -> None:
    require_node_toolchain()
    for name in ("frontend.ts", "tsconfig.json"):
        shutil.copy(CLIENTS / "typescript" / name, tmp_path / name)

    run(
        [NODE_BIN / "openapi-typescript", document_file, "-o", tmp_path / "api.d.ts"],
        tmp_path,
    )
    run([NODE_BIN / "tsc", "-p", tmp_path / "tsconfig.json"], tmp_path)


# ---------------------------------------------------------------------- Python


@pytest.fixture(scope="module")
def python_client(
    document_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The folder holding the generated package and a copy of frontend.py."""
    folder = tmp_path_factory.mktemp("python-client")
    run(
        [
            GENERATOR,
            "generate",
            "--path",
            document_file,
            "--meta",
            "none",
            "--config",
            CLIENTS / "python" / "openapi-python-client.yaml",
            "--output-path",
            folder / PACKAGE,
            "--fail-on-warning",
        ],
        folder,
    )
    shutil.copy(CLIENTS / "python" / "frontend.py", folder / "frontend.py")
    return folder


def test_python_program_type_checks_against_generated_client(
    python_client: Path,
) -> None:
    run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            CLIENTS / "python" / "mypy.ini",
            "--cache-dir",
            python_client / ".mypy_cache",
            "frontend.py",
        ],
        python_client,
    )


def test_python_program_uses_every_generated_operation(python_client: Path) -> None:
    api = python_client / PACKAGE / "api"
    generated = {
        f"{module.parent.name}.{module.stem}"
        for module in api.glob("*/*.py")
        if module.stem != "__init__"
    }

    assert generated
    assert imported_operations(python_client / "frontend.py") == generated


def imported_operations(program: Path) -> set[str]:
    """`tag.operation` for each `from api_client.api.tag import operation`."""
    found = set()
    for node in ast.walk(ast.parse(program.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            f"{PACKAGE}.api."
        ):
            tag = (node.module or "").removeprefix(f"{PACKAGE}.api.")
            found |= {f"{tag}.{alias.name}" for alias in node.names}
    return found
