from django.urls import path

from bench.naive import views

urlpatterns = [
    path("wallet/balance/", views.BalanceView.as_view()),
    path("wallet/transfer/", views.TransferView.as_view()),
    path("api/wallet/wallets/", views.WalletListView.as_view()),
    path("api/wallet/add-to-wallet/", views.AddToWalletView.as_view()),
    path("api/wallet/transactions/", views.TransactionListView.as_view()),
]
