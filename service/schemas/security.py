"""Bodies of the account-security routes: fresh sessions and second factors."""

from __future__ import annotations

from typing import ClassVar, TypedDict

from marshmallow import Schema, fields, validate

from service.schemas.common import (
    AuthErrorSchema,
    Password,
    Text,
    example,
    sent_when,
)


class Reauthentication(TypedDict, total=False):
    password: str
    code: str


@example({"password": "admin123"})
class FreshSchema(Schema):
    """The account's password, or a code of its TOTP: one of the two."""

    openapi_body_constraints: ClassVar[dict[str, int]] = {
        "minProperties": 1,
        "maxProperties": 1,
    }

    password = Password()
    code = Text(
        validate=validate.Length(max=64),
        metadata={"description": "a TOTP code, for an account with TOTP on"},
    )


SECRET_EXAMPLE = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105 (an example)
RECOVERY_EXAMPLE = [f"k7dq-3mzt-x2pa-9f{n}c" for n in range(10)]


@example(
    {
        "email": "ada@example.com",
        "email_verified": False,
        "totp": True,
        "passkeys": 0,
        "recovery_codes_left": 10,
    }
)
class AccountSchema(Schema):
    """The caller's security state."""

    email = fields.String()
    email_verified = fields.Boolean()
    totp = fields.Boolean(metadata={"description": "TOTP is on (confirmed)"})
    passkeys = fields.Integer(metadata={"description": "how many passkeys"})
    recovery_codes_left = fields.Integer(
        metadata={"description": "recovery codes not used yet"}
    )


@example(
    {
        "secret": SECRET_EXAMPLE,
        "otpauth_uri": f"otpauth://totp/service:ada%40example.com?secret={SECRET_EXAMPLE}&issuer=service",
    }
)
class TotpEnrolmentSchema(Schema):
    """A secret for the authenticator app; TOTP is on once a code confirms it."""

    secret = fields.String(metadata={"description": "base32"})
    otpauth_uri = fields.String(metadata={"description": "for a QR code"})


class CodeBody(TypedDict):
    code: str


@example({"code": "123456"})
class CodeSchema(Schema):
    code = Text(
        required=True,
        validate=validate.Length(max=64),
        metadata={"description": "the authenticator app's 6-digit code"},
    )


@example({"recovery_codes": RECOVERY_EXAMPLE})
class RecoveryCodesSchema(Schema):
    """Shown once: each works once, in place of a TOTP code."""

    recovery_codes = fields.List(fields.String())


@example(
    {
        "error": "Second factor required",
        "msg": "Second factor required",
        "mfa_token": "q9Zb2vQm7rT0yXcN4eKpLw1sHdUf8aJiGo3nVbRzMEk",
        "methods": ["totp", "recovery_code"],
    }
)
class SecondFactorRequiredSchema(AuthErrorSchema):
    """The right password of an account with a second factor: finish the login
    at POST /auth/login/mfa (or with a passkey) with `mfa_token`."""

    mfa_token = fields.String(
        metadata=sent_when(
            "the password was right and the account has a second factor: "
            "single-use, for 5 minutes"
        )
    )
    methods = fields.List(
        fields.String(validate=validate.OneOf(["totp", "recovery_code", "passkey"])),
        metadata=sent_when("`mfa_token` is: the second factors the account has"),
    )


class MfaLogin(TypedDict, total=False):
    mfa_token: str
    code: str
    recovery_code: str


@example({"mfa_token": "q9Zb2vQm7rT0yXcN4eKpLw1sHdUf8aJiGo3nVbRzMEk", "code": "123456"})
class MfaLoginSchema(Schema):
    """The login's `mfa_token`, and a TOTP code or a recovery code (one)."""

    openapi_body_constraints: ClassVar[dict[str, int]] = {
        "minProperties": 2,
        "maxProperties": 2,
    }

    mfa_token = Text(required=True, validate=validate.Length(max=128))
    code = Text(
        validate=validate.Length(max=64), metadata={"description": "a TOTP code"}
    )
    recovery_code = Text(
        validate=validate.Length(max=64),
        metadata={"description": "one of the account's recovery codes"},
    )
