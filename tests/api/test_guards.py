"""The flask-jwt-extended-style decorators on a route of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from quart import Blueprint
from quart.typing import TestClientProtocol as Client

from service.api.guards import get_jwt, get_jwt_identity, jwt_required
from service.config import Settings
from service.models import User
from tests.factories import mint
from tests.support import AppMaker, bearer


@pytest.fixture
async def guarded_client(make_app: AppMaker) -> AsyncIterator[Client]:
    # A team porting a Flask route writes it like this; the blueprint is the test's.
    blueprint = Blueprint("ported", __name__)

    @blueprint.get("/ported/editors")
    @jwt_required()
    async def editors_only() -> dict[str, object]:
        return {"user": get_jwt_identity(), "role": get_jwt().get("role")}

    async with make_app(blueprint) as app:
        yield app.test_client()


def flask_headers_with(
    settings: Settings, user: User, **claims: object
) -> dict[str, str]:
    return bearer(mint(settings, user, claims={"is_admin": user.is_admin, **claims}))


async def test_a_ported_route_reads_the_tokens_claims(
    guarded_client: Client, settings: Settings, user: User
) -> None:
    response = await guarded_client.get(
        "/ported/editors", headers=flask_headers_with(settings, user, role="editor")
    )

    assert response.status_code == 200
    assert await response.get_json() == {"user": user.id, "role": "editor"}


async def test_a_ported_route_still_needs_a_token_401(guarded_client: Client) -> None:
    response = await guarded_client.get("/ported/editors")

    assert response.status_code == 401
