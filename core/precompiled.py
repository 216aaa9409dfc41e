"""Querysets compiled to SQL once per process and database, then run again with new values.

Turning a queryset into SQL (cloning it, resolving the filters, choosing the columns and joins)
costs more CPU than the database spends answering a lookup by primary key: on the hot paths
(authentication loads the user with its wallet on every request) it was the largest single cost of
a balance read (bench/profile_request.py). A `PrecompiledQuery` builds its queryset once, with
marker values in place of the real ones, keeps the compiler's SQL and its description of the rows,
and on each call only substitutes the values, executes, and builds the model instances exactly as
Django's own iterator does (the same converters, `from_db`, and select_related populators), on any
database. `tests` hold it to the plain queryset's answer.

`PrecompiledInsert` and `PrecompiledUpdate` do the same for the writes every keyed request makes
(core.idempotency) and a purchase's own (its acceptance's INSERT, its settlement's UPDATE): the
statement is compiled once, and each value is prepared by its field on the calling connection, as the
ORM's own insert and update prepare it.

On PostgreSQL each of them is also planned once per connection (`execute`, below): psycopg2 sends
every statement as text, which the server parses and plans afresh, and for a key lookup that is
more of its CPU than the lookup itself.
"""

import hashlib
import itertools
import re
import threading

from django.conf import settings
from django.db import Error, connections, transaction
from django.db.models.query import ModelIterable, ValuesListIterable, get_related_populators
from django.db.transaction import TransactionManagementError

# --- server-side prepared statements (PostgreSQL) -------------------------------------------------
#
# A statement run through `execute` is PREPAREd on its connection the first time that connection runs
# it (its SQL with $1, $2... for the driver's placeholders), in the same round trip as its first
# EXECUTE, and from then on only EXECUTEd with its values: the server parses and plans it once per
# connection instead of on every request (bench/README.md: a key lookup's server CPU halves). Only for
# statements whose best plan does not depend on their values (key lookups, the ledger's writes): after
# five executions PostgreSQL may keep a generic plan. DB_PREPARED_STATEMENTS=false turns it off
# (behind a pooler that shares a server connection between clients, such as PgBouncer in transaction
# mode, a statement prepared by one would be missing for another).
#
# A prepared statement outlives a rollback (PREPARE is not transactional). So if the round trip that
# prepares one fails, whether the PREPARE took is unknown: the connection's next prepared statement
# first drops every statement prepared on it (DEALLOCATE ALL, in the same round trip) and starts afresh.
# So does the next one after an EXECUTE the server refused for the statement itself: a migration that
# changed a column a statement reads fails that statement once on each connection ("cached plan must not
# change result type"), then it is prepared again. A statement whose parameters PostgreSQL cannot type
# (none today) fails once, then runs as text.

_MAX_PREPARED = 256  # distinct statements per process; beyond, statements run as plain text
_MAX_PREPARED_VALUES = 64  # a bulk statement (a payout's thousand rows) is its own shape each time: text
_names = {}  # SQL -> its statement name (statement_name), for the statements this process prepares
_sql_of_name = {}
_naming = threading.Lock()


def execute(cursor, sql, params, *, prepared=True):
    """`cursor.execute(sql, params)`, through a prepared statement on PostgreSQL (see above)."""
    connection = cursor.db
    name = None
    if (
        prepared
        and len(params) <= _MAX_PREPARED_VALUES
        and connection.vendor == "postgresql"
        and settings.DB_PREPARED_STATEMENTS
    ):
        name = _name_for(sql)
    if name is None:
        cursor.execute(sql, params)
        return
    # Kept on the thread's own connection wrapper, for the driver connection it holds now (a reconnection
    # starts with nothing prepared): the names PREPAREd on it, or None while that is unknown.
    raw = connection.connection
    held, done = getattr(connection, "_prepared_statements", (None, set()))
    if held is not raw:
        done = set()
    run = f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}"
    if done is not None and name in done:
        try:
            cursor.execute(run, params)
        except Error as error:
            if _sqlstate(error) in _PREPARED_STATEMENT_GONE:
                connection._prepared_statements = (raw, None)  # prepare afresh at the next one
            raise
        return
    first = "" if done is not None else "DEALLOCATE ALL; "
    connection._prepared_statements = (raw, None)  # unknown until the round trip returns
    try:
        cursor.execute(f"{first}PREPARE {name} AS {_numbered(sql)}; {run}", params)
    except Error as error:
        if _sqlstate(error) in _CANNOT_BE_PREPARED:
            _unpreparable.add(sql)  # as text from now on, in this process
        raise
    connection._prepared_statements = (raw, (done or set()) | {name})


