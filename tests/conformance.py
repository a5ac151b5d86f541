"""Real answers held to the OpenAPI document.

`AnswerLog.install(app)` keeps every JSON answer the app gives; `problems()`
then names each one the document does not describe: a status the operation
does not list (500, a fault, is left to the tests about faults), or a body
that breaks the documented schema, a required field missing above all.
tests/conftest.py installs one on every app a test serves, so the whole
suite's answers are checked; tests/api/test_openapi_answers.py also drives every
operation to its success answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from openapi_schema_validator import OAS31Validator
from quart import Quart, Response, request
from quart.wrappers.response import DataBody

from service import create_app
from service.config import Settings

_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
# Faults are the business of the tests that cause them; the document lists none.
UNLISTED = {500}


@dataclass(frozen=True)
class Answer:
    method: str
    path: str  # the operation's, e.g. /api/v1/users/{user_id}
    status: int
    mimetype: str | None
    body: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status}"


@dataclass
class AnswerLog:
    answers: list[Answer] = field(default_factory=list)

    def install(self, app: Quart) -> None:
        @app.after_request
        async def keep(response: Response) -> Response:
            rule = request.url_rule
            if rule is not None and isinstance(response.response, DataBody):
                self.answers.append(
                    Answer(
                        request.method,
                        _PARAM.sub(r"{\1}", rule.rule),
                        response.status_code,
                        response.mimetype,
                        await response.get_data(as_text=True),
                    )
                )
            return response

    def problems(self) -> list[str]:
        return [problem for answer in self.answers for problem in check(answer)]


def check(answer: Answer) -> list[str]:
    """What the document would have told a client wrongly about this answer."""
    document = openapi_document()
    operation = document["paths"].get(answer.path, {}).get(answer.method.lower())
    if operation is None or answer.status in UNLISTED:
        return []  # a route a test added, not the API's
    response = operation["responses"].get(str(answer.status))
    if response is None:
        return [f"{answer}: the document lists no {answer.status}"]
    media = response.get("content", {}).get("application/json")
    if media is None:
        return [f"{answer}: the document lists no body"] if answer.body else []
    if answer.mimetype != "application/json":
        return [f"{answer}: {answer.mimetype}, not JSON"]
    body = json.loads(answer.body)
    return [
        f"{answer}: {error.message} in {body!r:.300}"
        for error in validator(json.dumps(media["schema"])).iter_errors(body)
    ]


@cache
def openapi_document() -> dict[str, Any]:
    """The document as /openapi.json serves it (it does not depend on settings)."""
    app = create_app(Settings(env="testing"))
    built = app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    document: dict[str, Any] = json.loads(json.dumps(built))  # as JSON: "200" keys
    return document


@cache
def validator(schema: str) -> OAS31Validator:
    return OAS31Validator(
        {**json.loads(schema), "components": openapi_document()["components"]}
    )
