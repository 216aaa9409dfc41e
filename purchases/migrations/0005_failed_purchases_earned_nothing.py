from django.db import migrations

# A failed recharge paid no margin; purchases that failed before the service zeroed their
# commissions said otherwise.


def zero_commissions_of_failed_purchases(apps, schema_editor):
    Purchase = apps.get_model("purchases", "Purchase")
    Purchase.objects.filter(status="FAILED").update(buyer_commission=0, distributor_commission=0)


class Migration(migrations.Migration):
    dependencies = [("purchases", "0004_sandbox_memory_and_reversals")]

    operations = [migrations.RunPython(zero_commissions_of_failed_purchases, migrations.RunPython.noop)]
