"""An account's address: verification, and change by confirmation from the new one.

Tokens are stateless (security/email_tokens.py): each is bound to the row's
state, and each use is one conditional UPDATE on that state, so of two racing
uses one wins and the other finds the state gone (400); a new address another
account took meanwhile is refused by the unique index (409).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.errors import BadRequestError, ConflictError, validation_error
from service.mail import Mail
from service.models import NOT_DELETED, User, utcnow
from service.security.email_tokens import (
    INVALID,
    Purpose,
    change_state,
    create_email_token,
    decode_email_token,
    verify_state,
)
from service.services.events import (
    Client,
    EventType,
    Notice,
    NoticeText,
    record_event,
)
from service.services.users import (
    EMAIL_TAKEN,
    EMAIL_TAKEN_BY_ANOTHER,
    UserService,
    is_email_conflict,
)

SAME_ADDRESS = "Must differ from the current address."
CHANGE_ASKED = NoticeText(
    "A change of your email address was asked",
    "Someone signed in to your account asked to change its email address to "
    "{new}. Nothing changes unless the new address confirms it.",
    "If it was not you, someone may have your password: reset it at once "
    '("Forgot password" on the sign-in page), then review your sessions, or '
    "ask your administrator for help.",
)


class EmailService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.users = UserService(session)

    def _token(self, purpose: Purpose, user: User, state: str, new: str | None) -> str:
        return create_email_token(
            purpose,
            user_id=user.id,
            state=state,
            key=self.settings.secret_key,
            expires_in=self.settings.email_verify_expires,
            new_email=new,
        )

    def _hours(self) -> str:
        seconds = self.settings.email_verify_expires
        return (
            f"{seconds // 3600} hours"
            if seconds >= 7200
            else f"{seconds // 60} minutes"
        )

    def verification_mail(self, user: User) -> Mail | None:
        """The link that proves the address; None when it is proven already."""
        if user.email_verified_at is not None:
            return None
        token = self._token("email_verify", user, verify_state(user.email, None), None)
        link = self.settings.email_verify_url.replace("{token}", token)
        return Mail(
            to=user.email,
            subject="Confirm your email address",
            text=(
                f"Hello {user.first_name},\n\n"
                f"To confirm that {user.email} is your address, open this link "
                f"within {self._hours()}:\n{link}\n\n"
                "If you did not ask for this, ignore this message.\n"
            ),
            secret=token,
        )

    async def verify(self, token: str, *, client: Client) -> None:
        """Commits; the token works once, and only for the address it was sent to."""
        claim = decode_email_token(
            "email_verify",
            token,
            key=self.settings.secret_key,
            fallbacks=self.settings.secret_key_fallbacks,
        )
        user = await self._live(claim.user_id, INVALID["email_verify"])
        email = user.email
        if user.email_verified_at is not None or not claim.matches(
            verify_state(email, None)
        ):
            raise BadRequestError(INVALID["email_verify"])
        result = await self.session.execute(
            update(User)
            .where(
                User.id == user.id,
                User.email == email,
                User.email_verified_at.is_(None),
                NOT_DELETED,
            )
            # Not a change of the User resource: updated_at stays.
            .values(email_verified_at=utcnow(), updated_at=User.updated_at)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            # A concurrent use of the token, or a change of address, won.
            await self.session.rollback()
            raise BadRequestError(INVALID["email_verify"])
        record_event(self.session, EventType.EMAIL_VERIFIED, user.id, client)
        await self.session.commit()

    async def request_change(
        self, user: User, new_email: str, *, client: Client
    ) -> list[Mail]:
        """The mails to send: the link to the new address, a notice to the old."""
        if new_email.lower() == user.email.lower():
            raise validation_error("new_email", SAME_ADDRESS)
        if await self.users.get_by_email(new_email) is not None:
            raise validation_error("new_email", EMAIL_TAKEN)
        token = self._token(
            "email_change", user, change_state(user.email, new_email), new_email
        )
        link = self.settings.email_change_url.replace("{token}", token)
        confirm = Mail(
            to=new_email,
            subject="Confirm your new email address",
            text=(
                f"Hello {user.first_name},\n\n"
                f"To make {new_email} the address of your account, open this link "
                f"within {self._hours()}:\n{link}\n\n"
                "If you did not ask for this, ignore this message: nothing changes.\n"
            ),
            secret=token,
        )
        text = NoticeText(
            CHANGE_ASKED.subject,
            CHANGE_ASKED.what.format(new=new_email),
            CHANGE_ASKED.advice,
        )
        notice = Notice(
            user.email, user.first_name, text, utcnow(), client.ip, client.user_agent
        )
        return [confirm, notice.mail()]

    async def confirm_change(self, token: str, *, client: Client) -> User:
        """Commits the new address, verified; 409 when another account has it."""
        invalid = INVALID["email_change"]
        claim = decode_email_token(
            "email_change",
            token,
            key=self.settings.secret_key,
            fallbacks=self.settings.secret_key_fallbacks,
        )
        new_email = claim.new_email or ""
        user = await self._live(claim.user_id, invalid)
        old_email = user.email
        if not claim.matches(change_state(old_email, new_email)):
            raise BadRequestError(invalid)
        taken = await self.users.get_by_email(new_email)
        if taken is not None and taken.id != user.id:
            raise ConflictError(EMAIL_TAKEN_BY_ANOTHER)
        try:
            async with self.session.begin_nested():
                result = await self.session.execute(
                    update(User)
                    .where(User.id == user.id, User.email == old_email, NOT_DELETED)
                    .values(email=new_email, email_verified_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
        except IntegrityError as error:
            if not is_email_conflict(error):
                raise
            # Another account registered or confirmed the address meanwhile.
            await self.session.rollback()
            raise ConflictError(EMAIL_TAKEN_BY_ANOTHER) from None
        if result.rowcount != 1:  # type: ignore[attr-defined]
            # A concurrent confirmation (or another change) won.
            await self.session.rollback()
            raise BadRequestError(invalid)
        record_event(
            self.session, EventType.EMAIL_CHANGED, user, client, notify=old_email
        )
        await self.session.commit()
        await self.session.refresh(user)
        return user

    async def _live(self, user_id: int, invalid: str) -> User:
        user = await self.session.scalar(
            select(User).where(User.id == user_id, NOT_DELETED, User.is_active)
        )
        if user is None:
            raise BadRequestError(invalid)
        return user
