"""Account security routes: security events, and an admin's view of a user's
sessions; the notices mailed after a request's events are committed, and the
pruning of old events, both out of the requests' way."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from quart import Blueprint, Quart, Response
from quart_schema import tag

from service.api.deps import (
    client,
    outbox,
    session_service,
    settings,
    user_service,
)
from service.api.guards import (
    admin_required,
    current_identity,
    fresh_required,
    get_jwt_identity,
    jwt_required,
)
from service.api.io import body, document_errors, query, returns
from service.api.limits import Limit, limited, per_client
from service.config import Settings
from service.db.request import app_database, request_session
from service.models import AuthSession, User
from service.request_state import request_state
from service.schemas.account import (
    EmailChange,
    EmailChangeSchema,
    EmailToken,
    EmailTokenSchema,
    SecurityEventPageSchema,
)
from service.schemas.auth import MessageSchema, SessionListSchema
from service.schemas.common import PageQuery, PageQuerySchema
from service.schemas.user import UserSchema
from service.services.email import EmailService
from service.services.events import (
    Detail,
    EventService,
    EventType,
    committed_notices,
    record_event,
)
from service.services.sessions import SessionService
from service.throttle.keys import fold_email

logger = logging.getLogger(__name__)
# The address mails, limited as the reset mail is: per address, whoever asks,
# and per client (PASSWORD_RESET_MAX_PER_ADDRESS, PASSWORD_RESET_MAX_PER_IP).
VERIFY_MAIL_PER_ACCOUNT = Limit(
    "verify-mail",
    "password_reset_max_per_address",
    lambda _kwargs: f"user:{current_identity().user_id}",
)
VERIFY_MAIL_PER_CLIENT = per_client("verify-mail-client", "password_reset_max_per_ip")
CHANGE_MAIL_PER_ADDRESS = Limit(
    "change-mail",
    "password_reset_max_per_address",
    lambda kwargs: fold_email(kwargs["data"]["new_email"]),
)
CHANGE_MAIL_PER_CLIENT = per_client("change-mail-client", "password_reset_max_per_ip")
EMAIL_TOKEN_PER_CLIENT = per_client("email-token-client", "password_reset_max_per_ip")
VERIFY_SENT = {"message": "If the address is not verified yet, a link is on its way"}
CHANGE_SENT = {"message": "A confirmation link is on its way to the new address"}
blueprint = Blueprint("account", __name__)
PRUNER_KEY = "security_event_pruner"
# Pruning runs a minute after start (out of the way of start-up), then hourly.
PRUNE_FIRST_SECONDS = 60.0
PRUNE_EVERY_SECONDS = 3600.0


def init_app(app: Quart, settings: Settings) -> None:
    @app.after_request
    async def mail_notices(response: Response) -> Response:
        """Queue the notices of the events this request committed."""
        session = request_state().session
        notices = committed_notices(session) if session is not None else []
        if settings.security_notifications:
            for notice in notices:
                outbox().submit(notice.mail())
        return response

    @app.before_serving
    async def start_pruning() -> None:
        if settings.security_events_days:
            app.extensions[PRUNER_KEY] = asyncio.create_task(
                prune_forever(app, settings.security_events_days),
                name="security-event-pruner",
            )

    @app.after_serving
    async def stop_pruning() -> None:
        task: asyncio.Task[None] | None = app.extensions.pop(PRUNER_KEY, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def prune_forever(app: Quart, days: int) -> None:
    """Delete events older than SECURITY_EVENTS_DAYS, hourly, in batches."""
    await asyncio.sleep(PRUNE_FIRST_SECONDS)
    while True:
        try:
            async with app_database(app).sessions() as session:
                removed = await EventService(session).prune(days=days)
            if removed:
                logger.info(
                    "pruned %d security events older than %d days", removed, days
                )
        except Exception:
            logger.exception("pruning security events failed; trying again later")
        await asyncio.sleep(PRUNE_EVERY_SECONDS)


async def event_page(user_id: int, query_args: PageQuery) -> dict[str, Any]:
    """The envelope of one page of the user's events, newest first."""
    events = EventService(request_session(readonly=True))
    page = await events.page(user_id, **query_args)
    return page.envelope("events")


