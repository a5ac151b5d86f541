"""The commands of README.md and docs/*.md: found, and run as their reader runs them.

A page's ```sh blocks are its commands. Its runner joins them, in order, into
one bash script (`set -xeuo pipefail`, each command echoed with the time, so a
slow or failing one is named) and runs it in a process group of its own, which
is killed afterwards with whatever the script left running (a server started
with `&`). Other fences are not commands: output (`text`), code (`python`,
`yaml`, `haproxy`), or a `console` transcript of commands that need what CI
machines lack (Docker Compose, a Kubernetes cluster), which the page says.

RUNNERS names, for every page that has ```sh blocks, the test that runs them;
tests/docs/test_pages.py fails for a page with commands and no runner.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

FENCE = re.compile(r"^```(\S*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
COMMANDS = "sh"
# Fences that are not run, and what they hold.
NOT_COMMANDS = {
    "text": "output, a log line, an error message",
    "console": "a transcript of commands CI machines cannot run; the page says why",
    "python": "code to read or copy (tests/docs/test_pages.py compiles it)",
    "yaml": "configuration",
    "haproxy": "configuration",
}
# Every page with commands, and the test (or CI step) that runs them.
RUNNERS = {
    "README.md": "tests/docs/test_readme.py",
    "docs/client.md": "tests/docs/test_commands.py",
    "docs/operations.md": "tests/docs/test_commands.py",
    "docs/testing.md": "tests/docs/test_readme.py",
    "docs/MIGRATING.md": "tests/parity/test_migrating_guide.py",
    # Its two commands build the image and run its tests: test_image.py builds
    # with deploy/image/build.sh and is the file the second command runs.
    "docs/deployment.md": "tests/system/test_image.py",
}


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def fences(page: Path) -> list[tuple[str, str]]:
    """(language, text) of each fenced block of the page, in order."""
    return FENCE.findall(page.read_text())


def commands(page: Path) -> list[str]:
    return [text for language, text in fences(page) if language == COMMANDS]


def script(blocks: list[str]) -> str:
    return "PS4='+ $(date +%T.%N) '\nset -xeuo pipefail\n" + "\n".join(blocks)


@dataclass
class Run:
    returncode: int
    output: str
    timed_out: bool

    def check(self) -> str:
        """The output of a run that finished with 0; else an error that shows it."""
        if self.timed_out:
            raise AssertionError(f"the commands did not finish:\n{self.output}")
        if self.returncode != 0:
            raise AssertionError(
                f"the commands failed ({self.returncode}):\n{self.output}"
            )
        return self.output


def run(
    blocks: list[str], *, env: Mapping[str, str], cwd: Path = ROOT, timeout: float
) -> Run:
    """The blocks as one bash script; stdout and stderr together, as text.

    The output goes to a file, not a pipe: a server the script leaves running
    holds its output open, and the run ends when the script does.
    """
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(  # noqa: S603 (the pages' own commands)
            ["/bin/bash", "-c", script(blocks)],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Whatever the script left running (a server it started with &).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL if timed_out else signal.SIGTERM)
            process.wait()
        output.seek(0)
        text = output.read().decode(errors="replace")
    return Run(process.returncode, text, timed_out)
