from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "payments"
    verbose_name = "Payments (wallet top-ups)"

    def ready(self):
        # verify_ledger also proves the top-ups' own record equals the provider's settlement account.
        from payments import reconciliation
        from wallet.reconciliation import register_check

        register_check(reconciliation.check_top_ups)
