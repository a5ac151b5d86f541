"""/openapi.json and /docs: quart-schema serving a document built from the marshmallow
schemas that validate the requests (quart-schema has no marshmallow support of its own;
its OpenAPIProvider is the extension point).

What a typed client may rely on is decided here, once, for every route:
- a response field is required (always sent) unless its schema says when it is
  sent (`sent_when`); `allow_none` makes it nullable; request schemas keep the
  `required` that validation enforces;
- every operation is in its blueprint's tag (a route's own tag wins);
- each error status has one body shape (ERRORS), with an example; a route may
  document a richer one for a status, extending it (`document_errors(schema=)`);
- request bodies and answers show their schema's `@example`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal, cast

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from marshmallow import Schema, fields
from quart import Quart
from quart_schema import (
    DataSource,
    HttpSecurityScheme,
    Info,
    OpenAPIProvider,
    QuartSchema,
    Tag,
)
from quart_schema.openapi import QUART_SCHEMA_TAG_ATTRIBUTE
from werkzeug.routing import Rule

from service.api.guards import ACCESS_SCHEME, REFRESH_SCHEME
from service.api.io import ErrorResponse, NoContent
from service.schemas.common import (
    BODY_CONSTRAINTS,
    SENT_WHEN,
    AuthErrorSchema,
    ErrorSchema,
    TokenErrorSchema,
    ValidationErrorSchema,
    example_of,
)

TITLE = "Users, auth and posts API"
VERSION = version("service")  # pyproject.toml's, as installed
DESCRIPTION = """\
Every path of the API is under `/api/v1`; bodies are JSON.

1. `POST /api/v1/auth/login` with an email and a password answers an \
`access_token` and a `refresh_token`.
2. Send the access token as `Authorization: Bearer <access_token>` (on this page: \
**Authorize**, `bearer`). It lasts 15 minutes by default.
3. When it has run out (401), `POST /api/v1/auth/refresh` with the refresh token \
(**Authorize**, `refresh`) answers a new one.

