"""Small async builders for test data, each with unique defaults."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from werkzeug.security import generate_password_hash

from service.config import Settings
from service.models import AuthSession, Post, User, utcnow
from service.security.passwords import PasswordHasher
from service.security.tokens import create_token
from service.services.auth import AuthService, CheckedAccount, Client, TokenPair
from tests.support import PASSWORD, bearer, unique_email

# One real scrypt hash for every factory user: hashing per user would cost
# ~100 ms each.
PASSWORD_HASH = generate_password_hash(PASSWORD)
_numbers = itertools.count(1)
_titles = itertools.count(1)


async def make_post(session: AsyncSession, author: User, **overrides: Any) -> Post:
    number = next(_titles)
    values: dict[str, Any] = {
        "author_id": author.id,
        "title": f"Post {number}",
        "content": f"Content of post {number}",
    }
    values.update(overrides)
    post = Post(**values)
    session.add(post)
    await session.commit()
    return post


# AuthService wants a hasher; starting a session never hashes, so no thread starts.
_UNUSED_HASHER = PasswordHasher(threads=1)


async def make_user(session: AsyncSession, **overrides: Any) -> User:
    number = next(_numbers)
    values: dict[str, Any] = {
        "email": f"user{number}@example.com",
        "password_hash": PASSWORD_HASH,
        "first_name": "User",
        "last_name": str(number),
        "is_active": True,
        "is_admin": False,
    }
    values.update(overrides)
    user = User(**values)
    session.add(user)
    await session.commit()
    return user


async def make_users(session: AsyncSession, count: int) -> None:
    """`count` users in one commit (make_user commits each)."""
    session.add_all(
        User(
            email=f"bulk{next(_numbers)}@example.com",
            password_hash=PASSWORD_HASH,
            first_name="Bulk",
            last_name=str(n),
        )
        for n in range(count)
    )
    await session.commit()


async def committed_user(database: AsyncEngine | str, **overrides: Any) -> User:
    """A user committed on another database than the test session's (a served
    instance's, a cluster's: an engine, or a URL to make one for), its address
    unique unless given."""
    overrides.setdefault("email", unique_email())
    engine = create_async_engine(database) if isinstance(database, str) else database
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            return await make_user(session, **overrides)
    finally:
        if isinstance(database, str):
            await engine.dispose()


async def login_tokens(
    session: AsyncSession,
    settings: Settings,
    user: User,
    *,
    ip: str | None = "127.0.0.1",
    user_agent: str | None = "pytest",
) -> TokenPair:
    """What a real login returns (a session row, tokens naming it), without the
    ~100 ms password check: AuthService's own path after the check."""
    auth = AuthService(session, _UNUSED_HASHER, settings)
    return await auth.open_session(
        CheckedAccount.of(user), client=Client(ip=ip, user_agent=user_agent)
    )


async def login_headers(
    session: AsyncSession, settings: Settings, user: User
) -> dict[str, str]:
    """The Authorization header of a real login's access token."""
    return bearer((await login_tokens(session, settings, user)).access_token)


async def set_session_row(
    session: AsyncSession, headers: dict[str, str], **row: Any
) -> dict[str, str]:
    """The session the headers' token names, its row (only) given the values
    `row`: the same headers."""
    token = headers["Authorization"].split()[1]
    sid = jwt.decode(token, options={"verify_signature": False})["sid"]
    await session.execute(
        update(AuthSession).where(AuthSession.id == sid).values(**row)
    )
    await session.commit()
    return headers


async def make_stale(session: AsyncSession, headers: dict[str, str]) -> dict[str, str]:
    """The session the headers' token names, made no longer fresh: the same headers."""
    return await set_session_row(
        session, headers, fresh_until=utcnow() - timedelta(seconds=1)
    )


def mint(
    settings: Settings,
    user: User,
    token_type: str = "access",
    *,
    claims: dict[str, Any] | None = None,
    expires_in: int = 900,
    now: int | None = None,
    jti: str | None = None,
) -> str:
    """A token for `user` signed with the settings' key, carrying `claims`: the
    one way tests mint one by hand (the helpers below say which kind)."""
    return create_token(
        user_id=user.id,
        token_type="refresh" if token_type == "refresh" else "access",
        key=settings.jwt_secret_key,
        expires_in=expires_in,
        additional_claims=claims,
        now=now,
        jti=jti,
    )


def flask_token_for(
    settings: Settings,
    user: User,
    *,
    token_type: str = "access",
    expires_in: int = 900,
    now: int | None = None,
) -> str:
    """A session-less token as the Flask service minted it: only for tests about
    Flask-era tokens (a login makes session tokens, see login_tokens)."""
    claims = {"is_admin": user.is_admin} if token_type == "access" else None
    return mint(
        settings, user, token_type, claims=claims, expires_in=expires_in, now=now
    )


def flask_headers_for(settings: Settings, user: User) -> dict[str, str]:
    return bearer(flask_token_for(settings, user))


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


__all__ = [
    "PASSWORD",
    "at",
    "committed_user",
    "flask_headers_for",
    "flask_token_for",
    "login_headers",
    "login_tokens",
    "make_post",
    "make_user",
    "make_users",
    "mint",
    "utcnow",
]
