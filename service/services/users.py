"""Users: registration, reads, changes and soft delete.

Changes, and the reads that decide something (a login's lookup, the user a
change applies to), go through the service's session and give `User` rows; the
reads that only show (a user, a page of users) go through its read runner and
give `UserRecord`s, read without the ORM.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from service.db.pagination import USERS_ACTIVE, USERS_LIVE, Page, clamp, counter
from service.db.reads import OnSession, ReadRunner
from service.db.statements import HotQuery
from service.errors import ConflictError, NotFoundError, validation_error
from service.models import LIVE, NOT_DELETED, USER_COLUMNS, User, UserRecord, utcnow
from service.schemas.user import NewUser, UserChanges
from service.security.password_policy import PasswordPolicy
from service.security.passwords import PasswordHasher
from service.security.tokens import MAX_USER_ID
from service.services.sessions import SessionService

EMAIL_TAKEN = "Email already registered."
LIVE_EMAIL_INDEX = "uq_users_email_lower_live"
EMAIL_TAKEN_BY_ANOTHER = "Email already registered by another user"
MAX_OFFSET = 2**63 - 1


class UserService:
    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher | None = None,
        *,
        reads: ReadRunner | None = None,
        policy: PasswordPolicy | None = None,
    ) -> None:
        self.session = session
        self._hasher = hasher
        # PASSWORD_POLICY beyond length, or None (registration checks length only).
        self.policy = policy
        # Where the reads that decide nothing run: the app passes a runner that
        # may pick a caught-up standby; without one, the session's connection.
        self.reads = reads or OnSession(session)

    @property
    def hasher(self) -> PasswordHasher:
        if self._hasher is None:
            raise RuntimeError("this UserService was made without a PasswordHasher")
        return self._hasher

    async def record(self, user_id: int) -> UserRecord:
        """A live user to show; soft-deleted and unknown: NotFoundError."""
        row = None
        if 0 < user_id <= MAX_USER_ID:
            row = await self.reads.run(
                lambda connection: RECORD.fetch_row(connection, user_id=user_id)
            )
        if row is None:
            raise NotFoundError(f"User with id {user_id} not found")
        return UserRecord.from_row(row)

    async def get(self, user_id: int) -> User:
        """A live user to change or decide on; soft-deleted and unknown ids raise
        NotFoundError alike."""
        user = None
        if 0 < user_id <= MAX_USER_ID:
            user = await self.session.scalar(live_users().where(User.id == user_id))
        if user is None:
            raise NotFoundError(f"User with id {user_id} not found")
        return user

    async def replace_password_hash(self, user: User, new_hash: str) -> bool:
        """Write `new_hash` only if the row still holds the hash `user` was read
        with (compare and swap): of two racing writers one wins, the other sees
        False and must not claim success. The caller commits."""
        result = await self.session.execute(
            update(User)
            .where(User.id == user.id, User.password_hash == user.password_hash)
            .values(password_hash=new_hash)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return False
        set_committed_value(user, "password_hash", new_hash)
        return True

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

        async def read(connection: AsyncConnection) -> Page[UserRecord]:
            found = []
            if offset <= MAX_OFFSET:  # no table has more rows than a bigint counts
                found = await rows.fetch_all(connection, limit=per_page, offset=offset)
            # One round trip: the page rows carry the total.
            if found:
                total = int(found[0]["total"])
            else:
                counted = await count.fetch_row(connection)
                total = int(counted["total"]) if counted else 0
            items = [UserRecord.from_row(row) for row in found]
            return Page(items=items, page=page, per_page=per_page, total=total)

        return await self.reads.run(read)

    async def register(self, data: NewUser, *, is_admin: bool = False) -> User:
        """Commits; an address a live user has, in any case, is a 400 on `email`."""
        if self.policy is not None:
            await self.policy.check(
                data["password"],
                field="password",
                email=data["email"],
                names=(data["first_name"], data["last_name"]),
            )
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

    async def with_taken_email(
        self, error: ValidationError, payload: Any
    ) -> ValidationError:
        """A taken address reported with the body's other errors, as Flask does.

        Flask's schema checks the address among its fields, so one 400 lists it
        next to, say, an unknown field; the unique index alone would report it
        only once the rest of the body is valid.
        """
        messages = error.messages
        # An "email" error already says what is wrong with the address.
        if not isinstance(messages, dict) or "email" in messages:
            return error
        email = payload.get("email") if isinstance(payload, dict) else None
        if not isinstance(email, str) or await self.get_by_email(email) is None:
            return error
        return ValidationError({**messages, "email": [EMAIL_TAKEN]})

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

    async def deleted_by_email(self, email: str) -> User | None:
        """The most recently deleted account with this address (any case)."""
        return await self.session.scalar(
            select(User)
            .where(
                func.lower(User.email) == func.lower(email),
                User.deleted_at.is_not(None),
            )
            .order_by(User.deleted_at.desc(), User.id.desc())
            .limit(1)
        )

    async def any_admin_ever(self) -> bool:
        """Whether any account, live or deleted, is an admin."""
        found = await self.session.scalar(
            select(User.id).where(User.is_admin.is_(True)).limit(1)
        )
        return found is not None

    async def restore_as_admin(self, user_id: int) -> User:
        """Commits; a deleted account back, active and an admin."""
        user = await self.restore(user_id)
        user.is_admin = True
        user.is_active = True
        await self.session.commit()
        return user


def is_email_conflict(error: IntegrityError) -> bool:
    # PostgreSQL and SQLite both name the violated index in the message.
    return LIVE_EMAIL_INDEX in str(error.orig)


def live_users() -> Select[User]:
    return select(User).where(NOT_DELETED)


def _count(counted: str) -> HotQuery:
    return HotQuery(select(counter(counted).scalar_subquery().label("total")))


def _page(condition: ColumnElement[bool], counted: str) -> HotQuery:
    """The page's rows, each carrying the total: one round trip.

    Past the end, the total stops the scan before it starts (a one-time filter).
    """
    total = counter(counted).scalar_subquery()
    return HotQuery(
        select(total.label("total"), *USER_COLUMNS)
        .where(condition, bindparam("offset", type_=BigInteger) < total)
        .order_by(User.created_at.desc(), User.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


# The hot reads, planned once; each selects USER_COLUMNS, the fields of UserRecord.
COUNT_LIVE, PAGE_LIVE = _count(USERS_LIVE), _page(NOT_DELETED, USERS_LIVE)
COUNT_ACTIVE, PAGE_ACTIVE = _count(USERS_ACTIVE), _page(LIVE, USERS_ACTIVE)
RECORD = HotQuery(
    select(*USER_COLUMNS).where(User.id == bindparam("user_id"), NOT_DELETED)
)
