from django.urls import path

from payments.api import views

app_name = "payments"

# Mounted at /api/wallet/topups/ (config/urls.py).
urlpatterns = [
    path("", views.TopUpListCreateView.as_view(), name="top-up-list"),
    path("<int:pk>/", views.TopUpDetailView.as_view(), name="top-up-detail"),
    path("webhooks/<slug:provider>/", views.TopUpWebhookView.as_view(), name="webhook"),
    path("sandbox/<str:reference>/", views.SandboxPaymentView.as_view(), name="sandbox-payment"),
]
