"""/openapi.json and /docs, and the policy every route must meet in the document.

The policy tests walk `app.url_map`, so a route added without documentation,
security, a tag, examples, error shapes or a response schema fails here, not in
a client's integration. What the document promises about fields (required means
always sent, nullable, request `required` as validation enforces it) is checked
against the marshmallow schemas here and against real answers in
tests/api/test_openapi_answers.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from marshmallow import Schema, ValidationError, fields
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_schema.openapi import QUART_SCHEMA_HIDDEN_ATTRIBUTE
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE
from sqlalchemy.ext.asyncio import AsyncSession

from service import create_app
from service.api.guards import ACCESS_SCHEME, REFRESH_SCHEME
from service.api.io import RETURNS, View, body, document_errors, returns
from service.api.openapi import ERRORS, MarshmallowOpenAPIProvider
from service.config import Settings
from service.models import User
from service.schemas.common import SENT_WHEN, AuthErrorSchema, example, example_of
from service.schemas.user import UserSchema
from tests.factories import PASSWORD, login_headers, login_tokens, make_user
from tests.support import MISSING_HEADER, PUBLIC_OPERATIONS, bearer

# quart-schema's own routes and the /docs page with its assets, not part of the API.
UNDOCUMENTED_ENDPOINTS = {
    "openapi",
    "static",
    "docs_page.docs",
    "docs_page.start_script",
    "docs_page.asset",
}
# Operational routes hidden from the document on purpose (quart-schema's @hide).
HIDDEN_RULES = {"/metrics"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
BEARER: list[dict[str, list[str]]] = [{ACCESS_SCHEME: []}]
REFRESH: list[dict[str, list[str]]] = [{REFRESH_SCHEME: []}]
ERROR_REF = {"$ref": "#/components/schemas/Error"}
ONLY_ACCESS = "Only non-refresh tokens are allowed"
_PARAM = re.compile(r"<(?:(?P<converter>[^:<>]+):)?(?P<name>[^<>]+)>")


@dataclass(frozen=True)
class Route:
    method: str
    rule: str

    @property
    def path(self) -> str:
        """The OpenAPI path: `<int:user_id>` becomes `{user_id}`."""
        return _PARAM.sub(r"{\g<name>}", self.rule)

    @property
    def sample_url(self) -> str:
        def fill(match: re.Match[str]) -> str:
            return "1" if match["converter"] == "int" else "x"

        return _PARAM.sub(fill, self.rule)

    @property
    def has_path_parameters(self) -> bool:
        return _PARAM.search(self.rule) is not None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def is_hidden(app: Quart, endpoint: str) -> bool:
    return bool(
        getattr(app.view_functions[endpoint], QUART_SCHEMA_HIDDEN_ATTRIBUTE, False)
    )


def routes(app: Quart) -> list[Route]:
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS or is_hidden(app, rule.endpoint):
            continue
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            found.append(Route(method, rule.rule))
    return sorted(found, key=str)


def operation(document: dict[str, Any], route: Route) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][route.path][route.method.lower()]
    return found


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in ("get", "put", "post", "patch", "delete")
    ]


@pytest.fixture
async def document(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body


@pytest.fixture
async def protected(app: Quart, client: Client) -> set[Route]:
    """Routes that answer a request without a token with the missing-header 401."""
    found = set()
    for route in routes(app):
        response = await client.open(route.sample_url, method=route.method, json={})
        if response.status_code == 401 and await response.get_json() == MISSING_HEADER:
            found.add(route)
    return found


def ref(schema_cls: type[Schema]) -> dict[str, str]:
    name = schema_cls.__name__.removesuffix("Schema")
    return {"$ref": f"#/components/schemas/{name}"}


def properties_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = document["components"]["schemas"][name]["properties"]
    return properties


def media_types(op: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The request body's and each answer's JSON media type, named."""
    found = []
    if "requestBody" in op:
        found.append(("request", op["requestBody"]["content"]["application/json"]))
    for status, response in op["responses"].items():
        if "application/json" in response.get("content", {}):
            found.append((status, response["content"]["application/json"]))
    return found


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.removeprefix("#/components/schemas/")
    resolved: dict[str, Any] = document["components"]["schemas"][name]
    return resolved


def violations(
    document: dict[str, Any], schema: dict[str, Any], instance: Any
) -> list[str]:
    """Where a response body breaks a schema of the document (refs resolved)."""
    root = {**schema, "components": document["components"]}
    return [error.message for error in OAS31Validator(root).iter_errors(instance)]


