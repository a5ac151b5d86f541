"""Passkeys (WebAuthn): py_webauthn's four ceremonies, the one place that uses it.

Registration: creation options (a resident key and user verification required,
the user's passkeys excluded), then the attestation ("none" is enough: no
authenticator model is trusted or refused). Authentication: request options
(empty `allowCredentials` for a passkey alone; the user's credentials when it is
the second factor after a password), then the assertion.

Each challenge is random (64 bytes), single-use and lives CHALLENGE_SECONDS, in
the challenge store (Redis when configured, so every replica finds it); it is
found again from the `clientDataJSON` the client returns, and taken before
anything else is checked, so an assertion or attestation is never accepted twice.
The sign count an authenticator reports must grow (or stay 0 for authenticators
that count nothing), and it is written compare-and-set: of two assertions
racing with the same count, one wins.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url, parse_client_data_json
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.parse_authentication_credential_json import (
    parse_authentication_credential_json,
)
from webauthn.helpers.parse_registration_credential_json import (
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.registration.verify_registration_response import VerifiedRegistration

from service.config import Settings
from service.errors import AuthError, BadRequestError, ConflictError, NotFoundError
from service.models import Passkey, User, UserRecord, utcnow
from service.models.session import PASSKEY
from service.services.auth import (
    DEACTIVATED,
    AuthService,
    CheckedAccount,
    Client,
    TokenPair,
)
from service.services.events import Detail, EventType, record_event
from service.services.factors import FactorService
from service.services.sessions import SESSION_ID
from service.throttle.challenges import ChallengeStore

# How long a challenge may be answered; the options' `timeout` says the same.
CHALLENGE_SECONDS = 300
INVALID_PASSKEY = "Invalid passkey"
PASSKEY_TAKEN = "Passkey already registered"
PASSKEY_NOT_FOUND = "Passkey not found"
DEFAULT_NAME = "Passkey"
USER_HANDLE_BYTES = 32

Kind = Literal["create", "get"]


@dataclass(frozen=True, slots=True)
class RelyingParty:
    id: str
    name: str
    origins: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> RelyingParty:
        return cls(
            settings.webauthn_rp_id,
            settings.webauthn_rp_name,
            settings.webauthn_origins,
        )


@dataclass(frozen=True, slots=True)
class Ceremony:
    """What a challenge was issued for: it is answered for that, or not at all."""

    kind: Kind
    # create: the registering user; get: the user of the password step, or None
    # for a passkey alone.
    user_id: int | None
    # create: the WebAuthn user handle the options carried (base64url).
    user_handle: str | None = None

    def dumps(self) -> str:
        return json.dumps([self.kind, self.user_id, self.user_handle])

    @classmethod
    def loads(cls, text: str) -> Ceremony:
        kind, user_id, user_handle = json.loads(text)
        return cls(kind, user_id, user_handle)


class PasskeyService:
    def __init__(
        self,
        session: AsyncSession,
        relying_party: RelyingParty,
        challenges: ChallengeStore,
    ) -> None:
        self.session = session
        self.rp = relying_party
        self.challenges = challenges

    # --- the user's passkeys ----------------------------------------------

    async def list(self, user_id: int) -> Sequence[Passkey]:
        return (
            await self.session.scalars(
                select(Passkey)
                .where(Passkey.user_id == user_id)
                .order_by(Passkey.created_at, Passkey.id)
            )
        ).all()

    async def get(self, user_id: int, passkey_id: str) -> Passkey:
        """One of the user's passkeys; anyone else's is as unknown as no passkey."""
        passkey = None
        if SESSION_ID.fullmatch(passkey_id):
            passkey = await self.session.scalar(
                select(Passkey).where(
                    Passkey.id == passkey_id, Passkey.user_id == user_id
                )
            )
        if passkey is None:
            raise NotFoundError(PASSKEY_NOT_FOUND)
        return passkey

    async def rename(self, user_id: int, passkey_id: str, name: str) -> Passkey:
        """Commits."""
        passkey = await self.get(user_id, passkey_id)
        passkey.name = name
        await self.session.commit()
        return passkey

    async def delete(
        self, user: User | UserRecord, passkey_id: str, *, client: Client
    ) -> Passkey:
        """Commits; the passkey no longer signs anyone in (the owner is told)."""
        passkey = await self.get(user.id, passkey_id)
        await self.session.delete(passkey)
        record_event(
            self.session, EventType.FACTOR_REMOVED, user, client, detail=Detail.PASSKEY
        )
        await self.session.commit()
        return passkey

    # --- registration -------------------------------------------------------

    async def registration_options(self, user: User | UserRecord) -> dict[str, Any]:
        existing = await self.list(user.id)
        handle = (
            existing[0].user_handle
            if existing
            else secrets.token_bytes(USER_HANDLE_BYTES)
        )
        options = generate_registration_options(
            rp_id=self.rp.id,
            rp_name=self.rp.name,
            user_id=handle,
            user_name=user.email,
            user_display_name=f"{user.first_name} {user.last_name}",
            timeout=CHALLENGE_SECONDS * 1000,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                require_resident_key=True,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[_descriptor(each) for each in existing],
        )
        await self._issue(
            options.challenge, Ceremony("create", user.id, bytes_to_base64url(handle))
        )
        return options_to_json_dict(options)

    async def register(
        self,
        user: User | UserRecord,
        credential: dict[str, Any],
        name: str | None,
        *,
        client: Client,
    ) -> Passkey:
        """Commits the new passkey (the owner is told); 400 Invalid passkey for an
        attestation that does not answer one of this user's creation challenges."""
        try:
            parsed = parse_registration_credential_json(credential)
        except Exception:  # py_webauthn raises more than its own errors on junk
            raise BadRequestError(INVALID_PASSKEY) from None
        challenge, ceremony = await self._redeem(
            parsed.response.client_data_json, BadRequestError
        )
        if (
            ceremony.kind != "create"
            or ceremony.user_id != user.id
            or ceremony.user_handle is None
        ):
            raise BadRequestError(INVALID_PASSKEY)
        verified = _verified_registration(parsed, challenge, self.rp)
        passkey = Passkey(
            user_id=user.id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            user_handle=base64url_to_bytes(ceremony.user_handle),
            transports=",".join(each.value for each in parsed.response.transports or [])
            or None,
            backed_up=verified.credential_backed_up,
            name=name or DEFAULT_NAME,
            created_at=utcnow(),
        )
        self.session.add(passkey)
        record_event(
            self.session, EventType.FACTOR_ADDED, user, client, detail=Detail.PASSKEY
        )
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            raise ConflictError(PASSKEY_TAKEN) from None
        return passkey

    # --- authentication -----------------------------------------------------

    async def authentication_options(self, user_id: int | None) -> dict[str, Any]:
        """A passkey alone (`user_id` None): any discoverable credential, with
        user verification. After a password: that user's passkeys only."""
        allowed: list[PublicKeyCredentialDescriptor] = []
        verification = UserVerificationRequirement.REQUIRED
        if user_id is not None:
            allowed = [_descriptor(each) for each in await self.list(user_id)]
            verification = UserVerificationRequirement.PREFERRED
        options = generate_authentication_options(
            rp_id=self.rp.id,
            timeout=CHALLENGE_SECONDS * 1000,
            allow_credentials=allowed,
            user_verification=verification,
        )
        await self._issue(options.challenge, Ceremony("get", user_id))
        return options_to_json_dict(options)

    async def verify(
        self, credential: dict[str, Any], *, user_id: int | None
    ) -> Passkey:
        """The passkey that signed an answer to one of our challenges, its new sign
        count written (the caller commits). 401 Invalid passkey for anything else.

        `user_id` None: a passkey alone, which must be discoverable (it names its
        user handle) and must have verified the user (two factors in one).
        Otherwise: the second factor of that user, whose passkey it must be.
        """
        try:
            parsed = parse_authentication_credential_json(credential)
        except Exception:  # py_webauthn raises more than its own errors on junk
            raise AuthError(INVALID_PASSKEY) from None
        challenge, ceremony = await self._redeem(
            parsed.response.client_data_json, AuthError
        )
        if ceremony.kind != "get" or ceremony.user_id != user_id:
            raise AuthError(INVALID_PASSKEY)
        passkey = await self.session.scalar(
            select(Passkey).where(Passkey.credential_id == parsed.raw_id)
        )
        if passkey is None or (user_id is not None and passkey.user_id != user_id):
            raise AuthError(INVALID_PASSKEY)
        handle = parsed.response.user_handle
        if (user_id is None and handle is None) or (
            handle is not None and handle != passkey.user_handle
        ):
            raise AuthError(INVALID_PASSKEY)
        new_count = _verified_count(
            parsed, challenge, self.rp, passkey, user_verification=user_id is None
        )
        counted = await self.session.execute(
            update(Passkey)
            .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
            .values(sign_count=new_count, last_used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if counted.rowcount != 1:  # type: ignore[attr-defined]
            # Another assertion with this count got there first: a clone.
            raise AuthError(INVALID_PASSKEY)
        return passkey

    async def sign_in(
        self,
        auth: AuthService,
        credential: dict[str, Any],
        *,
        user_id: int | None,
        client: Client,
    ) -> TokenPair:
        """A new session for the passkey's user, as a password login opens one."""
        passkey = await self.verify(credential, user_id=user_id)
        try:
            user = await auth.users.get(passkey.user_id)
        except NotFoundError:
            raise AuthError(INVALID_PASSKEY) from None
        if not user.is_active:
            raise AuthError(DEACTIVATED)
        # Committed with the session (the new sign count too), or not at all.
        record_event(self.session, EventType.LOGIN, user, client, detail=Detail.PASSKEY)
        try:
            return await auth.open_session(
                CheckedAccount.of(user), client=client, auth_method=PASSKEY
            )
        except AuthError:
            # The account changed (deactivated, deleted) since it was read.
            raise AuthError(INVALID_PASSKEY) from None

    async def second_factor_options(
        self, factors: FactorService, mfa_token: str
    ) -> dict[str, Any]:
        """Request options for the passkeys of the login `mfa_token` waits for
        (401 Invalid or expired mfa_token otherwise); the token stays unused."""
        user = await factors.pending_login(mfa_token)
        return await self.authentication_options(user.id)

    async def second_factor(
        self,
        auth: AuthService,
        credential: dict[str, Any],
        mfa_token: str,
        *,
        client: Client,
    ) -> TokenPair:
        """Finish the login `mfa_token` waits for with one of its user's passkeys:
        as a TOTP code does (services/auth.py's complete_login), one guess of the
        account's budget, the new sign count committed with the session."""

        async def passkey_ok(user: User) -> bool:
            try:
                await self.verify(credential, user_id=user.id)
            except AuthError:
                return False
            return True

        return await auth.complete_login(
            mfa_token,
            method=PASSKEY,
            check=passkey_ok,
            client=client,
            error=INVALID_PASSKEY,
        )

    # --- challenges -----------------------------------------------------------

    async def _issue(self, challenge: bytes, ceremony: Ceremony) -> None:
        await self.challenges.put(
            bytes_to_base64url(challenge), ceremony.dumps(), CHALLENGE_SECONDS
        )

    async def _redeem(
        self, client_data_json: bytes, error: type[BadRequestError] | type[AuthError]
    ) -> tuple[bytes, Ceremony]:
        """The challenge the client answered, taken: it cannot be answered again."""
        try:
            challenge = parse_client_data_json(client_data_json).challenge
        except Exception:  # not JSON, no challenge, not base64url
            raise error(INVALID_PASSKEY) from None
        if not challenge:
            raise error(INVALID_PASSKEY)
        stored = await self.challenges.take(bytes_to_base64url(challenge))
        if stored is None:
            raise error(INVALID_PASSKEY)
        return challenge, Ceremony.loads(stored)


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in (passkey.transports or "").split(","):
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue  # one this py_webauthn does not know: a hint only
    return PublicKeyCredentialDescriptor(
        id=passkey.credential_id, transports=transports or None
    )


def _verified_registration(
    parsed: RegistrationCredential, challenge: bytes, rp: RelyingParty
) -> VerifiedRegistration:
    try:
        return verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=list(rp.origins),
            require_user_verification=True,
        )
    except Exception:  # its own errors, and what malformed CBOR or keys raise
        raise BadRequestError(INVALID_PASSKEY) from None


def _verified_count(
    parsed: AuthenticationCredential,
    challenge: bytes,
    rp: RelyingParty,
    passkey: Passkey,
    *,
    user_verification: bool,
) -> int:
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=list(rp.origins),
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=user_verification,
        )
    except Exception:  # its own errors, and what malformed data raises
        raise AuthError(INVALID_PASSKEY) from None
    return int(verified.new_sign_count)
