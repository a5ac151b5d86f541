"""Who is calling (address, user agent); the security log of what they did; and
security events: one function records them, and the owner is told of some.

`record_event(session, EventType.X, user, client)` adds the event's row to the
caller's unit of work (the caller commits, so the event is kept exactly when
what it tells of is). For the kinds the contract notifies (NOTICES), a notice
to the account's address waits on the session until that commit; the web
layer mails it afterwards (api/account.py), never before, never in the way of
the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import delete, event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from service.db.pagination import Page, clamp
from service.mail import Mail
from service.models import SecurityEvent, utcnow

# Failed and throttled logins, for whoever watches for attacks: the address is
# the client's as TRUSTED_PROXIES lets it be known, not the nearest proxy's.
security_logger = logging.getLogger("service.security")
PENDING_KEY = "security_notices_pending"
COMMITTED_KEY = "security_notices_committed"
PRUNE_BATCH = 5000


class EventType(StrEnum):
    """Every kind of event the contract lists."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    SECOND_FACTOR_USED = "second_factor_used"
    SECOND_FACTOR_FAILED = "second_factor_failed"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a name, not a password)
    PASSWORD_RESET = "password_reset"  # noqa: S105
    EMAIL_CHANGED = "email_changed"
    EMAIL_VERIFIED = "email_verified"
    FACTOR_ADDED = "factor_added"
    FACTOR_REMOVED = "factor_removed"
    SESSION_ENDED = "session_ended"


class Detail(StrEnum):
    """What `detail` says of an event: which factor, how a session ended."""

    TOTP = "totp"
    PASSKEY = "passkey"
    RECOVERY_CODES = "recovery_codes"  # factor_added: regenerated
    RECOVERY_CODE = "recovery_code"  # second_factor_used: one code spent
    LOGOUT = "logout"
    REVOKED = "revoked"  # the owner ended it from another session
    OTHERS_REVOKED = "others_revoked"
    REFRESH_REUSE = "refresh_reuse"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class NoticeText:
    subject: str
    what: str
    advice: str


SECURE_ACCOUNT = (
    'If it was not you, reset your password at once ("Forgot password" on the '
    "sign-in page), then review your sessions and second factors, or ask your "
    "administrator for help."
)
# What the owner is told of, by (type, detail); None matches any detail.
NOTICES: dict[tuple[EventType, str | None], NoticeText] = {
    (EventType.PASSWORD_CHANGED, None): NoticeText(
        "Your password was changed",
        "The password of your account was changed.",
        SECURE_ACCOUNT,
    ),
    (EventType.PASSWORD_RESET, None): NoticeText(
        "Your password was reset",
        "The password of your account was reset with a link mailed to you.",
        SECURE_ACCOUNT,
    ),
    (EventType.EMAIL_CHANGED, None): NoticeText(
        "Your email address was changed",
        "The email address of your account was changed; mail for the account "
        "now goes to the new address, and this address no longer signs in.",
        "If it was not you, ask your administrator for help at once: give them "
        "this address and the time above.",
    ),
    (EventType.FACTOR_ADDED, Detail.TOTP): NoticeText(
        "Two-step sign-in was turned on",
        "An authenticator app (TOTP) was set up as a second factor.",
        SECURE_ACCOUNT,
    ),
    (EventType.FACTOR_REMOVED, Detail.TOTP): NoticeText(
        "Two-step sign-in was turned off",
        "The authenticator app (TOTP) was removed from your account.",
        SECURE_ACCOUNT,
    ),
    (EventType.FACTOR_ADDED, Detail.PASSKEY): NoticeText(
        "A passkey was added",
        "A passkey was added to your account.",
        SECURE_ACCOUNT,
    ),
    (EventType.FACTOR_REMOVED, Detail.PASSKEY): NoticeText(
        "A passkey was removed",
        "A passkey was removed from your account.",
        SECURE_ACCOUNT,
    ),
    (EventType.FACTOR_ADDED, Detail.RECOVERY_CODES): NoticeText(
        "New recovery codes were made",
        "New recovery codes were made for your account; the old ones no longer work.",
        SECURE_ACCOUNT,
    ),
    (EventType.SECOND_FACTOR_USED, Detail.RECOVERY_CODE): NoticeText(
        "A recovery code was used",
        "One of your recovery codes was used to sign in.",
        SECURE_ACCOUNT,
    ),
    (EventType.SESSION_ENDED, Detail.REFRESH_REUSE): NoticeText(
        "A session was ended to protect your account",
        "A refresh token that had already been replaced was used again, so the "
        "session it belonged to was ended: someone may have copied it.",
        "Sign in again where you were signed out. " + SECURE_ACCOUNT,
    ),
}