# --- the document and the page ------------------------------------------------


async def test_openapi_json_is_openapi_3_1(client: Client) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert (await response.get_json())["openapi"].startswith("3.1.")


async def test_openapi_json_is_valid_per_openapi_spec_validator(
    document: dict[str, Any],
) -> None:
    errors = [
        error.message for error in OpenAPIV31SpecValidator(document).iter_errors()
    ]

    assert errors == []


async def test_openapi_json_needs_no_token(client: Client) -> None:
    response = await client.get(
        "/openapi.json", headers={"Authorization": "Bearer garbage"}
    )

    assert response.status_code == 200


async def test_docs_serves_html_page_for_the_document(client: Client) -> None:
    response = await client.get("/docs")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    (script,) = re.findall(r'src="([^"]*/start\.js)"', await response.get_data(True))
    start = await client.get(script)
    assert 'url: "/openapi.json"' in await start.get_data(as_text=True)


async def test_openapi_info_has_title_and_version(document: dict[str, Any]) -> None:
    assert document["info"]["title"]
    assert document["info"]["version"]


async def test_security_schemes_say_how_to_get_each_token(
    document: dict[str, Any],
) -> None:
    schemes = document["components"]["securitySchemes"]
    takes_refresh = [
        f"`{method} {path}`"
        for method, path, op in operations(document)
        if op.get("security") == REFRESH
    ]

    assert set(schemes) == {ACCESS_SCHEME, REFRESH_SCHEME}
    for scheme in schemes.values():
        assert {k: scheme[k] for k in ("type", "scheme", "bearerFormat")} == {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
        }
        assert "`POST /api/v1/auth/login`" in scheme["description"]
    assert takes_refresh == ["`POST /api/v1/auth/refresh`"]
    assert schemes[REFRESH_SCHEME]["description"].endswith(
        f"Taken by: {', '.join(takes_refresh)}."
    )
    assert "**Authorize**" in document["info"]["description"]


# --- policy: every route in the document ---------------------------------------


async def test_every_route_is_documented_with_a_summary(
    app: Quart, document: dict[str, Any]
) -> None:
    missing = [
        str(route)
        for route in routes(app)
        if route.method.lower() not in document["paths"].get(route.path, {})
    ]
    unsummarised = [
        str(route)
        for route in routes(app)
        if str(route) not in missing and not operation(document, route).get("summary")
    ]

    assert missing == []
    assert unsummarised == []


async def test_only_operational_routes_are_hidden(app: Quart) -> None:
    # @hide must not become a way around the policy below.
    hidden = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in UNDOCUMENTED_ENDPOINTS and is_hidden(app, rule.endpoint)
    }

    assert hidden <= HIDDEN_RULES


async def test_every_documented_operation_is_a_route(
    app: Quart, document: dict[str, Any]
) -> None:
    served = {(r.method, r.path) for r in routes(app)}

    phantom = [
        f"{method} {path}"
        for method, path, _op in operations(document)
        if (method, path) not in served
    ]

    assert phantom == []


async def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _m, _p, op in operations(document)]

    assert None not in ids
    assert len(ids) == len(set(ids))


async def test_routes_probed_for_protection_found_some(protected: set[Route]) -> None:
    # Guards the probe itself: an app that answers 401 nowhere would make the
    # security tests below vacuous.
    assert {str(r) for r in protected} >= {
        "GET /api/v1/users/me",
        "POST /api/v1/posts",
        "POST /api/v1/users/{user_id}/restore",
        "POST /api/v1/auth/refresh",
    }


async def test_every_protected_route_declares_the_token_it_takes(
    client: Client,
    document: dict[str, Any],
    protected: set[Route],
    session: AsyncSession,
    settings: Settings,
    user: User,
) -> None:
    # A refresh token is refused before anything runs where an access token is
    # wanted, and taken where the refresh scheme is declared.
    refresh_token = (await login_tokens(session, settings, user)).refresh_token
    wrong = []
    for route in sorted(protected, key=str):
        response = await client.open(
            route.sample_url,
            method=route.method,
            headers=bearer(refresh_token),
            json={},
        )
        takes_access = (await response.get_json() or {}).get("msg") == ONLY_ACCESS
        declared = operation(document, route).get("security")
        if declared != (BEARER if takes_access else REFRESH):
            wrong.append(f"{route}: {declared}")

    assert wrong == []


