from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WalletConfig(AppConfig):
    name = "wallet"
    verbose_name = "Wallet ledger"

    def ready(self):
        # Every user has a wallet from the transaction that creates it, whichever way it comes into
        # being (ledger.md). The ledger listens for it so that accounts does not import the ledger.
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save

        from accounts.signals import users_created
        from wallet import checks, services  # noqa: F401 - importing checks registers the deploy checks

        def open_wallet(sender, instance, created, raw=False, **kwargs):
            if created and not raw:  # raw: loaddata restores wallets from the fixture itself
                services.open_wallet(user=instance)

        def open_wallets(sender, users, **kwargs):
            services.open_wallets(users=users)

        post_save.connect(open_wallet, sender=get_user_model(), dispatch_uid="wallet.open_wallet", weak=False)
        users_created.connect(open_wallets, dispatch_uid="wallet.open_wallets", weak=False)

        # `flush` (a TransactionTestCase's teardown) and `migrate` both send post_migrate: the system
        # wallets the process remembers may be gone.
        post_migrate.connect(services.forget_system_wallets, dispatch_uid="wallet.forget_system_wallets")
