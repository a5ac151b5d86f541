"""Passkey bodies: the WebAuthn Level 3 JSON forms (binary fields as base64url),
as a browser's `PublicKeyCredential.parseCreationOptionsFromJSON()` takes the
options and `PublicKeyCredential.toJSON()` gives the credential."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from marshmallow import Schema, fields, validate

from service.schemas.common import EXAMPLE_AT, Text, Timestamp, example, sent_when

B64 = {"description": "base64url, without padding"}
NAME = validate.Length(min=1, max=100)
CHALLENGE_EXAMPLE = "kX2v9QmJ4tR7yW1zB8nC5dF3gH6jL0pSkX2v9QmJ4tR7yW1zB8nC5dF3gH6jL0pSAA"
CREDENTIAL_ID_EXAMPLE = "xV3mR8tQ1wZ6yB4nC7dF2gH5jK9lP0sAxV3mR8tQ1wY"
USER_HANDLE_EXAMPLE = "q7Wm3Rt9Yx2Bn5Cv8Dk4Fg6Hj1Lp0SaQ7Wm3Rt9Yx2B"


def camel(field: fields.Field[Any], name: str) -> fields.Field[Any]:
    """A field sent under WebAuthn's camelCase name, read from the same key."""
    field.data_key = name
    field.attribute = name
    return field


# --- answers ---------------------------------------------------------------


PASSKEY_EXAMPLE = {
    "id": "6f1c2d3e-4a5b-4c7d-8e9f-0a1b2c3d4e5f",
    "name": "Laptop",
    "created_at": EXAMPLE_AT,
    "last_used_at": None,
}


@example(PASSKEY_EXAMPLE)
class PasskeySchema(Schema):
    id = fields.String()
    name = fields.String()
    created_at = Timestamp()
    last_used_at = Timestamp(allow_none=True)


@example({"passkeys": [PASSKEY_EXAMPLE]})
class PasskeyListSchema(Schema):
    passkeys = fields.List(fields.Nested(PasskeySchema))


class RelyingPartySchema(Schema):
    id = fields.String(metadata={"description": "WEBAUTHN_RP_ID"})
    name = fields.String(metadata={"description": "WEBAUTHN_RP_NAME"})


class CredentialUserSchema(Schema):
    id = fields.String(
        metadata={"description": "the user handle; " + B64["description"]}
    )
    name = fields.String(metadata={"description": "the account's email"})
    displayName = camel(fields.String(), "displayName")  # noqa: N815


class CredentialParameterSchema(Schema):
    type = fields.String()
    alg = fields.Integer(metadata={"description": "a COSE algorithm (-7: ES256)"})


class CredentialDescriptorSchema(Schema):
    id = fields.String(metadata=B64)
    type = fields.String()
    transports = fields.List(
        fields.String(),
        metadata=sent_when("the browser said how the authenticator is reached"),
    )


class AuthenticatorSelectionSchema(Schema):
    residentKey = camel(fields.String(), "residentKey")  # noqa: N815
    requireResidentKey = camel(fields.Boolean(), "requireResidentKey")  # noqa: N815
    userVerification = camel(fields.String(), "userVerification")  # noqa: N815


CREATION_EXAMPLE = {
    "rp": {"id": "example.com", "name": "service"},
    "user": {
        "id": USER_HANDLE_EXAMPLE,
        "name": "ada@example.com",
        "displayName": "Ada Lovelace",
    },
    "challenge": CHALLENGE_EXAMPLE,
    "pubKeyCredParams": [
        {"type": "public-key", "alg": -8},
        {"type": "public-key", "alg": -7},
        {"type": "public-key", "alg": -257},
    ],
    "timeout": 300000,
    "excludeCredentials": [
        {"id": CREDENTIAL_ID_EXAMPLE, "type": "public-key", "transports": ["internal"]}
    ],
    "authenticatorSelection": {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "required",
    },
    "attestation": "none",
}


@example(CREATION_EXAMPLE)
class CreationOptionsSchema(Schema):
    """PublicKeyCredentialCreationOptionsJSON: for navigator.credentials.create()."""

    rp = fields.Nested(RelyingPartySchema)
    user = fields.Nested(CredentialUserSchema)
    challenge = fields.String(
        metadata={"description": "single-use, answerable for 5 minutes; base64url"}
    )
    pubKeyCredParams = camel(  # noqa: N815
        fields.List(fields.Nested(CredentialParameterSchema)), "pubKeyCredParams"
    )
    timeout = fields.Integer(metadata={"description": "milliseconds"})
    excludeCredentials = camel(  # noqa: N815
        fields.List(
            fields.Nested(CredentialDescriptorSchema),
            metadata={"description": "the user's passkeys: none is made twice"},
        ),
        "excludeCredentials",
    )
    authenticatorSelection = camel(  # noqa: N815
        fields.Nested(AuthenticatorSelectionSchema), "authenticatorSelection"
    )
    attestation = fields.String()