async def test_every_operation_declaring_security_answers_401_without_token(
    app: Quart, document: dict[str, Any], protected: set[Route]
) -> None:
    declared = {
        route for route in routes(app) if operation(document, route).get("security")
    }

    assert sorted(str(r) for r in declared - protected) == []


async def test_public_routes_declare_no_security(
    app: Quart, document: dict[str, Any], protected: set[Route]
) -> None:
    public = {str(r) for r in routes(app) if r not in protected}

    assert public == set(PUBLIC_OPERATIONS)
    for route in routes(app):
        if route not in protected:
            assert operation(document, route).get("security", []) == [], route


async def test_every_protected_route_documents_401_and_422(
    document: dict[str, Any], protected: set[Route]
) -> None:
    undocumented = sorted(
        f"{route}: {status}"
        for route in protected
        for status in ("401", "422")
        if status not in operation(document, route)["responses"]
    )

    assert undocumented == []


async def test_every_operation_has_one_success_response_with_schema_unless_204(
    document: dict[str, Any],
) -> None:
    problems = []
    for method, path, op in operations(document):
        successes = {k: v for k, v in op["responses"].items() if k.startswith("2")}
        if len(successes) != 1:
            problems.append(f"{method} {path}: success responses {sorted(successes)}")
            continue
        [(status, response)] = successes.items()
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if status == "204" and "content" in response:
            problems.append(f"{method} {path}: 204 with content")
        if status != "204" and not schema:
            problems.append(f"{method} {path}: {status} without a JSON schema")

    assert problems == []


async def test_every_error_response_has_its_status_shape(
    document: dict[str, Any],
) -> None:
    # The status's shape (ERRORS), or one that extends it: every field it has,
    # required where it is required.
    problems = []
    for method, path, op in operations(document):
        for status, response in op["responses"].items():
            if status[0] not in "45":
                continue
            expected = ERRORS.get(int(status))
            media = response.get("content", {}).get("application/json", {})
            if expected is None:
                problems.append(f"{method} {path}: {status} has no shape in ERRORS")
                continue
            base = resolve(document, ref(expected.schema))
            shape = resolve(document, media.get("schema", {}))
            if not (
                set(shape.get("properties", {})) >= set(base["properties"])
                and set(shape.get("required", [])) >= set(base["required"])
            ):
                problems.append(f"{method} {path}: {status} {media.get('schema')}")

    assert problems == []


async def test_every_error_shape_is_error_with_more(document: dict[str, Any]) -> None:
    # A client may read `error` from any error answer.
    for answer in ERRORS.values():
        component = resolve(document, ref(answer.schema))
        assert "error" in component["required"], answer.schema


async def test_every_api_operation_documents_503_and_limits_retry_after(
    document: dict[str, Any],
) -> None:
    problems = []
    for method, path, op in operations(document):
        if path.startswith("/api/") and "503" not in op["responses"]:
            problems.append(f"{method} {path}: no 503")
        for status in ("429", "503"):
            if status in op["responses"]:
                headers = op["responses"][status].get("headers", {})
                if "Retry-After" not in headers:
                    problems.append(f"{method} {path}: {status} without Retry-After")

    assert problems == []


# --- policy: what every operation tells a client ---------------------------------


async def test_every_operation_has_one_declared_tag(document: dict[str, Any]) -> None:
    declared = {tag["name"]: tag.get("description") for tag in document["tags"]}
    problems = [
        f"{method} {path}: {op.get('tags')}"
        for method, path, op in operations(document)
        if len(op.get("tags", [])) != 1 or op["tags"][0] not in declared
    ]
    used = {op["tags"][0] for _m, _p, op in operations(document) if op.get("tags")}

    assert problems == []
    assert all(declared.values()), "every tag has a description"
    assert set(declared) == used
    assert list(declared) == [
        "authentication",
        "sessions",
        "second factors",
        "passkeys",
        "users",
        "posts",
        "security",
        "operations",
    ]


