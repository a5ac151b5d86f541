"""Account security bodies: security events, address verification and change."""

from __future__ import annotations

from typing import TypedDict

from marshmallow import Schema, fields, validate

from service.schemas.common import (
    EXAMPLE_AT,
    Email,
    Text,
    Timestamp,
    example,
    page_schema,
)


@example(
    {
        "id": 812,
        "type": "password_changed",
        "detail": None,
        "created_at": EXAMPLE_AT,
        "ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    }
)
class SecurityEventSchema(Schema):
    id = fields.Integer()
    type = fields.String(
        metadata={
            "description": "login, login_failed, second_factor_used, "
            "second_factor_failed, password_changed, password_reset, "
            "email_changed, email_verified, factor_added, factor_removed, "
            "session_ended"
        }
    )
    detail = fields.String(
        allow_none=True,
        metadata={
            "description": "which factor (totp, passkey, recovery_codes, "
            "recovery_code) or how a session ended (logout, revoked, "
            "others_revoked, refresh_reuse, admin); null when nothing more to say"
        },
    )
    created_at = Timestamp()
    ip = fields.String(allow_none=True, metadata={"description": "null if unknown"})
    user_agent = fields.String(
        allow_none=True, metadata={"description": "null when the client sent none"}
    )


SecurityEventPageSchema = page_schema(SecurityEventSchema, "events")


class EmailToken(TypedDict):
    token: str


@example({"token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0eXBlIjoiZW1haWwifQ.c2ln"})
class EmailTokenSchema(Schema):
    """The token of a link mailed by /auth/email/verify/request or /auth/email."""

    token = Text(required=True, validate=validate.Length(min=1, max=2048))


class EmailChange(TypedDict):
    new_email: str


@example({"new_email": "ada.king@example.com"})
class EmailChangeSchema(Schema):
    new_email = Email(required=True)
