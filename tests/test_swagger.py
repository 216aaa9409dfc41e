"""/swagger.json is a valid Swagger 2.0 document that documents every API route the URLconf serves.

The expected routes are read from Django's URL resolver, not from a hand-kept list, so a view that
is routed but hidden from (or broken in) the schema fails here as soon as it lands.
"""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView
from swagger_spec_validator.validator20 import validate_spec

pytestmark = pytest.mark.django_db

# drf-yasg leaves these out of every schema.
UNDOCUMENTED_METHODS = {"options", "head", "trace"}
_ROUTE_PARAMETER = re.compile(r"<(?:[^>:]+:)?([^>]+)>")
_REGEX_GROUP = re.compile(r"\(\?P<([^>]+)>[^)]*\)")
_PATH_PARAMETER = re.compile(r"\{[^}]+\}")


def _as_swagger_path(pattern_text):
    """`api/wallet/wallets/<int:pk>/` or `^wallets/(?P<pk>[^/.]+)/$` -> `/api/wallet/wallets/{}/`.

    Parameter names are dropped: drf-yasg renames `{pk}` to the model's primary key (`{id}`).
    """
    text = _ROUTE_PARAMETER.sub("{}", pattern_text)
    text = _REGEX_GROUP.sub("{}", text)
    text = text.replace("^", "").replace("$", "").replace("\\", "")
    return "/" + text


def _view_methods(callback):
    actions = getattr(callback, "actions", None)  # a ViewSet routed by a DRF router
    if actions:
        return set(actions)
    view_class = callback.cls
    return {
        method
        for method in view_class.http_method_names
        if method not in UNDOCUMENTED_METHODS and hasattr(view_class, method)
    }


def routed_api_operations(patterns=None, prefix=""):
    """{swagger path: {methods}} for every DRF view in the URLconf, except the schema views themselves."""
    found = {}
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            for path, methods in routed_api_operations(pattern.url_patterns, text).items():
                found.setdefault(path, set()).update(methods)
        elif isinstance(pattern, URLPattern):
            view_class = getattr(pattern.callback, "cls", None)
            if view_class is None or not issubclass(view_class, APIView):
                continue  # Django admin and plain Django views are not part of the API
            if view_class.__module__ == "drf_yasg.views" or "format" in pattern.pattern.regex.groupindex:
                continue  # the schema views, and DRF's `.json` format-suffix duplicates
            found.setdefault(_as_swagger_path(text), set()).update(_view_methods(pattern.callback))
    return found


@pytest.fixture(autouse=True)
def _published_docs(settings):
    """These tests read the documentation anonymously, as a deployment that publishes it does (with
    DEBUG off it is staff-only unless API_DOCS_PUBLIC; tests/security/test_production_defaults.py)."""
    settings.API_DOCS_PUBLIC = True


@pytest.fixture
def schema(api_client):
    response = api_client.get("/swagger.json")
    assert response.status_code == 200, response.content[:2000]
    return response.json()


def documented_operations(schema):
    base = schema.get("basePath", "/").rstrip("/")
    return {
        _PATH_PARAMETER.sub("{}", base + path): {method for method in item if method != "parameters"}
        for path, item in schema["paths"].items()
    }


def _resolve(schema, node):
    while isinstance(node, dict) and "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["definitions"][name]
    return node


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield f"{method.upper()} {path}", operation


def test_swagger_json_is_valid_swagger_2_0(schema):
    assert schema["swagger"] == "2.0"
    validate_spec(schema)  # raises SwaggerValidationError, naming the fault (e.g. a duplicate operationId)


def test_the_url_resolver_finds_the_api_routes():
    # Guards the helper itself: if it found nothing, the coverage test below would pass vacuously.
    routes = routed_api_operations()
    assert routes.get("/api/health/") == {"get"}
    assert "/swagger.json" not in routes
    assert not any(path.startswith("/admin/") for path in routes)


def test_every_routed_api_endpoint_and_method_is_in_the_schema(schema):
    documented = documented_operations(schema)
    missing = sorted(
        f"{method.upper()} {path}"
        for path, methods in routed_api_operations().items()
        for method in methods - documented.get(path, set())
    )
    assert not missing, f"routed but not documented in /swagger.json: {missing}"


def test_the_schema_documents_no_route_that_does_not_exist(schema):
    routed = routed_api_operations()
    phantom = sorted(path for path in documented_operations(schema) if path not in routed)
    assert not phantom, f"documented but not routed: {phantom}"


def test_the_bearer_security_definition_lets_swagger_send_a_jwt(schema):
    bearer = schema["securityDefinitions"]["Bearer"]
    assert bearer == {**bearer, "type": "apiKey", "in": "header", "name": "Authorization"}
    assert {"Bearer": []} in schema.get("security", [])


def test_request_bodies_that_carry_fields_are_documented_as_objects(schema):
    bare = []
    for name, operation in _operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter.get("in") != "body":
                continue
            body = _resolve(schema, parameter["schema"])
            if body.get("type") != "object" or not body.get("properties"):
                bare.append(f"{name}: {body}")
    assert not bare, f"request bodies documented without their fields: {bare}"


def test_success_responses_with_a_body_are_documented_with_their_fields(schema):
    bare = []
    for name, operation in _operations(schema):
        for status, response in operation["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            body = _resolve(schema, response.get("schema"))
            if body and body.get("type") == "array":
                body = _resolve(schema, body.get("items"))
            if not body or body.get("type") != "object" or not body.get("properties"):
                bare.append(f"{name} -> {status}: {body}")
    assert not bare, f"responses documented as a bare string or without a schema: {bare}"


@pytest.mark.parametrize("url", ["/swagger/", "/redoc/"])
def test_the_documentation_pages_answer(api_client, url):
    response = api_client.get(url, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"<html" in response.content.lower()


def _each_operation(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method != "parameters":
                yield path, method, operation


def test_every_query_parameter_says_what_it_filters(schema):
    undescribed = [
        (path, method, parameter["name"])
        for path, method, operation in _each_operation(schema)
        for parameter in operation.get("parameters", [])
        if parameter.get("in") == "query" and not parameter.get("description")
    ]
    assert undescribed == []


def test_each_operation_has_one_tag_and_the_auth_operations_share_theirs(schema):
    tags = {(path, method): operation["tags"] for path, method, operation in _each_operation(schema)}
    assert all(len(tag) == 1 for tag in tags.values())
    assert "api" not in {tag[0] for tag in tags.values()}  # no tag made from the /api/ prefix
    auth = {tag[0] for (path, _), tag in tags.items() if path.startswith(("/api/auth/", "/auth/"))}
    assert auth == {"auth"}