@blueprint.get("/auth/events")
@tag(["security"])
@jwt_required()
@query(PageQuerySchema)
@returns(SecurityEventPageSchema)
async def list_own_events(query_args: PageQuery) -> dict[str, Any]:
    """The caller's security events, newest first."""
    return await event_page(current_identity().user_id, query_args)


@blueprint.get("/users/<int:user_id>/events")
@tag(["security"])
@jwt_required()
@admin_required
@query(PageQuerySchema)
@returns(SecurityEventPageSchema)
async def list_user_events(user_id: int, query_args: PageQuery) -> dict[str, Any]:
    """A user's security events, newest first (admin)."""
    await user_service(readonly=True).record(user_id)
    return await event_page(user_id, query_args)


async def record_ended(sessions: SessionService, user_id: int, how: Detail) -> None:
    """Commits the event of sessions the request ended (a kind nobody is mailed of)."""
    record_event(
        sessions.session, EventType.SESSION_ENDED, user_id, client(), detail=how
    )
    await sessions.session.commit()


def shown_session(row: AuthSession, current: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "user_agent": row.user_agent,
        "ip": row.ip,
        "current": row.id == current,
    }


@blueprint.get("/users/<int:user_id>/sessions")
@tag(["sessions"])
@jwt_required()
@admin_required
@returns(SessionListSchema)
async def list_user_sessions(user_id: int) -> dict[str, Any]:
    """A user's live sessions (admin)."""
    await user_service(readonly=True).record(user_id)
    live = await session_service(readonly=True).live(
        user_id, max_idle=settings().refresh_token_expires
    )
    current = current_identity().session_id
    return {"sessions": [shown_session(row, current) for row in live]}


@blueprint.delete("/users/<int:user_id>/sessions")
@tag(["sessions"])
@jwt_required()
@admin_required
@returns(None, status=204)
async def end_user_sessions(user_id: int) -> None:
    """End every session of a user, and their Flask-era tokens (admin)."""
    user = await user_service().get(user_id)
    sessions = session_service()
    await sessions.revoke_all(user)
    await record_ended(sessions, user.id, Detail.ADMIN)


def email_service() -> EmailService:
    return EmailService(request_session(), settings())


@blueprint.post("/auth/email/verify/request")
@tag(["security"])
@jwt_required()
@returns(MessageSchema, status=202)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
@limited(VERIFY_MAIL_PER_CLIENT, VERIFY_MAIL_PER_ACCOUNT)
async def request_verification() -> dict[str, str]:
    """Mail a link that proves the caller's address (EMAIL_VERIFY_URL)."""
    user = await user_service().get(get_jwt_identity())
    mail = email_service().verification_mail(user)
    if mail is not None:
        outbox().submit(mail)
    return VERIFY_SENT


@blueprint.post("/auth/email/verify")
@tag(["security"])
@body(EmailTokenSchema)
@returns(None, status=204)
@limited(EMAIL_TOKEN_PER_CLIENT)
async def verify_email(data: EmailToken) -> None:
    """Prove the address with the mailed token; it works once."""
    await email_service().verify(data["token"], client=client())


@blueprint.post("/auth/email")
@tag(["security"])
@jwt_required()
@fresh_required
@body(EmailChangeSchema)
@returns(MessageSchema, status=202)
@document_errors(404)  # the account is gone (REVOCATION_CHECK=false)
@limited(CHANGE_MAIL_PER_CLIENT, CHANGE_MAIL_PER_ADDRESS)
async def change_email(data: EmailChange) -> dict[str, str]:
    """Ask to change one's address: a link to the new one, a notice to the old.

    Nothing changes until the new address confirms (POST /auth/email/confirm).
    """
    user = await user_service().get(get_jwt_identity())
    mails = await email_service().request_change(
        user, data["new_email"], client=client()
    )
    for mail in mails:
        outbox().submit(mail)
    return CHANGE_SENT


@blueprint.post("/auth/email/confirm")
@tag(["security"])
@body(EmailTokenSchema)
@returns(UserSchema)
@document_errors(409)
@limited(EMAIL_TOKEN_PER_CLIENT)
async def confirm_email(data: EmailToken) -> User:
    """Confirm a change of address with the token mailed to the new one."""
    return await email_service().confirm_change(data["token"], client=client())
