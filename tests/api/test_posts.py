"""The /posts endpoints and /users/{id}/posts against the OpenAPI document
and the Flask service's observed answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.db.request import app_database
from service.models import Post, User
from service.schemas.post import POST_MAX_LENGTH
from tests.factories import at, login_headers, make_post, make_user, utcnow
from tests.support import (
    MISSING,
    MISSING_HEADER,
    NOT_JSON,
    POSTS,
    USERS,
    cases,
    page_json,
    post_json,
)

NAIVE_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?$")
NOT_AUTHORIZED = {"error": "Not authorized"}
TITLE_LENGTH = ["Length must be between 1 and 200."]
CONTENT_EMPTY = ["Shorter than minimum length 1."]
NUL = ["Must not contain NUL characters."]


def invalid(**errors: list[str]) -> dict[str, Any]:
    return {"error": "Validation failed", "errors": errors}


def post_not_found(post_id: int) -> dict[str, str]:
    return {"error": f"Post with id {post_id} not found"}


async def stored(session: AsyncSession, post_id: int) -> Post | None:
    return await session.scalar(
        select(Post).where(Post.id == post_id).execution_options(populate_existing=True)
    )


async def listed_ids(
    client: Client, url: str, headers: dict[str, str], **query: Any
) -> list[int]:
    response = await client.get(url, headers=headers, query_string=query)
    assert response.status_code == 200
    return [p["id"] for p in (await response.get_json())["posts"]]


@contextmanager
def count_selects(app: Quart) -> Iterator[list[str]]:
    """SELECTs the app sends through its engine (its read engine's included)."""
    statements: list[str] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any
    ) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    target = app_database(app).engine.sync_engine
    event.listen(target, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(target, "before_cursor_execute", record)


# --- POST /posts -------------------------------------------------------------


async def test_create_post_returns_201_post_of_caller(
    client: Client, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        POSTS, json={"title": "Hello", "content": "World"}, headers=user_headers
    )

    assert response.status_code == 201
    body = await response.get_json()
    assert isinstance(body["id"], int)
    assert NAIVE_ISO.match(body["created_at"])
    assert NAIVE_ISO.match(body["updated_at"])
    assert body == {
        "id": body["id"],
        "title": "Hello",
        "content": "World",
        "author_id": user.id,
        "author": {"id": user.id, "full_name": "Test User"},
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    stamp = datetime.fromisoformat(body["created_at"])
    assert abs(stamp - utcnow()) < timedelta(minutes=1)


async def test_create_post_is_stored(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        POSTS, json={"title": "Stored", "content": "Body"}, headers=user_headers
    )

    post = await stored(session, (await response.get_json())["id"])
    assert post is not None
    assert (post.author_id, post.title, post.content) == (user.id, "Stored", "Body")


async def test_create_post_author_id_in_body_rejected_not_used(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    other = await make_user(session)

    response = await client.post(
        POSTS,
        json={"title": "Mine", "content": "Body", "author_id": other.id},
        headers=user_headers,
    )

    assert response.status_code == 400
    assert await response.get_json() == invalid(author_id=["Unknown field."])


async def test_create_post_longest_title_returns_201(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        POSTS, json={"title": "t" * 200, "content": "c"}, headers=user_headers
    )

    assert response.status_code == 201
    assert (await response.get_json())["title"] == "t" * 200


INVALID_NEW_POSTS = {
    "empty": ({}, {"title": MISSING, "content": MISSING}),
    "no-title": ({"content": "c"}, {"title": MISSING}),
    "no-content": ({"title": "t"}, {"content": MISSING}),
    "t0": ({"title": "", "content": "c"}, {"title": TITLE_LENGTH}),
    "t201": ({"title": "t" * 201, "content": "c"}, {"title": TITLE_LENGTH}),
    "c0": ({"title": "t", "content": ""}, {"content": CONTENT_EMPTY}),
    "null": ({"title": None, "content": "c"}, {"title": ["Field may not be null."]}),
    "not-string": ({"title": "t", "content": 5}, {"content": ["Not a valid string."]}),
    "unknown-field": (
        {"title": "t", "content": "c", "tags": []},
        {"tags": ["Unknown field."]},
    ),
    "nul-t": ({"title": "a\x00b", "content": "c"}, {"title": NUL}),
    "nul-c": ({"title": "t", "content": "\x00"}, {"content": NUL}),
}


@cases("payload, errors", INVALID_NEW_POSTS)
async def test_create_post_invalid_body_returns_400(
    client: Client,
    session: AsyncSession,
    user_headers: dict[str, str],
    payload: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    response = await client.post(POSTS, json=payload, headers=user_headers)

    assert response.status_code == 400
    assert await response.get_json() == invalid(**errors)
    assert (await session.scalars(select(Post))).all() == []


async def test_create_post_body_not_object_returns_400(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.post(POSTS, json=["title"], headers=user_headers)

    assert response.status_code == 400
    assert await response.get_json() == invalid(_schema=["Invalid input type."])


async def test_create_post_not_json_returns_415(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.post(POSTS, data="title=x&content=y", headers=user_headers)

    assert response.status_code == 415
    assert await response.get_json() == NOT_JSON


# --- authentication ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", POSTS),
        ("POST", POSTS),
        ("GET", POSTS + "/{post}"),
        ("PATCH", POSTS + "/{post}"),
        ("DELETE", POSTS + "/{post}"),
        ("GET", USERS + "/{user}/posts"),
    ],
)
async def test_posts_routes_without_token_return_401(
    client: Client, session: AsyncSession, user: User, method: str, path: str
) -> None:
    post = await make_post(session, user)

    response = await client.open(
        path.format(post=post.id, user=user.id),
        method=method,
        json={"title": "Changed", "content": "Changed"},
    )

    assert response.status_code == 401
    assert await response.get_json() == MISSING_HEADER
    kept = await stored(session, post.id)
    assert kept is not None
    assert kept.title == post.title


# --- GET /posts/{id} ---------------------------------------------------------


async def test_get_post_returns_post_with_author(
    client: Client, session: AsyncSession, user: User, settings: Settings
) -> None:
    reader = await make_user(session)
    post = await make_post(session, user)

    response = await client.get(
        f"{POSTS}/{post.id}", headers=await login_headers(session, settings, reader)
    )

    assert response.status_code == 200
    assert await response.get_json() == post_json(post, user)


async def test_get_post_of_deleted_author_returns_404(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())
    post = await make_post(session, gone)

    response = await client.get(f"{POSTS}/{post.id}", headers=user_headers)

    assert response.status_code == 404
    assert await response.get_json() == post_not_found(post.id)


async def test_get_post_of_deactivated_author_returns_200(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    # Only a soft delete hides posts; deactivation is not a delete.
    inactive = await make_user(session, is_active=False)
    post = await make_post(session, inactive)

    response = await client.get(f"{POSTS}/{post.id}", headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == post_json(post, inactive)


# --- PATCH /posts/{id} -------------------------------------------------------


async def test_update_post_by_author_returns_200_changed_post(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    post = await make_post(
        session,
        user,
        created_at=at("2024-01-01T00:00:00"),
        updated_at=at("2024-01-01T00:00:00"),
    )

    response = await client.patch(
        f"{POSTS}/{post.id}", json={"title": "New title"}, headers=user_headers
    )

    assert response.status_code == 200
    body = await response.get_json()
    assert {k: v for k, v in body.items() if k != "updated_at"} == {
        "id": post.id,
        "title": "New title",
        "content": post.content,
        "author_id": user.id,
        "author": {"id": user.id, "full_name": user.full_name},
        "created_at": "2024-01-01T00:00:00",
    }
    assert datetime.fromisoformat(body["updated_at"]) > at("2024-01-01T00:00:00")
    changed = await stored(session, post.id)
    assert changed is not None
    assert (changed.title, changed.content) == ("New title", post.content)


async def test_update_post_by_admin_returns_200(
    client: Client,
    session: AsyncSession,
    user: User,
    admin_headers: dict[str, str],
) -> None:
    post = await make_post(session, user)

    response = await client.patch(
        f"{POSTS}/{post.id}", json={"content": "Moderated"}, headers=admin_headers
    )

    assert response.status_code == 200
    body = await response.get_json()
    assert (body["content"], body["author_id"]) == ("Moderated", user.id)
    changed = await stored(session, post.id)
    assert changed is not None
    assert changed.content == "Moderated"


async def test_update_post_by_other_user_returns_403_unchanged(
    client: Client, session: AsyncSession, user: User, settings: Settings
) -> None:
    post = await make_post(session, user)
    other = await make_user(session)

    response = await client.patch(
        f"{POSTS}/{post.id}",
        json={"title": "Hijacked"},
        headers=await login_headers(session, settings, other),
    )

    assert response.status_code == 403
    assert await response.get_json() == NOT_AUTHORIZED
    kept = await stored(session, post.id)
    assert kept is not None
    assert kept.title == post.title


async def test_update_post_admin_claim_in_token_without_admin_row_returns_403(
    client: Client, session: AsyncSession, user: User, settings: Settings
) -> None:
    # Admin rights come from the database: a demoted admin's token says is_admin.
    post = await make_post(session, user)
    demoted = await make_user(session, is_admin=True)
    headers = await login_headers(session, settings, demoted)
    demoted.is_admin = False
    await session.commit()

    response = await client.patch(
        f"{POSTS}/{post.id}", json={"title": "Hijacked"}, headers=headers
    )

    assert response.status_code == 403
    assert await response.get_json() == NOT_AUTHORIZED


INVALID_POST_CHANGES = {
    "t0": ({"title": ""}, {"title": TITLE_LENGTH}),
    "t201": ({"title": "t" * 201}, {"title": TITLE_LENGTH}),
    "c0": ({"content": ""}, {"content": CONTENT_EMPTY}),
    "nul": ({"content": "a\x00"}, {"content": NUL}),
    "author_id": ({"author_id": 1}, {"author_id": ["Unknown field."]}),
    "null": ({"title": None}, {"title": ["Field may not be null."]}),
}


@cases("payload, errors", INVALID_POST_CHANGES)
async def test_update_post_invalid_body_returns_400_unchanged(
    client: Client,
    session: AsyncSession,
    user: User,
    user_headers: dict[str, str],
    payload: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    post = await make_post(session, user)

    response = await client.patch(
        f"{POSTS}/{post.id}", json=payload, headers=user_headers
    )

    assert response.status_code == 400
    assert await response.get_json() == invalid(**errors)
    kept = await stored(session, post.id)
    assert kept is not None
    assert (kept.title, kept.content, kept.author_id) == (
        post.title,
        post.content,
        user.id,
    )


async def test_update_post_empty_body_returns_200_unchanged(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    post = await make_post(session, user)

    response = await client.patch(f"{POSTS}/{post.id}", json={}, headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == post_json(post, user)


# --- DELETE /posts/{id} ------------------------------------------------------


async def test_delete_post_by_author_returns_204_and_removes(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    post = await make_post(session, user)

    response = await client.delete(f"{POSTS}/{post.id}", headers=user_headers)

    assert response.status_code == 204
    assert await response.get_data() == b""
    assert await stored(session, post.id) is None
    again = await client.get(f"{POSTS}/{post.id}", headers=user_headers)
    assert again.status_code == 404


async def test_delete_post_by_admin_returns_204(
    client: Client, session: AsyncSession, user: User, admin_headers: dict[str, str]
) -> None:
    post = await make_post(session, user)

    response = await client.delete(f"{POSTS}/{post.id}", headers=admin_headers)

    assert response.status_code == 204
    assert await stored(session, post.id) is None


async def test_delete_post_by_other_user_returns_403_kept(
    client: Client, session: AsyncSession, user: User, settings: Settings
) -> None:
    post = await make_post(session, user)
    other = await make_user(session)

    response = await client.delete(
        f"{POSTS}/{post.id}", headers=await login_headers(session, settings, other)
    )

    assert response.status_code == 403
    assert await response.get_json() == NOT_AUTHORIZED
    assert await stored(session, post.id) is not None


async def test_delete_post_of_deleted_author_returns_404_for_admin(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())
    post = await make_post(session, gone)

    response = await client.delete(f"{POSTS}/{post.id}", headers=admin_headers)

    assert response.status_code == 404
    assert await stored(session, post.id) is not None


# --- GET /posts --------------------------------------------------------------


async def test_list_posts_returns_page_envelope(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    post = await make_post(session, user)

    response = await client.get(POSTS, headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == page_json(
        "posts", [post_json(post, user)], total=1, pages=1
    )


async def test_list_posts_empty_returns_zero_pages(
    client: Client, user_headers: dict[str, str]
) -> None:
    response = await client.get(POSTS, headers=user_headers)

    assert await response.get_json() == page_json("posts", [], total=0, pages=0)


async def test_list_posts_newest_first_ties_by_id_desc(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    tie = at("2024-06-01T12:00:00")
    older = await make_post(session, user, created_at=tie - timedelta(days=1))
    first, second, third = [
        await make_post(session, user, created_at=tie) for _ in range(3)
    ]
    newest = await make_post(session, user, created_at=tie + timedelta(microseconds=1))

    ids = await listed_ids(client, POSTS, user_headers)

    assert ids == [newest.id, third.id, second.id, first.id, older.id]


async def test_list_posts_ties_stable_across_pages(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    tie = at("2024-06-01T12:00:00")
    made = [await make_post(session, user, created_at=tie) for _ in range(5)]

    seen: list[int] = []
    for page in (1, 2, 3):
        seen += await listed_ids(client, POSTS, user_headers, page=page, per_page=2)

    assert seen == sorted((p.id for p in made), reverse=True)


async def test_list_posts_per_page_capped_at_100(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    session.add_all(
        Post(author_id=user.id, title=f"Bulk {n}", content="c") for n in range(101)
    )
    await session.commit()

    response = await client.get(
        POSTS, headers=user_headers, query_string={"per_page": "1000"}
    )

    body = await response.get_json()
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (
        1,
        100,
        101,
        2,
    )
    assert len(body["posts"]) == 100


async def test_list_posts_hides_posts_of_deleted_users(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    visible = await make_post(session, user)
    gone = await make_user(session, deleted_at=utcnow())
    await make_post(session, gone)
    await make_post(session, gone)

    response = await client.get(POSTS, headers=user_headers)

    body = await response.get_json()
    assert [p["id"] for p in body["posts"]] == [visible.id]
    assert (body["total"], body["pages"]) == (1, 1)


async def test_list_posts_loads_authors_in_the_page_query(
    app: Quart,
    client: Client,
    session: AsyncSession,
    user: User,
    user_headers: dict[str, str],
) -> None:
    authors = [await make_user(session) for _ in range(5)]
    session.add_all(
        Post(author_id=authors[n % 5].id, title=f"P{n}", content="c") for n in range(20)
    )
    await session.commit()

    with count_selects(app) as statements:
        response = await client.get(POSTS, headers=user_headers)

    body = await response.get_json()
    assert len(body["posts"]) == 20
    assert {p["author"]["id"] for p in body["posts"]} == {a.id for a in authors}
    # The count and the page, none per post or per author. (The token check runs
    # on the driver itself, service.db.statements.HotQuery, unseen by these events.)
    assert len(statements) == 2, statements


# --- GET /users/{id}/posts ---------------------------------------------------


async def test_list_user_posts_only_that_users_newest_first(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    author = await make_user(session)
    old = await make_post(session, author, created_at=at("2024-01-01T00:00:00"))
    new = await make_post(session, author, created_at=at("2024-02-01T00:00:00"))
    await make_post(session, user, created_at=at("2024-03-01T00:00:00"))

    response = await client.get(f"{USERS}/{author.id}/posts", headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == page_json(
        "posts", [post_json(new, author), post_json(old, author)], total=2, pages=1
    )


async def test_list_user_posts_page_math(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    tie = at("2024-06-01T12:00:00")
    made = [await make_post(session, user, created_at=tie) for _ in range(3)]
    await make_post(session, await make_user(session))

    response = await client.get(
        f"{USERS}/{user.id}/posts",
        headers=user_headers,
        query_string={"page": "2", "per_page": "2"},
    )

    body = await response.get_json()
    assert [p["id"] for p in body["posts"]] == [made[0].id]
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (
        2,
        2,
        3,
        2,
    )


async def test_list_user_posts_user_without_posts_returns_empty_page(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    author = await make_user(session)

    response = await client.get(f"{USERS}/{author.id}/posts", headers=user_headers)

    assert response.status_code == 200
    assert await response.get_json() == page_json("posts", [], total=0, pages=0)


async def test_list_user_posts_deleted_user_returns_404(
    client: Client, session: AsyncSession, user_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())
    await make_post(session, gone)

    response = await client.get(f"{USERS}/{gone.id}/posts", headers=user_headers)

    assert response.status_code == 404
    assert await response.get_json() == {"error": f"User with id {gone.id} not found"}


# --- soft delete and restore -------------------------------------------------


async def test_posts_of_deleted_user_vanish_and_return_on_restore(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    author = await make_user(session)
    post = await make_post(session, author)
    author_posts = f"{USERS}/{author.id}/posts"

    deleted = await client.delete(f"{USERS}/{author.id}", headers=admin_headers)
    assert deleted.status_code == 204
    assert await listed_ids(client, POSTS, admin_headers) == []
    assert (
        await client.get(f"{POSTS}/{post.id}", headers=admin_headers)
    ).status_code == 404
    assert (await client.get(author_posts, headers=admin_headers)).status_code == 404

    restored = await client.post(f"{USERS}/{author.id}/restore", headers=admin_headers)
    assert restored.status_code == 200
    assert await listed_ids(client, POSTS, admin_headers) == [post.id]
    assert await listed_ids(client, author_posts, admin_headers) == [post.id]
    again = await client.get(f"{POSTS}/{post.id}", headers=admin_headers)
    assert again.status_code == 200
    assert await again.get_json() == post_json(post, author)


async def test_post_content_is_bounded(
    client: Client, user_headers: dict[str, str]
) -> None:
    longest = await client.post(
        "/api/v1/posts",
        json={"title": "t", "content": "x" * POST_MAX_LENGTH},
        headers=user_headers,
    )
    too_long = await client.post(
        "/api/v1/posts",
        json={"title": "t", "content": "x" * (POST_MAX_LENGTH + 1)},
        headers=user_headers,
    )

    assert longest.status_code == 201
    assert too_long.status_code == 400
    assert (await too_long.get_json())["errors"] == {
        "content": [f"Longer than maximum length {POST_MAX_LENGTH}."]
    }
