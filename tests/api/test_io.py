"""The planned dumper answers exactly what marshmallow's own dump answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from marshmallow import Schema

from service.api.io import compile_dump
from service.models import Post, User, UserRecord
from service.schemas.auth import (
    MessageSchema,
    RefreshedTokensSchema,
    SessionListSchema,
    TokenPairSchema,
)
from service.schemas.common import StatusSchema
from service.schemas.post import PostPageSchema, PostSchema
from service.schemas.user import UserPageSchema, UserSchema
from service.services.auth import AccessToken, TokenPair

# Naive UTC, as the tables store it.
AT = datetime(2026, 11, 26, 1, 56, 3, 602042)  # noqa: DTZ001
ON_THE_SECOND = datetime(2026, 11, 26, 1, 56, 3)  # noqa: DTZ001


def record(number: int) -> UserRecord:
    return UserRecord(
        id=number,
        email=f"user{number}@example.com",
        first_name="Ünïcode",
        last_name=str(number),
        is_active=number % 2 == 0,
        is_admin=False,
        created_at=AT,
        updated_at=ON_THE_SECOND,
    )


def orm_user() -> User:
    return User(
        id=7,
        email="orm@example.com",
        password_hash="x",
        first_name="Orm",
        last_name="User",
        is_active=True,
        is_admin=True,
        created_at=AT,
        updated_at=AT,
    )


def post() -> Post:
    made = Post(id=3, title="T", content="C", author_id=7, created_at=AT, updated_at=AT)
    made.author = orm_user()
    return made


CASES: list[tuple[type[Schema], Any]] = [
    (UserSchema, record(1)),
    (UserSchema, orm_user()),
    (
        UserPageSchema,
        {
            "users": [record(n) for n in range(20)],
            "page": 1,
            "per_page": 20,
            "total": 40,
            "pages": 2,
        },
    ),
    (UserPageSchema, {"users": [], "page": 3, "per_page": 20, "total": 0, "pages": 0}),
    (PostSchema, post()),
    (
        PostPageSchema,
        {"posts": [post()], "page": 1, "per_page": 20, "total": 1, "pages": 1},
    ),
    (TokenPairSchema, TokenPair("a.b.c", "d.e.f")),
    (RefreshedTokensSchema, AccessToken("a.b.c")),
    (RefreshedTokensSchema, TokenPair("a.b.c", "d.e.f")),
    (MessageSchema, {"message": "Successfully logged out"}),
    (StatusSchema, {"status": "ok"}),
    (
        SessionListSchema,
        {
            "sessions": [
                {
                    "id": "s1",
                    "created_at": AT,
                    "last_used_at": AT,
                    "user_agent": None,
                    "ip": "::1",
                    "current": True,
                },
                {
                    "id": "s2",
                    "created_at": AT,
                    "last_used_at": ON_THE_SECOND,
                    "user_agent": "curl",
                    "ip": None,
                    "current": False,
                },
            ]
        },
    ),
]


@pytest.mark.parametrize(("schema_cls", "obj"), CASES)
def test_planned_dump_equals_marshmallow(schema_cls: type[Schema], obj: Any) -> None:
    schema = schema_cls()

    assert compile_dump(schema)(obj) == schema.dump(obj)


def test_planned_dump_is_used_for_every_output_schema() -> None:
    # Falling back to marshmallow is allowed, but none of these should need it.
    for schema_cls, _ in CASES:
        schema = schema_cls()
        assert compile_dump(schema) != schema.dump, schema_cls.__name__
