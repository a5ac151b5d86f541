"""The Flask service's own test suite, ported one for one to the async service.

Names follow the seed's tests (TestGetUsers, TestCreateUser, TestDeleteUser,
TestUserService); assertions are tightened to whole bodies where the seed only
looked at status codes or keys, since the contract fixes those bodies.
"""

from __future__ import annotations

import pytest
from marshmallow import ValidationError
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from werkzeug.security import check_password_hash

from service.config import Settings
from service.errors import AuthError, NotFoundError
from service.models import User
from service.security.passwords import PasswordHasher
from service.security.tokens import decode_token
from service.services.auth import AuthService
from service.services.auth import Client as LoginClient
from service.services.users import UserService
from tests.support import bearer, login, page_json, registration, user_json

# The seed's authenticate() knew nothing of the caller's address or user agent.
NO_CLIENT = LoginClient(ip=None, user_agent=None)


@pytest.fixture
async def routed_login_headers(client: Client, user: User) -> dict[str, str]:
    return bearer((await login(client, user.email))["access_token"])


@pytest.fixture
async def admin_login_headers(client: Client, admin_user: User) -> dict[str, str]:
    return bearer((await login(client, admin_user.email))["access_token"])


@pytest.fixture
def auth(
    session: AsyncSession, hasher: PasswordHasher, settings: Settings
) -> AuthService:
    return AuthService(session, hasher, settings)


# TestGetUsers


async def test_get_users_requires_auth(client: Client) -> None:
    response = await client.get("/api/v1/users")

    assert response.status_code == 401
    assert await response.get_json() == {
        "msg": "Missing Authorization Header",
        "error": "Missing Authorization Header",
    }


async def test_get_users_returns_list(
    client: Client, routed_login_headers: dict[str, str], user: User
) -> None:
    response = await client.get("/api/v1/users", headers=routed_login_headers)

    assert response.status_code == 200
    assert await response.get_json() == page_json(
        "users", [user_json(user)], total=1, pages=1
    )


async def test_get_users_pagination(
    client: Client, routed_login_headers: dict[str, str], user: User
) -> None:
    response = await client.get(
        "/api/v1/users?page=1&per_page=5", headers=routed_login_headers
    )

    assert response.status_code == 200
    assert await response.get_json() == page_json(
        "users", [user_json(user)], total=1, pages=1, per_page=5
    )


# TestCreateUser


async def test_create_user_success(client: Client, session: AsyncSession) -> None:
    response = await client.post(
        "/api/v1/users",
        json=registration("new@example.com"),
    )

    assert response.status_code == 201
    created = await session.scalar(select(User).where(User.email == "new@example.com"))
    assert created is not None
    assert await response.get_json() == user_json(created)
    assert created.first_name == "New"
    assert created.last_name == "User"
    assert created.is_active is True
    assert created.is_admin is False
    assert check_password_hash(created.password_hash, "password123")


async def test_create_user_duplicate_email(client: Client, user: User) -> None:
    response = await client.post(
        "/api/v1/users",
        json=registration(user.email),
    )

    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"email": ["Email already registered."]},
    }


async def test_create_user_invalid_email(client: Client) -> None:
    response = await client.post(
        "/api/v1/users",
        json=registration("invalid-email"),
    )

    assert response.status_code == 400
    assert await response.get_json() == {
        "error": "Validation failed",
        "errors": {"email": ["Not a valid email address."]},
    }


# TestDeleteUser


@pytest.mark.parametrize(
    ("caller", "status", "deleted"),
    [
        pytest.param("user", 403, False, id="requires_admin"),
        pytest.param("admin", 204, True, id="as_admin"),
    ],
)
async def test_delete_user(
    client: Client,
    routed_login_headers: dict[str, str],
    admin_login_headers: dict[str, str],
    user: User,
    session: AsyncSession,
    caller: str,
    status: int,
    deleted: bool,
) -> None:
    headers = admin_login_headers if caller == "admin" else routed_login_headers

    response = await client.delete(f"/api/v1/users/{user.id}", headers=headers)

    assert response.status_code == status
    if deleted:
        assert await response.get_data() == b""
    else:
        assert await response.get_json() == {"error": "Admin access required"}
    await session.refresh(user)
    assert (user.deleted_at is not None) is deleted


# TestUserService


async def test_create_user(users: UserService, session: AsyncSession) -> None:
    user = await users.register(
        {
            "email": "service_test@example.com",
            "password": "password123",
            "first_name": "Service",
            "last_name": "Test",
        }
    )

    assert user.id is not None
    assert user.email == "service_test@example.com"
    stored = await session.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored is not None
    assert check_password_hash(stored, "password123")


async def test_service_create_user_duplicate_email(
    users: UserService, user: User
) -> None:
    # The seed expected ConflictError (409), which never reached a client; the
    # contract answers 400 on `email`, so the service raises that.
    with pytest.raises(ValidationError) as raised:
        await users.register(
            {
                "email": user.email,
                "password": "password123",
                "first_name": "Duplicate",
                "last_name": "User",
            }
        )

    assert raised.value.messages == {"email": ["Email already registered."]}


async def test_get_user_not_found(users: UserService) -> None:
    with pytest.raises(NotFoundError) as raised:
        await users.get(99999)

    assert raised.value.message == "User with id 99999 not found"


async def test_authenticate_success(
    auth: AuthService, user: User, settings: Settings
) -> None:
    tokens = await auth.login(user.email, "password123", client=NO_CLIENT)

    assert tokens.token_type == "bearer"
    access = decode_token(
        tokens.access_token, key=settings.jwt_secret_key, expected_type="access"
    )
    refresh = decode_token(
        tokens.refresh_token, key=settings.jwt_secret_key, expected_type="refresh"
    )
    assert access.user_id == user.id
    assert refresh.user_id == user.id


async def test_authenticate_wrong_password(auth: AuthService, user: User) -> None:
    with pytest.raises(AuthError) as raised:
        await auth.login(user.email, "wrongpassword", client=NO_CLIENT)

    assert raised.value.message == "Invalid email or password"


async def test_soft_delete_user(
    users: UserService, user: User, session: AsyncSession
) -> None:
    await users.soft_delete(user.id)

    await session.refresh(user)
    assert user.deleted_at is not None
    assert user.deleted_at is not None
    with pytest.raises(NotFoundError):
        await users.get(user.id)
