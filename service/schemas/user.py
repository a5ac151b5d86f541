"""User bodies, query strings and the User resource."""

from __future__ import annotations

from typing import Any, TypedDict

from marshmallow import Schema, fields, post_load, validate

from service.schemas.common import (
    EXAMPLE_AT,
    Email,
    PageQuery,
    PageQuerySchema,
    Text,
    Timestamp,
    example,
    page_schema,
)

NAME = validate.Length(min=1, max=100)


@example(
    {
        "id": 42,
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "full_name": "Ada Lovelace",
        "is_active": True,
        "is_admin": False,
        "created_at": EXAMPLE_AT,
        "updated_at": EXAMPLE_AT,
    }
)
class UserSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    full_name = fields.String()
    is_active = fields.Boolean()
    is_admin = fields.Boolean()
    created_at = Timestamp()
    updated_at = Timestamp()


class NewUser(TypedDict):
    email: str
    password: str
    first_name: str
    last_name: str


@example(
    {
        "email": "ada@example.com",
        "password": "a longer passphrase",
        "first_name": "Ada",
        "last_name": "Lovelace",
    }
)
class UserCreateSchema(Schema):
    email = Email(required=True)
    password = Text(required=True, validate=validate.Length(min=8, max=128))
    first_name = Text(required=True, validate=NAME)
    last_name = Text(required=True, validate=NAME)


class UserChanges(TypedDict, total=False):
    first_name: str
    last_name: str
    is_active: bool


@example({"first_name": "Augusta Ada"})
class UserUpdateSchema(Schema):
    first_name = Text(validate=NAME)
    last_name = Text(validate=NAME)
    is_active = fields.Boolean()


class UserListQuery(PageQuery):
    active_only: bool


class UserListQuerySchema(PageQuerySchema):
    active_only = fields.String(load_default="true")

    @post_load
    def interpret(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        # Only the string "true", in any case, means true: the Flask service's rule.
        return {**data, "active_only": data["active_only"].lower() == "true"}


UserPageSchema = page_schema(UserSchema, "users")