@pytest.mark.parametrize(
    ("method", "path", "tag"),
    [
        ("POST", "/api/v1/auth/login", "authentication"),
        ("GET", "/api/v1/auth/sessions", "sessions"),
        ("DELETE", "/api/v1/auth/sessions/{session_id}", "sessions"),
        ("GET", "/api/v1/users/{user_id}/posts", "users"),
        ("PATCH", "/api/v1/posts/{post_id}", "posts"),
        ("GET", "/readyz", "operations"),
    ],
)
async def test_operations_are_tagged_by_resource(
    document: dict[str, Any], method: str, path: str, tag: str
) -> None:
    assert document["paths"][path][method.lower()]["tags"] == [tag]


async def test_every_body_and_answer_shows_an_example(
    document: dict[str, Any],
) -> None:
    missing = [
        f"{method} {path}: {where}"
        for method, path, op in operations(document)
        for where, media in media_types(op)
        if "example" not in media
    ]

    assert missing == []


async def test_every_example_is_valid_against_its_schema(
    document: dict[str, Any],
) -> None:
    invalid = [
        f"{method} {path}: {where}: {problem}"
        for method, path, op in operations(document)
        for where, media in media_types(op)
        if "example" in media
        for problem in violations(document, media["schema"], media["example"])
    ]

    assert invalid == []


async def test_every_request_example_loads_with_the_route_schema(app: Quart) -> None:
    # The marshmallow schema that validates the route is the judge, not the
    # document: an example it would refuse fails here.
    refused = {}
    for rule in app.url_map.iter_rules():
        request = getattr(
            app.view_functions[rule.endpoint], QUART_SCHEMA_REQUEST_ATTRIBUTE, None
        )
        if request is None:
            continue
        schema_cls = request[0]
        try:
            schema_cls().load(example_of(schema_cls))
        except (ValidationError, TypeError) as error:
            refused[rule.rule] = str(error)

    assert refused == {}


async def test_every_operation_has_a_summary_and_no_empty_description(
    document: dict[str, Any],
) -> None:
    problems = [
        f"{method} {path}"
        for method, path, op in operations(document)
        if not op.get("summary") or op.get("description", None) == ""
    ]

    assert problems == []


# --- what the document promises about fields ------------------------------------


def response_schemas(app: Quart) -> set[type[Schema]]:
    """Every schema a route answers with, nested ones and error shapes included."""
    found: set[type[Schema]] = {answer.schema for answer in ERRORS.values()}
    for rule in app.url_map.iter_rules():
        returned = getattr(app.view_functions[rule.endpoint], RETURNS, None)
        if returned is not None:
            found.add(returned)
    pending = list(found)
    while pending:
        for field in pending.pop()._declared_fields.values():
            inner = field.inner if isinstance(field, fields.List) else field
            if isinstance(inner, fields.Nested) and type(inner.schema) not in found:
                found.add(type(inner.schema))
                pending.append(type(inner.schema))
    return found


def request_schemas(app: Quart) -> set[type[Schema]]:
    return {
        request[0]
        for rule in app.url_map.iter_rules()
        if (
            request := getattr(
                app.view_functions[rule.endpoint], QUART_SCHEMA_REQUEST_ATTRIBUTE, None
            )
        )
        is not None
    }


async def test_response_fields_are_required_unless_sent_only_sometimes(
    app: Quart, document: dict[str, Any]
) -> None:
    problems = []
    for schema_cls in response_schemas(app):
        component = resolve(document, ref(schema_cls))
        fields_ = schema_cls._declared_fields
        always = {name for name, f in fields_.items() if SENT_WHEN not in f.metadata}
        if set(component.get("required", [])) != always:
            problems.append(f"{schema_cls.__name__}: {component.get('required')}")
        for name in set(fields_) - always:
            description = component["properties"][name].get("description", "")
            if "Sent only when " not in description:
                problems.append(f"{schema_cls.__name__}.{name}: says not when")

    assert problems == []


async def test_nullable_response_fields_are_marked_and_no_others(
    app: Quart, document: dict[str, Any]
) -> None:
    problems = []
    for schema_cls in response_schemas(app):
        properties = resolve(document, ref(schema_cls))["properties"]
        for name, field in schema_cls._declared_fields.items():
            prop = properties[name]
            nullable = "null" in prop.get("type", []) or {"type": "null"} in prop.get(
                "anyOf", []
            )
            if nullable != field.allow_none:
                problems.append(f"{schema_cls.__name__}.{name}")

    assert problems == []
    assert properties_of(document, "Session")["ip"]["type"] == ["string", "null"]


