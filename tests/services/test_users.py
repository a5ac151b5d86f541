"""UserService rules, without HTTP: reads, pages, registration, changes, soft delete."""

from __future__ import annotations

from datetime import timedelta

import pytest
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from werkzeug.security import check_password_hash

from service.errors import NotFoundError
from service.models import User, utcnow
from service.services.users import UserService
from tests.factories import at, make_user, make_users
from tests.support import registration

EMAIL_TAKEN = {"email": ["Email already registered."]}


async def rows_with_email(session: AsyncSession, email: str) -> list[User]:
    result = await session.scalars(
        select(User)
        .where(func.lower(User.email) == email.lower())
        .order_by(User.id)
        .execution_options(populate_existing=True)
    )
    return list(result)


# get


async def test_get_live_user_returns_it(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(session)

    assert await users.get(user.id) is user


async def test_get_soft_deleted_user_raises_not_found(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(session, deleted_at=utcnow())

    with pytest.raises(NotFoundError) as raised:
        await users.get(user.id)

    assert raised.value.message == f"User with id {user.id} not found"


@pytest.mark.parametrize("user_id", [0, -1, 2**31 - 1, 2**31, 2**63])
async def test_get_id_out_of_range_or_unknown_raises_not_found(
    users: UserService, session: AsyncSession, user_id: int
) -> None:
    user = await make_user(session)

    with pytest.raises(NotFoundError) as raised:
        await users.get(user_id)

    assert raised.value.message == f"User with id {user_id} not found"
    # A database error would have aborted the transaction; the session still works.
    assert await users.get(user.id) is user


# get_by_email


@pytest.mark.parametrize(
    "lookup",
    ["Mixed.Case@Example.com", "mixed.case@example.com", "MIXED.CASE@EXAMPLE.COM"],
)
async def test_get_by_email_any_case_finds_user(
    users: UserService, session: AsyncSession, lookup: str
) -> None:
    user = await make_user(session, email="Mixed.Case@Example.com")

    assert await users.get_by_email(lookup) is user


async def test_get_by_email_soft_deleted_returns_none(
    users: UserService, session: AsyncSession
) -> None:
    await make_user(session, email="gone@example.com", deleted_at=utcnow())

    assert await users.get_by_email("gone@example.com") is None


async def test_get_by_email_deleted_and_live_rows_returns_live(
    users: UserService, session: AsyncSession
) -> None:
    await make_user(session, email="again@example.com", deleted_at=utcnow())
    live = await make_user(session, email="Again@example.com")

    assert await users.get_by_email("again@example.com") is live


async def test_get_by_email_unknown_returns_none(
    users: UserService, session: AsyncSession
) -> None:
    await make_user(session, email="known@example.com")

    assert await users.get_by_email("unknown@example.com") is None


# list_page


async def test_list_page_orders_newest_first_then_higher_id(
    users: UserService, session: AsyncSession
) -> None:
    oldest = await make_user(session, created_at=at("2024-01-01T00:00:00"))
    tie_first = await make_user(session, created_at=at("2024-06-01T12:00:00"))
    tie_second = await make_user(session, created_at=at("2024-06-01T12:00:00"))
    newest = await make_user(session, created_at=at("2025-01-01T00:00:00"))
    middle = await make_user(session, created_at=at("2024-03-01T00:00:00"))

    page = await users.list_page(page=1, per_page=20, active_only=True)

    assert [u.id for u in page.items] == [
        newest.id,
        tie_second.id,
        tie_first.id,
        middle.id,
        oldest.id,
    ]


async def test_list_page_active_only_skips_inactive(
    users: UserService, session: AsyncSession
) -> None:
    active = await make_user(session, created_at=at("2024-01-02T00:00:00"))
    await make_user(session, is_active=False, created_at=at("2024-01-01T00:00:00"))

    page = await users.list_page(page=1, per_page=20, active_only=True)

    assert [u.id for u in page.items] == [active.id]
    assert page.total == 1


async def test_list_page_not_active_only_includes_inactive(
    users: UserService, session: AsyncSession
) -> None:
    active = await make_user(session, created_at=at("2024-01-02T00:00:00"))
    inactive = await make_user(
        session, is_active=False, created_at=at("2024-01-01T00:00:00")
    )

    page = await users.list_page(page=1, per_page=20, active_only=False)

    assert [u.id for u in page.items] == [active.id, inactive.id]
    assert page.total == 2


@pytest.mark.parametrize("active_only", [True, False])
async def test_list_page_never_lists_soft_deleted(
    users: UserService, session: AsyncSession, active_only: bool
) -> None:
    live = await make_user(session)
    await make_user(session, deleted_at=utcnow())
    await make_user(session, is_active=False, deleted_at=utcnow())

    page = await users.list_page(page=1, per_page=20, active_only=active_only)

    assert [u.id for u in page.items] == [live.id]
    assert page.total == 1


@pytest.mark.parametrize(
    ("count", "per_page", "pages"),
    [(0, 20, 0), (1, 20, 1), (4, 2, 2), (5, 2, 3), (100, 100, 1), (101, 100, 2)],
)
async def test_list_page_total_and_pages(
    users: UserService, session: AsyncSession, count: int, per_page: int, pages: int
) -> None:
    await make_users(session, count)

    page = await users.list_page(page=1, per_page=per_page, active_only=True)

    assert page.total == count
    assert page.pages == pages
    assert len(page.items) == min(count, per_page)
    assert page.envelope("users")["pages"] == pages


async def test_list_page_later_pages_continue_the_order(
    users: UserService, session: AsyncSession
) -> None:
    made = [
        await make_user(session, created_at=at(f"2024-01-0{day}T00:00:00"))
        for day in range(1, 6)
    ]
    newest_first = [u.id for u in reversed(made)]

    second = await users.list_page(page=2, per_page=2, active_only=True)
    third = await users.list_page(page=3, per_page=2, active_only=True)

    assert [u.id for u in second.items] == newest_first[2:4]
    assert [u.id for u in third.items] == newest_first[4:]
    assert (third.page, third.per_page, third.total, third.pages) == (3, 2, 5, 3)


@pytest.mark.parametrize(
    ("page_arg", "per_page_arg", "page", "per_page"),
    [
        (0, 20, 1, 20),
        (-3, 20, 1, 20),
        (1, 0, 1, 20),
        (1, -5, 1, 20),
        (1, 101, 1, 100),
        (1, 1000, 1, 100),
        (1, 100, 1, 100),
        (1, 1, 1, 1),
    ],
)
async def test_list_page_clamps_out_of_range_arguments(
    users: UserService,
    session: AsyncSession,
    page_arg: int,
    per_page_arg: int,
    page: int,
    per_page: int,
) -> None:
    newer = await make_user(session, created_at=at("2024-01-02T00:00:00"))
    older = await make_user(session, created_at=at("2024-01-01T00:00:00"))

    result = await users.list_page(
        page=page_arg, per_page=per_page_arg, active_only=True
    )

    assert (result.page, result.per_page, result.total) == (page, per_page, 2)
    assert [u.id for u in result.items] == [newer.id, older.id][:per_page]


@pytest.mark.parametrize("page_arg", [3, 4, 10**6, 2**63, 10**20])
async def test_list_page_past_the_end_is_empty_with_total(
    users: UserService, session: AsyncSession, page_arg: int
) -> None:
    for _ in range(3):
        await make_user(session)

    result = await users.list_page(page=page_arg, per_page=2, active_only=True)

    assert list(result.items) == []
    assert (result.page, result.per_page, result.total, result.pages) == (
        page_arg,
        2,
        3,
        2,
    )


# register


async def test_register_keeps_email_case_and_stores_scrypt_hash(
    users: UserService, session: AsyncSession
) -> None:
    user = await users.register(registration("New.User@Example.COM"))

    [stored] = await rows_with_email(session, "new.user@example.com")
    assert stored.id == user.id
    assert stored.email == "New.User@Example.COM"
    assert stored.password_hash.startswith("scrypt:32768:8:1$")
    assert check_password_hash(stored.password_hash, "password123")
    assert (stored.first_name, stored.last_name) == ("New", "User")
    assert (stored.is_active, stored.is_admin, stored.deleted_at) == (
        True,
        False,
        None,
    )


async def test_register_as_admin_sets_is_admin(
    users: UserService, session: AsyncSession
) -> None:
    user = await users.register(registration("boss@example.com"), is_admin=True)

    [stored] = await rows_with_email(session, "boss@example.com")
    assert stored.id == user.id
    assert stored.is_admin is True


@pytest.mark.parametrize(
    "duplicate", ["taken@example.com", "TAKEN@example.com", "Taken@Example.Com"]
)
async def test_register_live_email_in_any_case_raises_validation_error(
    users: UserService, session: AsyncSession, duplicate: str
) -> None:
    existing_id = (await make_user(session, email="taken@example.com")).id

    with pytest.raises(ValidationError) as raised:
        await users.register(registration(duplicate))

    assert raised.value.messages == EMAIL_TAKEN
    assert [u.id for u in await rows_with_email(session, duplicate)] == [existing_id]


async def test_register_after_duplicate_session_still_usable(
    users: UserService, session: AsyncSession
) -> None:
    existing_id = (await make_user(session, email="taken@example.com")).id
    with pytest.raises(ValidationError):
        await users.register(registration("taken@example.com"))

    # The rollback expired every loaded object, so compare ids, not identities.
    assert (await users.get(existing_id)).email == "taken@example.com"
    other = await make_user(session)
    assert (await users.get(other.id)).id == other.id


@pytest.mark.parametrize("again", ["reuse@example.com", "REUSE@example.com"])
async def test_register_soft_deleted_email_creates_new_account(
    users: UserService, session: AsyncSession, again: str
) -> None:
    deleted = await make_user(session, email="reuse@example.com", deleted_at=utcnow())

    user = await users.register(registration(again))

    assert user.id != deleted.id
    rows = await rows_with_email(session, again)
    assert [(u.id, u.email) for u in rows] == [
        (deleted.id, "reuse@example.com"),
        (user.id, again),
    ]
    assert rows[0].deleted_at is not None
    assert rows[1].deleted_at is None
    assert await users.get_by_email("reuse@example.com") is user


# update


async def test_update_changes_only_given_fields(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(
        session, email="keep@example.com", first_name="Old", last_name="Name"
    )

    await users.update(user.id, {"last_name": "Changed"})

    [stored] = await rows_with_email(session, "keep@example.com")
    assert (stored.first_name, stored.last_name) == ("Old", "Changed")
    assert (stored.email, stored.is_active, stored.is_admin) == (
        "keep@example.com",
        True,
        False,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"first_name": "Ann"},
        {"last_name": "Lee"},
        {"is_active": False},
        {"first_name": "Ann", "last_name": "Lee", "is_active": False},
    ],
)
async def test_update_applies_each_field(
    users: UserService, session: AsyncSession, changes: dict[str, object]
) -> None:
    user = await make_user(session, email="fields@example.com")
    expected = {
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": user.is_active,
        **changes,
    }

    await users.update(user.id, changes)  # type: ignore[arg-type]

    [stored] = await rows_with_email(session, "fields@example.com")
    assert {
        "first_name": stored.first_name,
        "last_name": stored.last_name,
        "is_active": stored.is_active,
    } == expected


CREATED = at("2020-01-01T00:00:00")


async def test_update_bumps_updated_at_and_keeps_created_at(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(
        session, email="stamp@example.com", created_at=CREATED, updated_at=CREATED
    )
    before = utcnow()

    await users.update(user.id, {"first_name": "Later"})

    [stored] = await rows_with_email(session, "stamp@example.com")
    assert stored.created_at == CREATED
    assert stored.updated_at >= before


async def test_update_with_no_changes_writes_nothing(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(
        session, email="same@example.com", created_at=CREATED, updated_at=CREATED
    )

    await users.update(user.id, {})

    [stored] = await rows_with_email(session, "same@example.com")
    assert stored.updated_at == CREATED


async def test_update_soft_deleted_user_raises_not_found(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(session, first_name="Gone", deleted_at=utcnow())

    with pytest.raises(NotFoundError):
        await users.update(user.id, {"first_name": "Back"})

    await session.refresh(user)
    assert user.first_name == "Gone"


async def test_update_unknown_user_raises_not_found(users: UserService) -> None:
    with pytest.raises(NotFoundError) as raised:
        await users.update(99999, {"first_name": "Nobody"})

    assert raised.value.message == "User with id 99999 not found"


# soft_delete


async def test_soft_delete_sets_deleted_at_now(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(session)
    before = utcnow()

    await users.soft_delete(user.id)

    await session.refresh(user)
    assert user.deleted_at is not None
    assert before <= user.deleted_at <= utcnow() + timedelta(seconds=1)
    assert user.deleted_at is not None


async def test_soft_delete_twice_raises_not_found(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(session)
    await users.soft_delete(user.id)
    await session.refresh(user)
    first = user.deleted_at

    with pytest.raises(NotFoundError) as raised:
        await users.soft_delete(user.id)

    assert raised.value.message == f"User with id {user.id} not found"
    await session.refresh(user)
    assert user.deleted_at == first


async def test_soft_delete_unknown_user_raises_not_found(users: UserService) -> None:
    with pytest.raises(NotFoundError):
        await users.soft_delete(99999)


async def test_soft_delete_keeps_the_row(
    users: UserService, session: AsyncSession
) -> None:
    user = await make_user(session, email="kept@example.com")

    await users.soft_delete(user.id)

    assert [u.id for u in await rows_with_email(session, "kept@example.com")] == [
        user.id
    ]
