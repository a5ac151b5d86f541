"""Field types, the page query and envelopes shared by every schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict, TypeVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

MAX_EMAIL_LENGTH = 255
# Field metadata of a response field the service leaves out of some answers.
SENT_WHEN = "sent_when"
EXAMPLE = "openapi_example"
# A request schema's class attribute: JSON Schema keywords its body also obeys
# (what the route checks beyond the fields, such as one field of two).
BODY_CONSTRAINTS = "openapi_body_constraints"
# The time the examples show.
EXAMPLE_AT = "2026-01-15T09:30:00.123456"

S = TypeVar("S", bound=type[Schema])


def sent_when(condition: str) -> dict[str, str]:
    """Metadata of a response field that only some answers carry, saying which.

    Every other field of a response schema is in every answer, and the OpenAPI
    document calls it required (service/api/openapi.py derives both).
    """
    return {SENT_WHEN: condition}


def example(value: dict[str, Any]) -> Callable[[S], S]:
    """A class decorator: a body or answer of the schema, shown in the OpenAPI
    document (tests/api/test_openapi.py holds it valid against the schema)."""

    def decorator(schema: S) -> S:
        setattr(schema, EXAMPLE, value)
        return schema

    return decorator


def example_of(schema: type[Schema]) -> Any:
    """The schema's own example (not inherited: a subclass says more), or None."""
    return vars(schema).get(EXAMPLE)


def _doc(text: str) -> dict[str, str]:
    return {"description": text}


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
        metadata = {"pattern": self.PATTERN, "description": "UTC, without an offset"}
        super().__init__(metadata=metadata, **kwargs)

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


@example({"status": "ok"})
class StatusSchema(Schema):
    status = fields.String()


class ReplicaReadinessSchema(Schema):
    """One standby: whether it may serve reads now, and why not."""

    name = fields.String()
    ready = fields.Boolean()
    lag_ms = fields.Integer(allow_none=True, metadata=_doc("null when unreachable"))
    reason = fields.String(metadata=sent_when("the standby is not ready"))


@example(
    {
        "status": "ready",
        "replicas": [{"name": "replica-1", "ready": True, "lag_ms": 12}],
    }
)
class ReadinessSchema(StatusSchema):
    """Ready as long as the primary answers; standbys only informative."""

    replicas = fields.List(
        fields.Nested(ReplicaReadinessSchema),
        metadata=sent_when(
            "read replicas are configured (DATABASE_REPLICA_URL) and an operator "
            "asks: with `Authorization: Bearer <METRICS_TOKEN>`, or on the "
            "replica's own address (no proxy forwarded the request)"
        ),
    )


@example({"error": "User with id 42 not found"})
class ErrorSchema(Schema):
    """Every error answer: `error` says what went wrong."""

    error = fields.String()


@example(
    {"error": "Validation failed", "errors": {"email": ["Not a valid email address."]}}
)
class ValidationErrorSchema(ErrorSchema):
    """A body that is not JSON, or not valid."""

    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata=sent_when(
            "the body failed validation: each field's messages (`_schema` for "
            "the body as a whole)"
        ),
    )


@example(
    {"msg": "Missing Authorization Header", "error": "Missing Authorization Header"}
)
class AuthErrorSchema(ErrorSchema):
    """No usable credentials."""

    msg = fields.String(
        metadata=sent_when(
            "the token or the Authorization header is at fault: "
            "flask-jwt-extended's key, the same text as `error`"
        )
    )


@example(
    {
        "msg": "Only non-refresh tokens are allowed",
        "error": "Only non-refresh tokens are allowed",
    }
)
class TokenErrorSchema(ErrorSchema):
    """A malformed token, or the wrong kind (refresh for access or the reverse)."""

    msg = fields.String(metadata=_doc("flask-jwt-extended's key, the same text"))


def page_schema(item_schema: type[Schema], key: str) -> type[Schema]:
    """One page of a list: its items under `key`, and where it is in the list."""
    item = example_of(item_schema)
    page = Schema.from_dict(
        {
            key: fields.List(fields.Nested(item_schema)),
            "page": fields.Integer(),
            "per_page": fields.Integer(metadata=_doc("at most 100")),
            "total": fields.Integer(metadata=_doc("items in the whole list")),
            "pages": fields.Integer(),
        },
        name=f"{item_schema.__name__.removesuffix('Schema')}PageSchema",
    )
    shown = {key: [item], "page": 1, "per_page": 20, "total": 1, "pages": 1}
    return example(shown)(page)
