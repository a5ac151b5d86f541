"""The Flask service's schema, exactly as db.create_all() made it.

An existing Flask database is adopted instead (stamped 0001): by
`quart --app service.asgi migrate`, which checks it against flask_schema()
first, or by hand with `alembic stamp 0001` (docs/MIGRATING.md).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import ops

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def flask_schema() -> sa.MetaData:
    """The tables (and index) db.create_all() made: what this revision creates,
    and what `quart --app service.asgi migrate` checks an unstamped database
    against before adopting it."""
    metadata = sa.MetaData()
    users = sa.Table(
        "users",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="users_pkey"),
    )
    sa.Index("ix_users_email", users.c.email, unique=True)
    sa.Table(
        "posts",
        metadata,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("content", sa.String(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name="posts_author_id_fkey"
        ),
        sa.PrimaryKeyConstraint("id", name="posts_pkey"),
    )
    return metadata


def upgrade() -> None:
    for table in flask_schema().sorted_tables:
        op.invoke(ops.CreateTableOp.from_table(table))
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            op.invoke(ops.CreateIndexOp.from_index(index))


def downgrade() -> None:
    op.drop_table("posts")
    op.drop_index("ix_users_email", table_name="users")
    op.drop_table("users")
