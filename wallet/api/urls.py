from django.urls import path  # noqa: F401

app_name = "wallet"

urlpatterns = []
# The second seed's paths, mounted at the site root by config/urls.py (same views, no new logic).
legacy_urlpatterns = []
