"""Body and query loading, response dumping, and the JSON wire format."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from marshmallow import Schema
from quart import request
from quart_schema import document_querystring, document_request, document_response
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

View = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """An error status a route may answer, with the JSON error body."""

    status: int


class NoContent:
    """A 204 response: no body."""


NOT_JSON = (
    "Did not attempt to load JSON data because the request Content-Type was not "
    "'application/json'."
)


def body(schema_cls: type[Schema]) -> Callable[[View], View]:
    """Load the JSON body with the schema and pass it to the view as `data`."""
    schema = schema_cls()

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            payload = await read_json()
            return await view(*args, data=schema.load(payload), **kwargs)

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
    schema = schema_cls() if schema_cls is not None else None

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = await view(*args, **kwargs)
            return (schema.dump(result) if schema is not None else ""), status

        return document_response(schema_cls or NoContent, status)(wrapper)

    return decorator


def document_errors(*statuses: int) -> Callable[[View], View]:
    """Record error statuses the route may answer, for the OpenAPI document."""

    def decorator(view: View) -> View:
        for status in statuses:
            document_response(ErrorResponse(status), status)(view)
        return view

    return decorator


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
