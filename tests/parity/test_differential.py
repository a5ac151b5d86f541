"""The same request sequences to the Flask original and to this service.

CI runs DIFFERENTIAL_EXAMPLES sequences (120: about 1-2 minutes on a loaded 2-core
machine, up to 8 requests each), the same ones every run (the `ci` Hypothesis profile,
tests/conftest.py), then the sequences an exploration once found, kept below as
examples; `make diff` runs 3000 fresh random ones (`HYPOTHESIS_PROFILE=explore`).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.parity.differential import Harness, Op
from tests.parity.strategies import sequences

COLLECT = os.environ.get("DIFFERENTIAL_COLLECT") == "1"
EXAMPLES = int(os.environ.get("DIFFERENTIAL_EXAMPLES", "120"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(operations=sequences())
# Found by exploration: a negative per_page (deviation D13).
@example(
    operations=[
        Op("list", args=(("page", None), ("per_page", "-1"), ("active_only", None)))
    ]
)
def test_flask_and_service_answer_alike(harness: Harness, operations: list[Op]) -> None:
    harness.run(operations)


@pytest.mark.skipif(not COLLECT, reason="DIFFERENTIAL_COLLECT=1 explores")
def test_collect_every_difference(harness: Harness) -> None:
    """Run without stopping at the first difference, then list them all."""
    harness.collect = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None)
    @given(operations=sequences())
    def explore(operations: list[Op]) -> None:
        harness.run(operations)

    try:
        explore()
    finally:
        found, harness.collect = harness.collect, None
    print("deviations met:", dict(harness.seen))  # noqa: T201
    assert not found, "\n\n".join(found.values())
