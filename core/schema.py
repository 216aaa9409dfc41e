"""drf-yasg defaults: every operation documents the error body the exception handler returns."""

from drf_yasg import openapi
from drf_yasg.inspectors import FieldInspector, SwaggerAutoSchema
from rest_framework.permissions import AllowAny

ERROR_SCHEMA = openapi.Schema(
    title="Error",
    type=openapi.TYPE_OBJECT,
    required=["detail", "code"],
    properties={
        "detail": openapi.Schema(type=openapi.TYPE_STRING, description="What went wrong, for people."),
        "code": openapi.Schema(type=openapi.TYPE_STRING, description="Stable machine-readable code."),
        "errors": openapi.Schema(
            type=openapi.TYPE_OBJECT,
            description="Validation errors by field.",
            additional_properties=True,
        ),
    },
)


def error_response(description):
    return openapi.Response(description, ERROR_SCHEMA)


class AutoSchema(SwaggerAutoSchema):
    def get_response_serializers(self):
        responses = super().get_response_serializers()
        defaults = {"503": error_response("Database busy or unavailable: retry (`try_again`).")}
        if self.method in ("POST", "PUT", "PATCH"):
            defaults["400"] = error_response("Invalid input or a business refusal.")
        if self.should_page() or self.method == "GET":
            defaults["400"] = error_response("Invalid filter or page.")
        # Public endpoints answer 401 too: wrong credentials at a login, a dead refresh token.
        defaults["401"] = error_response("Missing, invalid or expired token or credentials.")
        if self.get_security() != []:
            defaults["403"] = error_response("The caller's role may not do this.")
        # Any operation may name a record that does not exist or is outside the caller's scope (a
        # path id, a user in the body), and a list may be asked for a page past the end.
        defaults["404"] = error_response("Not found, or outside the caller's scope.")
        defaults["429"] = error_response("Too many requests; see Retry-After.")
        if any(getattr(p, "name", None) == "Idempotency-Key" for p in self.overrides.get("manual_parameters", [])):
            defaults["409"] = error_response("A request with this Idempotency-Key is still running.")
            defaults["422"] = error_response("This Idempotency-Key was used with a different request.")
        for code, response in defaults.items():
            responses.setdefault(code, response)
        return responses

    # One tag per app, whatever the path: /api/auth/... and the OTP-wallet /auth/... are both "auth".
    TAG_BY_SEGMENT = {"auth": "auth", "wallet": "wallet", "transactions": "wallet", "plans": "plans"}

    def get_tags(self, operation_keys=None):
        if "tags" in self.overrides:
            return super().get_tags(operation_keys)
        segments = [segment for segment in self.path.split("/") if segment]
        if segments and segments[0] == "api":
            segments = segments[1:]
        first = segments[0] if segments else "api"
        return [self.TAG_BY_SEGMENT.get(first, first)]

    def get_operation_id(self, operation_keys=None):
        operation_id = super().get_operation_id(operation_keys)
        # The OTP-wallet paths (outside /api/) reuse the /api/ views; operation ids must stay unique.
        if not self.path.startswith("/api/") and not operation_id.startswith("legacy_"):
            return f"legacy_{operation_id}"
        return operation_id

    def get_request_body_parameters(self, consumes):
        parameters = super().get_request_body_parameters(consumes)
        if self.method == "PATCH":
            for parameter in parameters:
                parameter.required = False  # an empty PATCH changes nothing, and says so with a 200
        return parameters

    def get_request_body_schema(self, serializer):
        schema = super().get_request_body_schema(serializer)
        if self.method != "PATCH":
            return schema
        # PATCH sends any subset of the fields: the same body as PUT, with nothing required.
        resolved = openapi.resolve_ref(schema, self.components)
        if not isinstance(resolved, openapi.Schema) or not resolved.get("required"):
            return schema
        partial = openapi.Schema(
            type=openapi.TYPE_OBJECT,
            title=resolved.get("title"),
            description=resolved.get("description"),
            properties=resolved.get("properties"),
        )
        return partial

    def get_security(self):
        if self._allows_anonymous():
            return []  # public endpoints: Swagger sends no token
        return super().get_security()

    def _allows_anonymous(self):
        permissions = getattr(self.view, "permission_classes", [])
        return any(permission is AllowAny for permission in permissions)


class ReadOnlyFieldInspector(FieldInspector):
    """A read-only string may well be empty ("first_name": ""): drf-yasg's minLength 1 applies to
    input, so it is dropped from fields the client never sends."""

    def process_result(self, result, method_name, obj, **kwargs):
        if isinstance(result, openapi.Schema) and getattr(obj, "read_only", False):
            result.pop("minLength", None)
        return result
