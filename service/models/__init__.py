"""Every model, so that Base.metadata is complete for Alembic."""

from service.models.base import Base, SoftDeleteMixin, TimestampMixin, utcnow
from service.models.post import Post
from service.models.user import User

__all__ = ["Base", "Post", "SoftDeleteMixin", "TimestampMixin", "User", "utcnow"]
