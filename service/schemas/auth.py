"""Login and token bodies."""

from __future__ import annotations

from typing import TypedDict

from marshmallow import Schema, fields, validate

from service.schemas.common import (
    EXAMPLE_AT,
    Email,
    Password,
    Text,
    Timestamp,
    example,
    sent_when,
)

# A JWT's shape, without real claims or signature.
ACCESS_EXAMPLE = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0eXBlIjoiYWNjZXNzIn0.c2lnbmF0dXJl"
)
REFRESH_EXAMPLE = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
)


class Credentials(TypedDict):
    email: str
    password: str


# The administrator `make run` seeds: "Try it out" in /docs logs in as it is.
@example({"email": "admin@example.com", "password": "admin123"})
class LoginSchema(Schema):
    email = Email(required=True)
    # Only hashed, never stored: a NUL in it is a wrong password (401), as in Flask.
    password = Password(required=True)


@example(
    {
        "access_token": ACCESS_EXAMPLE,
        "refresh_token": REFRESH_EXAMPLE,
        "token_type": "bearer",
    }
)
class TokenPairSchema(Schema):
    access_token = fields.String(
        metadata={"description": "For every route but /auth/refresh; 15 minutes"}
    )
    refresh_token = fields.String(
        metadata={"description": "For POST /auth/refresh only; 30 days"}
    )
    token_type = fields.String(dump_default="bearer")


@example({"access_token": ACCESS_EXAMPLE, "token_type": "bearer"})
class RefreshedTokensSchema(Schema):
    """A new access token; a new refresh token too when rotation is on."""

    access_token = fields.String()
    refresh_token = fields.String(
        metadata=sent_when(
            "refresh-token rotation is on (REFRESH_TOKEN_ROTATION): it replaces "
            "the one used"
        )
    )
    token_type = fields.String(dump_default="bearer")


@example({"message": "Successfully logged out"})
class MessageSchema(Schema):
    message = fields.String()


class PasswordChange(TypedDict):
    current_password: str
    new_password: str


@example({"current_password": "admin123", "new_password": "a longer passphrase"})
class PasswordChangeSchema(Schema):
    current_password = Text(required=True)
    new_password = Text(required=True, validate=validate.Length(min=8, max=128))


SESSION_EXAMPLE = {
    "id": "0b9f3c1e-6d2a-4c5b-9a7e-3f1d2c4b5a69",
    "created_at": EXAMPLE_AT,
    "last_used_at": EXAMPLE_AT,
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "ip": "203.0.113.7",
    "current": True,
}


@example(SESSION_EXAMPLE)
class SessionSchema(Schema):
    id = fields.String()
    created_at = Timestamp()
    last_used_at = Timestamp()
    user_agent = fields.String(
        allow_none=True, metadata={"description": "null when the client sent none"}
    )
    ip = fields.String(allow_none=True, metadata={"description": "null if unknown"})
    current = fields.Boolean(metadata={"description": "the session of this token"})


@example({"sessions": [SESSION_EXAMPLE]})
class SessionListSchema(Schema):
    sessions = fields.List(fields.Nested(SessionSchema))


class ForgotPassword(TypedDict):
    email: str


@example({"email": "ada@example.com"})
class ForgotPasswordSchema(Schema):
    email = Email(required=True)


class PasswordReset(TypedDict):
    token: str
    new_password: str


@example(
    {"token": "kX2v9QmJ4tR7yW1zB8nC5dF3gH6jL0pS", "new_password": "a longer passphrase"}
)
class PasswordResetSchema(Schema):
    token = Text(required=True, validate=validate.Length(min=1, max=2048))
    new_password = Text(required=True, validate=validate.Length(min=8, max=128))
