"""Second factors: TOTP enrolment and use, recovery codes, the account's
security state, and the notices each change gives.

Every use of a code is one conditional UPDATE (a TOTP step later than the last
used, a recovery code not used yet): of two requests with the same code, on one
replica or two, the database lets one through. Nothing here commits a use: the
caller commits it with what the use was for (a session, a fresh session).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.errors import AuthError, BadRequestError, ConflictError, NotFoundError
from service.models import MfaToken, Passkey, RecoveryCode, TotpFactor, User, utcnow
from service.models.session import PASSKEY, RECOVERY_CODE, TOTP
from service.security.totp import (
    SecretBox,
    matching_step,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    recovery_code_hash,
)
from service.services.events import Client, Detail, EventType, record_event

INVALID_CODE = "Invalid code"
TOTP_ALREADY_ON = "TOTP is already on"
TOTP_NOT_STARTED = "No TOTP enrolment to confirm: POST /auth/totp first"
TOTP_NOT_ON = "TOTP is not on"
NO_FACTOR = "Turn on a second factor first"
SECOND_FACTOR_REQUIRED = "Second factor required"
INVALID_MFA_TOKEN = "Invalid or expired mfa_token"  # noqa: S105 (a message)
# How long a login waits for its second factor.
MFA_TOKEN_SECONDS = 300


class SecondFactorRequiredError(AuthError):
    """The right password of an account with a second factor: the login goes on
    at POST /auth/login/mfa (or a passkey) with this token."""

    def __init__(self, mfa_token: str, methods: list[str]) -> None:
        super().__init__(SECOND_FACTOR_REQUIRED, legacy_msg=True)
        self.mfa_token = mfa_token
        self.methods = methods

    def body(self) -> dict[str, Any]:
        return {**super().body(), "mfa_token": self.mfa_token, "methods": self.methods}


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str


class FactorService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock
        self.box = SecretBox(*settings.mfa_keys)

    # --- what the account has ----------------------------------------------

    async def methods(self, user_id: int) -> list[str]:
        """The second factors a login of this user asks for, in one query;
        empty for a user with none (who logs in with the password alone)."""
        row = (
            await self.session.execute(
                select(
                    exists().where(_confirmed(user_id)).label("totp"),
                    exists().where(_unused_codes(user_id)).label("codes"),
                    exists().where(Passkey.user_id == user_id).label("passkey"),
                )
            )
        ).one()
        if not (row.totp or row.passkey):
            return []
        methods = [TOTP] if row.totp else []
        if row.codes:
            methods.append(RECOVERY_CODE)
        if row.passkey:
            methods.append(PASSKEY)
        return methods

    async def account(self, user: User) -> dict[str, object]:
        totp_on = await self.session.scalar(select(exists().where(_confirmed(user.id))))
        left = await self.session.scalar(
            select(func.count()).select_from(RecoveryCode).where(_unused_codes(user.id))
        )
        passkeys = await self.session.scalar(
            select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)
        )
        return {
            "email": user.email,
            "email_verified": user.email_verified_at is not None,
            "totp": bool(totp_on),
            "passkeys": int(passkeys or 0),
            "recovery_codes_left": int(left or 0),
        }

    # --- TOTP enrolment ----------------------------------------------------

    async def start_totp(self, user: User) -> Enrolment:
        """Commits a pending secret (a new one replaces an unconfirmed one);
        nothing changes for logins until a code confirms it."""
        row = await self.session.get(TotpFactor, user.id, with_for_update=True)
        if row is not None and row.confirmed_at is not None:
            raise ConflictError(TOTP_ALREADY_ON)
        secret = new_secret()
        sealed = self.box.seal(secret, context=_context(user.id))
        if row is None:
            self.session.add(TotpFactor(user_id=user.id, secret=sealed))
        else:
            row.secret, row.created_at, row.last_used_step = sealed, utcnow(), None
        try:
            await self.session.commit()
        except IntegrityError:
            # Another enrolment of the same user was started at the same time.
            await self.session.rollback()
            raise ConflictError(TOTP_ALREADY_ON) from None
        uri = provisioning_uri(
            secret, account=user.email, issuer=self.settings.mfa_issuer
        )
        return Enrolment(secret, uri)

    async def confirm_totp(self, user: User, code: str, *, client: Client) -> list[str]:
        """Commits: TOTP is on, with ten new recovery codes (returned, shown once)."""
        row = await self.session.get(TotpFactor, user.id)
        if row is None:
            raise BadRequestError(TOTP_NOT_STARTED)
        if row.confirmed_at is not None:
            raise ConflictError(TOTP_ALREADY_ON)
        secret, _ = self.box.open(row.secret, context=_context(user.id))
        step = matching_step(secret, code, now=self.clock())
        if step is None:
            raise BadRequestError(INVALID_CODE)
        confirmed = await self.session.execute(
            update(TotpFactor)
            .where(
                TotpFactor.user_id == user.id,
                TotpFactor.confirmed_at.is_(None),
                TotpFactor.secret == row.secret,
            )
            .values(confirmed_at=utcnow(), last_used_step=step)
            .execution_options(synchronize_session=False)
        )
        if confirmed.rowcount != 1:  # type: ignore[attr-defined]
            # A concurrent confirmation or a new enrolment got there first.
            await self.session.rollback()
            raise ConflictError(TOTP_ALREADY_ON)
        codes = await self._replace_recovery_codes(user.id)
        record_event(
            self.session, EventType.FACTOR_ADDED, user, client, detail=Detail.TOTP
        )
        await self.session.commit()
        return codes

    async def disable_totp(self, user: User, *, client: Client) -> None:
        """Commits: TOTP off; with no second factor left, the recovery codes go too."""
        removed = await self.session.execute(
            delete(TotpFactor)
            .where(TotpFactor.user_id == user.id)
            .returning(TotpFactor.confirmed_at)
        )
        if not any(confirmed is not None for (confirmed,) in removed.all()):
            await self.session.rollback()
            raise NotFoundError(TOTP_NOT_ON)
        if not await self.methods(user.id):
            await self.session.execute(
                delete(RecoveryCode).where(RecoveryCode.user_id == user.id)
            )
        record_event(
            self.session, EventType.FACTOR_REMOVED, user, client, detail=Detail.TOTP
        )
        await self.session.commit()

    # --- recovery codes ------------------------------------------------------

    async def regenerate_recovery_codes(
        self, user: User, *, client: Client
    ) -> list[str]:
        """Commits ten new codes; the old ones stop working."""
        if not await self.methods(user.id):
            raise ConflictError(NO_FACTOR)
        codes = await self._replace_recovery_codes(user.id)
        record_event(
            self.session,
            EventType.FACTOR_ADDED,
            user,
            client,
            detail=Detail.RECOVERY_CODES,
        )
        await self.session.commit()
        return codes

    async def _replace_recovery_codes(self, user_id: int) -> list[str]:
        await self.session.execute(
            delete(RecoveryCode).where(RecoveryCode.user_id == user_id)
        )
        codes = new_recovery_codes()
        await self.session.execute(
            insert(RecoveryCode),
            [
                {"user_id": user_id, "code_hash": recovery_code_hash(code)}
                for code in codes
            ],
        )
        return codes

    # --- logins waiting for their second factor --------------------------------

    async def issue_mfa_token(self, user: User) -> str:
        """A single-use token for the second step of this login, valid five
        minutes and only while the password is the one just checked; the
        caller commits."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        await self.session.execute(
            delete(MfaToken).where(
                MfaToken.user_id == user.id, MfaToken.expires_at < now
            )
        )
        self.session.add(
            MfaToken(
                token_hash=_token_hash(token),
                user_id=user.id,
                password_fingerprint=self._fingerprint(user.password_hash),
                created_at=now,
                expires_at=now + timedelta(seconds=MFA_TOKEN_SECONDS),
            )
        )
        return token

    async def pending_login(self, mfa_token: str) -> User:
        """The live, active account a valid, unused mfa_token stands for, its
        password unchanged since: else 401 Invalid or expired mfa_token (or
        the deactivated account's own answer)."""
        row = await self.session.scalar(
            select(MfaToken).where(
                MfaToken.token_hash == _token_hash(mfa_token),
                MfaToken.used_at.is_(None),
                MfaToken.expires_at > utcnow(),
            )
        )
        user = None if row is None else await self.session.get(User, row.user_id)
        if (
            row is None
            or user is None
            or user.deleted_at is not None
            or not hmac.compare_digest(
                row.password_fingerprint, self._fingerprint(user.password_hash)
            )
        ):
            raise AuthError(INVALID_MFA_TOKEN)
        return user

    async def spend_mfa_token(self, mfa_token: str) -> bool:
        """Mark the token used: True for one caller only; the caller commits."""
        used = await self.session.execute(
            update(MfaToken)
            .where(
                MfaToken.token_hash == _token_hash(mfa_token),
                MfaToken.used_at.is_(None),
                MfaToken.expires_at > utcnow(),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(used.rowcount == 1)  # type: ignore[attr-defined]

    def _fingerprint(self, password_hash: str) -> str:
        key = self.settings.secret_key.encode()
        return hmac.new(key, password_hash.encode(), hashlib.sha256).hexdigest()

    # --- using a factor (the caller commits) -------------------------------------

    async def use_totp(self, user_id: int, code: str) -> bool:
        """Spend a TOTP code: True once for a right code, never again (its step
        and every earlier one are used up)."""
        row = (
            await self.session.execute(
                select(TotpFactor.secret, TotpFactor.last_used_step).where(
                    _confirmed(user_id)
                )
            )
        ).first()
        if row is None:
            return False
        secret, current_key = self.box.open(row.secret, context=_context(user_id))
        step = matching_step(secret, code, now=self.clock(), after=row.last_used_step)
        if step is None:
            return False
        values: dict[str, object] = {"last_used_step": step}
        if not current_key:
            # Sealed under a fallback key: sealed again under the current one.
            values["secret"] = self.box.seal(secret, context=_context(user_id))
        used = await self.session.execute(
            update(TotpFactor)
            .where(
                _confirmed(user_id),
                or_(
                    TotpFactor.last_used_step.is_(None),
                    TotpFactor.last_used_step < step,
                ),
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(used.rowcount == 1)  # type: ignore[attr-defined]

    async def use_recovery_code(self, user_id: int, code: str) -> bool:
        """Spend a recovery code: True once, for a code of the user's current set."""
        used = await self.session.execute(
            update(RecoveryCode)
            .where(
                _unused_codes(user_id),
                RecoveryCode.code_hash == recovery_code_hash(code),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(used.rowcount >= 1)  # type: ignore[attr-defined]


def _confirmed(user_id: int) -> ColumnElement[bool]:
    return and_(TotpFactor.user_id == user_id, TotpFactor.confirmed_at.is_not(None))


def _unused_codes(user_id: int) -> ColumnElement[bool]:
    return and_(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _context(user_id: int) -> str:
    return f"totp:{user_id}"
