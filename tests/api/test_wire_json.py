"""orjson's fast path writes exactly what the Flask service's jsonify writes."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from marshmallow import Schema, fields
from quart import Quart

import service.schemas.auth
import service.schemas.common
import service.schemas.post
import service.schemas.user
from service.api.wire_json import fast_json

ASCII = st.text(st.characters(max_codepoint=0x7E))
# Mostly ASCII (the fast path), some of all of Unicode and lone surrogates.
TEXT = (
    ASCII
    | st.text(st.characters(max_codepoint=0x7F))
    | st.text(st.characters(exclude_categories=()))
)
INTEGERS = st.integers(-(2**63), 2**64) | st.integers()


def documents(
    text: st.SearchStrategy[str], integers: st.SearchStrategy[int]
) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | integers | text,
        lambda children: (
            st.lists(children, max_size=6) | st.dictionaries(text, children, max_size=6)
        ),
        max_leaves=40,
    )


# The Flask service's provider, as Quart (on Flask's) configures it by default.
FLASK_PROVIDER = Quart(__name__).json


def flask_bytes(document: Any) -> bytes:
    return f"{FLASK_PROVIDER.dumps(document, separators=(',', ':'))}\n".encode()


@hypothesis_settings(max_examples=400, deadline=None)
@given(documents(TEXT, INTEGERS))
def test_fast_json_is_byte_equal_to_flask_jsonify_or_declines(document: Any) -> None:
    written = fast_json(document)

    assert written is None or written == flask_bytes(document)


@hypothesis_settings(max_examples=200, deadline=None)
@given(documents(ASCII, st.integers(-(2**63), 2**63 - 1)))
def test_fast_json_writes_every_ascii_document_without_delete(document: Any) -> None:
    assert fast_json(document) == flask_bytes(document)


def test_fast_json_declines_delete_non_ascii_and_huge_ints() -> None:
    assert fast_json({"a": "x\x7f"}) is None
    assert fast_json({"a": "Zoë"}) is None
    assert fast_json([2**64]) is None
    assert fast_json(["\ud800"]) is None


def test_fast_json_of_a_page_sorts_keys_compactly_with_a_newline() -> None:
    page = {"users": [{"id": 2, "email": "a@b.c", "x": '\t"\\/'}], "total": 1}

    assert fast_json(page) == (
        b'{"total":1,"users":[{"email":"a@b.c","id":2,"x":"\\t\\"\\\\/"}]}\n'
    )


def test_no_output_schema_has_a_float_field() -> None:
    # Planned dumps go to fast_json, which is exact only without floats.
    modules = (
        service.schemas.auth,
        service.schemas.common,
        service.schemas.post,
        service.schemas.user,
    )
    schemas = [
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Schema)
    ]
    floats = [
        f"{schema.__name__}.{name}"
        for schema in schemas
        for name, field in schema._declared_fields.items()
        if isinstance(field, fields.Float | fields.Decimal)
    ]

    assert len(schemas) > 10
    assert floats == []
