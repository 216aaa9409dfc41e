from django.contrib import admin
from django.urls import include, path, re_path
from drf_yasg import openapi
from drf_yasg.views import get_schema_view
from rest_framework.permissions import AllowAny

from accounts.api import urls as accounts_urls
from core.metrics import metrics_view
from core.views import REDOC_CSP, SWAGGER_UI_CSP, HealthView, documentation_view
from wallet.api import urls as wallet_urls

# Module-level so that `manage.py generate_swagger` finds it too (SWAGGER_SETTINGS["DEFAULT_INFO"]).
API_INFO = openapi.Info(
    title="Recharge & Wallet API",
    default_version="v1",
    description=(
        "Wallets, transfers and mobile recharges for admins, distributors, retailers and clients. "
        "Sign in with `/api/auth/login/email/` or the OTP endpoints, then press **Authorize** and "
        'enter `Bearer <access>`. Money is a decimal string with two places ("150.50"). '
        "Money-moving POSTs accept an `Idempotency-Key` header."
    ),
)
schema_view = get_schema_view(
    API_INFO,
    public=True,
    permission_classes=[AllowAny],
)
schema_json = schema_view.without_ui(cache_timeout=0)
swagger_ui = schema_view.with_ui("swagger", cache_timeout=0)
redoc = schema_view.with_ui("redoc", cache_timeout=0)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health/", HealthView.as_view(), name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("api/auth/", include("accounts.api.urls")),
    path("api/wallet/topups/", include("payments.api.urls")),
    path("api/wallet/", include("wallet.api.urls")),
    path("api/plans/", include("plans.api.urls")),
    path("api/purchases/", include("purchases.api.urls")),
    # The OTP-wallet paths: the OTP wallet app's documented addresses, served by the same views.
    path("auth/", include((accounts_urls.legacy_urlpatterns, "accounts-legacy"))),
    path("", include((wallet_urls.legacy_urlpatterns, "wallet-legacy"))),
    # Public with DEBUG (or API_DOCS_PUBLIC=true), else staff-only: core.views.documentation_view.
    re_path(r"^swagger\.json$", documentation_view(schema_json), name="schema-json"),
    path("swagger/", documentation_view(swagger_ui, csp=SWAGGER_UI_CSP), name="schema-swagger-ui"),
    path("redoc/", documentation_view(redoc, csp=REDOC_CSP), name="schema-redoc"),
]

handler400 = "core.errors.bad_request_view"
handler404 = "core.errors.not_found_view"
handler500 = "core.errors.server_error_view"