async def test_request_components_require_what_validation_requires(
    app: Quart, document: dict[str, Any]
) -> None:
    # Loading an empty body names exactly the fields validation requires.
    problems = []
    for schema_cls in request_schemas(app):
        refused = refused_when_empty(schema_cls)
        required = set(resolve(document, ref(schema_cls)).get("required", []))
        if required != refused:
            problems.append(f"{schema_cls.__name__}: {required} != {refused}")

    assert problems == []
    # The loop saw the request bodies (at least those of before the account
    # security routes, which add theirs).
    assert len(request_schemas(app)) >= 8


def refused_when_empty(schema_cls: type[Schema]) -> set[str]:
    try:
        schema_cls().load({})
    except ValidationError as error:
        messages = error.messages
        return set(messages) if isinstance(messages, dict) else {"_schema"}
    return set()


@example({"error": "Second factor required", "msg": "x", "methods": ["totp"]})
class FactorRequiredSchema(AuthErrorSchema):
    methods = fields.List(fields.String())


def document_of(settings: Settings, view: View, rule: str = "/x") -> dict[str, Any]:
    """The document of the app with one more route."""
    app = create_app(settings)
    app.add_url_rule(rule, view_func=view, methods=["POST"])
    provider = MarshmallowOpenAPIProvider(app, app.extensions["QUART_SCHEMA"])
    return provider.schema()


async def test_a_route_may_answer_a_richer_shape_of_its_status(
    settings: Settings,
) -> None:
    @document_errors(401, schema=FactorRequiredSchema)
    async def sign_in() -> None: ...

    response = document_of(settings, sign_in)["paths"]["/x"]["post"]["responses"][401]

    assert response["content"]["application/json"] == {
        "schema": {"$ref": "#/components/schemas/FactorRequired"},
        "example": example_of(FactorRequiredSchema),
    }


async def test_a_richer_shape_must_extend_the_status_shape(settings: Settings) -> None:
    @document_errors(422, schema=FactorRequiredSchema)
    async def refuse() -> None: ...

    with pytest.raises(TypeError, match="for 422 must extend TokenErrorSchema"):
        document_of(settings, refuse)


async def test_a_schema_is_a_request_or_a_response_never_both(
    settings: Settings,
) -> None:
    @body(UserSchema)
    @returns(UserSchema)
    async def echo(data: dict[str, Any]) -> dict[str, Any]:
        return data

    with pytest.raises(TypeError, match="both a request and a response schema"):
        document_of(settings, echo)


async def test_every_operation_with_a_body_documents_400_413_415(
    document: dict[str, Any],
) -> None:
    undocumented = [
        f"{method} {path}: {status}"
        for method, path, op in operations(document)
        if "requestBody" in op
        for status in ("400", "413", "415")
        if status not in op["responses"]
    ]

    assert undocumented == []


async def test_every_route_with_path_parameters_documents_404(
    app: Quart, document: dict[str, Any]
) -> None:
    undocumented = [
        str(route)
        for route in routes(app)
        if route.has_path_parameters
        and "404" not in operation(document, route)["responses"]
    ]

    assert undocumented == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/users/{user_id}"),
        ("POST", "/api/v1/users/{user_id}/restore"),
        ("PATCH", "/api/v1/users/{user_id}"),
        ("PATCH", "/api/v1/posts/{post_id}"),
        ("DELETE", "/api/v1/posts/{post_id}"),
    ],
)
async def test_routes_that_can_forbid_document_403(
    document: dict[str, Any], method: str, path: str
) -> None:
    assert "403" in document["paths"][path][method.lower()]["responses"]


async def test_every_path_parameter_is_declared(
    app: Quart, document: dict[str, Any]
) -> None:
    problems = []
    for route in routes(app):
        names = {m["name"] for m in _PARAM.finditer(route.rule)}
        declared = {
            p["name"]: p
            for p in operation(document, route).get("parameters", [])
            if p["in"] == "path"
        }
        if set(declared) != names or not all(p["required"] for p in declared.values()):
            problems.append(f"{route}: {sorted(declared)} != {sorted(names)}")

    assert problems == []


# --- request bodies come from the marshmallow schemas ---------------------------


