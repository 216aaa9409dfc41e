from django.db import migrations

# Number the balance changes already in the journal, per user wallet, in the order they happened.
# For rows written before this migration the only record of that order is finalized_at (the app
# server's clock when the money moved: creation for a row created POSTED, posting for a hold
# posted later), then id (rows of one transaction share a timestamp and were written in id order).
# From now on the ledger numbers each change under the wallet's lock instead (Transfer.from_entry).
NUMBER = """
CREATE TEMPORARY TABLE wallet_entry_backfill AS
SELECT legs.transfer_id, legs.side, legs.wallet_id,
       ROW_NUMBER() OVER (PARTITION BY legs.wallet_id ORDER BY legs.moved_at, legs.transfer_id) AS entry
FROM (
    SELECT id AS transfer_id, 'from' AS side, from_wallet_id AS wallet_id, finalized_at AS moved_at
    FROM wallet_transfer WHERE status = 'POSTED'
    UNION ALL
    SELECT id, 'to', to_wallet_id, finalized_at FROM wallet_transfer WHERE status = 'POSTED'
) AS legs
JOIN wallet_wallet AS wallet ON wallet.id = legs.wallet_id AND wallet.user_id IS NOT NULL
"""
APPLY = [
    """UPDATE wallet_transfer SET from_entry = backfill.entry FROM wallet_entry_backfill AS backfill
       WHERE backfill.transfer_id = wallet_transfer.id AND backfill.side = 'from'""",
    """UPDATE wallet_transfer SET to_entry = backfill.entry FROM wallet_entry_backfill AS backfill
       WHERE backfill.transfer_id = wallet_transfer.id AND backfill.side = 'to'""",
    """UPDATE wallet_wallet SET last_entry = (
           SELECT COALESCE(MAX(backfill.entry), 0) FROM wallet_entry_backfill AS backfill
           WHERE backfill.wallet_id = wallet_wallet.id)
       WHERE user_id IS NOT NULL""",
    "DROP TABLE wallet_entry_backfill",
]


def number_balance_changes(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        # Final rows are immutable (0004's guard); this one-off numbering is the exception.
        schema_editor.execute("ALTER TABLE wallet_transfer DISABLE TRIGGER wallet_transfer_guard")
    schema_editor.execute(NUMBER)
    for statement in APPLY:
        schema_editor.execute(statement)
    if postgres:
        # The UPDATEs queued the deferred foreign-key checks; PostgreSQL alters no table with
        # checks pending, so run them now.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        schema_editor.execute("ALTER TABLE wallet_transfer ENABLE TRIGGER wallet_transfer_guard")
        schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")


class Migration(migrations.Migration):
    dependencies = [("wallet", "0006_wallet_balance_chain")]

    operations = [migrations.RunPython(number_balance_changes, migrations.RunPython.noop)]
