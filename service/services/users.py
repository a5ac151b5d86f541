"""Users: registration, reads, changes and soft delete."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from service.errors import ConflictError, NotFoundError, validation_error
from service.models import USER_RECORD_TYPES, User, UserRecord, utcnow
from service.pagination import Page, clamp
from service.schemas.user import NewUser, UserChanges
from service.security.passwords import PasswordHasher
from service.security.tokens import MAX_USER_ID
from service.services.sessions import SessionService
from service.statements import HotQuery

EMAIL_TAKEN = "Email already registered."
LIVE_EMAIL_INDEX = "uq_users_email_lower_live"
EMAIL_TAKEN_BY_ANOTHER = "Email already registered by another user"


Reads = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class UserService:
    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        *,
        reads: Reads | None = None,
    ) -> None:
        self.session = session
        self.hasher = hasher
        # Where list reads run: by default the session's own connection; the app
        # passes its pooled read connections, held only for the two queries.
        self.reads = reads or self._session_connection

    @asynccontextmanager
    async def _session_connection(self) -> AsyncIterator[AsyncConnection]:
        yield await self.session.connection()

    async def get(self, user_id: int) -> User:
        """A live user; soft-deleted and unknown ids raise NotFoundError alike."""
        user = await self.find(user_id)
        if user is None:
            raise NotFoundError(f"User with id {user_id} not found")
        return user

    async def find(self, user_id: int) -> User | None:
        if not 0 < user_id <= MAX_USER_ID:
            return None
        return await self.session.scalar(live_users().where(User.id == user_id))

    async def get_by_email(self, email: str) -> User | None:
        # The database's lower() on both sides: exactly what the unique index
        # compares, whatever Python's str.lower() would make of the address.
        return await self.session.scalar(
            live_users().where(func.lower(User.email) == func.lower(email))
        )

    async def list_page(
        self, *, page: int, per_page: int, active_only: bool
    ) -> Page[UserRecord]:
        """Newest first; plain records, read without the ORM (a hot path)."""
        page, per_page = clamp(page, per_page)
        count, rows = (
            (COUNT_ACTIVE, PAGE_ACTIVE) if active_only else (COUNT_LIVE, PAGE_LIVE)
        )
        offset = (page - 1) * per_page
        async with self.reads() as connection:
            counted = await count.fetch_row(connection)
            total = int(counted["total"]) if counted else 0
            found = []
            if offset < total:
                found = await rows.fetch_all(connection, limit=per_page, offset=offset)
        items = [UserRecord.from_row(row) for row in found]
        return Page(items=items, page=page, per_page=per_page, total=total)

    async def register(self, data: NewUser, *, is_admin: bool = False) -> User:
        """Commits; an address a live user has, in any case, is a 400 on `email`."""
        user = User(
            email=data["email"],
            password_hash=await self.hasher.hash(data["password"]),
            first_name=data["first_name"],
            last_name=data["last_name"],
            is_active=True,
            is_admin=is_admin,
        )
        # The unique index decides, so concurrent registrations cannot both win;
        # the savepoint keeps the rest of the session usable after a loss.
        try:
            async with self.session.begin_nested():
                self.session.add(user)
        except IntegrityError as error:
            if not is_email_conflict(error):
                raise
            raise validation_error("email", EMAIL_TAKEN) from None
        await self.session.commit()
        return user

    async def update(self, user_id: int, changes: UserChanges) -> User:
        """Commits; deactivation ends every session of the user."""
        user = await self.get(user_id)
        deactivating = user.is_active and changes.get("is_active") is False
        for name, value in changes.items():
            setattr(user, name, value)
        if deactivating:
            await SessionService(self.session).revoke_all(user)
        if changes:
            await self.session.commit()
        return user

    async def soft_delete(self, user_id: int) -> None:
        """Commits; ends every session of the user."""
        user = await self.get(user_id)
        user.deleted_at = utcnow()
        await SessionService(self.session).revoke_all(user)
        await self.session.commit()

    async def restore(self, user_id: int) -> User:
        """Commits; 409 when a live user has taken the address since."""
        user = None
        if 0 < user_id <= MAX_USER_ID:
            user = await self.session.scalar(
                select(User).where(User.id == user_id, User.deleted_at.is_not(None))
            )
        if user is None:
            raise NotFoundError(f"Deleted user with id {user_id} not found")
        try:
            async with self.session.begin_nested():
                user.deleted_at = None
        except IntegrityError as error:
            if not is_email_conflict(error):
                raise
            raise ConflictError(EMAIL_TAKEN_BY_ANOTHER) from None
        await self.session.commit()
        return user


def is_email_conflict(error: IntegrityError) -> bool:
    # PostgreSQL and SQLite both name the violated index in the message.
    return LIVE_EMAIL_INDEX in str(error.orig)


def live_users() -> Select[User]:
    return select(User).where(User.deleted_at.is_(None))


_LIST_COLUMNS = (
    "id, email, first_name, last_name, is_active, is_admin, created_at, updated_at"
)
_LIVE = "deleted_at IS NULL"
_ACTIVE = "deleted_at IS NULL AND is_active"
_ORDER = "ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset"
COUNT_LIVE = HotQuery(f"SELECT count(*) AS total FROM users WHERE {_LIVE}")  # noqa: S608
COUNT_ACTIVE = HotQuery(f"SELECT count(*) AS total FROM users WHERE {_ACTIVE}")  # noqa: S608
PAGE_LIVE = HotQuery(
    f"SELECT {_LIST_COLUMNS} FROM users WHERE {_LIVE} {_ORDER}",  # noqa: S608 - constants
    **USER_RECORD_TYPES,
)
PAGE_ACTIVE = HotQuery(
    f"SELECT {_LIST_COLUMNS} FROM users WHERE {_ACTIVE} {_ORDER}",  # noqa: S608 - constants
    **USER_RECORD_TYPES,
)
