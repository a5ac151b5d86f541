"""Indexes for the post lists (newest first, overall and per author).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_posts_created_at_id", "posts", ["created_at", "id"])
    op.create_index(
        "ix_posts_author_id_created_at_id", "posts", ["author_id", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_posts_author_id_created_at_id", table_name="posts")
    op.drop_index("ix_posts_created_at_id", table_name="posts")