# A prepared statement a migration changed under it ("cached plan must not change result type"), or one
# the server no longer has: the connection prepares afresh. Any other error (a lock timeout, a unique
# key) leaves what was prepared alone.
_PREPARED_STATEMENT_GONE = {"0A000", "26000"}
# A parameter whose type PostgreSQL cannot infer from its place (a bare value in a SELECT list).
_CANNOT_BE_PREPARED = {"42P18", "42P08"}
_unpreparable = set()


def _sqlstate(error):
    return getattr(error.__cause__, "pgcode", None)


def statement_name(sql):
    """The name `sql` is prepared under: from the SQL itself, so that every process of every release
    gives one name to one statement (a name reused for other SQL could only fail, never run the
    wrong statement)."""
    return "p_" + hashlib.sha256(sql.encode()).hexdigest()[:20]


def statement_of(sql):
    """The statement a logged `EXECUTE <name>(...)` (or `PREPARE <name> AS ...; EXECUTE ...`) ran; any
    other SQL as it is: for tests and operators reading a query log."""
    match = re.match(r"(?:DEALLOCATE ALL; )?(?:PREPARE|EXECUTE) (p_[0-9a-f]+)\b", sql)
    return _sql_of_name.get(match.group(1), sql) if match else sql


def _name_for(sql):
    name = _names.get(sql)
    if name is None and sql not in _unpreparable:
        with _naming:
            name = _names.get(sql)
            if name is None and len(_names) < _MAX_PREPARED:
                name = _names[sql] = statement_name(sql)
                _sql_of_name[name] = sql
    return name if sql not in _unpreparable else None


def _numbered(sql):
    """The driver's `%s` placeholders as $1, $2... (a `%%` stays: the driver reads it as `%`)."""
    numbers = itertools.count(1)
    return re.sub(r"%(s|%)", lambda found: found.group(0) if found.group(1) == "%" else f"${next(numbers)}", sql)


class _CompiledOncePerDatabase:
    """A statement compiled once per database alias and vendor (`_compile`), kept in `_compiled`."""

    def _plan(self, using):
        connection = connections[using]
        key = (using, connection.vendor)
        plan = self._compiled.get(key)
        if plan is None:
            plan = self._compiled[key] = self._compile(using)
        return connection, plan


class PrecompiledQuery(_CompiledOncePerDatabase):
    """`build(*markers)` returns the queryset; each marker must reach the SQL as one parameter of its
    own (a value no real call passes, such as a negative id). `fetch(*values)` returns the model
    instances the queryset would, for `values` in place of the markers (for a `values_list()`
    queryset, each row's values as a tuple).

    Only for lookups that pass the value to the database as it is (`exact`, `in`, an expression of a
    `Value`): `iexact`, `contains` and the like escape it first on some databases (SQLite's LIKE),
    which a substituted value would skip."""

    def __init__(self, build, *markers, prepared=True):
        self._build = build
        self._markers = markers
        self._prepared = prepared  # False: a plan that depends on the values (see `execute`)
        self._compiled = {}  # (alias, vendor) -> compiled plan

    def fetch(self, *values, using="default"):
        connection, plan = self._plan(using)
        sql, positions, fixed, shape, for_update = plan
        if for_update and connection.features.has_select_for_update and connection.get_autocommit():
            # What the compiler would refuse on each call (its check runs at compile time only).
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(fixed)
        for position, value in zip(positions, values, strict=True):
            params[position] = value
        with connection.cursor() as cursor:
            execute(cursor, sql, params, prepared=self._prepared)
            rows = cursor.fetchall()
        return [shape(row) for row in rows]

    def first(self, *values, using="default"):
        """The first instance `fetch` returns, or None (for queries of one row at most)."""
        found = self.fetch(*values, using=using)
        return found[0] if found else None

    def _compile(self, using):
        queryset = self._build(*self._markers)
        compiler = queryset.query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        params = list(params)
        positions = []
        for marker in self._markers:
            found = [index for index, param in enumerate(params) if param == marker]
            if len(found) != 1:
                raise ValueError(f"marker {marker!r} must reach the SQL exactly once, found {len(found)}: {params}")
            positions.append(found[0])
        if queryset._iterable_class not in (ModelIterable, ValuesListIterable):
            raise ValueError("a precompiled query is a queryset of models, or a values_list() of fields")
        values = queryset._iterable_class is ValuesListIterable
        shaper = _row_shaper(compiler, using, values=values)
        return sql, positions, params, shaper, queryset.query.select_for_update


