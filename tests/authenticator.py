"""A software WebAuthn authenticator and the browser around it, for the suite.

It does what a platform authenticator and `navigator.credentials` do between
them, from the JSON options the service sends to the JSON a browser's
`PublicKeyCredential.toJSON()` gives back: an ES256 key per credential
(`cryptography`), the authenticator data and "none" attestation in CBOR
(`cbor2`), the client data with the page's origin. Each credential is
discoverable (it keeps its user handle); user presence and verification are
flags a test may leave out, and the sign count one it may set.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

ORIGIN = "http://localhost:8000"
RP_ID = "localhost"
# Authenticator data flags (WebAuthn Level 3, 6.1).
UP, UV, AT = 0x01, 0x04, 0x40
AAGUID = bytes(16)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    id: bytes
    rp_id: str
    user_handle: bytes
    key: ec.EllipticCurvePrivateKey
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


def _as_json(credential: Credential, response: dict[str, Any]) -> dict[str, Any]:
    """The PublicKeyCredential of `credential` with `response` (an attestation's
    or an assertion's), as a platform authenticator's toJSON() gives it."""
    return {
        "id": b64url(credential.id),
        "rawId": b64url(credential.id),
        "type": "public-key",
        "response": response,
        "authenticatorAttachment": "platform",
        "clientExtensionResults": {},
    }


@dataclass
class Authenticator:
    """A platform authenticator with its own discoverable credentials, used from
    pages of `origin`."""

    origin: str = ORIGIN
    credentials: list[Credential] = field(default_factory=list)

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        user_present: bool = True,
        user_verified: bool = True,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """navigator.credentials.create({publicKey: options}), as toJSON() gives it."""
        rp_id = options["rp"]["id"]
        excluded = {unb64url(each["id"]) for each in options["excludeCredentials"]}
        if any(each.id in excluded for each in self.credentials):
            raise ValueError("InvalidStateError: a credential here is excluded")
        credential = Credential(
            id=credential_id or os.urandom(32),
            rp_id=rp_id,
            user_handle=unb64url(options["user"]["id"]),
            key=ec.generate_private_key(ec.SECP256R1()),
        )
        self.credentials.append(credential)
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        auth_data = (
            _authenticator_data(
                rp_id, _flags(user_present, user_verified) | AT, credential.sign_count
            )
            + AAGUID
            + struct.pack(">H", len(credential.id))
            + credential.id
            + credential.cose_public_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return _as_json(
            credential,
            {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
        )

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        credential: Credential | None = None,
        user_present: bool = True,
        user_verified: bool = True,
        sign_count: int | None = None,
    ) -> dict[str, Any]:
        """navigator.credentials.get({publicKey: options}), as toJSON() gives it:
        the allowed credential, or the newest discoverable one for the RP."""
        credential = credential or self._choose(options)
        credential.sign_count = (
            credential.sign_count + 1 if sign_count is None else sign_count
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = _authenticator_data(
            options["rpId"], _flags(user_present, user_verified), credential.sign_count
        )
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(),
            ec.ECDSA(hashes.SHA256()),
        )
        return _as_json(
            credential,
            {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle),
            },
        )

    def _choose(self, options: dict[str, Any]) -> Credential:
        allowed = {unb64url(each["id"]) for each in options["allowCredentials"]}
        usable = [
            each
            for each in self.credentials
            if each.rp_id == options["rpId"] and (not allowed or each.id in allowed)
        ]
        if not usable:
            raise ValueError("NotAllowedError: no credential for these options")
        return usable[-1]

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()


def _flags(user_present: bool, user_verified: bool) -> int:
    return (UP if user_present else 0) | (UV if user_verified else 0)


def _authenticator_data(rp_id: str, flags: int, sign_count: int) -> bytes:
    return (
        hashlib.sha256(rp_id.encode()).digest()
        + bytes([flags])
        + struct.pack(">I", sign_count)
    )
