"""README.md's commands in a fresh copy of the repository, as a newcomer runs them.

The copy holds the repository's files and nothing a checkout does not: no
.venv, .tools, instance/ or .env. There `make run` (with PORT, as the README
shows) installs, migrates, seeds and serves; examples/client.py, on the
standard library alone (`python -I -S`: no site-packages), makes its whole
tour against it, the reset step reading the token from make run's own output;
`make dev` serves the same way with the dev group; `make help` and `make fmt`
run. `make check` and `make lint` are what .ci/run runs, and running one test
file is what the suite does; docs/testing.md's commands are those too.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings
from tests.docs import commands
from tests.docs.test_pages import tracked_files
from tests.ports import free_port
from tests.support import ROOT
from tests.system.harness import Process, responds

README = ROOT / "README.md"
TESTING = ROOT / "docs" / "testing.md"
EXAMPLE = Path("examples") / "client.py"
# An install on a loaded machine, then migrations, the seed and a cold start.
START_TIMEOUT = 600.0
# Each README command line (its comment dropped), and who runs it.
SERVED = {"make run", "make dev"}
RUN_HERE = {"make help", "make fmt"}
RUN_BY_CI = {
    "make check": ".ci/run runs it",
    "make lint": "make check runs it",
    ".venv/bin/pytest -q tests/api/test_auth.py": "make check runs the whole suite",
    "make install && .venv/bin/pytest tests/system/test_image.py -v": (
        "make check runs the whole suite, the image's tests included"
    ),
    # docs/testing.md's
    "make test": "make check runs it",
    ".venv/bin/pytest -q -x tests/api/ -k refresh": "make check runs the whole suite",
}


def command_lines(page: Path) -> list[str]:
    return [
        line.split("#", 1)[0].strip()
        for block in commands.commands(page)
        for line in block.splitlines()
        if line.split("#", 1)[0].strip()
    ]


def test_every_readme_and_testing_command_is_run_here_or_by_ci() -> None:
    lines = set(command_lines(README)) | set(command_lines(TESTING))

    assert lines == SERVED | RUN_HERE | set(RUN_BY_CI), (
        "README.md's or docs/testing.md's commands changed: run a new one in "
        "tests/docs/test_readme.py"
    )
    assert "\nmake check\n" in (ROOT / ".ci" / "run").read_text()


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("fresh-copy")
    for name in tracked_files():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    yield folder
    # make's venvs are large: gone with the test, not at the end of the run.
    shutil.rmtree(folder, ignore_errors=True)


# What the suite sets for itself, and what a shell in the project's venv has.
SUITE_ONLY = (
    "TEST_",
    "PYTEST",
    "HYPOTHESIS",
    "DIFFERENTIAL",
    "VIRTUAL_ENV",
    "UV_PROJECT",
)


def newcomer_environment(**values: str) -> dict[str, str]:
    """The machine's shell (its proxy and CA settings, caches, PATH) without any
    of the service's settings or the suite's own variables."""
    service = {each.metadata["env"] for each in dataclasses.fields(Settings)}
    service |= {
        "FLASK_ENV",
        "ENV_FILE",
        "ADMIN_EMAIL",
        "ADMIN_PASSWORD",
        "PORT",
        "HOST",
    }
    return {
        key: value
        for key, value in os.environ.items()
        if key not in service and not key.startswith(SUITE_ONLY)
    } | values


def served(copy: Path, target: str, port: int) -> Process:
    return Process(
        ["make", target],
        env=newcomer_environment(PORT=str(port)),
        cwd=copy,
        out=copy / f"make-{target}.log",
        ready=responds(f"http://127.0.0.1:{port}/readyz"),
        timeout=START_TIMEOUT,
        name=f"make {target}",
    )


def test_make_run_serves_what_the_example_client_tours(fresh_copy: Path) -> None:
    port = free_port()
    with served(fresh_copy, "run", port).start() as make_run:
        tour = subprocess.run(  # noqa: S603 (this interpreter, the copy's example)
            [
                sys.executable,
                "-I",
                "-S",
                str(EXAMPLE),
                "--base-url",
                f"http://127.0.0.1:{port}",
                "--log",
                str(make_run.out),
            ],
            cwd=fresh_copy,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        banner = make_run.out.read_text()

    assert tour.returncode == 0, tour.stdout + tour.stderr
    lines = tour.stdout.splitlines()
    assert lines[0].startswith("registered tour-")
    assert (
        "reset the password with the token from make-run.log; logged in again" in lines
    )
    assert lines[-1] == "logged out; the old tokens answer 401 'Token has been revoked'"
    # The banner names the port it serves on, and where the reset token goes.
    assert f"http://127.0.0.1:{port}/docs" in banner
    assert "/api/v1/auth/password/reset" in banner
    # The runtime packages only: no test or lint tool in make run's venv.
    assert not (fresh_copy / ".venv" / "bin" / "pytest").exists()
    assert (fresh_copy / "instance" / "service.db").exists()


def run_make(
    folder: Path, target: str, *, check: bool, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """`make TARGET` in `folder` as a newcomer's shell runs it, its output kept."""
    return subprocess.run(  # noqa: S603 (make and a target of the test's)
        ["make", target],  # noqa: S607 (make, as the README runs it)
        cwd=folder,
        env=newcomer_environment(),
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def test_make_help_shows_how_to_choose_the_port(fresh_copy: Path) -> None:
    result = run_make(fresh_copy, "help", check=True)

    assert "  run " in result.stdout
    assert "make run PORT=8001" in result.stdout


def test_make_dev_serves_with_the_dev_group_and_make_fmt_changes_nothing(
    fresh_copy: Path,
) -> None:
    port = free_port()
    with served(fresh_copy, "dev", port).start():
        pass
    sources = {path: path.read_bytes() for path in fresh_copy.rglob("service/**/*.py")}
    fmt = run_make(fresh_copy, "fmt", check=False, timeout=300)

    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    assert (fresh_copy / ".venv" / "bin" / "pytest").exists()
    changed = [str(p) for p, text in sources.items() if p.read_bytes() != text]
    assert changed == []
