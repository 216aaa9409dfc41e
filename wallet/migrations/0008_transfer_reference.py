from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("wallet", "0007_number_existing_balance_changes")]

    operations = [
        migrations.AddField(
            model_name="transfer",
            name="reference",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AddIndex(
            model_name="transfer",
            index=models.Index(
                condition=models.Q(("reference__isnull", False)), fields=["reference"], name="transfer_reference"
            ),
        ),
    ]
