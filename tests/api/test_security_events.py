"""Security events: GET /auth/events (one's own) and GET /users/{id}/events
(admins), what records them, and their pruning after SECURITY_EVENTS_DAYS."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import SecurityEvent, User
from service.services.auth import Client as ClientInfo
from service.services.events import EventService, EventType, record_event
from tests.factories import PASSWORD, login_headers, make_user, utcnow
from tests.support import (
    API,
    LOGOUT,
    PAGE_MATH,
    SESSIONS,
    AppMaker,
    bearer,
    cases,
    change_password,
    login,
    post_login,
    send,
)

EVENTS = f"{API}/auth/events"
ADMIN_REQUIRED = {"error": "Admin access required"}
FROM = {"ip": "203.0.113.9", "user_agent": "events-test/1.0"}


def user_events(user_id: int) -> str:
    return f"{API}/users/{user_id}/events"


async def events_of(client: Client, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get(EVENTS, headers=headers)
    assert response.status_code == 200, await response.get_data(as_text=True)
    events: list[dict[str, Any]] = (await response.get_json())["events"]
    return events


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(each["type"], each["detail"]) for each in events]


async def test_login_and_failed_login_are_recorded_newest_first(
    client: Client, user: User
) -> None:
    tokens = await login(client, user.email, **FROM)
    failed = await post_login(client, user.email, "wrong-password", **FROM)

    events = await events_of(client, bearer(tokens["access_token"]))

    assert failed.status_code == 401
    assert kinds(events) == [("login_failed", None), ("login", None)]
    assert {(e["ip"], e["user_agent"]) for e in events} == {
        (FROM["ip"], FROM["user_agent"])
    }
    assert events[0]["id"] > events[1]["id"]
    assert events[0]["created_at"] >= events[1]["created_at"]


async def test_failed_login_of_an_unknown_address_records_nothing(
    client: Client, session: AsyncSession
) -> None:
    await post_login(client, "nobody@example.com", "wrong-password")

    assert await session.scalar(select(func.count(SecurityEvent.id))) == 0


async def test_password_change_and_session_endings_are_recorded(
    client: Client, user: User
) -> None:
    first = await login(client, user.email)
    await login(client, user.email)
    await login(client, user.email)
    sessions = await client.get(SESSIONS, headers=bearer(first["access_token"]))
    [other, *_] = [
        s for s in (await sessions.get_json())["sessions"] if not s["current"]
    ]
    await send(
        client,
        "DELETE",
        f"{SESSIONS}/{other['id']}",
        headers=bearer(first["access_token"]),
    )
    await send(client, "DELETE", SESSIONS, headers=bearer(first["access_token"]))
    await client.post(LOGOUT, headers=bearer(first["access_token"]))
    fourth = await login(client, user.email)
    changed = await change_password(
        client, bearer(fourth["access_token"]), "a new passphrase 9"
    )
    last = await login(client, user.email, "a new passphrase 9")

    events = await events_of(client, bearer(last["access_token"]))

    assert changed.status_code == 204
    assert kinds(events) == [
        ("login", None),
        ("password_changed", None),
        ("login", None),
        ("session_ended", "logout"),
        ("session_ended", "others_revoked"),
        ("session_ended", "revoked"),
        ("login", None),
        ("login", None),
        ("login", None),
    ]


async def test_events_are_only_the_callers_own(
    client: Client, session: AsyncSession, settings: Settings, user: User
) -> None:
    other = await make_user(session)
    await login(client, other.email)

    events = await events_of(client, await login_headers(session, settings, user))

    assert events == []


async def add_events(session: AsyncSession, user: User, count: int) -> list[int]:
    """`count` logins, a minute apart, oldest first: their ids."""
    start = utcnow() - timedelta(hours=1)
    rows = [
        SecurityEvent(
            user_id=user.id, type="login", created_at=start + timedelta(minutes=n)
        )
        for n in range(count)
    ]
    session.add_all(rows)
    await session.commit()
    return [row.id for row in rows]


@cases("query, indexes, page, per_page, pages", PAGE_MATH)
async def test_events_are_paged_like_every_list(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    user: User,
    query: dict[str, str],
    indexes: list[int],
    page: int,
    per_page: int,
    pages: int,
) -> None:
    ids = await add_events(session, user, 5)
    headers = await login_headers(session, settings, user)

    response = await client.get(EVENTS, query_string=query, headers=headers)

    body = await response.get_json()
    assert response.status_code == 200
    assert [each["id"] for each in body["events"]] == [ids[i] for i in indexes]
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (
        page,
        per_page,
        5,
        pages,
    )


async def test_events_need_an_access_token(client: Client) -> None:
    response = await client.get(EVENTS)

    assert response.status_code == 401


async def test_admin_reads_a_users_events(
    client: Client, user: User, admin_headers: dict[str, str]
) -> None:
    await login(client, user.email, **FROM)

    response = await client.get(user_events(user.id), headers=admin_headers)

    body = await response.get_json()
    assert response.status_code == 200
    assert kinds(body["events"]) == [("login", None)]
    assert body["events"][0]["ip"] == FROM["ip"]
    assert body["total"] == 1


async def test_non_admin_cannot_read_anothers_events(
    client: Client, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    other = await make_user(session)

    response = await client.get(user_events(other.id), headers=user_headers)

    assert response.status_code == 403
    assert await response.get_json() == ADMIN_REQUIRED


async def test_events_of_an_unknown_user_404(
    client: Client, admin_headers: dict[str, str], absent_user_id: int
) -> None:
    response = await client.get(user_events(absent_user_id), headers=admin_headers)

    assert response.status_code == 404
    assert await response.get_json() == {
        "error": f"User with id {absent_user_id} not found"
    }


async def test_a_mailed_kind_needs_the_account_not_its_id(
    session: AsyncSession, user: User
) -> None:
    with pytest.raises(TypeError, match="is mailed"):
        record_event(
            session, EventType.PASSWORD_CHANGED, user.id, ClientInfo(None, None)
        )


# --- pruning -----------------------------------------------------------------


async def test_prune_removes_only_events_older_than_the_days_kept(
    session: AsyncSession, user: User
) -> None:
    now = utcnow()
    session.add_all(
        SecurityEvent(user_id=user.id, type="login", created_at=now - timedelta(days=d))
        for d in (120, 91, 89, 0)
    )
    await session.commit()

    removed = await EventService(session).prune(days=90)

    left = await session.scalars(
        select(SecurityEvent.created_at).order_by(SecurityEvent.created_at)
    )
    assert removed == 2
    assert [round((now - at).total_seconds() / 86400) for at in left] == [89, 0]


@pytest.mark.parametrize(
    ("days", "pruning"), [(90, True), (0, False)], ids=["default", "keep-forever"]
)
async def test_pruning_runs_beside_the_app_and_stops_with_it(
    make_app: AppMaker, days: int, pruning: bool
) -> None:
    async with make_app(security_events_days=days) as app:
        task = app.extensions.get("security_event_pruner")
        assert (task is not None) == pruning
        assert task is None or not task.done()

    assert task is None or task.cancelled()


async def test_login_right_after_logout_still_works_with_password(
    client: Client, user: User
) -> None:
    """The events' extra writes change no answer of the login flow."""
    tokens = await login(client, user.email)
    await client.post(LOGOUT, headers=bearer(tokens["access_token"]))

    assert (await post_login(client, user.email, PASSWORD)).status_code == 200


