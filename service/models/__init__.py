"""Every model, so that Base.metadata is complete for Alembic."""

from service.models.base import Base, SoftDeleteMixin, TimestampMixin, utcnow
from service.models.counts import PostCount, RowCount
from service.models.factors import MfaToken, RecoveryCode, TotpFactor
from service.models.passkey import Passkey
from service.models.post import Post
from service.models.security_event import SecurityEvent
from service.models.session import (
    NO_SESSION,
    AuthSession,
    RevokedToken,
    SessionRecord,
)
from service.models.user import LIVE, NOT_DELETED, USER_COLUMNS, User, UserRecord

__all__ = [
    "LIVE",
    "NOT_DELETED",
    "NO_SESSION",
    "USER_COLUMNS",
    "AuthSession",
    "Base",
    "MfaToken",
    "Passkey",
    "Post",
    "PostCount",
    "RecoveryCode",
    "RevokedToken",
    "RowCount",
    "SecurityEvent",
    "SessionRecord",
    "SoftDeleteMixin",
    "TimestampMixin",
    "TotpFactor",
    "User",
    "UserRecord",
    "utcnow",
]
