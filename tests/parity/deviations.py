"""The intentional deviations, read from the table in docs/MIGRATING.md (section 6).

The table is the harness's only source of allowances, so the document and the
test cannot drift apart. Columns: `id | operations | Flask answers | service
answers | fix | why`. An answer cell is `STATUS` or `STATUS BODY`, in
backticks. STATUS is a code, a class such as `4xx` (`xxx`: any), or (service side) `=`
for "the same status as Flask's". `*` in the body matches any run of
characters; a body left out matches any body. Operations are comma-separated
names (harness.OPERATIONS), or `*` for any, each optionally limited to one
kind of token: `delete[claims-admin]`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT

DEVIATIONS_DOC = ROOT / "docs" / "MIGRATING.md"
COLUMNS = ("id", "operations", "flask answers", "service answers", "fix", "why")


@dataclass(frozen=True)
class Answer:
    """A pattern for one side's answer: its status and, optionally, its body."""

    status: str
    body: re.Pattern[bytes] | None

    @classmethod
    def parse(cls, cell: str) -> Answer:
        text = cell.strip().strip("`").strip()
        status, _, body = text.partition(" ")
        pattern = None
        if body:
            pattern = re.compile(
                b".*".join(re.escape(part.encode()) for part in body.split("*")),
                re.DOTALL,
            )
        if not re.fullmatch(r"\d\d\d|\dxx|xxx|=", status):
            raise ValueError(f"not a status pattern: {status!r} in {cell!r}")
        return cls(status, pattern)

    def matches(self, status: int, body: bytes, other_status: int) -> bool:
        wanted = str(other_status) if self.status == "=" else self.status
        if not re.fullmatch(wanted.replace("x", r"\d"), str(status)):
            return False
        return self.body is None or self.body.fullmatch(body.rstrip(b"\n")) is not None


@dataclass(frozen=True)
class Deviation:
    id: str
    operations: frozenset[str]
    flask: Answer
    service: Answer
    fix: str
    why: str

    def covers(self, operation: str, token: str) -> bool:
        """`name` or `name[token kind]`; `*` for the name matches any operation."""
        for entry in self.operations:
            name, _, kind = entry.partition("[")
            if name in ("*", operation) and kind.rstrip("]") in ("", token):
                return True
        return False

    def allows(
        self,
        operation: str,
        flask: tuple[int, bytes],
        service: tuple[int, bytes],
        token: str = "",
    ) -> bool:
        return (
            self.covers(operation, token)
            and self.flask.matches(*flask, service[0])
            and self.service.matches(*service, flask[0])
        )


def _cells(line: str) -> list[str]:
    # A `|` inside backticks is part of a body, not a column break.
    cells, current, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    cells.append(current.strip())
    return cells


def parse_table(text: str) -> list[Deviation]:
    """Every row of the one table whose header is COLUMNS."""
    lines = text.splitlines()
    index = 0
    for index, line in enumerate(lines):  # noqa: B007 (the header's index is used)
        if line.startswith("|") and tuple(c.lower() for c in _cells(line)) == COLUMNS:
            break
    else:
        raise ValueError(f"no deviations table with columns {COLUMNS}")
    deviations = []
    for line in lines[index + 2 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        if len(cells) != len(COLUMNS):
            raise ValueError(f"deviation row needs {len(COLUMNS)} cells: {line}")
        identifier, operations, flask, service, fix, why = cells
        deviations.append(
            Deviation(
                identifier.strip("*"),
                frozenset(op.strip().strip("`") for op in operations.split(",")),
                Answer.parse(flask),
                Answer.parse(service),
                fix,
                why,
            )
        )
    return deviations


def load(path: Path = DEVIATIONS_DOC) -> list[Deviation]:
    return parse_table(path.read_text())
