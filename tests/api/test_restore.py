"""POST /users/{id}/restore: an admin undoes a soft delete."""

from __future__ import annotations

import pytest
from quart import Response
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import User
from tests.factories import login_headers, login_tokens, make_user, utcnow
from tests.support import REVOKED, USERS, get_me, login, post_login, user_json

EMAIL_TAKEN = {"error": "Email already registered by another user"}


def restore_url(user_id: int) -> str:
    return f"{USERS}/{user_id}/restore"


async def delete_then_restore(
    client: Client, user_id: int, admin_headers: dict[str, str]
) -> tuple[Response, Response]:
    """An admin deletes the user, then restores it: both answers."""
    deleted = await client.delete(f"{USERS}/{user_id}", headers=admin_headers)
    restored = await client.post(restore_url(user_id), headers=admin_headers)
    return deleted, restored


async def reload(session: AsyncSession, user_id: int) -> User:
    row = await session.scalar(
        select(User).where(User.id == user_id).execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def test_restore_deleted_user_returns_200_user(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())

    response = await client.post(restore_url(gone.id), headers=admin_headers)

    assert response.status_code == 200
    body = await response.get_json()
    restored = await reload(session, gone.id)
    assert restored.deleted_at is None
    assert body == user_json(restored)


async def test_restore_user_is_found_again(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())

    await client.post(restore_url(gone.id), headers=admin_headers)
    response = await client.get(f"{USERS}/{gone.id}", headers=admin_headers)

    assert response.status_code == 200
    assert (await response.get_json())["id"] == gone.id


async def test_restore_user_listed_again(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())

    await client.post(restore_url(gone.id), headers=admin_headers)
    response = await client.get(USERS, headers=admin_headers)

    assert gone.id in [u["id"] for u in (await response.get_json())["users"]]


async def test_restore_after_api_delete_round_trips(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    target = await make_user(session, first_name="Round", last_name="Trip")

    deleted, restored = await delete_then_restore(client, target.id, admin_headers)

    assert deleted.status_code == 204
    assert restored.status_code == 200
    body = await restored.get_json()
    assert (body["id"], body["email"], body["full_name"]) == (
        target.id,
        target.email,
        "Round Trip",
    )


async def test_restore_by_non_admin_returns_403(
    client: Client,
    session: AsyncSession,
    user_headers: dict[str, str],
) -> None:
    gone = await make_user(session, deleted_at=utcnow())

    response = await client.post(restore_url(gone.id), headers=user_headers)

    assert response.status_code == 403
    assert await response.get_json() == {"error": "Admin access required"}
    assert (await reload(session, gone.id)).deleted_at is not None


async def test_restore_by_demoted_admin_returns_403(
    client: Client, session: AsyncSession, settings: Settings
) -> None:
    # The token still says is_admin; the row no longer does.
    demoted = await make_user(session, is_admin=True)
    headers = await login_headers(session, settings, demoted)
    demoted.is_admin = False
    await session.commit()
    gone = await make_user(session, deleted_at=utcnow())

    response = await client.post(restore_url(gone.id), headers=headers)

    assert response.status_code == 403
    assert (await reload(session, gone.id)).deleted_at is not None


async def test_restore_without_token_returns_401(
    client: Client, session: AsyncSession
) -> None:
    gone = await make_user(session, deleted_at=utcnow())

    response = await client.post(restore_url(gone.id))

    assert response.status_code == 401
    assert (await reload(session, gone.id)).deleted_at is not None


async def test_restore_user_not_deleted_returns_404(
    client: Client, user: User, admin_headers: dict[str, str]
) -> None:
    response = await client.post(restore_url(user.id), headers=admin_headers)

    assert response.status_code == 404
    assert await response.get_json() == {
        "error": f"Deleted user with id {user.id} not found"
    }


@pytest.mark.parametrize(
    "new_email",
    [
        pytest.param("taken@example.com", id="same-case"),
        pytest.param("TAKEN@Example.COM", id="other-case"),
    ],
)
async def test_restore_email_taken_since_returns_409_stays_deleted(
    client: Client,
    session: AsyncSession,
    admin_headers: dict[str, str],
    new_email: str,
) -> None:
    gone = await make_user(session, email="taken@example.com", deleted_at=utcnow())
    await make_user(session, email=new_email)

    response = await client.post(restore_url(gone.id), headers=admin_headers)

    assert response.status_code == 409
    assert await response.get_json() == EMAIL_TAKEN
    assert (await reload(session, gone.id)).deleted_at is not None


async def test_restore_email_taken_by_other_deleted_user_returns_200(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    # Only live users hold an address.
    gone = await make_user(session, email="twice@example.com", deleted_at=utcnow())
    await make_user(session, email="twice@example.com", deleted_at=utcnow())

    response = await client.post(restore_url(gone.id), headers=admin_headers)

    assert response.status_code == 200


async def test_restore_twice_second_returns_404(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    gone = await make_user(session, deleted_at=utcnow())

    first = await client.post(restore_url(gone.id), headers=admin_headers)
    second = await client.post(restore_url(gone.id), headers=admin_headers)

    assert (first.status_code, second.status_code) == (200, 404)


@pytest.mark.parametrize("kind", ["session", "sessionless"])
async def test_restore_keeps_tokens_from_before_delete_revoked(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    admin_headers: dict[str, str],
    kind: str,
) -> None:
    if kind == "session":
        old_access = (await login(client, user.email))["access_token"]
    else:
        old_access = (await login_tokens(session, settings, user)).access_token

    _, restored = await delete_then_restore(client, user.id, admin_headers)
    response = await get_me(client, old_access)

    assert restored.status_code == 200
    assert response.status_code == 401
    assert await response.get_json() == REVOKED


async def test_restore_user_can_log_in_again(
    client: Client, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    target = await make_user(session)

    await delete_then_restore(client, target.id, admin_headers)
    login = await post_login(client, target.email)
    token = (await login.get_json())["access_token"]
    response = await get_me(client, token)

    assert login.status_code == 200
    assert response.status_code == 200
    assert (await response.get_json())["id"] == target.id
