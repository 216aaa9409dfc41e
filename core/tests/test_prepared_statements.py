"""core.precompiled.execute: on PostgreSQL the hot statements are prepared once per connection, then
only executed; what they answer is what the plain statement answers."""

import re

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import ClientFactory
from core import precompiled
from core.precompiled import PrecompiledQuery, execute, statement_of


def prepared_here():
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements")
        return dict(cursor.fetchall())


def run(sql, params, **options):
    with CaptureQueriesContext(connection) as queries, connection.cursor() as cursor:
        execute(cursor, sql, params, **options)
        rows = cursor.fetchall()
    [query] = queries.captured_queries
    return rows, query["sql"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_is_prepared_on_its_first_run_and_then_only_executed():
    connection.close()  # a fresh connection: nothing prepared on it yet
    sql = "SELECT %s::int + 1, '100%%'"
    first, sent_first = run(sql, [41])
    again, sent_again = run(sql, [1])
    assert (first, again) == ([(42, "100%")], [(2, "100%")])
    name = sent_again.split()[1].split("(")[0]
    assert sent_first.startswith(f"PREPARE {name} AS SELECT $1::int + 1") and sent_again == f"EXECUTE {name}(1)"
    assert name in prepared_here()
    assert statement_of(sent_first) == statement_of(sent_again) == sql
    connection.close()  # a new connection prepares it again
    assert run(sql, [2]) == ([(3, "100%")], sent_first.replace("(41)", "(2)"))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_precompiled_query_answers_as_prepared_what_the_queryset_answers():
    from django.contrib.auth import get_user_model

    people = [ClientFactory() for _ in range(3)]
    query = PrecompiledQuery(lambda marker: get_user_model().objects.filter(pk=marker), -42)
    for person in people * 3:  # past five runs: PostgreSQL may switch to its generic plan
        assert query.fetch(person.pk) == [person]
    assert query.fetch(-1) == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("options", [{"prepared": False}, {"too_many_values": True}, {"setting_off": True}], ids=str)
def test_a_statement_runs_as_plain_text_when_it_must(options, settings):
    settings.DB_PREPARED_STATEMENTS = not options.get("setting_off", False)
    count = precompiled._MAX_PREPARED_VALUES + 1 if options.get("too_many_values") else 1
    sql = "SELECT " + " + ".join(["%s::int"] * count)
    rows, sent = run(sql, [1] * count, prepared=options.get("prepared", True))
    assert rows == [(count,)] and sent.startswith("SELECT 1::int")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_whose_preparing_round_trip_failed_is_prepared_afresh():
    """The PREPARE took but its EXECUTE failed (a unique key): whether it took is unknown to the
    connection, which drops what it prepared and prepares again at its next prepared statement."""
    connection.close()
    person = ClientFactory()
    insert = "INSERT INTO core_idempotencyrecord (user_id, key, endpoint, fingerprint, state, created_at, locked_at) "
    insert += "VALUES (%s, %s, 'e', 'f', 'COMPLETED', now(), now()) RETURNING id"
    with connection.cursor() as cursor:
        cursor.execute(insert.replace("%s, %s", "%s, 'taken'"), [person.pk])
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        execute(cursor, insert, [person.pk, "taken"])  # prepared in this round trip, then refused
    stored, sent = run(insert, [person.pk, "free"])
    assert sent.startswith("DEALLOCATE ALL; PREPARE ") and len(stored) == 1
    assert run(insert, [person.pk, "free again"])[1].startswith("EXECUTE ")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_prepared_statement_that_a_schema_change_broke_is_prepared_afresh_at_its_next_run():
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE prepared_probe (value int)")
        cursor.execute("INSERT INTO prepared_probe VALUES (7)")
    try:
        sql = "SELECT value FROM prepared_probe WHERE value = %s"
        assert run(sql, [7])[0] == [(7,)]
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE prepared_probe ALTER COLUMN value TYPE bigint")
        with pytest.raises(Exception, match="cached plan must not change result type"), connection.cursor() as cursor:
            execute(cursor, sql, [7])
        rows, sent = run(sql, [7])
        assert rows == [(7,)] and sent.startswith("DEALLOCATE ALL; PREPARE ")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE prepared_probe")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_refusal_of_a_prepared_statements_values_leaves_what_was_prepared_alone():
    """A unique key, a lock timeout: the statement is sound, the values were refused. Re-preparing every
    statement of the connection then would cost most exactly when the database is busiest."""
    connection.close()
    person = ClientFactory()
    insert = "INSERT INTO core_idempotencyrecord (user_id, key, endpoint, fingerprint, state, created_at, locked_at) "
    insert += "VALUES (%s, %s, 'e', 'f', 'COMPLETED', now(), now()) RETURNING id"
    assert run(insert, [person.pk, "first"])[1].startswith("PREPARE ")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        execute(cursor, insert, [person.pk, "first"])
    assert run(insert, [person.pk, "second"])[1].startswith("EXECUTE ")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_postgresql_cannot_prepare_fails_once_then_runs_as_text():
    sql = "SELECT %s IS NULL"
    with pytest.raises(Exception, match="could not determine data type"), connection.cursor() as cursor:
        execute(cursor, sql, ["an"])
    assert run(sql, ["an"]) == ([(False,)], "SELECT 'an' IS NULL")


def test_a_statement_is_named_by_its_sql_the_same_in_every_process():
    sql = 'SELECT "x" FROM "t" WHERE "id" = %s'
    assert precompiled.statement_name(sql) == precompiled.statement_name(sql[:])
    assert precompiled.statement_name(sql) != precompiled.statement_name(sql + " LIMIT 1")
    assert re.fullmatch(r"p_[0-9a-f]{20}", precompiled.statement_name(sql))


def test_placeholders_are_numbered_and_a_logged_execute_reads_back_as_its_sql():
    sql = "SELECT %s, '50%%', %s FROM t WHERE a LIKE 'x%%' AND b = %s"
    assert precompiled._numbered(sql) == "SELECT $1, '50%%', $2 FROM t WHERE a LIKE 'x%%' AND b = $3"
    name = precompiled._name_for(sql)
    assert statement_of(f"EXECUTE {name}(1, 2, 3)") == statement_of(f"PREPARE {name} AS ...; EXECUTE ...") == sql
    assert statement_of("SELECT 1") == "SELECT 1"