@pytest.mark.parametrize(
    ("method", "path", "component"),
    [
        ("POST", "/api/v1/users", "UserCreate"),
        ("PATCH", "/api/v1/users/{user_id}", "UserUpdate"),
        ("POST", "/api/v1/auth/login", "Login"),
        ("POST", "/api/v1/auth/password", "PasswordChange"),
        ("POST", "/api/v1/auth/password/forgot", "ForgotPassword"),
        ("POST", "/api/v1/auth/password/reset", "PasswordReset"),
        ("POST", "/api/v1/posts", "PostCreate"),
        ("PATCH", "/api/v1/posts/{post_id}", "PostUpdate"),
    ],
)
async def test_request_body_references_closed_marshmallow_component(
    document: dict[str, Any], method: str, path: str, component: str
) -> None:
    body = document["paths"][path][method.lower()]["requestBody"]

    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{component}"
    }
    assert document["components"]["schemas"][component]["additionalProperties"] is False


async def test_every_request_body_is_a_closed_component(
    document: dict[str, Any],
) -> None:
    problems = []
    for method, path, op in operations(document):
        if "requestBody" not in op:
            continue
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" not in schema:
            problems.append(f"{method} {path}: inline schema")
        elif resolve(document, schema).get("additionalProperties") is not False:
            problems.append(f"{method} {path}: open schema")

    assert problems == []


async def test_post_create_component_carries_validation_rules(
    document: dict[str, Any],
) -> None:
    schema = document["components"]["schemas"]["PostCreate"]

    assert sorted(schema["required"]) == ["content", "title"]
    assert schema["properties"]["title"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
    }
    assert schema["properties"]["content"]["minLength"] == 1


async def test_user_create_component_carries_validation_rules(
    document: dict[str, Any],
) -> None:
    schema = document["components"]["schemas"]["UserCreate"]

    assert sorted(schema["required"]) == [
        "email",
        "first_name",
        "last_name",
        "password",
    ]
    assert schema["properties"]["password"]["minLength"] == 8
    assert schema["properties"]["password"]["maxLength"] == 128
    assert schema["properties"]["first_name"]["maxLength"] == 100
    assert schema["properties"]["email"]["format"] == "email"


# --- responses and query parameters --------------------------------------------


async def test_user_component_never_exposes_password_or_deleted_at(
    document: dict[str, Any],
) -> None:
    assert set(document["components"]["schemas"]["User"]["properties"]) == {
        "id",
        "email",
        "first_name",
        "last_name",
        "full_name",
        "is_active",
        "is_admin",
        "created_at",
        "updated_at",
    }


async def test_post_component_has_post_fields_and_short_author(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    post = schemas["Post"]["properties"]

    assert set(post) == {
        "id",
        "title",
        "content",
        "author_id",
        "author",
        "created_at",
        "updated_at",
    }
    assert set(resolve(document, post["author"])["properties"]) == {"id", "full_name"}


@pytest.mark.parametrize(
    ("path", "items", "component"),
    [
        ("/api/v1/users", "users", "UserPage"),
        ("/api/v1/posts", "posts", "PostPage"),
        ("/api/v1/users/{user_id}/posts", "posts", "PostPage"),
    ],
)
async def test_list_routes_document_page_and_per_page(
    document: dict[str, Any], path: str, items: str, component: str
) -> None:
    op = document["paths"][path]["get"]
    query = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}

    assert query["page"]["schema"] == {"type": "integer", "default": 1}
    assert query["per_page"]["schema"] == {"type": "integer", "default": 20}
    assert not query["page"]["required"]
    assert not query["per_page"]["required"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{component}"
    }
    page = document["components"]["schemas"][component]["properties"]
    assert set(page) == {items, "page", "per_page", "total", "pages"}


async def test_user_list_documents_active_only(document: dict[str, Any]) -> None:
    query = {
        p["name"]: p for p in document["paths"]["/api/v1/users"]["get"]["parameters"]
    }

    assert query["active_only"]["in"] == "query"
    assert query["active_only"]["schema"]["default"] == "true"


# --- real responses match what the document says ------------------------------


def success_schema(document: dict[str, Any], method: str, path: str) -> Any:
    responses = document["paths"][path][method.lower()]["responses"]
    [schema] = [
        r["content"]["application/json"]["schema"]
        for status, r in responses.items()
        if status.startswith("2") and "content" in r
    ]
    return schema


async def test_login_response_matches_document(
    client: Client, document: dict[str, Any], user: User
) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
    )

    assert response.status_code == 200
    assert not violations(
        document,
        success_schema(document, "POST", "/api/v1/auth/login"),
        await response.get_json(),
    )


