"""Login, token refresh, logout, password change and reset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.errors import (
    AuthError,
    BadRequestError,
    NotFoundError,
    TooManyRequestsError,
    validation_error,
)
from service.mail import Mail
from service.models import User, UserRecord
from service.security.password_policy import PasswordPolicy
from service.security.passwords import PasswordHasher, needs_rehash
from service.security.tokens import (
    INVALID_RESET,
    Identity,
    create_reset_token,
    create_token,
    decode_reset_token,
    reset_fingerprint_matches,
)
from service.services.callers import REVOKED, Caller
from service.services.events import Detail, EventType, record_event
from service.services.sessions import SessionService, successor_jti
from service.services.users import UserService
from service.throttle.login import Guess, LoginThrottle

# Failed and throttled logins, for whoever watches for attacks: the address is
# the client's as TRUSTED_PROXIES lets it be known, not the nearest proxy's.
security_logger = logging.getLogger("service.security")
INVALID_CREDENTIALS = "Invalid email or password"
DEACTIVATED = "Account is deactivated"
CURRENT_INCORRECT = "Current password is incorrect."


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    token_type: str = "bearer"


@dataclass(frozen=True, slots=True)
class AccessToken:
    access_token: str
    token_type: str = "bearer"


@dataclass(frozen=True, slots=True)
class Client:
    ip: str | None
    user_agent: str | None


def security_event(event: str, client: Client, **fields: Any) -> None:
    details = " ".join(f"{name}={value}" for name, value in fields.items())
    security_logger.warning(
        "%s client_ip=%s %s",
        event,
        client.ip,
        details,
        extra={"fields": {"event": event, "client_ip": client.ip, **fields}},
    )


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        settings: Settings,
        throttle: LoginThrottle | None = None,
        *,
        policy: PasswordPolicy | None = None,
    ) -> None:
        self.session = session
        self.hasher = hasher
        self.settings = settings
        self.throttle = throttle
        self.policy = policy
        self.users = UserService(session, hasher)
        self.sessions = SessionService(session)

    async def login(self, email: str, password: str, *, client: Client) -> TokenPair:
        """Start a session; unknown emails cost a hash check, as wrong passwords do."""
        if self.throttle is None:
            return await self._login(email, password, client, None)
        try:
            async with self.throttle.guess(email, client.ip or "unknown") as guess:
                return await self._login(email, password, client, guess)
        except TooManyRequestsError:
            security_event("login_throttled", client)
            raise

    async def _login(
        self, email: str, password: str, client: Client, guess: Guess | None
    ) -> TokenPair:
        user = await self.users.get_by_email(email)
        password_ok = await self.hasher.verify(
            user.password_hash if user else None, password
        )
        if user is None or not password_ok:
            if guess is not None:
                guess.failed()
            if user is not None:
                record_event(self.session, EventType.LOGIN_FAILED, user, client)
                await self.session.commit()
            security_event(
                "login_failed",
                client,
                user_id=user.id if user else None,
                reason="wrong_password" if user else "unknown_email",
            )
            raise AuthError(INVALID_CREDENTIALS)
        if guess is not None:
            guess.succeeded()
        if not user.is_active:
            raise AuthError(DEACTIVATED)
        if needs_rehash(user.password_hash):
            rehashed = await self.hasher.hash(password)
            if not await self.users.replace_password_hash(user, rehashed):
                # The password changed while this one was checked: it is no
                # longer the account's, and must not open a session.
                raise AuthError(INVALID_CREDENTIALS)
        # Committed with the session start_session opens.
        record_event(self.session, EventType.LOGIN, user, client)
        return await self.start_session(user, client=client)

    async def start_session(self, user: User, *, client: Client) -> TokenPair:
        """Commits a new session for a user whose credentials were checked."""
        auth_session = self.sessions.start(
            user, user_agent=client.user_agent, ip=client.ip
        )
        refresh_token, auth_session.refresh_jti = self._refresh_token(
            user.id, auth_session.id
        )
        await self.session.commit()
        access_token = self.access_token_for(user, auth_session.id)
        return TokenPair(access_token, refresh_token)

    async def refresh(
        self, caller: Caller, *, client: Client
    ) -> AccessToken | TokenPair:
        identity = caller.identity
        user = caller.user or await self.users.get(identity.user_id)
        if not user.is_active:
            raise AuthError(DEACTIVATED)
        sid = identity.session_id
        access_token = self.access_token_for(user, sid)
        if not (self.settings.refresh_rotation and sid and identity.jti):
            return AccessToken(access_token)
        rotated = await self.sessions.rotate(
            sid, identity.jti, grace=self.settings.refresh_grace_seconds
        )
        if rotated is None:
            record_event(
                self.session,
                EventType.SESSION_ENDED,
                user,
                client,
                detail=Detail.REFRESH_REUSE,
            )
            await self.session.commit()
            raise AuthError(REVOKED, legacy_msg=True)
        jti, issued_at = rotated
        # The successor ends when its predecessor would have, so every token of
        # the session ends at its login plus JWT_REFRESH_TOKEN_EXPIRES.
        refresh_token, _ = self._refresh_token(
            user.id,
            sid,
            jti=jti,
            now=issued_at,
            expires_at=int(identity.claims["exp"]),
        )
        return TokenPair(access_token, refresh_token)

    async def logout(self, identity: Identity, *, client: Client) -> None:
        if identity.session_id is not None:
            if not await self.sessions.end(
                identity.session_id, user_id=identity.user_id
            ):
                # A concurrent logout of the same session won the race.
                raise AuthError(REVOKED, legacy_msg=True)
            # A session's user row exists (its foreign key says so); a Flask-era
            # token's may not, with REVOCATION_CHECK=false.
            record_event(
                self.session,
                EventType.SESSION_ENDED,
                identity.user_id,
                client,
                detail=Detail.LOGOUT,
            )
        elif identity.jti is not None:
            await self.sessions.revoke_token(
                identity.jti, expires_at=int(identity.claims["exp"])
            )
        await self.session.commit()

    async def change_password(
        self, user: User, current: str, new: str, *, client: Client
    ) -> None:
        """Commits; every session of the user ends, this one included.

        A wrong current password is a failed login: a stolen access token must
        not make this route an unlimited password oracle.
        """
        if self.throttle is None:
            await self._check_current(user, current, None)
        else:
            async with self.throttle.guess(user.email, client.ip or "unknown") as guess:
                await self._check_current(user, current, guess)
        if current == new:
            raise validation_error(
                "new_password", "Must differ from the current password."
            )
        await self._check_policy(user, new)
        if not await self.users.replace_password_hash(
            user, await self.hasher.hash(new)
        ):
            raise validation_error("current_password", CURRENT_INCORRECT)
        await self.sessions.revoke_all(user)
        record_event(self.session, EventType.PASSWORD_CHANGED, user, client)
        await self.session.commit()

    async def _check_current(
        self, user: User, current: str, guess: Guess | None
    ) -> None:
        if await self.hasher.verify(user.password_hash, current):
            if guess is not None:
                guess.succeeded()
            return
        if guess is not None:
            guess.failed()
        raise validation_error("current_password", CURRENT_INCORRECT)

    async def forgot_password(self, email: str) -> Mail | None:
        """The reset mail to send, or None for an unknown or inactive address.

        Both paths do the same database work; the caller sends the mail after
        answering, so the response time tells nothing about the address.
        """
        user = await self.users.get_by_email(email)
        if user is None or not user.is_active:
            return None
        token = create_reset_token(
            user_id=user.id,
            password_hash=user.password_hash,
            key=self.settings.secret_key,
            expires_in=self.settings.password_reset_expires,
        )
        link = self.settings.password_reset_url.replace("{token}", token)
        minutes = self.settings.password_reset_expires // 60
        return Mail(
            to=user.email,
            subject="Reset your password",
            text=(
                f"Someone asked to reset the password of {user.email}.\n\n"
                f"To choose a new password, open this link within {minutes} minutes:\n"
                f"{link}\n\nIf it was not you, ignore this message.\n"
            ),
            secret=token,
        )

    async def reset_password(
        self, token: str, new_password: str, *, client: Client
    ) -> None:
        """Commits; the token works once (it is bound to the hash it replaces)."""
        key = self.settings.secret_key
        user_id, fingerprint = decode_reset_token(token, key=key)
        try:
            user = await self.users.get(user_id)
        except NotFoundError:
            raise BadRequestError(INVALID_RESET) from None
        if not user.is_active or not reset_fingerprint_matches(
            fingerprint, key=key, password_hash=user.password_hash
        ):
            raise BadRequestError(INVALID_RESET)
        await self._check_policy(user, new_password)
        if not await self.users.replace_password_hash(
            user, await self.hasher.hash(new_password)
        ):
            # A concurrent reset with the same token got there first.
            raise BadRequestError(INVALID_RESET)
        await self.sessions.revoke_all(user)
        record_event(self.session, EventType.PASSWORD_RESET, user, client)
        await self.session.commit()

    async def _check_policy(self, user: User, new_password: str) -> None:
        if self.policy is not None:
            await self.policy.check(
                new_password,
                field="new_password",
                email=user.email,
                names=(user.first_name, user.last_name),
            )

    def access_token_for(self, user: User | UserRecord, session_id: str | None) -> str:
        claims: dict[str, object] = {"is_admin": user.is_admin}
        if session_id is not None:
            claims["sid"] = session_id
        return create_token(
            user_id=user.id,
            token_type="access",
            key=self.settings.jwt_secret_key,
            expires_in=self.settings.access_token_expires,
            additional_claims=claims,
        )

    def _refresh_token(
        self,
        user_id: int,
        session_id: str,
        *,
        jti: str | None = None,
        now: int | None = None,
        expires_at: int | None = None,
    ) -> tuple[str, str]:
        jti = jti or successor_jti(session_id)
        expires_in = self.settings.refresh_token_expires
        if expires_at is not None and now is not None:
            expires_in = min(expires_in, max(expires_at - now, 1))
        token = create_token(
            user_id=user_id,
            token_type="refresh",
            key=self.settings.jwt_secret_key,
            expires_in=expires_in,
            additional_claims={"sid": session_id},
            now=now,
            jti=jti,
            csrf=successor_jti(jti),
        )
        return token, jti
