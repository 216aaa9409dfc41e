from django.urls import path

from plans.api import views

app_name = "plans"

urlpatterns = [
    path("providers/", views.ProviderListView.as_view(), name="providers"),
    path("plans/", views.PlanListView.as_view(), name="plan-list"),
    path("plans/<int:pk>/", views.PlanDetailView.as_view(), name="plan-detail"),
]
# The OTP-wallet paths, mounted at the site root by config/urls.py (same views, no new logic).
legacy_urlpatterns = []
