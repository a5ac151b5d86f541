"""/openapi.json and /docs, and the policy every route must meet in the document.

The policy tests walk `app.url_map`, so a route added without documentation,
security or a response schema fails here, not in a client's integration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from quart import Quart
from quart.typing import TestClientProtocol as Client
from quart_schema.openapi import QUART_SCHEMA_HIDDEN_ATTRIBUTE
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.models import User
from tests.factories import PASSWORD, login_headers, make_user
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
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
ERROR_REF = {"$ref": "#/components/schemas/Error"}
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


async def test_bearer_security_scheme_exists(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


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


async def test_every_protected_route_declares_bearer_security(
    document: dict[str, Any], protected: set[Route]
) -> None:
    undeclared = sorted(
        str(route)
        for route in protected
        if operation(document, route).get("security") != BEARER
    )

    assert undeclared == []


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


async def test_every_error_response_uses_the_error_schema(
    document: dict[str, Any],
) -> None:
    problems = [
        f"{method} {path}: {status}"
        for method, path, op in operations(document)
        for status, response in op["responses"].items()
        if status[0] in "45"
        and response.get("content", {}).get("application/json", {}).get("schema")
        != ERROR_REF
    ]

    assert problems == []


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


@pytest.mark.parametrize(
    ("method", "url", "payload"),
    [
        pytest.param("GET", "/api/v1/users/me", None, id="401"),
        pytest.param("POST", "/api/v1/users", {"email": "x"}, id="400-validation"),
        pytest.param("GET", "/api/v1/nowhere", None, id="404-route"),
    ],
)
async def test_error_bodies_match_error_schema(
    client: Client, document: dict[str, Any], method: str, url: str, payload: Any
) -> None:
    response = await client.open(url, method=method, json=payload)

    assert response.status_code >= 400
    assert not violations(document, ERROR_REF, await response.get_json())
