"""Small async builders for test data, each with unique defaults."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from werkzeug.security import generate_password_hash

from service.config import Settings
from service.models import User, utcnow
from service.security.tokens import create_token

PASSWORD = "password123"
# One real scrypt hash for every factory user: hashing per user would cost
# ~100 ms each.
PASSWORD_HASH = generate_password_hash(PASSWORD)
_numbers = itertools.count(1)


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


def token_for(
    settings: Settings, user: User, *, token_type: str = "access", expires_in: int = 900
) -> str:
    claims = {"is_admin": user.is_admin} if token_type == "access" else None
    return create_token(
        user_id=user.id,
        token_type="refresh" if token_type == "refresh" else "access",
        key=settings.jwt_secret_key,
        expires_in=expires_in,
        additional_claims=claims,
    )


def headers_for(settings: Settings, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(settings, user)}"}


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


__all__ = ["PASSWORD", "at", "headers_for", "make_user", "token_for", "utcnow"]
