from django.db import migrations, models
from django.db.models import F


def sent_when_created(apps, schema_editor):
    # Until now every purchase was sent to the gateway inside its own request: a send may have happened
    # for each existing row, so none of them may ever be sent again (only its status asked).
    Purchase = apps.get_model("purchases", "Purchase")
    Purchase.objects.filter(sent_at__isnull=True).update(sent_at=F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("purchases", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="purchase",
            name="sent_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(sent_when_created, migrations.RunPython.noop),
    ]
