"""Second factors: TOTP enrolment and use, recovery codes, the account's
security state, and the notices each change gives.

Every use of a code is one conditional UPDATE (a TOTP step later than the last
used, a recovery code not used yet): of two requests with the same code, on one
replica or two, the database lets one through. Nothing here commits a use: the
caller commits it with what the use was for (a session, a fresh session).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

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
from service.errors import BadRequestError, ConflictError, NotFoundError
from service.models import Passkey, RecoveryCode, TotpFactor, User, utcnow
from service.models.session import PASSKEY, RECOVERY_CODE, TOTP
from service.security.totp import (
    SecretBox,
    matching_step,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    recovery_code_hash,
)
from service.services.events import Client, security_event

INVALID_CODE = "Invalid code"
TOTP_ALREADY_ON = "TOTP is already on"
TOTP_NOT_STARTED = "No TOTP enrolment to confirm: POST /auth/totp first"
TOTP_NOT_ON = "TOTP is not on"
NO_FACTOR = "Turn on a second factor first"


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str


def notify(event: str, user: User, client: Client) -> None:
    """A change to the account's second factors: every such event goes through
    here (factor added or removed, recovery codes regenerated or used)."""
    security_event(event, client, user_id=user.id)


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
        await self.session.commit()
        notify("totp_added", user, client)
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
        await self.session.commit()
        notify("totp_removed", user, client)

    # --- recovery codes ------------------------------------------------------

    async def regenerate_recovery_codes(
        self, user: User, *, client: Client
    ) -> list[str]:
        """Commits ten new codes; the old ones stop working."""
        if not await self.methods(user.id):
            raise ConflictError(NO_FACTOR)
        codes = await self._replace_recovery_codes(user.id)
        await self.session.commit()
        notify("recovery_codes_regenerated", user, client)
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


def _context(user_id: int) -> str:
    return f"totp:{user_id}"
