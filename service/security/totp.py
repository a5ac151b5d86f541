"""TOTP codes (RFC 6238: SHA-1, 6 digits, 30 s steps, one step either side),
recovery codes, and the encryption of TOTP secrets at rest (AES-GCM).

Pure functions of their inputs (the time included), so a test can put a code at
the edge of a step.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

STEP_SECONDS = 30
DIGITS = 6
# A code of the step before or after the current one is accepted too (clock drift).
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
# 16 symbols of Crockford's base32 (no i, l, o, u): 80 bits, four groups of four.
_RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RECOVERY_SYMBOLS = 16
_SEALED_FORMAT = "v1"


def new_secret() -> str:
    """A random base32 secret of 160 bits, as RFC 4226 recommends."""
    return pyotp.random_base32(length=32)


def step_at(now: float) -> int:
    return int(now // STEP_SECONDS)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app reads from a QR code."""
    uri: str = pyotp.TOTP(
        secret, digits=DIGITS, interval=STEP_SECONDS
    ).provisioning_uri(name=account, issuer_name=issuer)
    return uri


def matching_step(
    secret: str, code: str, *, now: float, after: int | None = None
) -> int | None:
    """The step whose code `code` is, within one step of `now` and later than
    `after` (the last step used: a code works once, even within its step)."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = step_at(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Every candidate is compared, in constant time, whatever matched.
        if hmac.compare_digest(totp.generate_otp(step), code) and (
            after is None or step > after
        ):
            found = step
    return found


def code_at(secret: str, now: float) -> str:
    """The code of `now`'s step (what an authenticator app shows)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(
        step_at(now)
    )


def new_recovery_codes() -> list[str]:
    return [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]


def _recovery_code() -> str:
    symbols = "".join(
        secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_SYMBOLS)
    )
    return "-".join(symbols[i : i + 4] for i in range(0, _RECOVERY_SYMBOLS, 4))


def recovery_code_hash(code: str) -> str:
    """What is stored of a recovery code: 80 random bits need no slow hash.
    Case, spaces and hyphens do not matter when it is typed back."""
    normalized = "".join(code.lower().replace("-", "").split())
    return hashlib.sha256(normalized.encode("utf-8", "replace")).hexdigest()


class SecretBox:
    """AES-256-GCM under a key derived from MFA_ENCRYPTION_KEY; older keys
    (MFA_ENCRYPTION_KEY_FALLBACKS) still open what they sealed.

    `context` (the owner's id) is authenticated with the secret, so a sealed
    secret copied onto another account's row does not open.
    """

    def __init__(self, key: str, fallbacks: Sequence[str] = ()) -> None:
        self._current = AESGCM(_derive(key))
        self._fallbacks = [AESGCM(_derive(each)) for each in fallbacks]

    def seal(self, secret: str, *, context: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._current.encrypt(nonce, secret.encode(), context.encode())
        return f"{_SEALED_FORMAT}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, context: str) -> tuple[str, bool]:
        """(the secret, whether it was sealed under the current key); ValueError
        when no key opens it."""
        version, _, data = sealed.partition(":")
        if version != _SEALED_FORMAT:
            raise ValueError("unknown sealed secret format")
        raw = base64.urlsafe_b64decode(data)
        nonce, body = raw[:12], raw[12:]
        for index, box in enumerate([self._current, *self._fallbacks]):
            try:
                plain = box.decrypt(nonce, body, context.encode())
            except InvalidTag:
                continue
            return plain.decode(), index == 0
        raise ValueError("no MFA encryption key opens this secret")


def _derive(key: str) -> bytes:
    # A key of its own for this use, whatever else the text keys.
    return hmac.new(key.encode(), b"mfa-secret-encryption-v1", hashlib.sha256).digest()
