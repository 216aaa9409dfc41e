from django.urls import path

from purchases.api import views

app_name = "purchases"

urlpatterns = [
    path("purchase/", views.PurchaseCreateView.as_view(), name="purchase"),
    path("history/", views.PurchaseHistoryView.as_view(), name="history"),
    path("<int:pk>/", views.PurchaseDetailView.as_view(), name="detail"),
    path("callbacks/<slug:gateway>/", views.OperatorCallbackView.as_view(), name="operator-callback"),
]
# The OTP-wallet paths, mounted at the site root by config/urls.py (same views, no new logic).
legacy_urlpatterns = []
