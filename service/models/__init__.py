"""Every model, so that Base.metadata is complete for Alembic."""

from service.models.base import Base, SoftDeleteMixin, TimestampMixin, utcnow
from service.models.counts import PostCount, RowCount
from service.models.post import Post
from service.models.security_event import SecurityEvent
from service.models.session import AuthSession, RevokedToken
from service.models.user import LIVE, NOT_DELETED, USER_COLUMNS, User, UserRecord

__all__ = [
    "LIVE",
    "NOT_DELETED",
    "USER_COLUMNS",
    "AuthSession",
    "Base",
    "Post",
    "PostCount",
    "RevokedToken",
    "RowCount",
    "SecurityEvent",
    "SoftDeleteMixin",
    "TimestampMixin",
    "User",
    "UserRecord",
    "utcnow",
]
