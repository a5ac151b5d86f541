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
    clashes = op.get_bind().execute(
        sa.text(
            "SELECT lower(email) AS address, count(*) AS n FROM users "
            "WHERE deleted_at IS NULL GROUP BY lower(email) HAVING count(*) > 1 "
            "ORDER BY 1"
        )
    )
    if rows := clashes.all():
        listed = ", ".join(f"{row.address} ({row.n} accounts)" for row in rows)
        raise RuntimeError(
            "Cannot make email addresses unique regardless of letter case: these live "
            f"users share an address: {listed}. Soft-delete or rename all but one of "
            "each, then run the migration again. No rows were changed."
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
    op.drop_index("ix_users_created_at_id", table_name="users")
    op.drop_index("uq_users_email_lower_live", table_name="users")
    op.drop_index("ix_users_email", table_name="users")
    op.create_index("ix_users_email", "users", ["email"], unique=True)