@dataclass(frozen=True, slots=True)
class Client:
    ip: str | None
    user_agent: str | None


def security_event(event: str, client: Client, **fields: Any) -> None:
    """A line of the security log (`service.security`), beside the event rows."""
    details = " ".join(f"{name}={value}" for name, value in fields.items())
    security_logger.warning(
        "%s client_ip=%s %s",
        event,
        client.ip,
        details,
        extra={"fields": {"event": event, "client_ip": client.ip, **fields}},
    )


class Account(Protocol):
    """User or UserRecord: what an event and its notice need."""

    @property
    def id(self) -> int: ...

    @property
    def email(self) -> str: ...

    @property
    def first_name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Notice:
    to: str
    name: str
    text: NoticeText
    at: datetime
    ip: str | None
    user_agent: str | None

    def mail(self) -> Mail:
        when = self.at.strftime("%Y-%m-%d %H:%M UTC")
        return Mail(
            to=self.to,
            subject=self.text.subject,
            text=(
                f"Hello {self.name},\n\n"
                f"{self.text.what}\n\n"
                f"When: {when}\n"
                f"From address: {self.ip or 'unknown'}\n"
                f"Using: {self.user_agent or 'unknown'}\n\n"
                "If it was you, there is nothing to do.\n"
                f"{self.text.advice}\n"
            ),
        )


def notice_text(kind: EventType, detail: str | None) -> NoticeText | None:
    return NOTICES.get((kind, detail)) or NOTICES.get((kind, None))


def record_event(
    session: AsyncSession,
    kind: EventType,
    user: Account | int,
    client: Client,
    *,
    detail: str | None = None,
    notify: str | None = None,
) -> None:
    """Add the event to the session's unit of work; the caller commits.

    `user` is the account (a User or UserRecord), or only its id for a kind
    nobody is mailed of. A notified kind's notice goes to `notify` (default:
    the account's address) once the commit succeeds; a rollback drops it with
    the event.
    """
    at = utcnow()
    text = notice_text(kind, detail)
    if isinstance(user, int) and text is not None:
        raise TypeError(f"{kind} {detail} is mailed: record it with the account")
    session.add(
        SecurityEvent(
            user_id=user if isinstance(user, int) else user.id,
            type=kind.value,
            detail=detail,
            created_at=at,
            ip=client.ip[:45] if client.ip else None,
            user_agent=(client.user_agent or None) and client.user_agent[:255],
        )
    )
    if text is not None and not isinstance(user, int):
        notice = Notice(
            notify or user.email,
            user.first_name,
            text,
            at,
            client.ip,
            client.user_agent,
        )
        session.info.setdefault(PENDING_KEY, []).append(notice)


def committed_notices(session: AsyncSession) -> list[Notice]:
    """The notices whose events were committed; each is handed out once."""
    notices: list[Notice] = session.info.pop(COMMITTED_KEY, [])
    return notices


@event.listens_for(Session, "after_commit")
def _keep_committed(session: Session) -> None:
    pending = session.info.pop(PENDING_KEY, None)
    if pending:
        session.info.setdefault(COMMITTED_KEY, []).extend(pending)


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session: Session) -> None:
    session.info.pop(PENDING_KEY, None)


class EventService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self, user_id: int, *, page: int, per_page: int
    ) -> Page[SecurityEvent]:
        """Newest first (created_at desc, id desc), as every list."""
        page, per_page = clamp(page, per_page)
        total = await self.session.scalar(
            select(func.count())
            .select_from(SecurityEvent)
            .where(SecurityEvent.user_id == user_id)
        )
        offset = (page - 1) * per_page
        rows: Sequence[SecurityEvent] = []
        if offset < (total or 0):  # past the end (or any bigint): no query
            rows = (
                await self.session.scalars(
                    select(SecurityEvent)
                    .where(SecurityEvent.user_id == user_id)
                    .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())
                    .limit(per_page)
                    .offset(offset)
                )
            ).all()
        return Page(items=rows, page=page, per_page=per_page, total=total or 0)

    async def prune(self, *, days: int) -> int:
        """Commits; deletes events older than `days` in batches, how many in all."""
        cutoff = utcnow() - timedelta(days=days)
        removed = 0
        while True:
            batch = (
                select(SecurityEvent.id)
                .where(SecurityEvent.created_at < cutoff)
                .limit(PRUNE_BATCH)
                .scalar_subquery()
            )
            result = await self.session.execute(
                delete(SecurityEvent).where(SecurityEvent.id.in_(batch))
            )
            await self.session.commit()
            count = int(result.rowcount)  # type: ignore[attr-defined]
            removed += count
            if count < PRUNE_BATCH:
                return removed
