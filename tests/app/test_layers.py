"""The layers below the web depend only downward: no Quart under services/."""

from __future__ import annotations

import json
import subprocess
import sys

LOWER_LAYERS = (
    "service.services",
    "service.models",
    "service.security",
    "service.schemas",
)
WEB = ("quart", "quart_schema", "service.api", "service.app")

# Imports every module of the lower layers in a fresh interpreter, then lists
# what of the web layer got loaded along the way, directly or transitively.
PROBE = f"""
import importlib, json, pkgutil, sys
modules = []
for package in {LOWER_LAYERS!r}:
    root = importlib.import_module(package)
    modules.append(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        importlib.import_module(info.name)
        modules.append(info.name)
web = sorted(
    name for name in sys.modules
    if any(name == top or name.startswith(top + ".") for top in {WEB!r})
)
print(json.dumps({{"modules": modules, "web": web}}))
"""


def probe(packages: tuple[str, ...]) -> dict[str, list[str]]:
    script = PROBE.replace(repr(LOWER_LAYERS), repr(packages))
    result = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    found: dict[str, list[str]] = json.loads(result.stdout)
    return found


def test_lower_layers_import_nothing_of_the_web_layer() -> None:
    found = probe(LOWER_LAYERS)

    assert "service.services.callers" in found["modules"]
    assert "service.models.user" in found["modules"]
    assert found["web"] == []


def test_the_probe_sees_a_web_import() -> None:
    # The same probe on the web layer itself must see Quart, or it proves nothing.
    assert "quart" in probe(("service.api",))["web"]
