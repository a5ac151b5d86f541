"""Post bodies, query strings and the Post resource."""

from __future__ import annotations

from typing import TypedDict

from marshmallow import Schema, fields, validate

from service.schemas.common import EXAMPLE_AT, Text, Timestamp, example, page_schema

TITLE = validate.Length(min=1, max=200)
# Bounds what a page holds: 100 posts of at most 20,000 characters each stay under
# 12 MiB of JSON even if every character needed a six-byte escape.
POST_MAX_LENGTH = 20_000
# Two validators: an empty body keeps the Flask service's own message.
CONTENT = [validate.Length(min=1), validate.Length(max=POST_MAX_LENGTH)]


AUTHOR_EXAMPLE = {"id": 42, "full_name": "Ada Lovelace"}
TITLE_EXAMPLE = "Notes on the Analytical Engine"
CONTENT_EXAMPLE = "It might act upon other things besides number."


@example(AUTHOR_EXAMPLE)
class AuthorSchema(Schema):
    id = fields.Integer()
    full_name = fields.String()


@example(
    {
        "id": 7,
        "title": TITLE_EXAMPLE,
        "content": CONTENT_EXAMPLE,
        "author_id": 42,
        "author": AUTHOR_EXAMPLE,
        "created_at": EXAMPLE_AT,
        "updated_at": EXAMPLE_AT,
    }
)
class PostSchema(Schema):
    id = fields.Integer()
    title = fields.String()
    content = fields.String()
    author_id = fields.Integer()
    author = fields.Nested(AuthorSchema)
    created_at = Timestamp()
    updated_at = Timestamp()


class NewPost(TypedDict):
    title: str
    content: str


@example({"title": TITLE_EXAMPLE, "content": CONTENT_EXAMPLE})
class PostCreateSchema(Schema):
    title = Text(required=True, validate=TITLE)
    content = Text(required=True, validate=CONTENT)


class PostChanges(TypedDict, total=False):
    title: str
    content: str


@example({"title": "Notes on the Engine"})
class PostUpdateSchema(Schema):
    title = Text(validate=TITLE)
    content = Text(validate=CONTENT)


PostPageSchema = page_schema(PostSchema, "posts")
