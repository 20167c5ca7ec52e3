"""Read queries built and compiled once per process, then run with new values.

Building and compiling a queryset costs far more CPU than running it when the query is an
aggregate: the cost panel's per-branch sums (fourteen filtered aggregates) spent ~2.5 ms of
the web process's CPU in the ORM for a ~0.2 ms statement, on every reply's end and every
page. A `Compiled` query is written as an ordinary queryset, built once with marker values
in place of its parameters, and compiled to SQL once per database alias; each call then
only swaps the values in and runs the SQL, with Django's own converters on the rows (the
same values the queryset would give: SQLite's money sums, its datetimes).

Only for reads whose shape does not depend on the values (no `__in` lists, no conditional
filters): a value that the ORM would fold into the SQL text, or drop, is found missing at
compile time and raises. Whatever else the builder reads (a module constant, a setting, the
database vendor's branch in `cost_selectors.money_sum`) is fixed at the first call per
database vendor, like any compiled statement; a query whose shape varies gets one `Compiled`
per shape (`insight._HISTORY`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import connections, transaction
from django.db.models import Model, QuerySet, signals
from django.db.models.fields import AutoFieldMixin
from django.db.models.query import get_related_populators
from django.db.models.sql import InsertQuery
from django.db.transaction import TransactionManagementError


# Two sets of stand-ins, each compiled: a parameter is where, and only where, the two
# compilations bind different values, each exactly its own stand-in (the check in `_compile`).
def _int_marker(k: int, variant: int) -> int:
    # In range of every integer column, a small one's too (PostgreSQL's ORM turns an
    # out-of-range value into no query at all); the two sets differ in parity. A stand-in
    # equal to a constant of the query only gets the query refused (the check in `_compile`).
    return 30_011 + 1_001 * variant + k


def _datetime_marker(k: int, variant: int) -> datetime:
    return datetime(1901 + variant, 2, 3 + k, 4, 5, 6, tzinfo=UTC)  # apart by days: kept by every backend


def _str_marker(k: int, variant: int) -> str:
    return f"\x1fcompiled-marker-{variant}-{k}\x1f"


_MARKERS = {int: _int_marker, datetime: _datetime_marker, str: _str_marker}


class Compiled:
    """`build(**params)` -> a queryset, compiled once per database vendor; `params` name each
    parameter's type (int, str or datetime). `rows(**values)` / `dicts(**values)` run a
    `.values()` or `.values_list()` one; `instances(**values)` a queryset of model rows
    (`.only()`, `.defer()`, `select_related()` and `select_for_update()` allowed, the related
    rows filled in by Django's own populators as the queryset fills them; not
    `prefetch_related` or annotations, which it refuses)."""

    def __init__(self, build: Callable[..., QuerySet], using: str = "default", **params: type):
        self.build = build
        self.using = using
        self.params = params
        self._plans: dict[str, _Plan] = {}
        self._lock = threading.Lock()

    def _plan(self) -> _Plan:
        vendor = connections[self.using].vendor  # a test may swap the backend under one alias
        plan = self._plans.get(vendor)
        if plan is None:
            with self._lock:
                plan = self._plans.get(vendor) or self._compile(vendor)
        return plan

    def _compiled(self, variant: int):
        markers = {name: _MARKERS[kind](k, variant) for k, (name, kind) in enumerate(self.params.items())}
        queryset = self.build(**markers)
        compiler = queryset.query.get_compiler(self.using)
        sql, params = compiler.as_sql()
        connection = connections[self.using]
        return queryset, compiler, sql, list(params), {name: _adapt(connection, value) for name, value in markers.items()}

    def _compile(self, vendor: str) -> _Plan:
        queryset, compiler, sql, params, adapted = self._compiled(0)
        _, _, other_sql, other_params, other_adapted = self._compiled(1)
        slots = [next((name for name, marker in adapted.items() if _same(value, marker)), None) for value in params]
        # The SQL must not depend on the values, and a value must reach it only as itself: a
        # parameter the ORM folded into the text, dropped, or changed (`__contains` binds
        # "%value%") would be frozen at the stand-in. Refused here, never run wrong.
        shaped_alike = other_sql == sql and len(other_params) == len(params)
        if not shaped_alike or any(
            (name is None and b != a) or (name is not None and not _same(b, other_adapted[name]))
            for a, b, name in zip(params, other_params, slots)
        ):
            raise ValueError("its SQL depends on the parameters' values, or one is bound changed: not a Compiled query")
        missing = set(self.params) - set(slots)
        if missing:
            raise ValueError(f"parameters {sorted(missing)} do not reach the SQL as bound values: not a Compiled query")
        query = queryset.query
        fields = [s[0] for s in compiler.select[0 : compiler.col_count]]
        names = list(query.selected) if query.selected else [*query.extra_select, *query.values_select, *query.annotation_select]
        model_fields = None
        if compiler.klass_info is not None and not query.values_select:  # model rows, as Model.from_db takes them
            if queryset._prefetch_related_lookups or compiler.annotation_col_map or queryset._fetch_mode.track_peers:
                raise ValueError("prefetch_related, annotations and peer fetching are not supported by Compiled.instances")
            chosen = compiler.klass_info["select_fields"]
            start, end = chosen[0], chosen[-1] + 1  # as ModelIterable reads them
            # The select_related rows, as ModelIterable fills them in; made once: without peer
            # tracking a populator keeps no state between rows.
            related = get_related_populators(compiler.klass_info, compiler.select, self.using, queryset._fetch_mode)
            model_fields = (compiler.klass_info["model"], [f.target.attname for f in fields[start:end]], start, end, related)
        plan = _Plan(sql, params, slots, list(compiler.get_converters(fields).items()), names, model_fields, query.select_for_update)
        self._plans[vendor] = plan
        return plan

    def rows(self, **values) -> list[tuple]:
        if values.keys() != self.params.keys():
            raise TypeError(f"expected {sorted(self.params)}, got {sorted(values)}")
        for name, value in values.items():
            # Bound as they are, not through a lookup: None would be `= NULL` (no rows), and a
            # naive datetime would be read as UTC, not as the ORM reads it.
            kind = self.params[name]
            if not isinstance(value, kind) or isinstance(value, bool) or (kind is datetime and value.tzinfo is None):
                raise TypeError(f"{name} must be an aware {kind.__name__}, got {value!r}" if kind is datetime
                                else f"{name} must be a {kind.__name__}, got {value!r}")
        plan = self._plan()
        connection = connections[self.using]
        if plan.locks and connection.features.has_select_for_update and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        bound = [fixed if name is None else _adapt(connection, values[name]) for fixed, name in zip(plan.params, plan.slots)]
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, bound)
            rows = cursor.fetchall()
        if not plan.converters:
            return [tuple(row) for row in rows]
        out = []
        for row in map(list, rows):
            for pos, (converters, expression) in plan.converters:
                value = row[pos]
                for converter in converters:
                    value = converter(value, expression, connection)
                row[pos] = value
            out.append(tuple(row))
        return out

    def dicts(self, **values) -> list[dict]:
        names = self._plan().names
        return [dict(zip(names, row)) for row in self.rows(**values)]

    def instances(self, **values) -> list:
        rows = self.rows(**values)
        model_fields = self._plan().model_fields
        if model_fields is None:
            raise TypeError("instances() needs a queryset of model rows, not values()")
        model, attnames, start, end, related = model_fields
        out = []
        for row in rows:
            obj = model.from_db(self.using, attnames, row[start:end])
            for populator in related:
                populator.populate(row, obj)
            out.append(obj)
        return out

    def first(self, **values):
        """The first model row, or None (the query's own filter or slice makes it one)."""
        return next(iter(self.instances(**values)), None)


# --- writes ---------------------------------------------------------------------------------
# A new row and a save of some fields, for plain models (no parent models, a primary key the
# database assigns, no database defaults or generated columns): Model.save() with the SQL made
# once per model and database vendor. The values go through each field's own pre_save and
# get_db_prep_save, as the ORM's compiler passes them; the signals are sent as save() sends
# them; an error inside a transaction marks it for rollback, as save() does.

_INSERTS: dict[tuple[type, str, str], tuple[str, list, list]] = {}
_UPDATES: dict[tuple[type, tuple[str, ...], str, str], tuple[str, list]] = {}


def _plain(model: type[Model]) -> None:
    meta = model._meta
    if meta.parents or meta.order_with_respect_to or not isinstance(meta.pk, AutoFieldMixin) or any(
        f.generated or f.has_db_default() or hasattr(f, "get_placeholder_sql") or hasattr(f, "get_placeholder")
        for f in meta.local_concrete_fields
    ):
        raise ValueError(f"{meta.label}: not a plain model (parents, order_with_respect_to, a primary key not assigned "
                         "by the database, database defaults, generated columns or custom placeholders)")


def _prepared(obj: Model, fields: list, add: bool, connection) -> list:
    """The values as the ORM's compiler binds them; an expression (F(), Now()) would be compiled
    into the SQL by the ORM, so it is refused here rather than bound as a value."""
    values = [field.pre_save(obj, add) for field in fields]
    for field, value in zip(fields, values):
        if hasattr(value, "resolve_expression"):
            raise ValueError(f"{field.name}: an expression, which compiled writes do not take; use save()")
    return [field.get_db_prep_save(value, connection) for field, value in zip(fields, values)]


def _insert_plan(model: type[Model], using: str) -> tuple[str, list, list]:
    _plain(model)
    connection = connections[using]
    if not connection.features.can_return_columns_from_insert:
        raise ValueError(f"{connection.vendor} cannot return the new row's id from its INSERT")
    meta = model._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    returning = list(meta.db_returning_fields)
    query = InsertQuery(model)
    query.insert_values(fields, [model()])
    compiler = query.get_compiler(using)
    compiler.returning_fields = returning
    [(sql, _)] = compiler.as_sql()
    return sql, fields, returning


def insert(obj: Model, using: str = "default") -> Model:
    """`obj.save()` of a new row (what `Model.objects.create(**fields)` does with `Model(**fields)`),
    its INSERT compiled once: the ORM's build of it cost 0.2-0.4 ms of CPU a row."""
    model, connection = type(obj), connections[using]
    key = (model, using, connection.vendor)
    plan = _INSERTS.get(key) or _INSERTS.setdefault(key, _insert_plan(model, using))
    sql, fields, returning = plan
    if not obj._state.adding or obj.pk is not None:
        raise ValueError("insert() takes a new object without a primary key")
    obj._prepare_related_fields_for_save(operation_name="save")  # save()'s check of unsaved related objects
    signals.pre_save.send(sender=model, instance=obj, raw=False, using=using, update_fields=None)
    with transaction.mark_for_rollback_on_error(using):
        params = _prepared(obj, fields, True, connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    for field, value in zip(returning, row, strict=True):
        setattr(obj, field.attname, value)
    obj._state.adding, obj._state.db = False, using
    signals.post_save.send(sender=model, instance=obj, created=True, update_fields=None, raw=False, using=using)
    return obj


def save_fields(obj: Model, *names: str, using: str = "default") -> None:
    """`obj.save(update_fields=names)` with its UPDATE compiled once per set of fields (an
    auto_now field among them is stamped, as save() stamps it); a row that is gone raises the
    model's NotUpdated (a DatabaseError), as save() does."""
    model, connection = type(obj), connections[using]
    key = (model, names, using, connection.vendor)
    plan = _UPDATES.get(key)
    if plan is None:
        _plain(model)
        fields = [model._meta.get_field(name) for name in names]
        if not names or len(set(names)) != len(names) or any(not f.concrete or f.primary_key for f in fields):
            raise ValueError(f"{names}: not a set of concrete, non-key fields of {model._meta.label}")
        quote = connection.ops.quote_name
        sql = (f"UPDATE {quote(model._meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "
               f"WHERE {quote(model._meta.pk.column)} = %s")
        plan = _UPDATES.setdefault(key, (sql, fields))
    sql, fields = plan
    update_fields = frozenset(names)
    obj._prepare_related_fields_for_save(operation_name="save")  # as save() checks, whatever it updates
    if obj.pk is None:
        raise ValueError("Cannot force an update in save() with no primary key.")  # save()'s words
    signals.pre_save.send(sender=model, instance=obj, raw=False, using=using, update_fields=update_fields)
    with transaction.mark_for_rollback_on_error(using):
        params = _prepared(obj, fields, False, connection)
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, model._meta.pk.get_db_prep_value(obj.pk, connection)])
            if not cursor.rowcount:  # as save(): its own exception, the transaction marked for rollback
                raise model.NotUpdated("Save with update_fields did not affect any rows.")
    obj._state.db = using
    signals.post_save.send(sender=model, instance=obj, created=False, update_fields=update_fields, raw=False, using=using)


def is_row_id(value: int) -> bool:
    """Whether an id from outside (a URL) can be bound at all: SQLite refuses an integer past
    64 bits where the ORM finds no row. A caller checks before binding such a value."""
    return -(2**63) <= value < 2**63


class _Plan:
    __slots__ = ("sql", "params", "slots", "converters", "names", "model_fields", "locks")

    def __init__(self, sql, params, slots, converters, names, model_fields, locks):
        self.sql, self.params, self.slots, self.converters, self.names = sql, params, slots, converters, names
        self.model_fields, self.locks = model_fields, locks


def _adapt(connection, value):
    """A value as the ORM binds it: datetimes through the backend (SQLite binds text)."""
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


def _same(bound, marker) -> bool:
    return type(bound) is type(marker) and bound == marker