async def test_refresh_response_matches_document(
    client: Client, document: dict[str, Any], user: User
) -> None:
    login = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": PASSWORD}
    )
    refresh_token = (await login.get_json())["refresh_token"]

    response = await client.post("/api/v1/auth/refresh", headers=bearer(refresh_token))

    assert response.status_code == 200
    assert not violations(
        document,
        success_schema(document, "POST", "/api/v1/auth/refresh"),
        await response.get_json(),
    )


async def test_post_responses_match_document(
    client: Client,
    document: dict[str, Any],
    session: AsyncSession,
    settings: Settings,
) -> None:
    author = await make_user(session)
    headers = await login_headers(session, settings, author)
    created = await client.post(
        "/api/v1/posts", json={"title": "T", "content": "C"}, headers=headers
    )
    listed = await client.get("/api/v1/posts", headers=headers)

    assert (created.status_code, listed.status_code) == (201, 200)
    assert not violations(
        document,
        success_schema(document, "POST", "/api/v1/posts"),
        await created.get_json(),
    )
    assert not violations(
        document,
        success_schema(document, "GET", "/api/v1/posts"),
        await listed.get_json(),
    )


@dataclass(frozen=True)
class ErrorCase:
    method: str
    path: str  # the operation's
    url: str
    status: int
    keys: set[str]
    caller: str | None = None  # "access" or "refresh": a regular user's token
    request: dict[str, Any] | None = None  # client.open's other arguments


ERROR_CASES = [
    ErrorCase(
        "POST",
        "/api/v1/users",
        "/api/v1/users",
        400,
        {"error", "errors"},
        request={"json": {"email": "x"}},
    ),
    ErrorCase(
        "POST",
        "/api/v1/auth/login",
        "/api/v1/auth/login",
        400,
        {"error"},
        request={"data": "{", "headers": {"Content-Type": "application/json"}},
    ),
    ErrorCase("GET", "/api/v1/users/me", "/api/v1/users/me", 401, {"error", "msg"}),
    ErrorCase(
        "POST",
        "/api/v1/auth/login",
        "/api/v1/auth/login",
        401,
        {"error"},
        request={"json": {"email": "test@example.com", "password": "not-it-at-all"}},
    ),
    ErrorCase(
        "DELETE",
        "/api/v1/users/{user_id}",
        "/api/v1/users/1",
        403,
        {"error"},
        caller="access",
    ),
    ErrorCase(
        "GET",
        "/api/v1/users/{user_id}",
        "/api/v1/users/2000000000",
        404,
        {"error"},
        caller="access",
    ),
    ErrorCase(
        "POST",
        "/api/v1/posts",
        "/api/v1/posts",
        413,
        {"error"},
        caller="access",
        request={"json": {"title": "t", "content": "x" * (1024 * 1024)}},
    ),
    ErrorCase(
        "POST",
        "/api/v1/posts",
        "/api/v1/posts",
        415,
        {"error"},
        caller="access",
        request={"data": "title=t", "headers": {"Content-Type": "text/plain"}},
    ),
    ErrorCase(
        "GET", "/api/v1/users/me", "/api/v1/users/me", 422, {"error", "msg"}, "refresh"
    ),
]


@pytest.mark.parametrize(
    "case", ERROR_CASES, ids=lambda c: f"{c.status}-{c.method}-{c.path}"
)
async def test_real_error_answers_have_the_documented_shape(
    client: Client,
    document: dict[str, Any],
    session: AsyncSession,
    settings: Settings,
    user: User,
    case: ErrorCase,
) -> None:
    request = dict(case.request or {})
    if case.caller is not None:
        tokens = await login_tokens(session, settings, user)
        token = tokens.access_token if case.caller == "access" else tokens.refresh_token
        request["headers"] = {**request.get("headers", {}), **bearer(token)}

    response = await client.open(case.url, method=case.method, **request)

    assert response.status_code == case.status
    answer = await response.get_json()
    assert set(answer) == case.keys
    documented = document["paths"][case.path][case.method.lower()]["responses"]
    schema = documented[str(case.status)]["content"]["application/json"]["schema"]
    assert not violations(document, schema, answer)


async def test_unknown_route_answers_the_error_shape(
    client: Client, document: dict[str, Any]
) -> None:
    response = await client.get("/api/v1/nowhere")

    assert response.status_code == 404
    assert not violations(document, ERROR_REF, await response.get_json())