Errors are JSON too: `{"error": "..."}`. A body that fails validation adds `errors`, \
the messages per field; token errors add `msg`, flask-jwt-extended's key.
"""
TAGS: list[Tag | dict[str, Any]] = [
    Tag(
        name="authentication",
        description="Log in, refresh the access token, log out; change or reset "
        "a password.",
    ),
    Tag(
        name="sessions",
        description="Each login is a session: list your live ones, end any of them.",
    ),
    Tag(
        name="second factors",
        description="TOTP and recovery codes: enrol, confirm, turn off; the "
        "account's security state. Changes need a fresh session (POST /auth/fresh).",
    ),
    Tag(
        name="passkeys",
        description="Passkeys (WebAuthn): register them, list, rename and delete "
        "them; sign in with one alone, or as the second factor after a password.",
    ),
    Tag(
        name="users",
        description="Register, read and change accounts; admins deactivate, "
        "delete and restore them.",
    ),
    Tag(name="posts", description="Read, publish, change and delete posts."),
    Tag(
        name="security",
        description="An account's security events (logins, password, address and "
        "factor changes, ended sessions); admins read anyone's.",
    ),
    Tag(
        name="operations",
        description="Probes for load balancers and orchestrators; no token.",
    ),
]
# quart-schema's HttpSecurityScheme has no description: schema() adds these.
SCHEME_DESCRIPTIONS = {
    ACCESS_SCHEME: (
        "An access token: `access_token` from `POST /api/v1/auth/login` "
        "(or from `POST /api/v1/auth/refresh` once it has run out), sent as "
        "`Authorization: Bearer <token>`. It lasts 15 minutes by default "
        "(JWT_ACCESS_TOKEN_EXPIRES). Every protected route takes it, except "
        "those that take the refresh token."
    ),
    REFRESH_SCHEME: (
        "A refresh token: `refresh_token` from `POST /api/v1/auth/login`, "
        "sent as `Authorization: Bearer <token>`, for a new access token. It lasts "
        "30 days by default (JWT_REFRESH_TOKEN_EXPIRES) and ends with its session; "
        "with rotation on, each refresh answers a new one."
    ),
}


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    schema: type[Schema]
    description: str
    example: dict[str, Any]
    retry_after: bool = False


# One shape per status: what service/api/error_handlers.py answers for it.
ERRORS = {
    400: ErrorAnswer(
        ValidationErrorSchema,
        "The body is not JSON, or it fails validation",
        example_of(ValidationErrorSchema),
    ),
    401: ErrorAnswer(
        AuthErrorSchema,
        "Not authenticated: no token, an expired or revoked one, or wrong credentials",
        example_of(AuthErrorSchema),
    ),
    403: ErrorAnswer(ErrorSchema, "Not allowed", {"error": "Not authorized"}),
    404: ErrorAnswer(ErrorSchema, "Not found", example_of(ErrorSchema)),
    409: ErrorAnswer(
        ErrorSchema, "Conflict", {"error": "Email already registered by another user"}
    ),
    413: ErrorAnswer(
        ErrorSchema,
        "Body too large",
        {"error": "The data value transmitted exceeds the capacity limit."},
    ),
    415: ErrorAnswer(
        ErrorSchema,
        "The body is not `application/json`",
        {
            "error": "Did not attempt to load JSON data because the request "
            "Content-Type was not 'application/json'."
        },
    ),
    422: ErrorAnswer(
        TokenErrorSchema,
        "A malformed token, or the wrong kind of token",
        example_of(TokenErrorSchema),
    ),
    429: ErrorAnswer(
        ErrorSchema,
        "Too many attempts; try again after Retry-After seconds",
        {"error": "Too many requests; try again later"},
        retry_after=True,
    ),
    503: ErrorAnswer(
        ErrorSchema,
        "The database is unavailable or the service is busy; try again later",
        {"error": "Service unavailable"},
        retry_after=True,
    ),
}
# Every route of the /api/v1 blueprint reads the database (the token check, if
# nothing else): each may answer 503.
API_ENDPOINTS = "api."

Direction = Literal["request", "response"]


class DocumentConverter(OpenAPIConverter):
    """apispec's converter, told which way each schema goes.

    A response schema's fields are required unless they say when they are sent;
    a request schema's are required as validation enforces. A schema goes one
    way only: the same component cannot say both.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.direction: Direction = "request"
        self.directions: dict[type[Schema], Direction] = {}
        self.add_attribute_function(_sent_when_description)  # type: ignore[no-untyped-call]

    def resolve(self, schema: type[Schema], direction: Direction) -> dict[str, Any]:
        before, self.direction = self.direction, direction
        try:
            resolved: dict[str, Any] = self.resolve_nested_schema(schema)
        finally:
            self.direction = before
        return resolved

    def resolve_nested_schema(self, schema: Any) -> Any:
        # Nested schemas come through here too, while their parent's direction holds.
        schema_cls = resolve_schema_cls(schema)
        if isinstance(schema_cls, list):
            raise TypeError(f"{schema!r}: one schema per field")
        if self.directions.setdefault(schema_cls, self.direction) != self.direction:
            raise TypeError(
                f"{schema_cls.__name__} is both a request and a response schema: "
                "give each direction its own"
            )
        return super().resolve_nested_schema(schema)  # type: ignore[no-untyped-call]

    def schema2jsonschema(self, schema: Any) -> dict[str, Any]:
        # What a schema's own check enforces beyond its fields (one of two
        # fields, say), for clients and schemathesis to know (schemas/common.py).
        jsonschema: dict[str, Any] = super().schema2jsonschema(schema)  # type: ignore[no-untyped-call]
        jsonschema.update(getattr(schema, BODY_CONSTRAINTS, {}))
        return jsonschema

    def fields2jsonschema(
        self, declared: dict[str, fields.Field[Any]], *, partial: Any = None
    ) -> dict[str, Any]:
        jsonschema: dict[str, Any] = super().fields2jsonschema(  # type: ignore[no-untyped-call]
            declared, partial=partial
        )
        if self.direction == "response":
            jsonschema.pop("required", None)
            sent = sorted(
                field.data_key or name
                for name, field in declared.items()
                if not field.load_only and SENT_WHEN not in field.metadata
            )
            if sent:
                jsonschema["required"] = sent
        return jsonschema


