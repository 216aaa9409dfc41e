from django.conf import settings
from django.db import migrations

SYSTEM_CODES = ["TREASURY", "RECHARGE_SETTLEMENT", "COMMISSION"]


def create_system_wallets(apps, schema_editor):
    Wallet = apps.get_model("wallet", "Wallet")
    for code in SYSTEM_CODES:
        Wallet.objects.get_or_create(system_code=code, defaults={"currency": settings.WALLET_CURRENCY})


def remove_system_wallets(apps, schema_editor):
    # Only wallets that no journal row refers to can go (PROTECT keeps the rest).
    apps.get_model("wallet", "Wallet").objects.filter(system_code__in=SYSTEM_CODES, transfers_in=None,
                                                      transfers_out=None).delete()


class Migration(migrations.Migration):
    dependencies = [("wallet", "0001_initial")]

    operations = [migrations.RunPython(create_system_wallets, remove_system_wallets)]
