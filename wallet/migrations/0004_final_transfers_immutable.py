from django.db import migrations

# ledger.md: posted and voided transfers are immutable, and no journal row is ever deleted. The
# application never does either; this makes the database refuse it too (raw SQL, a shell, a bug).
CREATE = """
CREATE OR REPLACE FUNCTION wallet_transfer_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'journal rows are never deleted (transfer %)', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.status IN ('POSTED', 'VOIDED') THEN
        RAISE EXCEPTION 'transfer % is %: final transfers are immutable', OLD.id, OLD.status
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER wallet_transfer_guard BEFORE UPDATE OR DELETE ON wallet_transfer
    FOR EACH ROW EXECUTE FUNCTION wallet_transfer_guard();
"""
DROP = """
DROP TRIGGER IF EXISTS wallet_transfer_guard ON wallet_transfer;
DROP FUNCTION IF EXISTS wallet_transfer_guard();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)  # the % in RAISE are not placeholders


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("wallet", "0003_transfer_refund_of")]

    operations = [migrations.RunPython(forwards, backwards)]
