"""Every model, so that Base.metadata is complete for Alembic."""

from service.models.base import Base, SoftDeleteMixin, TimestampMixin, utcnow
from service.models.post import Post
from service.models.session import AuthSession, RevokedToken
from service.models.user import USER_RECORD_TYPES, User, UserRecord

__all__ = [
    "USER_RECORD_TYPES",
    "AuthSession",
    "Base",
    "Post",
    "RevokedToken",
    "SoftDeleteMixin",
    "TimestampMixin",
    "User",
    "UserRecord",
    "utcnow",
]
