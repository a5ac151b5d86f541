"""Field types, the page query and envelopes shared by every schema."""

from __future__ import annotations

from typing import Any, TypedDict

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

MAX_EMAIL_LENGTH = 255


def _reject_unstorable(value: str) -> None:
    # PostgreSQL refuses NUL in text and UTF-8 cannot carry lone surrogates; both
    # reached the database in the Flask service and came back as 500s.
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.")
    _reject_unencodable(value)


def _reject_unencodable(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Must be valid Unicode text.") from None


class _CheckedString(fields.String):
    """A string that must pass its class's `check` once it is loaded."""

    check = staticmethod(_reject_unstorable)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        self.check(text)
        return text


class Text(_CheckedString):
    """A string the database can store."""


class Password(_CheckedString):
    """A password to check: any text UTF-8 can carry, NUL included."""

    check = staticmethod(_reject_unencodable)


class Email(fields.Email):
    """An email address that fits the `VARCHAR(255)` column."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validators.insert(0, validate.Length(max=MAX_EMAIL_LENGTH))

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        if isinstance(value, str):
            _reject_unstorable(value)
        email: str = super()._deserialize(value, attr, data, **kwargs)
        return email


class Timestamp(fields.String):
    """Naive UTC in ISO 8601 without an offset, as the Flask service wrote it.

    Documented as a string with a pattern, not OpenAPI's `date-time`, which
    requires an offset: the document says what is really sent.
    """

    PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?$"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"pattern": self.PATTERN}, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else value.isoformat()


class LenientInt(fields.Integer):
    """An integer query argument that falls back to its default, as `type=int` did."""

    def __init__(self, fallback: int, **kwargs: Any) -> None:
        super().__init__(load_default=fallback, **kwargs)
        self.fallback = fallback

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> int:
        try:
            number: int = super()._deserialize(value, attr, data, **kwargs)
        except ValidationError:
            return self.fallback
        return number


class PageQuery(TypedDict):
    page: int
    per_page: int


class PageQuerySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    page = LenientInt(1)
    per_page = LenientInt(20)


class StatusSchema(Schema):
    status = fields.String(required=True)


class ReplicaReadinessSchema(Schema):
    """One standby: whether it may serve reads now, and why not."""

    name = fields.String(required=True)
    ready = fields.Boolean(required=True)
    lag_ms = fields.Integer(allow_none=True)
    reason = fields.String()


class ReadinessSchema(StatusSchema):
    """Ready as long as the primary answers; standbys only informative."""

    replicas = fields.List(fields.Nested(ReplicaReadinessSchema))


class ErrorSchema(Schema):
    error = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    msg = fields.String()


def page_schema(item_schema: type[Schema], key: str) -> type[Schema]:
    return Schema.from_dict(
        {
            key: fields.List(fields.Nested(item_schema)),
            "page": fields.Integer(),
            "per_page": fields.Integer(),
            "total": fields.Integer(),
            "pages": fields.Integer(),
        },
        name=f"{item_schema.__name__.removesuffix('Schema')}PageSchema",
    )