def _sent_when_description(
    self: OpenAPIConverter, field: fields.Field[Any], ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    condition = field.metadata.get(SENT_WHEN)
    if condition is None:
        return {}
    sent = f"Sent only when {condition}."
    described = ret.get("description")
    return {"description": f"{described}. {sent}" if described else sent}


class DocumentPlugin(MarshmallowPlugin):
    Converter = DocumentConverter


class MarshmallowOpenAPIProvider(OpenAPIProvider):
    _document: dict[str, Any] | None = None

    def schema(self) -> dict[str, Any]:
        # Routes do not change once the app serves: build the document once.
        if self._document is None:
            plugin = DocumentPlugin()
            self._spec = APISpec(
                title=TITLE, version=VERSION, openapi_version="3.1.0", plugins=[plugin]
            )
            self._converter = cast(DocumentConverter, plugin.converter)
            document = super().schema()
            schemes = document["components"]["securitySchemes"]
            for name, description in SCHEME_DESCRIPTIONS.items():
                schemes[name]["description"] = description
            components = self._spec.to_dict().get("components", {}).get("schemas", {})
            document["components"]["schemas"].update(components)
            _name_refresh_routes(document)
            self._document = document
        return self._document

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        own_tags = getattr(
            self._app.view_functions[rule.endpoint], QUART_SCHEMA_TAG_ATTRIBUTE, None
        )
        for operations in paths.values():
            for operation in operations.values():
                responses = operation["responses"]
                if rule._converters:
                    responses.setdefault(404, self._error_response(404))
                if rule.endpoint.startswith(API_ENDPOINTS):
                    responses.setdefault(503, self._error_response(503))
                operation["responses"] = dict(sorted(responses.items()))
                if own_tags:
                    operation["tags"] = sorted(own_tags)
                if not operation.get("description"):
                    operation.pop("description", None)  # a one-line docstring
        return paths, components

    def build_request_body(
        self, model: Any, source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        schema = self._converter.resolve(model, "request")
        return {"required": True, "content": _json(schema, example_of(model))}, {}

    def build_response_object(
        self, model: Any, headers_model: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is NoContent:
            return {"description": "No content"}, {}
        if isinstance(model, ErrorResponse):
            return self._error_response(model.status, model.schema), {}
        schema = self._converter.resolve(model, "response")
        description = model.__dict__.get("__doc__") or "Success"
        return {
            "description": description,
            "content": _json(schema, example_of(model)),
        }, {}

    def build_querystring_parameters(
        self, model: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        parameters: list[dict[str, Any]] = self._converter.schema2parameters(
            model, location="query"
        )
        return parameters, {}

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str:
        return func.__name__

    def _error_response(
        self, status: int, shape: type[Schema] | None = None
    ) -> dict[str, Any]:
        answer = ERRORS[status]
        example = answer.example
        if shape is None:
            shape = answer.schema
        elif issubclass(shape, answer.schema):
            example = example_of(shape)
        else:
            raise TypeError(
                f"{shape.__name__} for {status} must extend {answer.schema.__name__}"
            )
        schema = self._converter.resolve(shape, "response")
        response: dict[str, Any] = {
            "description": answer.description,
            "content": _json(schema, example),
        }
        if answer.retry_after:
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again",
                    "schema": {"type": "integer"},
                }
            }
        return response


def init_app(app: Quart) -> None:
    """Serve /openapi.json; responses stay Quart's own (use_quart_make_response)."""
    QuartSchema(
        app,
        openapi_provider_class=MarshmallowOpenAPIProvider,
        info=Info(title=TITLE, version=VERSION, description=DESCRIPTION),
        security_schemes={
            name: HttpSecurityScheme(scheme="bearer", bearer_format="JWT")
            for name in SCHEME_DESCRIPTIONS
        },
        tags=list(TAGS),
        swagger_ui_path=None,
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    use_quart_make_response(app)


def use_quart_make_response(app: Quart) -> None:
    """Build every response with Quart's own make_response, not quart-schema's.

    quart-schema 0.25's QuartSchema(app) sets `app.make_response` on the
    instance, a wrapper that turns pydantic/msgspec models into JSON; views
    here return dicts and marshmallow dumps, and the wrapper cost ~80 us of
    every request's CPU (measured in-process). tests/test_app.py pins that
    behaviour of the installed quart-schema.
    """
    if "make_response" in vars(app):
        del app.make_response


def _json(schema: Any, example: Any) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _name_refresh_routes(document: dict[str, Any]) -> None:
    """The refresh scheme's description ends with the routes that take it."""
    takers = [
        f"`{method.upper()} {path}`"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if {REFRESH_SCHEME: []} in operation.get("security", [])
    ]
    scheme = document["components"]["securitySchemes"][REFRESH_SCHEME]
    scheme["description"] += f" Taken by: {', '.join(takers)}."