@example(
    {
        "challenge": CHALLENGE_EXAMPLE,
        "timeout": 300000,
        "rpId": "example.com",
        "allowCredentials": [],
        "userVerification": "required",
    }
)
class RequestOptionsSchema(Schema):
    """PublicKeyCredentialRequestOptionsJSON: for navigator.credentials.get()."""

    challenge = fields.String(
        metadata={"description": "single-use, answerable for 5 minutes; base64url"}
    )
    timeout = fields.Integer(metadata={"description": "milliseconds"})
    rpId = camel(fields.String(), "rpId")  # noqa: N815
    allowCredentials = camel(  # noqa: N815
        fields.List(
            fields.Nested(CredentialDescriptorSchema),
            metadata={
                "description": "empty for a passkey alone (a discoverable one "
                "chooses itself); after a password, that user's passkeys"
            },
        ),
        "allowCredentials",
    )
    userVerification = camel(  # noqa: N815
        fields.String(
            metadata={
                "description": "required for a passkey alone, preferred as a "
                "second factor"
            }
        ),
        "userVerification",
    )


# --- bodies ------------------------------------------------------------------

Credential = dict[str, Any]
CREDENTIAL_DESCRIPTION = (
    "What the browser's PublicKeyCredential.toJSON() gives: id, rawId, type, "
    "response (base64url fields) and the rest as it is"
)
REGISTRATION_EXAMPLE = {
    "id": CREDENTIAL_ID_EXAMPLE,
    "rawId": CREDENTIAL_ID_EXAMPLE,
    "type": "public-key",
    "response": {
        "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIn0",
        "attestationObject": "o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVg",
        "transports": ["internal"],
    },
    "authenticatorAttachment": "platform",
    "clientExtensionResults": {},
}
ASSERTION_EXAMPLE = {
    "id": CREDENTIAL_ID_EXAMPLE,
    "rawId": CREDENTIAL_ID_EXAMPLE,
    "type": "public-key",
    "response": {
        "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0",
        "authenticatorData": "SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MFAAAAAQ",
        "signature": "MEUCIQDxV3mR8tQ1wZ6yB4nC7dF2gH5jK9lP0sAxV3mR8tQ1wY",
        "userHandle": USER_HANDLE_EXAMPLE,
    },
    "authenticatorAttachment": "platform",
    "clientExtensionResults": {},
}


class NewPasskey(TypedDict):
    credential: Credential
    name: NotRequired[str]


@example({"credential": REGISTRATION_EXAMPLE, "name": "Laptop"})
class NewPasskeySchema(Schema):
    credential = fields.Dict(
        required=True,
        metadata={"description": "RegistrationResponseJSON. " + CREDENTIAL_DESCRIPTION},
    )
    name = Text(
        validate=NAME,
        metadata={"description": 'shown in the list; "Passkey" when not given'},
    )


class PasskeyRename(TypedDict):
    name: str


@example({"name": "Work laptop"})
class PasskeyRenameSchema(Schema):
    name = Text(required=True, validate=NAME)


class PasskeyLoginOptions(TypedDict):
    mfa_token: NotRequired[str]


SECOND_STEP_NOTE = (
    "the `mfa_token` of a password login's 401 Second factor required: the "
    "passkey as that login's second factor"
)


@example({})
class PasskeyLoginOptionsSchema(Schema):
    mfa_token = Text(
        validate=validate.Length(min=1, max=2048),
        metadata={"description": SECOND_STEP_NOTE + "; absent: a passkey alone"},
    )


class PasskeyLogin(TypedDict):
    credential: Credential
    mfa_token: NotRequired[str]


@example({"credential": ASSERTION_EXAMPLE})
class PasskeyLoginSchema(Schema):
    credential = fields.Dict(
        required=True,
        metadata={
            "description": "AuthenticationResponseJSON. " + CREDENTIAL_DESCRIPTION
        },
    )
    mfa_token = Text(
        validate=validate.Length(min=1, max=2048),
        metadata={"description": SECOND_STEP_NOTE + " (the same one)"},
    )
