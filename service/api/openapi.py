"""/openapi.json and /docs: quart-schema serving a document built from the marshmallow
schemas that validate the requests (quart-schema has no marshmallow support of its own;
its OpenAPIProvider is the extension point)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from quart import Quart
from quart_schema import (
    DataSource,
    HttpSecurityScheme,
    Info,
    OpenAPIProvider,
    QuartSchema,
)
from werkzeug.routing import Rule

from service.api.io import ErrorResponse, NoContent
from service.schemas.common import ErrorSchema

TITLE = "Users, auth and posts API"
VERSION = version("service")  # pyproject.toml's, as installed
ERROR_DESCRIPTIONS = {
    400: "Malformed body or validation failed",
    401: "Not authenticated, token expired or revoked",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Malformed token or wrong token type",
    429: "Too many attempts; see Retry-After",
    503: "Database unavailable",
}


class MarshmallowOpenAPIProvider(OpenAPIProvider):
    _document: dict[str, Any] | None = None

    def schema(self) -> dict[str, Any]:
        # Routes do not change once the app serves: build the document once.
        if self._document is None:
            self._spec = APISpec(
                title=TITLE,
                version=VERSION,
                openapi_version="3.1.0",
                plugins=[MarshmallowPlugin()],
            )
            self._converter = self._spec.plugins[0].converter  # type: ignore[attr-defined]
            document = super().schema()
            components = self._spec.to_dict().get("components", {}).get("schemas", {})
            document["components"]["schemas"].update(components)
            self._document = document
        return self._document

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        if rule._converters:
            for operations in paths.values():
                for operation in operations.values():
                    operation["responses"].setdefault(404, self._error_response(404))
        return paths, components

    def build_request_body(
        self, model: Any, source: DataSource
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        schema = self._converter.resolve_nested_schema(model)
        return {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }, {}

    def build_response_object(
        self, model: Any, headers_model: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if model is NoContent:
            return {"description": "No content"}, {}
        if isinstance(model, ErrorResponse):
            return self._error_response(model.status), {}
        schema = self._converter.resolve_nested_schema(model)
        description = model.__dict__.get("__doc__") or "Success"
        return {"description": description, "content": _json(schema)}, {}

    def build_querystring_parameters(
        self, model: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        parameters: list[dict[str, Any]] = self._converter.schema2parameters(
            model, location="query"
        )
        return parameters, {}

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str:
        return func.__name__

    def _error_response(self, status: int) -> dict[str, Any]:
        schema = self._converter.resolve_nested_schema(ErrorSchema)
        description = ERROR_DESCRIPTIONS.get(status, "Error")
        response: dict[str, Any] = {
            "description": description,
            "content": _json(schema),
        }
        if status == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        return response


def init_app(app: Quart) -> None:
    """Serve /openapi.json; responses stay Quart's own (use_quart_make_response)."""
    QuartSchema(
        app,
        openapi_provider_class=MarshmallowOpenAPIProvider,
        info=Info(title=TITLE, version=VERSION),
        security_schemes={
            "bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT")
        },
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


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}
