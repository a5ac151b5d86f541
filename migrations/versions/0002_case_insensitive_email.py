"""Case-insensitive email uniqueness among live users; list order index.

Replaces the Flask service's unique `ix_users_email`, which also covered
soft-deleted rows (so their address could never register again) and
ignored letter case.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    _refuse_duplicates(
        "lower(email)",
        "Cannot make email addresses unique regardless of letter case",
        "Soft-delete or rename all but one of each",
    )
    op.drop_index("ix_users_email", table_name="users")
    op.create_index("ix_users_email", "users", ["email"])
    op.create_index(
        "uq_users_email_lower_live",
        "users",
        [sa.text("lower(email)")],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_index("ix_users_created_at_id", "users", ["created_at", "id"])


def downgrade() -> None:
    # 0001's index covers soft-deleted rows too, so an address that was
    # registered again after a soft delete cannot go back under it.
    _refuse_duplicates(
        "email",
        "Cannot restore the Flask service's unique index on email",
        "Remove or rename the soft-deleted duplicates",
        live_only=False,
    )
    op.drop_index("ix_users_created_at_id", table_name="users")
    op.drop_index("uq_users_email_lower_live", table_name="users")
    op.drop_index("ix_users_email", table_name="users")
    op.create_index("ix_users_email", "users", ["email"], unique=True)


def _refuse_duplicates(
    key: str, problem: str, remedy: str, *, live_only: bool = True
) -> None:
    """Stop before any change, naming every account that shares an address."""
    rows_in_scope = "deleted_at IS NULL" if live_only else "1 = 1"
    query = (
        f"SELECT id, email FROM users WHERE {rows_in_scope} AND {key} IN "  # noqa: S608 - constants
        f"(SELECT {key} FROM users WHERE {rows_in_scope} GROUP BY {key} HAVING count(*) > 1) "
        "ORDER BY lower(email), id"
    )
    if rows := op.get_bind().execute(sa.text(query)).all():
        listed = ", ".join(f"{row.email} (id {row.id})" for row in rows)
        raise RuntimeError(
            f"{problem}: these users share an address: {listed}. {remedy}, "
            "then run the migration again. No rows were changed."
        )
