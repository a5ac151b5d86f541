"""Per-user cut-off for session-less (Flask-era) tokens: a Flask-era logout ends
the refresh token of the same login.

A nullable column, added in place (no table rebuild on SQLite, so the row-count
triggers of 0005 stay); the Flask service never reads it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("legacy_tokens_valid_after", sa.DateTime(), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("users", "legacy_tokens_valid_after")
