"""Body and query loading, response dumping, and the JSON wire format."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from marshmallow import Schema
from quart import request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

View = Callable[..., Awaitable[Any]]

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

        wrapper.__dict__.setdefault("_api", {})["body"] = schema_cls
        return wrapper

    return decorator


def query(schema_cls: type[Schema]) -> Callable[[View], View]:
    """Load the query string with the schema and pass it to the view as `query_args`."""
    schema = schema_cls()

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            query_args = schema.load(request.args.to_dict())
            return await view(*args, query_args=query_args, **kwargs)

        wrapper.__dict__.setdefault("_api", {})["query"] = schema_cls
        return wrapper

    return decorator


def returns(schema_cls: type[Schema], status: int = 200) -> Callable[[View], View]:
    """Dump what the view returns with the schema."""
    schema = schema_cls()

    def decorator(view: View) -> View:
        @wraps(view)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return schema.dump(await view(*args, **kwargs)), status

        wrapper.__dict__.setdefault("_api", {})["returns"] = (schema_cls, status)
        return wrapper

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