def _row_shaper(compiler, db, *, values=False):
    """What django.db.models.query.ModelIterable does with one row, for this compiled query (with
    `values`, for a `values_list()` of model fields: the row's values, as a tuple). The converters get
    the calling thread's connection, never the one that compiled the query."""
    select, klass_info = compiler.select, compiler.klass_info
    if compiler.query.annotations or (compiler.annotation_col_map and not values):
        raise ValueError("a precompiled query loads model columns only")
    converters = list(compiler.get_converters([column[0] for column in select]).items())

    def converted(row):
        if converters:
            connection = connections[db]
            row = list(row)
            for position, (functions, expression) in converters:
                value = row[position]
                for function in functions:
                    value = function(value, expression, connection)
                row[position] = value
        return row

    if values:  # values_list(): no model to build
        return lambda row: tuple(converted(row))
    model = klass_info["model"]
    start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
    init_list = [column[0].target.attname for column in select[start:end]]
    populators = get_related_populators(klass_info, select, db)

    def shape(row):
        row = converted(row)
        instance = model.from_db(db, init_list, row[start:end])
        for populator in populators:
            populator.populate(row, instance)
        return instance

    return shape


class PrecompiledInsert(_CompiledOncePerDatabase):
    """`INSERT` of one row of `model` into the columns of `field_names`, returning its primary key,
    compiled to SQL once per process and database. Each call prepares its values as the ORM's own
    insert does (each field's `get_db_prep_save` on the calling connection, so a datetime, a decimal
    or a JSON value reaches every database in the form it expects) and returns the new row's pk.

    No `pre_save` runs: a field with `auto_now_add` or a default must be given its value.

    With `unless_taken=(field names of a unique constraint)` a row whose key is already taken is not
    inserted (`ON CONFLICT (those columns) DO NOTHING`, on PostgreSQL and SQLite alike) and `insert`
    returns None; on PostgreSQL the statement waits for a transaction that holds the key uncommitted,
    and inserts only if that one rolls back. Any other refusal (NOT NULL, CHECK, another unique key)
    is still an IntegrityError: SQLite's `INSERT OR IGNORE` would skip such a row in silence."""

    def __init__(self, model, *field_names, unless_taken=()):
        self._model = model
        self._field_names = field_names
        self._unless_taken = tuple(unless_taken)
        self._compiled = {}

    def insert(self, *values, using="default"):
        connection, plan = self._plan(using)
        sql, fields, returning_params = plan
        params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
        # As the ORM's own insert: a failed statement marks the caller's transaction for rollback.
        with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
            execute(cursor, sql, params)
            returned = connection.ops.fetch_returned_insert_columns(cursor, returning_params)
        return None if returned is None else returned[0]

    def insert_many(self, rows, using="default"):
        """INSERT every row of `rows` (each a sequence of values in the order of `field_names`), in as
        few statements as the database takes (one on PostgreSQL; SQLite limits a statement's
        parameters). Each value is prepared by its field as `insert` prepares it; no model instance is
        built and no primary key returned: for a thousand rows no one reads back (a payout's lines),
        the ORM's bulk_create spends most of its time building and preparing instances."""
        if self._unless_taken:
            raise NotImplementedError("insert_many writes every row; unless_taken is for insert")
        connection, plan = self._plan(using)
        sql, fields, _ = plan
        # The compiled one-row statement is `INSERT INTO t (columns) VALUES (%s, ...) RETURNING ...`.
        head, _, values = sql.partition(" VALUES ")
        group = values.partition(" RETURNING ")[0]
        if not (head.startswith("INSERT INTO ") and group.startswith("(") and group.endswith(")")):
            raise ValueError("the compiled statement is not a one-row INSERT with VALUES: " + sql)
        rows = [list(row) for row in rows]
        size = max(1, connection.ops.bulk_batch_size(fields, rows))
        with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
            for start in range(0, len(rows), size):
                batch = rows[start : start + size]
                params = [
                    field.get_db_prep_save(value, connection)
                    for row in batch
                    for field, value in zip(fields, row, strict=True)
                ]
                # As text: one statement per row count would fill the prepared statements' slots.
                execute(cursor, f"{head} VALUES {', '.join([group] * len(batch))}", params, prepared=False)

    def _compile(self, using):
        from django.db.models.sql import InsertQuery

        meta = self._model._meta
        if not connections[using].features.can_return_columns_from_insert:
            raise NotImplementedError("a precompiled insert needs INSERT ... RETURNING")
        fields = [meta.get_field(name) for name in self._field_names]
        _one_plain_parameter_each(fields)
        query = InsertQuery(self._model)
        query.insert_values(fields, [self._model()])
        compiler = query.get_compiler(using=using)
        compiler.returning_fields = [meta.pk]
        [(sql, params)] = compiler.as_sql()
        if len(params) != len(fields):
            raise ValueError(f"expected one parameter per field, got {params}")
        if self._unless_taken:
            sql = _unless_taken(sql, meta, self._unless_taken, connections[using])
        return sql, fields, compiler.returning_params


