"""Querysets compiled to SQL once per process and database, then run again with new values.

Turning a queryset into SQL (cloning it, resolving the filters, choosing the columns and joins)
costs more CPU than the database spends answering a lookup by primary key: on the hot paths
(authentication loads the user with its wallet on every request) it was the largest single cost of
a balance read (bench/profile_request.py). A `PrecompiledQuery` builds its queryset once, with
marker values in place of the real ones, keeps the compiler's SQL and its description of the rows,
and on each call only substitutes the values, executes, and builds the model instances exactly as
Django's own iterator does (the same converters, `from_db`, and select_related populators), on any
database. `tests` hold it to the plain queryset's answer.
"""

from django.db import connections
from django.db.models.query import get_related_populators
from django.db.transaction import TransactionManagementError


class PrecompiledQuery:
    """`build(*markers)` returns the queryset; each marker must reach the SQL as one parameter of its
    own (a value no real call passes, such as a negative id). `fetch(*values)` returns the model
    instances the queryset would, for `values` in place of the markers.

    Only for lookups that pass the value to the database as it is (`exact`, `in`): `iexact`,
    `contains` and the like escape it first on some databases (SQLite's LIKE), which a substituted
    value would skip."""

    def __init__(self, build, *markers):
        self._build = build
        self._markers = markers
        self._compiled = {}  # (alias, vendor) -> compiled plan

    def fetch(self, *values, using="default"):
        connection = connections[using]
        plan = self._compiled.get((using, connection.vendor))
        if plan is None:
            plan = self._compiled[(using, connection.vendor)] = self._compile(using)
        sql, positions, fixed, shape, for_update = plan
        if for_update and connection.features.has_select_for_update and connection.get_autocommit():
            # What the compiler would refuse on each call (its check runs at compile time only).
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(fixed)
        for position, value in zip(positions, values, strict=True):
            params[position] = value
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
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
        return sql, positions, params, _row_shaper(compiler, using), queryset.query.select_for_update


def _row_shaper(compiler, db):
    """What django.db.models.query.ModelIterable does with one row, for this compiled query. The
    converters get the calling thread's connection, never the one that compiled the query."""
    select, klass_info = compiler.select, compiler.klass_info
    if compiler.annotation_col_map:
        raise ValueError("a precompiled query loads model columns only")
    model = klass_info["model"]
    start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
    init_list = [column[0].target.attname for column in select[start:end]]
    populators = get_related_populators(klass_info, select, db)
    converters = list(compiler.get_converters([column[0] for column in select]).items())

    def shape(row):
        if converters:
            connection = connections[db]
            row = list(row)
            for position, (functions, expression) in converters:
                value = row[position]
                for function in functions:
                    value = function(value, expression, connection)
                row[position] = value
        instance = model.from_db(db, init_list, row[start:end])
        for populator in populators:
            populator.populate(row, instance)
        return instance

    return shape
