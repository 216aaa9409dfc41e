from django.db import connection
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import TryAgain

HEALTH_SCHEMA = openapi.Schema(
    type=openapi.TYPE_OBJECT,
    properties={
        "status": openapi.Schema(type=openapi.TYPE_STRING, example="ok"),
        "database": openapi.Schema(type=openapi.TYPE_STRING, example="ok"),
    },
)


class HealthView(APIView):
    """Liveness and database reachability, for load balancers."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @swagger_auto_schema(operation_id="health", responses={200: HEALTH_SCHEMA})
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            raise TryAgain("The database is unreachable.") from None
        return Response({"status": "ok", "database": "ok"})
