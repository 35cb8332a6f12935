"""Hot job fields as real SQLite columns, behind the document interface of the store.

``initialize_jobs``, claims and completions change a job's ``status``, ``_rev`` and resource
fields (``internal.*``) on up to every job of a workflow. Rewriting the JSON ``doc`` for that cost
a JSON parse and serialization per row plus the maintenance of every expression index over
``doc`` (profiled: 93 % of ``initialize_jobs`` at 10^6 jobs). These fields are therefore also
held in plain columns of ``doc_jobs`` (migration ``0003_job_columns``) and updated set-based
without touching ``doc``.

The rule, for every column below (``_rev``: always set):

* the column holds the field's value iff that value has the column's kind (a string; a number
  that round-trips exactly: a 64-bit integer, or a float SQLite writes back unchanged; never a
  bool). It is then the truth, and the copy in ``doc`` may be stale. Columns have no type
  affinity, so ``60.0`` stays a float and ``60`` an integer (``typeof`` = their ``json_type``);
* otherwise the column is NULL and ``doc`` holds the truth (absent, null, object, float...).
  A column becomes NULL only by a write that writes the field into ``doc`` in the same statement.

Reads overlay the non-NULL columns onto ``doc`` (:func:`read_expr`), filters and orders use
``coalesce(column, json_extract(doc, path))`` (:func:`field_sql`), so callers see exactly the
documents they wrote. Names below come from this module only, never from input.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torc_graph.model import Collection

_INT64 = (-(2**63), 2**63 - 1)
_MISSING = object()


@dataclass(frozen=True)
class Column:
    """One document field kept in a column: its dotted ``path``, column name and kind."""

    path: str
    name: str
    kind: str  # "text" or "number"

    def accepts(self, value: Any) -> bool:
        if self.kind == "text":
            return isinstance(value, str)
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return _INT64[0] <= value <= _INT64[1]
        # SQLite writes a REAL into JSON with 15 significant digits: only floats that survive
        # that (and are not -0.0, which would lose its sign) may live in a column. Whole
        # numbers below 10^15 always do (the common case, e.g. 60.0 seconds: no formatting).
        if not isinstance(value, float) or not math.isfinite(value):
            return False
        if value.is_integer() and 0 < abs(value) < 1e15:
            return True
        return math.copysign(1.0, value) > 0 and float(f"{value:.15g}") == value

    def value_of(self, value: Any) -> Any:
        """The column value for a field value: itself if it has the kind, else NULL."""
        return value if self.accepts(value) else None


#: The columns each migration adds, by migration name (a shipped entry never changes): a new
#: column needs a new migration (and no path deeper than two levels, see ``_ROW_PLANS``).
MIGRATION_COLUMNS: dict[str, tuple[Column, ...]] = {
    "0003_job_columns": (
        Column("status", "status", "text"),
        Column("internal.num_cpus", "i_num_cpus", "number"),
        Column("internal.num_gpus", "i_num_gpus", "number"),
        Column("internal.num_nodes", "i_num_nodes", "number"),
        Column("internal.memory_bytes", "i_memory_bytes", "number"),
        Column("internal.runtime_seconds", "i_runtime_seconds", "number"),
        Column("internal.scheduler_config_id", "i_scheduler_config_id", "text"),
    ),
    # The name index on a column: inserting a job maintains it without parsing the document's
    # JSON (the expression index ``json_extract(doc, '$.name')`` parsed every new row).
    "0007_job_name_column": (Column("name", "name", "text"),),
}

#: Column fields per document collection (only jobs so far): every migration's columns.
COLUMNS: dict[str, tuple[Column, ...]] = {
    Collection.JOBS.value: MIGRATION_COLUMNS["0003_job_columns"]
    + MIGRATION_COLUMNS["0007_job_name_column"],
}

#: Collections whose ``_rev`` is the column ``rev`` (so column-only updates renew it).
REV_COLUMN = frozenset(COLUMNS)

NEW_REV = "lower(hex(randomblob(8)))"


def new_rev_sql(b) -> str:
    """SQL for a fresh ``_rev`` per updated row (table aliased ``t``): a random prefix per
    statement (binder ``b``) and the row's seq. Unique per row and write, like the
    ``randomblob`` revisions, at a fraction of their cost (3.8 -> 0.3 us per row)."""
    return f"({b(os.urandom(8).hex())} || t.seq)"


def columns(collection: str) -> tuple[Column, ...]:
    return COLUMNS.get(collection, ())


def column_for(collection: str, path: str) -> Column | None:
    for col in columns(collection):
        if col.path == path:
            return col
    return None


def is_column_parent(collection: str, path: str) -> bool:
    """Whether ``path`` is a proper ancestor of a column path (e.g. ``internal``)."""
    return any(col.path.startswith(path + ".") for col in columns(collection))


def _json_path(path: str) -> str:
    return "'$." + path + "'"


def field_sql(collection: str, alias: str, path: str) -> tuple[str, str] | None:
    """``(value, json_type)`` SQL of a column field on row ``alias``; None if not a column."""
    col = column_for(collection, path)
    if col is None:
        return None
    c, p = f"{alias}.{col.name}", _json_path(path)
    return (f"coalesce({c}, json_extract({alias}.doc, {p}))",
            f"iif({c} IS NOT NULL, typeof({c}), json_type({alias}.doc, {p}))")


def index_expr(col: Column) -> str:
    """The expression an index must use to serve :func:`field_sql` (no table alias)."""
    return f"coalesce({col.name}, json_extract(doc, {_json_path(col.path)}))"


def read_expr(collection: str, alias: str) -> str:
    """SQL for the whole document of row ``alias``: ``doc`` with the columns overlaid.

    A NULL column sets nothing (its path becomes ``$[0]``, a no-op on an object). If a nested
    column is set while ``doc`` holds a non-object parent (a stale one), the parent is removed
    first so ``json_set`` can create it, which is what writing the field did."""
    cols = columns(collection)
    if not cols:
        return f"{alias}.doc"
    doc = f"{alias}.doc"
    parents = sorted({c.path.rsplit(".", 1)[0] for c in cols if "." in c.path})
    if parents:
        removes = []
        for parent in parents:
            under = " OR ".join(f"{alias}.{c.name} IS NOT NULL" for c in cols
                                if c.path.startswith(parent + "."))
            jp = _json_path(parent)
            removes.append(f"iif(({under}) AND json_type({doc}, {jp}) <> 'object', {jp}, '$[0]')")
        doc = f"json_remove({doc}, {', '.join(removes)})"
    args = [f"'$._rev', {alias}.rev"] if collection in REV_COLUMN else []
    for c in cols:
        args.append(f"iif({alias}.{c.name} IS NULL, '$[0]', {_json_path(c.path)}), {alias}.{c.name}")
    return f"json_set({doc}, {', '.join(args)})"


def _lookup(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


#: Per collection: (top-level field, nested field or None, column) in column order.
_ROW_PLANS = {name: [(*(c.path.split(".", 1) + [None])[:2], c) for c in cols]
              for name, cols in COLUMNS.items()}


def row_values(collection: str, doc: dict[str, Any]) -> tuple[Any, ...]:
    """Column values for a whole document (insert, single-document update), in column order."""
    row = _ROWS.get(collection)
    return row(doc) if row is not None else ()


def row_function(collection: str):
    """:func:`row_values` of ``collection`` as one function (None if it has no columns).

    It runs once per inserted job, so it is generated once per collection as straight-line
    code (profiled: a generic path walk was ~8 % of a bulk_jobs request; a loop calling one
    check per column still ~3 %): ints and strings are decided by their exact type, anything
    else by :meth:`Column.accepts`. The generated text holds only this module's names and
    paths (identifiers, written with ``repr``), never input."""
    plans = _ROW_PLANS.get(collection)
    if not plans:
        return None
    env: dict[str, Any] = {"_LO": _INT64[0], "_HI": _INT64[1], "_NO": {}.get}
    parents = sorted({top for top, sub, _c in plans if sub is not None})
    lines = ["def row(doc):", "    get = doc.get"]
    for j, top in enumerate(parents):
        lines.append(f"    p{j} = get({top!r})")
        lines.append(f"    g{j} = p{j}.get if type(p{j}) is dict else _NO")
    values = []
    for i, (top, sub, col) in enumerate(plans):
        env[f"_ok{i}"] = col.accepts
        read = f"get({top!r})" if sub is None else f"g{parents.index(top)}({sub!r})"
        if col.kind == "text":
            values.append(f"(v if type(v := {read}) is str else None)")
        else:
            values.append(f"(v if type(v := {read}) is int and _LO <= v <= _HI else "
                          f"v if v is not None and _ok{i}(v) else None)")
    lines.append("    return (" + ", ".join(values) + ",)")
    exec("\n".join(lines), env)  # noqa: S102 (module constants only, see above)
    return env["row"]


@dataclass
class PatchSplit:
    """A field-path patch divided between the columns and ``doc``."""

    columns: dict[Column, Any]  # column -> new value (None: NULL, the truth moves to doc)
    doc_patch: dict[str, Any]  # what json_set must write into doc
    refresh: list[Column]  # columns to copy into doc first (a path below them is written)


def split_patch(collection: str, patch: Mapping[str, Any], system: frozenset[str]) -> PatchSplit:
    """Route each entry of a field-path patch (as :func:`torc_graph.store.sql.patch_expr` reads
    it, in order) to a column or to ``doc``.

    * the column path itself with a value of the column's kind: the column only;
    * the column path with another value: NULL in the column, the value into ``doc``;
    * an ancestor (``internal``): written into ``doc``; the column takes the value found inside
      it (or NULL);
    * a descendant (``status.x``): written into ``doc`` after the column's current value has
      been copied there (so ``json_set`` sees the true parent); the column becomes NULL.
    """
    cols = columns(collection)
    out = PatchSplit({}, {}, [])
    for path, value in patch.items():
        if path in system:
            continue
        col = column_for(collection, path)
        if col is not None:
            if col.accepts(value):
                out.columns[col] = value
                out.doc_patch.pop(path, None)
            else:
                out.columns[col] = None
                out.doc_patch[path] = value
            continue
        out.doc_patch[path] = value
        for c in cols:
            if c.path.startswith(path + "."):
                inner = _lookup(value, c.path[len(path) + 1:].split("."))
                out.columns[c] = None if inner is _MISSING else c.value_of(inner)
            elif path.startswith(c.path + "."):
                if c not in out.columns and c not in out.refresh:
                    out.refresh.append(c)
                out.columns[c] = None
    return out


def refresh_expr(doc: str, alias: str, refresh: list[Column]) -> str:
    """``doc`` with the listed (non-NULL) columns copied into it."""
    if not refresh:
        return doc
    args = ", ".join(f"iif({alias}.{c.name} IS NULL, '$[0]', {_json_path(c.path)}), "
                     f"{alias}.{c.name}" for c in refresh)
    return f"json_set({doc}, {args})"


_ROWS = {name: row_function(name) for name in COLUMNS}