async def test_newest_first_page_reads_the_index_backwards(
    session: AsyncSession, user: User, measurements: list[str]
) -> None:
    """PostgreSQL walks ix_security_events_user_id_created_at backwards for a page:
    no sort, no scan of other users' events."""
    other = await make_user(session)
    start = utcnow() - timedelta(days=30)
    await session.execute(
        insert(SecurityEvent),
        [
            {
                "user_id": (user.id, other.id)[n % 2],
                "type": "login",
                "created_at": start + timedelta(seconds=n),
            }
            for n in range(20_000)
        ],
    )
    await session.commit()
    await session.execute(text("ANALYZE security_events"))
    page = (
        select(SecurityEvent)
        .where(SecurityEvent.user_id == user.id)
        .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc())
        .limit(20)
        .offset(0)
    )
    compiled = page.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
    )

    plan = "\n".join(
        (await session.execute(text(f"EXPLAIN ANALYZE {compiled}"))).scalars()
    )

    assert "Index Scan Backward using ix_security_events_user_id_created_at" in plan
    assert "Sort" not in plan
    took = re.search(r"Execution Time: ([\d.]+) ms", plan)
    assert took is not None
    measurements.append(
        f"first page of 10,000 events (20,000 in the table): {took.group(1)} ms"
    )
