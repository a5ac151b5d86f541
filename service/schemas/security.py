"""Bodies of the account-security routes: fresh sessions and second factors."""

from __future__ import annotations

from typing import TypedDict

from marshmallow import Schema

from service.schemas.common import Password, example


class Reauthentication(TypedDict):
    password: str


@example({"password": "admin123"})
class FreshSchema(Schema):
    """The account's password again: the session counts as freshly authenticated."""

    password = Password(required=True)
