"""The deviations table parses, and every row says which fix it is and why."""

from __future__ import annotations

import pytest

from tests.parity import deviations
from tests.parity.differential import OPERATIONS
from tests.parity.strategies import BAD_TOKENS, USER_TOKENS

TOKEN_KINDS = set(BAD_TOKENS) | set(USER_TOKENS)


def test_every_row_names_known_operations_a_fix_and_a_reason() -> None:
    rows = deviations.load()
    assert len(rows) >= 10
    assert len({row.id for row in rows}) == len(rows)
    for row in rows:
        names = {entry.partition("[")[0] for entry in row.operations}
        assert names <= OPERATIONS | {"*"}, row.id
        kinds = {entry.partition("[")[2].rstrip("]") for entry in row.operations}
        assert kinds <= TOKEN_KINDS | {""}, row.id
        assert row.fix.strip(), row.id
        assert row.why.strip(), row.id


def test_answer_patterns_match_status_classes_bodies_and_wildcards() -> None:
    table = (
        "| id | operations | Flask answers | service answers | fix | why |\n"
        "|---|---|---|---|---|---|\n"
        '| X1 | `me, list` | `4xx {"msg":"*"}` | `= {"error":"*","msg":"*"}` | f | w |'
        "\n"
        "| X2 | `*` | `500` | `xxx` | f | w |\n"
    )
    token_error, anything = deviations.parse_table(table)
    flask = (401, b'{"msg":"Token has expired"}\n')
    assert token_error.allows(
        "me", flask, (401, b'{"error":"Token has expired","msg":"Token has expired"}\n')
    )
    # `=`: the service keeps Flask's status.
    assert not token_error.allows(
        "me", flask, (422, b'{"error":"Token has expired","msg":"Token has expired"}')
    )
    assert not token_error.allows("get", flask, (401, b'{"error":"x","msg":"x"}'))
    assert not token_error.allows("me", flask, (401, b'{"msg":"Token has expired"}'))
    assert anything.allows("patch", (500, b"<html>"), (204, b""))
    admin_claim = deviations.parse_table(
        table.split("| X1")[0]
        + "| X3 | `delete[claims-admin]` | `2xx` | `403` | f | w |\n"
    )[0]
    assert admin_claim.allows("delete", (204, b""), (403, b""), "claims-admin")
    assert not admin_claim.allows("delete", (204, b""), (403, b""), "access")
    assert not anything.allows("patch", (400, b""), (204, b""))


@pytest.mark.parametrize(
    "row",
    [
        "| X | `me` | `40` | `401` | f | w |",
        "| X | `me` | `401` | `401` | f |",
    ],
)
def test_a_malformed_row_is_an_error_not_a_silent_allowance(row: str) -> None:
    table = (
        "| id | operations | Flask answers | service answers | fix | why |\n"
        "|---|---|---|---|---|---|\n" + row + "\n"
    )
    with pytest.raises(ValueError, match=r"status pattern|needs 6 cells"):
        deviations.parse_table(table)