def _unless_taken(sql, meta, field_names, connection):
    """`sql` (an INSERT ... RETURNING) that does nothing when the unique key of `field_names` is taken."""
    columns = [meta.get_field(name).column for name in field_names]
    from django.db.models import UniqueConstraint

    if not any(
        isinstance(constraint, UniqueConstraint) and constraint.condition is None
        and list(constraint.fields) == list(field_names)
        for constraint in meta.constraints
    ):  # fmt: skip
        raise ValueError(f"{meta.label} has no unique constraint on exactly {field_names}")
    head, returning = sql.rsplit(" RETURNING ", 1)
    target = ", ".join(connection.ops.quote_name(column) for column in columns)
    return f"{head} ON CONFLICT ({target}) DO NOTHING RETURNING {returning}"


class PrecompiledUpdate(_CompiledOncePerDatabase):
    """`UPDATE` of the columns of `set_names` on the rows matching `filter(**{name: value})` for each
    of `where_names` (exact lookups), compiled to SQL once per process and database. `update(set
    values..., where values...)` returns how many rows changed. Values are prepared as the ORM's own
    update does: `get_db_prep_save` for what is set, `get_db_prep_value` for what is matched."""

    def __init__(self, model, *, set_names, where_names):
        self._model = model
        self._set_names, self._where_names = tuple(set_names), tuple(where_names)
        self._compiled = {}

    def update(self, *values, using="default") -> int:
        connection, plan = self._plan(using)
        sql, set_fields, where_fields, where_positions, count = plan
        set_values, where_values = values[: len(set_fields)], values[len(set_fields) :]
        if any(value is None for value in where_values):
            raise ValueError("a precompiled update matches on values, never on None (the ORM writes IS NULL)")
        params = [
            field.get_db_prep_save(value, connection) for field, value in zip(set_fields, set_values, strict=True)
        ]
        params += [None] * (count - len(params))
        for field, position, value in zip(where_fields, where_positions, where_values, strict=True):
            params[position] = field.get_db_prep_value(value, connection)
        with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
            execute(cursor, sql, params)
            return cursor.rowcount

    def _compile(self, using):
        from django.db.models.sql import UpdateQuery

        meta = self._model._meta
        connection = connections[using]
        set_fields = [meta.get_field(name) for name in self._set_names]
        where_fields = [meta.get_field(name) for name in self._where_names]
        _one_plain_parameter_each(set_fields)
        markers = [_marker_for(field, index) for index, field in enumerate(where_fields)]
        queryset = self._model._base_manager.filter(**dict(zip(self._where_names, markers, strict=True)))
        query = queryset.query.chain(UpdateQuery)
        # Not None: for None the compiler writes `= NULL`, leaving no parameter to fill.
        query.add_update_values({field.name: _marker_for(field, 0) for field in set_fields})
        sql, params = query.get_compiler(using=using).as_sql()
        params = list(params)
        if len(params) != len(set_fields) + len(where_fields):
            raise ValueError(f"expected one parameter per field set and matched, got {params}")
        positions = []
        for field, marker in zip(where_fields, markers, strict=True):
            prepared = field.get_db_prep_value(marker, connection)
            found = [index for index, param in enumerate(params) if index >= len(set_fields) and param == prepared]
            if len(found) != 1:
                raise ValueError(f"{field.name}'s marker must reach the SQL exactly once, found {len(found)}: {params}")
            positions.append(found[0])
        return sql, set_fields, where_fields, positions, len(params)


def _one_plain_parameter_each(fields):
    """The compiled SQL must take each value as one plain `%s` (a field with a placeholder of its
    own, such as BinaryField's, would take it in another form)."""
    for field in fields:
        if hasattr(field, "get_placeholder"):
            raise ValueError(f"{field.name} has a placeholder of its own: not for a precompiled statement")


def _marker_for(field, index):
    """A value of the field's kind that no real call matches on, distinct for each field."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from django.db import models

    if isinstance(field, models.DateTimeField):
        return datetime(1901, 1, 1, tzinfo=UTC) + timedelta(seconds=index)
    if isinstance(field, (models.IntegerField, models.AutoField, models.BigAutoField)) or field.primary_key:
        return -1 - index
    if isinstance(field, models.DecimalField):
        return Decimal(-1 - index)
    return f"\x00precompiled-marker-{index}"
