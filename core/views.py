from functools import wraps

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db import connection
from drf_yasg.utils import swagger_auto_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import TryAgain
from core.serializers import FieldsOnceSerializer


class HealthSerializer(FieldsOnceSerializer):
    status = serializers.CharField(help_text='"ok"')
    database = serializers.CharField(help_text='"ok": a query answered')


class HealthView(APIView):
    """Liveness and database reachability, for load balancers."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @swagger_auto_schema(operation_id="health", responses={200: HealthSerializer})
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            raise TryAgain("The database is unreachable.") from None
        return Response(HealthSerializer({"status": "ok", "database": "ok"}).data)


# What the documentation pages need beyond the site-wide Content-Security-Policy (settings.py), each
# only on its own page and never an inline or eval'd script. ReDoc: inline styles (styled-components
# inject <style>), the blob: web worker it builds its search index in, and the one image
# its sidebar links to Redocly with (a fixed URL in its bundle; allowed exactly, not its host).
SWAGGER_UI_CSP = {"style-src": [UNSAFE_INLINE]}  # Swagger UI injects <style> too
REDOC_CSP = {
    "style-src": [UNSAFE_INLINE],
    "worker-src": [SELF, "blob:"],
    "img-src": ["https://cdn.redoc.ly/redoc/logo-mini.svg"],
}


def documentation_view(view, *, csp=None):
    """/swagger/, /redoc/ and /swagger.json: for anyone when settings.API_DOCS_PUBLIC (the default with
    DEBUG), else for active staff signed in to the Django admin (others are sent to its login page).
    Read per request, so the setting can be flipped without reloading the URLconf. `csp`: what the
    page needs added to the site's Content-Security-Policy."""
    staff_only = staff_member_required(view)

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if settings.API_DOCS_PUBLIC:
            return view(request, *args, **kwargs)
        return staff_only(request, *args, **kwargs)

    return csp_update(csp)(guarded) if csp else guarded
