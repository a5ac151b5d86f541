"""Login, token refresh, logout, password change and reset."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.errors import (
    AuthError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    TooManyRequestsError,
    validation_error,
)
from service.mail import Mail
from service.models import User, UserRecord
from service.models.session import PASSWORD, RECOVERY_CODE, TOTP
from service.security.password_policy import PasswordPolicy
from service.security.passwords import PasswordHasher, needs_rehash
from service.security.tokens import (
    INVALID_RESET,
    Identity,
    create_reset_token,
    create_token,
    decode_reset_token,
)
from service.services.callers import REVOKED, Caller
from service.services.events import Client as Client  # re-exported
from service.services.events import (
    Detail,
    EventType,
    record_event,
    security_event,
)
from service.services.factors import (
    INVALID_CODE,
    INVALID_MFA_TOKEN,
    FactorService,
    SecondFactorRequiredError,
)
from service.services.sessions import SessionService, successor_jti
from service.services.users import UserService
from service.throttle.login import Guess, LoginThrottle

INVALID_CREDENTIALS = "Invalid email or password"
EMAIL_NOT_VERIFIED = "Email address not verified"
DEACTIVATED = "Account is deactivated"
CURRENT_INCORRECT = "Current password is incorrect."
# flask-jwt-extended's answer to a stale token where a fresh one is needed.
FRESH_REQUIRED = "Fresh token required"
INVALID_PASSWORD = "Invalid password"
PASSWORD_OR_CODE = "Send either password or code"
CODE_OR_RECOVERY_CODE = "Send either code or recovery_code"


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
class CheckedAccount:
    """An account as a credential check saw it, the only thing a session opens on.

    A password check returns it; any other way in (a second factor, a passkey)
    passes on the one its first step saw. `open_session` opens a session only
    while the account's row still holds this very hash and is active and not
    deleted, so a change, reset, deactivation or delete during the check wins.
    """

    user_id: int
    password_hash: str
    is_admin: bool

    @classmethod
    def of(cls, user: User) -> CheckedAccount:
        return cls(user.id, user.password_hash, user.is_admin)


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
        factors = FactorService(self.session, self.settings)
        methods = await factors.methods(user.id)
        # A right password gives the account its budget back only when it is
        # the whole login: else wrong second factors could be tried forever,
        # a right password between each run of them.
        if guess is not None and not methods:
            guess.succeeded()
        if not user.is_active:
            raise AuthError(DEACTIVATED)
        if self.settings.require_verified_email and user.email_verified_at is None:
            # Only after the right password: a wrong one answers as ever.
            raise ForbiddenError(EMAIL_NOT_VERIFIED)
        if needs_rehash(user.password_hash):
            rehashed = await self.hasher.hash(password)
            if not await self.users.replace_password_hash(user, rehashed):
                # The password changed while this one was checked: it is no
                # longer the account's, and must not open a session.
                raise AuthError(INVALID_CREDENTIALS)
        if methods:
            mfa_token = await factors.issue_mfa_token(user)
            await self.session.commit()
            security_event("second_factor_required", client, user_id=user.id)
            raise SecondFactorRequiredError(mfa_token, methods)
        # Committed with the session open_session opens (or rolled back with it).
        record_event(self.session, EventType.LOGIN, user, client)
        return await self.open_session(CheckedAccount.of(user), client=client)

    async def login_with_code(
        self,
        mfa_token: str,
        *,
        code: str | None,
        recovery_code: str | None,
        client: Client,
    ) -> TokenPair:
        """The second step of a login: a TOTP code or a recovery code (one)."""
        if (code is None) == (recovery_code is None):
            raise BadRequestError(CODE_OR_RECOVERY_CODE)
        factors = FactorService(self.session, self.settings)
        if code is not None:
            totp = code

            async def totp_ok(user: User) -> bool:
                return await factors.use_totp(user.id, totp)

            return await self.complete_login(
                mfa_token, method=TOTP, check=totp_ok, client=client
            )
        recovery = recovery_code or ""

        async def recovery_ok(user: User) -> bool:
            return await factors.use_recovery_code(user.id, recovery)

        return await self.complete_login(
            mfa_token, method=RECOVERY_CODE, check=recovery_ok, client=client
        )

    async def complete_login(
        self,
        mfa_token: str,
        *,
        method: str,
        check: Callable[[User], Awaitable[bool]],
        client: Client,
        error: str = INVALID_CODE,
    ) -> TokenPair:
        """Finish a login that waits for its second factor: `check(user)` is the
        factor (its use not committed), one guess of the account's login budget.

        Commits the factor's use, the token's and the new session together, or
        none of them: of two completions with one token, or one code, one wins.
        The session opens only on the account as the password check saw it.
        """
        factors = FactorService(self.session, self.settings)
        user = await factors.pending_login(mfa_token)
        if not user.is_active:
            raise AuthError(DEACTIVATED)
        checked = CheckedAccount.of(user)

        async def factor_ok() -> bool:
            return await check(user)

        await self.spend_guess(
            user, client, factor_ok, error, failed=EventType.SECOND_FACTOR_FAILED
        )
        if not await factors.spend_mfa_token(mfa_token):
            # A concurrent completion with the same token got there first.
            await self.session.rollback()
            raise AuthError(INVALID_MFA_TOKEN)
        # Committed with the session (a recovery code's use is mailed then).
        record_event(
            self.session, EventType.SECOND_FACTOR_USED, user, client, detail=method
        )
        record_event(self.session, EventType.LOGIN, user, client)
        return await self.open_session(checked, client=client, auth_method=method)

    async def open_session(
        self, checked: CheckedAccount, *, client: Client, auth_method: str = PASSWORD
    ) -> TokenPair:
        """Commits a new session, only if the account is still as `checked` saw it.

        Otherwise nothing is written and the answer is a wrong login: the
        password that was checked is no longer the account's (or the account
        was deactivated or deleted meanwhile). The session is fresh for
        FRESH_SESSION_SECONDS and records `auth_method`.
        """
        session_id = await self.sessions.open(
            user_id=checked.user_id,
            password_hash=checked.password_hash,
            user_agent=client.user_agent,
            ip=client.ip,
            fresh_for=self.settings.fresh_session_seconds,
            auth_method=auth_method,
        )
        if session_id is None:
            await self.session.rollback()
            security_event(
                "login_failed",
                client,
                user_id=checked.user_id,
                reason="account_changed",
            )
            raise AuthError(INVALID_CREDENTIALS)
        await self.session.commit()
        refresh_token, _ = self._refresh_token(checked.user_id, session_id)
        access_token = self._access_token(checked.user_id, checked.is_admin, session_id)
        return TokenPair(access_token, refresh_token)

    async def make_fresh(
        self,
        identity: Identity,
        user: User,
        *,
        password: str | None,
        code: str | None,
        client: Client,
    ) -> None:
        """Commits; the caller's session counts as freshly authenticated again,
        on the account's password or a code of its TOTP (one of the two).

        A wrong one is a failed login (the account's budget, its 429); a
        session-less (Flask-era) token has no session to make fresh: its holder
        logs in again.
        """
        if (password is None) == (code is None):
            raise BadRequestError(PASSWORD_OR_CODE)
        if identity.session_id is None:
            raise AuthError(FRESH_REQUIRED, legacy_msg=True)
        if password is not None:

            async def password_ok() -> bool:
                return await self.hasher.verify(user.password_hash, password)

            await self.spend_guess(user, client, password_ok, INVALID_PASSWORD)
        elif code is not None:
            factors = FactorService(self.session, self.settings)

            async def code_ok() -> bool:
                return await factors.use_totp(user.id, code)

            await self.spend_guess(
                user,
                client,
                code_ok,
                INVALID_CODE,
                failed=EventType.SECOND_FACTOR_FAILED,
            )
            # The code's use commits with the freshness: the session has now
            # used a second factor (MFA_REQUIRED counts it).
            await self.freshen(identity.session_id, user, second_factor=TOTP)
            return
        await self.freshen(identity.session_id, user)

    async def freshen(
        self, session_id: str, user: User, *, second_factor: str | None = None
    ) -> None:
        """Commits; 401 "Token has been revoked" when the session ended meanwhile."""
        if not await self.sessions.refresh_freshness(
            session_id,
            user_id=user.id,
            fresh_for=self.settings.fresh_session_seconds,
            second_factor=second_factor,
        ):
            raise AuthError(REVOKED, legacy_msg=True)

    async def spend_guess(
        self,
        user: User,
        client: Client,
        check: Callable[[], Awaitable[bool]],
        error: str,
        *,
        failed: EventType = EventType.LOGIN_FAILED,
    ) -> None:
        """Run `check` as one guess against the user's login budget: a False is
        a failed login (401 `error`, the `failed` event), a True gives the
        budget back."""
        # Read before a failed check rolls back (and expires `user`).
        user_id, email = user.id, user.email

        async def refuse() -> AuthError:
            await self.session.rollback()
            record_event(self.session, failed, user_id, client)
            await self.session.commit()
            security_event(
                "login_failed",
                client,
                user_id=user_id,
                reason=error.lower().replace(" ", "_"),
            )
            return AuthError(error)

        if self.throttle is None:
            if not await check():
                raise await refuse()
            return
        try:
            async with self.throttle.guess(email, client.ip or "unknown") as guess:
                if not await check():
                    guess.failed()
                    raise await refuse()
                guess.succeeded()
        except TooManyRequestsError:
            security_event("login_throttled", client)
            raise

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
            await self.session.commit()
        else:
            # Flask-era: this token's jti, and through the user's cut-off the
            # refresh token of the same login (every Flask-era token until now).
            if identity.jti is not None:
                await self.sessions.revoke_token(
                    identity.jti, expires_at=int(identity.claims["exp"])
                )
            await self.sessions.end_legacy_tokens(identity.user_id)
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
        claim = decode_reset_token(
            token,
            key=self.settings.secret_key,
            fallbacks=self.settings.secret_key_fallbacks,
        )
        try:
            user = await self.users.get(claim.user_id)
        except NotFoundError:
            raise BadRequestError(INVALID_RESET) from None
        if not user.is_active or not claim.matches(user.password_hash):
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
        return self._access_token(user.id, user.is_admin, session_id)

    def _access_token(
        self, user_id: int, is_admin: bool, session_id: str | None
    ) -> str:
        claims: dict[str, object] = {"is_admin": is_admin}
        if session_id is not None:
            claims["sid"] = session_id
        return create_token(
            user_id=user_id,
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
