"""Login and token bodies."""

from __future__ import annotations

from typing import TypedDict

from marshmallow import Schema, fields, validate

from service.schemas.common import Email, Password, Text, Timestamp


class Credentials(TypedDict):
    email: str
    password: str


class LoginSchema(Schema):
    email = Email(required=True)
    # Only hashed, never stored: a NUL in it is a wrong password (401), as in Flask.
    password = Password(required=True)


class TokenPairSchema(Schema):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(dump_default="bearer")


class RefreshedTokensSchema(Schema):
    """A new access token; a new refresh token too when rotation is on."""

    access_token = fields.String(required=True)
    refresh_token = fields.String()
    token_type = fields.String(dump_default="bearer")


class MessageSchema(Schema):
    message = fields.String(required=True)


class PasswordChange(TypedDict):
    current_password: str
    new_password: str


class PasswordChangeSchema(Schema):
    current_password = Text(required=True)
    new_password = Text(required=True, validate=validate.Length(min=8, max=128))


class SessionSchema(Schema):
    id = fields.String()
    created_at = Timestamp()
    last_used_at = Timestamp()
    user_agent = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    current = fields.Boolean()


class SessionListSchema(Schema):
    sessions = fields.List(fields.Nested(SessionSchema))


class ForgotPassword(TypedDict):
    email: str


class ForgotPasswordSchema(Schema):
    email = Email(required=True)


class PasswordReset(TypedDict):
    token: str
    new_password: str


class PasswordResetSchema(Schema):
    token = Text(required=True, validate=validate.Length(min=1, max=2048))
    new_password = Text(required=True, validate=validate.Length(min=8, max=128))
