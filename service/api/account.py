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

from service.api.deps import client, outbox, session_service, settings, user_service
from service.api.guards import admin_required, current_identity, jwt_required
from service.api.io import query, returns
from service.config import Settings
from service.db.request import app_database, request_session
from service.models import AuthSession
from service.request_state import request_state
from service.schemas.account import SecurityEventPageSchema
from service.schemas.auth import SessionListSchema
from service.schemas.common import PageQuery, PageQuerySchema
from service.services.events import (
    Detail,
    EventService,
    EventType,
    committed_notices,
    record_event,
)
from service.services.sessions import SessionService

logger = logging.getLogger(__name__)
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
