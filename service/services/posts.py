"""Posts: who may write them, and which are visible."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager

from service.db.pagination import POSTS_VISIBLE, Page, counter, posts_of
from service.db.reads import OnSession, ReadRunner, page_on, scalar_on
from service.errors import ForbiddenError, NotFoundError
from service.models import NOT_DELETED, Post, UserRecord
from service.schemas.post import NewPost, PostChanges
from service.security.tokens import MAX_USER_ID


class PostService:
    def __init__(
        self, session: AsyncSession, *, reads: ReadRunner | None = None
    ) -> None:
        self.session = session
        # Where the reads that decide nothing (`get`, `list_page`) run: the app
        # passes a runner that may pick a caught-up standby; without one, the
        # session's connection. Edits load what they change on the session.
        self.reads = reads or OnSession(session)

    async def create(self, data: NewPost, *, author_id: int) -> Post:
        post = Post(author_id=author_id, title=data["title"], content=data["content"])
        self.session.add(post)
        await self.session.commit()
        return await self._load(post.id)

    async def get(self, post_id: int) -> Post:
        """A visible post to show: its author is not soft-deleted."""
        post: Post | None = None
        if 0 < post_id <= MAX_USER_ID:
            statement = visible_posts().where(Post.id == post_id)
            post = await self.reads.run(
                lambda connection: scalar_on(connection, statement)
            )
        if post is None:
            raise NotFoundError(f"Post with id {post_id} not found")
        return post

    async def list_page(
        self, *, page: int, per_page: int, author_id: int | None = None
    ) -> Page[Post]:
        stmt = visible_posts()
        total = counter(POSTS_VISIBLE)
        if author_id is not None:
            stmt = stmt.where(Post.author_id == author_id)
            total = posts_of(author_id)
        stmt = stmt.order_by(Post.created_at.desc(), Post.id.desc())
        return await self.reads.run(
            lambda connection: page_on(
                connection, stmt, total=total, page=page, per_page=per_page
            )
        )

    async def update(
        self,
        post_id: int,
        changes: PostChanges,
        *,
        by: UserRecord,
        admin_withheld: str | None = None,
    ) -> Post:
        """Commits; only the author or an admin (whose rights `admin_withheld`
        says are withheld now, when it says why)."""
        post = await self._editable(post_id, by, admin_withheld)
        for name, value in changes.items():
            setattr(post, name, value)
        if changes:
            await self.session.commit()
        return post

    async def delete(
        self, post_id: int, *, by: UserRecord, admin_withheld: str | None = None
    ) -> None:
        """Commits; only the author or an admin (as update)."""
        post = await self._editable(post_id, by, admin_withheld)
        await self.session.delete(post)
        await self.session.commit()

    async def _editable(
        self, post_id: int, by: UserRecord, admin_withheld: str | None
    ) -> Post:
        post = await self._load(post_id)
        if post.author_id != by.id:
            if not by.is_admin:
                raise ForbiddenError("Not authorized")
            # The admin override is an admin right.
            if admin_withheld is not None:
                raise ForbiddenError(admin_withheld)
        return post

    async def _load(self, post_id: int) -> Post:
        """A visible post on the session, to change or to answer a change with."""
        post = None
        if 0 < post_id <= MAX_USER_ID:
            post = await self.session.scalar(visible_posts().where(Post.id == post_id))
        if post is None:
            raise NotFoundError(f"Post with id {post_id} not found")
        return post


def visible_posts() -> Select[Post]:
    # The author comes from the same query (the join that hides deleted
    # users' posts), never from a lazy load.
    return (
        select(Post)
        .join(Post.author)
        .where(NOT_DELETED)
        .options(contains_eager(Post.author))
    )
