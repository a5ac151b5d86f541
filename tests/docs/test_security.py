"""docs/security.md's route limits against the budgets the routes declare."""

from __future__ import annotations

import re

from service import create_app
from service.api.limits import declared_limits
from service.config import Settings
from tests.support import ROOT

SECURITY = ROOT / "docs" / "security.md"


def test_every_limited_route_has_a_row_naming_its_budgets() -> None:
    app = create_app(Settings.from_env({}))
    rows = {
        route: row
        for row in SECURITY.read_text().splitlines()
        if (found := re.match(r"^\| `([A-Z]+ /\S+)` \|", row))
        for route in [found[1]]
    }
    wrong = []
    for rule in app.url_map.iter_rules():
        limits = declared_limits(app.view_functions[rule.endpoint])
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if not limits:
                continue
            route = f"{method} {rule.rule}"
            budgets = [limit.setting.upper() for limit in limits]
            row = rows.pop(route, "")
            if not row or any(f"`{budget}`" not in row for budget in budgets):
                wrong.append(f"| `{route}` | {', '.join(budgets)} | per whom |")

    assert not wrong, (
        "docs/security.md's 'Route limits' table lacks (or names other budgets "
        "for) these routes:\n" + "\n".join(wrong)
    )
    assert not rows, f"docs/security.md lists routes that declare no limit: {rows}"
