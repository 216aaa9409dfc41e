from django.urls import path

from wallet.api import views

app_name = "wallet"

urlpatterns = [
    path("balance/", views.BalanceView.as_view(), name="balance"),
    path("wallets/", views.WalletListView.as_view(), name="wallet-list"),
    path("wallets/<int:pk>/", views.WalletDetailView.as_view(), name="wallet-detail"),
    path("transactions/", views.TransactionListView.as_view(), name="transaction-list"),
    path("transactions/<int:pk>/", views.TransactionDetailView.as_view(), name="transaction-detail"),
    path("credit/", views.CreditView.as_view(), name="credit"),
    path("debit/", views.DebitView.as_view(), name="debit"),
    path("transfer/", views.TransferView.as_view(), name="transfer"),
    path("add-to-wallet/", views.AddToWalletView.as_view(), name="add-to-wallet"),
    path("debit-from-wallet/", views.DebitFromWalletView.as_view(), name="debit-from-wallet"),
    path("payouts/", views.PayoutView.as_view(), name="payouts"),
    path("set-margin/", views.SetMarginView.as_view(), name="set-margin"),
    path("margins/", views.MarginListView.as_view(), name="margin-list"),
    path("admin/transactions/", views.AdminTransactionListView.as_view(), name="admin-transaction-list"),
]

# The OTP-wallet paths, mounted at the site root by config/urls.py (same views, no new logic).
legacy_urlpatterns = [
    path("wallet/balance/", views.BalanceView.as_view(), name="balance"),
    path("wallet/credit/", views.CreditView.as_view(), name="credit"),
    path("wallet/debit/", views.DebitView.as_view(), name="debit"),
    path("wallet/transfer/", views.TransferView.as_view(), name="transfer"),
    path("transactions/admin-list/", views.AdminTransactionListView.as_view(), name="admin-transaction-list"),
]
