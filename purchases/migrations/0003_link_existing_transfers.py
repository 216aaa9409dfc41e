from django.db import migrations, models

# Until this migration the ledger named purchases: wallet_transfer.purchase_id, a foreign key from
# the journal to purchases_purchase. A database created since then never had that column. One that
# has it keeps every link: every transfer of a purchase (its hold, commissions, refund) carries the
# purchase's reference ("P<id>", Purchase.reference), then the column goes, so that the ledger's
# schema depends on no other app.
REFERENCE_LEGS = """
UPDATE wallet_transfer SET reference = 'P' || CAST(purchase_id AS VARCHAR(20))
WHERE purchase_id IS NOT NULL AND reference IS NULL
"""


def link_existing_transfers(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        columns = {column.name for column in connection.introspection.get_table_description(cursor, "wallet_transfer")}
    if "purchase_id" not in columns:
        return
    postgres = connection.vendor == "postgresql"
    if postgres:
        # Final rows are immutable (wallet 0004's guard); giving them their reference is the exception.
        schema_editor.execute("ALTER TABLE wallet_transfer DISABLE TRIGGER wallet_transfer_guard")
    schema_editor.execute(REFERENCE_LEGS)
    if postgres:
        schema_editor.execute("ALTER TABLE wallet_transfer ENABLE TRIGGER wallet_transfer_guard")
        # Its foreign key and index go with it.
        schema_editor.execute("ALTER TABLE wallet_transfer DROP COLUMN purchase_id")
    else:
        # SQLite drops a column with a foreign key only by rebuilding the table, which the schema
        # editor does for a field it knows: give the historical model the old field to remove.
        Transfer = apps.get_model("wallet", "Transfer")
        Purchase = apps.get_model("purchases", "Purchase")
        old = models.ForeignKey(Purchase, null=True, on_delete=models.PROTECT, related_name="+")
        old.contribute_to_class(Transfer, "purchase")
        schema_editor.remove_field(Transfer, old)


class Migration(migrations.Migration):
    dependencies = [("purchases", "0002_purchase_sent_at"), ("wallet", "0008_transfer_reference")]

    operations = [migrations.RunPython(link_existing_transfers, migrations.RunPython.noop)]
