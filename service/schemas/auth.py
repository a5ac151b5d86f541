"""Login and token bodies."""

from __future__ import annotations

from typing import TypedDict

from marshmallow import Schema, fields

from service.schemas.common import Email, Text


class Credentials(TypedDict):
    email: str
    password: str


class LoginSchema(Schema):
    email = Email(required=True)
    password = Text(required=True)


class TokenPairSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(dump_default="bearer")


class AccessTokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(dump_default="bearer")


class MessageSchema(Schema):
    message = fields.String(required=True)
