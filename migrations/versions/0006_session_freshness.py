"""Sessions remember when they stop counting as freshly authenticated, and how
they were authenticated (password, TOTP, recovery code, passkey).

Both columns are NULL on existing rows: a session of before stays a valid,
stale, password session; nothing is rewritten.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions") as sessions:
        sessions.add_column(sa.Column("fresh_until", sa.DateTime(), nullable=True))
        sessions.add_column(sa.Column("auth_method", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions") as sessions:
        sessions.drop_column("auth_method")
        sessions.drop_column("fresh_until")
