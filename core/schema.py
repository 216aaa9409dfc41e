"""drf-yasg defaults: every operation documents the error body the exception handler returns."""

from drf_yasg import openapi
from drf_yasg.inspectors import SwaggerAutoSchema

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
        if self.get_security() != []:
            defaults["401"] = error_response("Missing, invalid or expired token.")
            defaults["403"] = error_response("The caller's role may not do this.")
        if "{" in self.path:
            defaults["404"] = error_response("Not found, or outside the caller's scope.")
        defaults["429"] = error_response("Too many requests; see Retry-After.")
        for code, response in defaults.items():
            responses.setdefault(code, response)
        return responses

    def get_operation_id(self, operation_keys=None):
        operation_id = super().get_operation_id(operation_keys)
        # The second seed's paths (outside /api/) reuse the /api/ views; operation ids must stay unique.
        if not self.path.startswith("/api/") and not operation_id.startswith("legacy_"):
            return f"legacy_{operation_id}"
        return operation_id

    def get_security(self):
        if self._allows_anonymous():
            return []  # public endpoints: Swagger sends no token and promises no 401
        return super().get_security()

    def _allows_anonymous(self):
        from rest_framework.permissions import AllowAny

        permissions = getattr(self.view, "permission_classes", [])
        return any(permission is AllowAny for permission in permissions)
