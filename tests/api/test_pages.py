"""Page math, the same on every list route: page and per_page as the Flask
service read them (junk and out-of-range values fall back, never a 4xx)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from tests.factories import at, login_headers, make_post, make_user
from tests.support import (
    PAGE_MATH,
    POSTS,
    USERS,
    cases,
    page_json,
    post_json,
    user_json,
)


@pytest.mark.parametrize("route", [USERS, POSTS], ids=["users", "posts"])
@cases("query, expected, page, per_page, pages", PAGE_MATH)
async def test_list_page_math(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    route: str,
    query: dict[str, str],
    expected: list[int],
    page: int,
    per_page: int,
    pages: int,
) -> None:
    # Five items created a day apart: index 4 is the newest. The oldest user
    # reads, so that the users' list holds those five only.
    days = [at("2024-01-01T00:00:00") + timedelta(n) for n in range(5)]
    if route == USERS:
        made = [await make_user(session, created_at=day) for day in days]
        items = [user_json(made[i]) for i in expected]
        reader = made[0]
    else:
        reader = await make_user(session)
        posts = [await make_post(session, reader, created_at=day) for day in days]
        items = [post_json(posts[i], reader) for i in expected]

    response = await client.get(
        route,
        headers=await login_headers(session, settings, reader),
        query_string=query,
    )

    assert response.status_code == 200
    assert await response.get_json() == page_json(
        route.rpartition("/")[2],
        items,
        total=5,
        pages=pages,
        page=page,
        per_page=per_page,
    )
