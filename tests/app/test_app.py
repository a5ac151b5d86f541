"""How create_app assembles the app: what it changes in its parts."""

from __future__ import annotations

from importlib.metadata import version

from quart import Quart
from quart_schema import QuartSchema

from service import create_app
from service.api.openapi import use_quart_make_response
from service.config import Settings


def test_responses_are_made_by_quarts_own_make_response() -> None:
    app = create_app(Settings(env="testing"))

    assert "make_response" not in vars(app)
    assert app.make_response.__func__ is Quart.make_response  # type: ignore[attr-defined]


def test_quart_schema_still_wraps_it_so_the_unwrapping_matters() -> None:
    # If quart-schema stops wrapping, use_quart_make_response has nothing to do:
    # this test says so, and the step can go. A new quart-schema is read anew.
    assert version("quart-schema").startswith("0.25.")
    app = Quart(__name__)
    QuartSchema(app)

    assert "make_response" in vars(app)
    use_quart_make_response(app)
    assert "make_response" not in vars(app)
