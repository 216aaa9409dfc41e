from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_self_top_up_is_off_in_production(app_configs, **kwargs):
    """Self top-up credits any signed-in account from TREASURY: with it on, a public signup mints money."""
    if settings.WALLET_SELF_TOPUP_ENABLED and not settings.DEBUG:
        return [
            Warning(
                "WALLET_SELF_TOPUP_ENABLED is on with DEBUG off: any account can credit itself "
                "(POST /api/wallet/credit/) with money nobody paid.",
                hint="Unset WALLET_SELF_TOPUP_ENABLED (it follows DEBUG); money comes in through an admin's funding.",
                id="wallet.W001",
            )
        ]
    return []
