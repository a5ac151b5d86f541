"""The planned dumper answers exactly what marshmallow's own dump answers."""

from __future__ import annotations

import json
import random
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from marshmallow import Schema, fields, post_dump

from service import create_app
from service.api.io import RETURNS, compile_dump
from service.config import Settings
from service.models import Post, User, UserRecord
from service.schemas.auth import (
    MessageSchema,
    RefreshedTokensSchema,
    SessionListSchema,
    TokenPairSchema,
)
from service.schemas.common import StatusSchema, Timestamp
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


def returned_schemas() -> list[type[Schema]]:
    app = create_app(Settings(env="testing"))
    found = {
        getattr(app.view_functions[rule.endpoint], RETURNS, None)
        for rule in app.url_map.iter_rules()
    }
    return sorted((each for each in found if each is not None), key=str)


def generated(schema: Schema, rng: random.Random, depth: int = 0) -> dict[str, Any]:
    """A dict of values for every dump field, some None, some left out."""
    values: dict[str, Any] = {}
    for name, field in schema.dump_fields.items():
        roll = rng.random()
        if roll < 0.1:
            continue
        values[field.attribute or name] = None if roll < 0.2 else value_for(field, rng)
    return values


def value_for(field: fields.Field[Any], rng: random.Random) -> Any:
    if isinstance(field, fields.Nested):
        return generated(field.schema, rng)
    if isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
        return [generated(field.inner.schema, rng) for _ in range(rng.randint(0, 3))]
    if isinstance(field, fields.Boolean):
        return rng.choice([True, False, 0, 1])
    if isinstance(field, fields.Integer):
        return rng.choice([0, 1, -7, 2**31 - 1, 2**63])
    if isinstance(field, Timestamp):
        return rng.choice([AT, ON_THE_SECOND, datetime(1999, 12, 31, 23, 59, 59, 1)])  # noqa: DTZ001
    return rng.choice(["", "plain", "Ünïcode ✓", 'quote " and \\ back', "\u2028"])


def as_object(values: dict[str, Any]) -> SimpleNamespace:
    return SimpleNamespace(
        **{
            key: as_object(value) if isinstance(value, dict) else value
            for key, value in values.items()
        }
    )


@pytest.mark.parametrize("schema_cls", returned_schemas(), ids=lambda cls: cls.__name__)
def test_every_returned_schema_dumps_byte_equal_to_marshmallow(
    schema_cls: type[Schema],
) -> None:
    schema = schema_cls()
    dump = compile_dump(schema)
    rng = random.Random(schema_cls.__name__)  # the same objects every run

    for _ in range(200):
        values = generated(schema, rng)
        for obj in (values, as_object(values)):
            assert json.dumps(dump(obj)) == json.dumps(schema.dump(obj))


def test_the_walk_finds_the_routes_schemas() -> None:
    assert {UserSchema, UserPageSchema, PostSchema, TokenPairSchema} <= set(
        returned_schemas()
    )


class Renamed(Schema):
    name = fields.String(data_key="full_name")


class Hooked(Schema):
    name = fields.String()

    @post_dump
    def shout(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {key: value.upper() for key, value in data.items()}


class Dotted(Schema):
    city = fields.String(attribute="address.city")


class AsString(Schema):
    number = fields.Integer(as_string=True)


class Method(Schema):
    name = fields.Method("get_name")

    def get_name(self, obj: Any) -> str:
        return "method"


class Items(Schema):
    items = fields.String()


FALLBACKS: list[tuple[Schema, Any]] = [
    (Renamed(), {"name": "a"}),
    (Hooked(), {"name": "a"}),
    (Dotted(), {"address": {"city": "Oslo"}}),
    (AsString(), {"number": 7}),
    (Method(), {}),
    (Items(), {}),
    (UserSchema(only=("id", "email")), record(1)),
    (UserSchema(exclude=("email",)), record(1)),
    (UserSchema(many=True), [record(1), record(2)]),
]


@pytest.mark.parametrize(
    ("schema", "obj"), FALLBACKS, ids=lambda each: type(each).__name__
)
def test_what_it_does_not_plan_marshmallow_dumps(schema: Schema, obj: Any) -> None:
    assert compile_dump(schema) == schema.dump
    assert compile_dump(schema)(obj) == schema.dump(obj)


def test_a_mapping_that_is_not_a_dict_is_dumped_by_marshmallow() -> None:
    # marshmallow reads anything with __getitem__ by key, not by attribute.
    class Row(dict[str, Any]):
        pass

    row = Row(id=1, email="a@example.com")
    dump = compile_dump(UserSchema())

    assert dump(row) == UserSchema().dump(row)
