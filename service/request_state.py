"""What one request carries from hook to hook, as one typed object on Quart's `g`."""

from __future__ import annotations

from dataclasses import dataclass

from quart import g
from sqlalchemy.ext.asyncio import AsyncSession

from service.db.replicas import RequestReads
from service.models import SessionRecord, UserRecord
from service.security.tokens import Identity


@dataclass(slots=True)
class RequestState:
    # Set by telemetry/logs.py as the request starts.
    request_id: str = ""
    started: float = 0.0
    # Set by @jwt_required: the verified token, and the caller's live row once read
    # (by the token check, or later when revocation is not checked).
    identity: Identity | None = None
    user: UserRecord | None = None
    # ...and its session's freshness and login method, read by the same query.
    auth_session: SessionRecord | None = None
    # db/request.py: the request's sessions, made on first use, and where its
    # display reads went.
    session: AsyncSession | None = None
    read_session: AsyncSession | None = None
    reads: RequestReads | None = None
    # With read replicas, set by @jwt_required: the primary's WAL position its
    # query read, with the loop time it began (RequestReads' `seen`).
    primary_position: tuple[float, str] | None = None


def request_state() -> RequestState:
    """This request's state (or the app context's, outside a request)."""
    state: RequestState | None = g.get("state")
    if state is None:
        state = g.state = RequestState()
    return state
