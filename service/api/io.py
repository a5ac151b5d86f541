"""Body and query loading, response dumping, and the JSON wire format."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from marshmallow import Schema, ValidationError, fields, missing
from marshmallow.decorators import POST_DUMP, PRE_DUMP
from quart import current_app, request
from quart_schema import document_querystring, document_request, document_response
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from service.api.wire_json import fast_json
from service.schemas.common import Timestamp

View = Callable[..., Awaitable[Any]]
# The view's attribute naming the schema @returns dumps its result with.
RETURNS = "returns_schema"
JSON_MIMETYPE = "application/json"


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An error status a route may answer, with the JSON error body."""

    status: int
    # None: the status's usual shape (service/api/openapi.py); else a subclass of it.
    schema: type[Schema] | None = None


class NoContent:
    """A 204 response: no body."""


NOT_JSON = (
    "Did not attempt to load JSON data because the request Content-Type was not "
    "'application/json'."
)


def body(
    schema_cls: type[Schema],
    *,
    invalid: Callable[[ValidationError, Any], Awaitable[ValidationError]] | None = None,
) -> Callable[[View], View]:
    """Load the JSON body with the schema and pass it to the view as `data`.

    `invalid(error, payload)`, when given, may say more about a body the schema
    refused (a service's rule, such as a taken address) before the 400 is raised.
    """
    schema = schema_cls()

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            payload = await read_json()
            try:
                data = schema.load(payload)
            except ValidationError as error:
                if invalid is None:
                    raise
                raise await invalid(error, payload) from None
            return await view(*args, data=data, **kwargs)

        document_request(schema_cls)(wrapper)
        return document_errors(400, 413, 415)(wrapper)

    return decorator


def query(schema_cls: type[Schema]) -> Callable[[View], View]:
    """Load the query string with the schema and pass it to the view as `query_args`."""
    schema = schema_cls()

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            query_args = schema.load(request.args.to_dict())
            return await view(*args, query_args=query_args, **kwargs)

        return document_querystring(schema_cls)(wrapper)

    return decorator


def returns(
    schema_cls: type[Schema] | None, status: int = 200
) -> Callable[[View], View]:
    """Dump what the view returns with the schema; no schema: an empty body."""
    dump = compile_dump(schema_cls()) if schema_cls is not None else None

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = await view(*args, **kwargs)
            if dump is None:
                return "", status
            body = dump(result)
            data = fast_json(body)
            if data is None:  # not orjson's to write: Quart's JSON provider
                return body, status
            return current_app.response_class(
                data, status=status, mimetype=JSON_MIMETYPE
            )

        # Carried up by functools.wraps to the view the url_map holds.
        wrapper.__dict__[RETURNS] = schema_cls
        return document_response(schema_cls or NoContent, status)(wrapper)

    return decorator


def document_errors(
    *statuses: int, schema: type[Schema] | None = None
) -> Callable[[View], View]:
    """Record error statuses the route may answer, for the OpenAPI document;
    `schema` when its body says more than the status's usual shape."""

    def decorator(view: View) -> View:
        for status in statuses:
            document_response(ErrorResponse(status, schema), status)(view)
        return view

    return decorator


def compile_dump(schema: Schema) -> Callable[[Any], Any]:
    """`schema.dump`, planned once: what marshmallow decides per field and per
    object (a page of 20 users: ~290 us) is decided here, at import.

    Only what it plans exactly: plain objects and dicts, the field types the
    output schemas use, no hooks, no renaming, no selection. Anything else is
    dumped by marshmallow itself; tests/api/test_io.py holds the two equal over
    every schema a route returns.
    """
    if not _plannable(schema):
        return schema.dump
    plan = []
    for key, field in schema.dump_fields.items():
        convert = _converter(field)
        attribute = field.attribute or key
        if convert is None or field.data_key is not None or not _plain(attribute):
            return schema.dump
        plan.append((key, attribute, convert, field.dump_default))

    def dump(obj: Any) -> Any:
        as_dict = type(obj) is dict
        if not as_dict and hasattr(obj, "__getitem__"):
            return schema.dump(obj)  # marshmallow reads mappings by key
        out: dict[str, Any] = {}
        for key, attribute, convert, default in plan:
            if as_dict:
                value = obj.get(attribute, _MISSING)
            else:
                value = getattr(obj, attribute, _MISSING)
            if value is _MISSING:
                if default is missing:
                    continue  # marshmallow leaves out what the object lacks
                value = default() if callable(default) else default
            out[key] = None if value is None else convert(value)
        return out

    return dump


def _plannable(schema: Schema) -> bool:
    # marshmallow keeps a schema's decorated hooks here; it has no public view.
    hooks = any(schema._hooks.get(tag) for tag in (PRE_DUMP, POST_DUMP))
    return not (hooks or schema.many or schema.only or schema.exclude)


def _plain(attribute: str) -> bool:
    # A dotted path is walked by marshmallow; a dict's own method names are
    # found by its getattr fallback when the key is missing.
    return "." not in attribute and not hasattr(dict, attribute)


def _converter(field: fields.Field[Any]) -> Callable[[Any], Any] | None:
    if type(field) is Timestamp:
        return _isoformat
    if type(field) in _SCALARS and not getattr(field, "as_string", False):
        return _SCALARS[type(field)]
    if type(field) is fields.Nested and isinstance(field.schema, Schema):
        return compile_dump(field.schema)
    if type(field) is fields.List and type(field.inner) is fields.Nested:
        item = compile_dump(field.inner.schema)
        return lambda items: [item(each) for each in items]
    return None


def _isoformat(value: Any) -> Any:
    return value.isoformat()


def _as_is(value: Any) -> Any:
    return value


_MISSING = object()
_SCALARS: dict[type[Any], Callable[[Any], Any]] = {
    fields.Integer: int,
    fields.String: str,
    fields.Boolean: _as_is,  # marshmallow 4 dumps a boolean's value untouched
}


async def read_json() -> Any:
    """The request's JSON document, with Flask's 415 and 400 answers for bad bodies."""
    if not request.is_json:
        raise UnsupportedMediaType(NOT_JSON)
    raw = await request.get_data(as_text=False)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: deeply nested arrays exhaust the parser's stack.
        raise BadRequest() from None
