"""Second factors: TOTP, recovery codes, and logins waiting for their factor.

New tables only: a user with none of their rows logs in as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "totp_factors",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="totp_factors_user_id_fkey"
        ),
        sa.PrimaryKeyConstraint("user_id", name="totp_factors_pkey"),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="recovery_codes_user_id_fkey"
        ),
        sa.PrimaryKeyConstraint("id", name="recovery_codes_pkey"),
    )
    op.create_index("ix_recovery_codes_user_id", "recovery_codes", ["user_id"])
    op.create_table(
        "mfa_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("password_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="mfa_tokens_user_id_fkey"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="mfa_tokens_pkey"),
    )
    op.create_index("ix_mfa_tokens_user_id", "mfa_tokens", ["user_id"])
    op.create_index("ix_mfa_tokens_expires_at", "mfa_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_mfa_tokens_expires_at", table_name="mfa_tokens")
    op.drop_index("ix_mfa_tokens_user_id", table_name="mfa_tokens")
    op.drop_table("mfa_tokens")
    op.drop_index("ix_recovery_codes_user_id", table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_table("totp_factors")
