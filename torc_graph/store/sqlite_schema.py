"""SQLite schema of the graph store: table names, DDL, and named migrations.

Every collection type is one table whose name comes only from the model enums (never from
input): ``doc_<collection>`` and ``edge_<edge>``. A row holds one document; ``wf`` is the owning
workflow's key (``''`` for the global collections), ``key`` its ``_key`` and ``doc`` the full JSON
including ``_key``/``_id``/``_rev`` (and ``_from``/``_to`` for edges), so reads need no assembly.
``seq`` (the rowid) is the insertion order. The revision lives only inside ``doc`` so set-based
updates can renew it in the same ``json_set`` call that changes the fields.

Schema changes are explicit, named migrations recorded in ``schema_migrations``. Applying them
is idempotent and safe when several processes start at once: the check is repeated under
``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torc_graph.model import Collection, Edge, GlobalCollection, GlobalEdge

#: Fields of vertex collections with an expression index ``(wf, json_extract(doc, '$.f'))``.
#: Queries must use exactly ``json_extract(<alias>.doc, '$.<f>')`` for the planner to match them.
#: (Migrations 0003 and 0007 replace the jobs' two by indexes on columns, :mod:`.sqlite_columns`.)
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    Collection.JOBS.value: ("status", "name"),
    Collection.FILES.value: ("name",),
    Collection.USER_DATA.value: ("name",),
    Collection.RESOURCE_REQUIREMENTS.value: ("name",),
    Collection.RESULTS.value: ("job_key",),
}


def doc_table(name: str) -> str:
    """The table of a document collection (``name`` must come from the model enums)."""
    return f"doc_{name}"


def edge_table(name: str) -> str:
    """The table of an edge collection (``name`` must come from the model enums)."""
    return f"edge_{name}"


def document_names() -> Iterator[str]:
    yield from (c.value for c in Collection)
    yield from (c.value for c in GlobalCollection)


def edge_names() -> Iterator[str]:
    yield from (e.value for e in Edge)
    yield from (e.value for e in GlobalEdge)


def all_tables() -> Iterator[str]:
    yield from (doc_table(n) for n in document_names())
    yield from (edge_table(n) for n in edge_names())


def _initial() -> list[str]:
    stmts = [
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('key_counter', 0)",
    ]
    for name in document_names():
        t = doc_table(name)
        stmts.append(
            f"CREATE TABLE {t} (seq INTEGER PRIMARY KEY, wf TEXT NOT NULL, key TEXT NOT NULL, "
            f"doc TEXT NOT NULL, UNIQUE (wf, key))"
        )
        for field in INDEXED_FIELDS.get(name, ()):
            stmts.append(
                f"CREATE INDEX ix_{t}_{field} ON {t} (wf, json_extract(doc, '$.{field}'))"
            )
    for name in edge_names():
        t = edge_table(name)
        stmts.append(
            f"CREATE TABLE {t} (seq INTEGER PRIMARY KEY, wf TEXT NOT NULL, key TEXT NOT NULL, "
            f"from_id TEXT NOT NULL, to_id TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (wf, key))"
        )
        stmts.append(f"CREATE INDEX ix_{t}_from ON {t} (wf, from_id)")
        stmts.append(f"CREATE INDEX ix_{t}_to ON {t} (wf, to_id)")
    return stmts


#: Job fields in claim order (``prepare_jobs_for_submission``'s default ``sort_method``,
#: ``gpus_runtime_memory``: each descending, ties in insertion order).
CLAIM_ORDER = ("internal.num_gpus", "internal.runtime_seconds", "internal.memory_bytes")


def _scale_indexes() -> list[str]:
    """Indexes that keep hot queries independent of the workflow's size.

    * ``(wf) WHERE seq > 0`` on every document table: its entries are ordered by ``seq`` (the
      rowid), so an unfiltered page in insertion order (listings, joins, batches) walks it and
      stops at ``LIMIT`` instead of reading and sorting every document of the workflow (a
      1,000-row join on a 100,000-job workflow: 64 ms -> 3 ms; a listing page at skip 50,000:
      63 ms -> 2.5 ms). It is partial so that only queries that opt in with the always-true
      ``seq > 0`` (unfiltered ones) use it; filtered queries keep their field indexes.
    * the claim order on jobs: with it the candidates of a claim come from the index in order
      (0.05 ms) instead of a sort of every ready job (23 ms with 10,000 ready jobs).
    """
    stmts = [f"CREATE INDEX IF NOT EXISTS ix_{doc_table(n)}_seq ON {doc_table(n)} (wf) "
             "WHERE seq > 0" for n in document_names()]
    t = doc_table(Collection.JOBS.value)
    order = ", ".join(f"json_extract(doc, '$.{f}') DESC" for f in CLAIM_ORDER)
    stmts.append(f"CREATE INDEX IF NOT EXISTS ix_{t}_claim ON {t} "
                 f"(wf, json_extract(doc, '$.status'), {order})")
    return stmts


def _job_columns() -> list[str]:
    """Jobs' hot fields as plain columns (:mod:`.sqlite_columns`), filled from the documents.

    The expression indexes on ``status`` and the claim order are replaced by indexes on the
    columns' ``coalesce`` expressions (what filters and orders compile to), so updating a
    status or a resource field maintains them without parsing JSON."""
    from torc_graph.store import sqlite_columns as cols

    jobs = Collection.JOBS.value
    t = doc_table(jobs)
    added = cols.MIGRATION_COLUMNS["0003_job_columns"]
    stmts = [f"ALTER TABLE {t} ADD COLUMN rev TEXT"]
    stmts += _add_columns(t, added, ["rev = json_extract(doc, '$._rev')"])
    by_path = {c.path: c for c in added}
    # One index serves both status lookups (its prefix) and the claim order: every status
    # change maintains one index, not two.
    stmts += [f"DROP INDEX IF EXISTS ix_{t}_status", f"DROP INDEX IF EXISTS ix_{t}_claim"]
    order = ", ".join(f"{cols.index_expr(by_path[f])} DESC" for f in CLAIM_ORDER)
    stmts.append(f"CREATE INDEX ix_{t}_status_claim ON {t} "
                 f"(wf, {cols.index_expr(by_path['status'])}, {order})")
    return stmts


def _add_columns(table: str, added, sets: list[str]) -> list[str]:
    """ADD COLUMN for each :class:`~.sqlite_columns.Column` of ``added`` and one UPDATE filling
    them (and the extra ``sets``) from the documents, by the column rule."""
    stmts = []
    for col in added:
        # No declared type: no affinity, so a REAL stays REAL (60.0 is not turned into 60).
        stmts.append(f"ALTER TABLE {table} ADD COLUMN {col.name}")
        p = f"'$.{col.path}'"
        value = f"json_extract(doc, {p})"
        if col.kind == "text":
            ok = f"json_type(doc, {p}) = 'text'"
        else:  # integers, and non-zero reals that survive SQLite's 15-digit JSON output
            # (a zero REAL may be -0.0, whose sign a column would lose)
            ok = (f"(json_type(doc, {p}) = 'integer' OR (json_type(doc, {p}) = 'real' AND "
                  f"{value} <> 0 AND "
                  f"json_extract(json_set('{{}}', '$.v', {value}), '$.v') = {value}))")
        sets.append(f"{col.name} = iif({ok}, {value}, NULL)")
    stmts.append(f"UPDATE {table} SET {', '.join(sets)}")
    return stmts


def _job_name_column() -> list[str]:
    """Jobs' ``name`` as a column (:mod:`.sqlite_columns`); the name index moves from the
    expression ``json_extract(doc, '$.name')``, which parsed each new job's JSON on insert, to
    the column's ``coalesce`` expression (what filters and sorts on ``name`` compile to)."""
    from torc_graph.store import sqlite_columns as cols

    t = doc_table(Collection.JOBS.value)
    added = cols.MIGRATION_COLUMNS["0007_job_name_column"]
    return [*_add_columns(t, added, []), f"DROP INDEX IF EXISTS ix_{t}_name",
            f"CREATE INDEX ix_{t}_name_col ON {t} (wf, {cols.index_expr(added[0])})"]


def _global_tables(*names: str) -> list[str]:
    """CREATE statements of global document tables added after ``0001_initial``. A database
    created after such a migration was written already has them from ``0001_initial``: hence
    IF NOT EXISTS."""
    stmts = []
    for name in names:
        t = doc_table(name)
        stmts.append(
            f"CREATE TABLE IF NOT EXISTS {t} (seq INTEGER PRIMARY KEY, wf TEXT NOT NULL, "
            f"key TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (wf, key))"
        )
        stmts.append(f"CREATE INDEX IF NOT EXISTS ix_{t}_seq ON {t} (wf) WHERE seq > 0")
    return stmts


def _auth_tokens() -> list[str]:
    """The token and owner tables (:mod:`torc_graph.engine.tokens`)."""
    return _global_tables(GlobalCollection.AUTH_TOKENS.value,
                          GlobalCollection.WORKFLOW_OWNERS.value)


def _tasks() -> list[str]:
    """The background tasks table (:mod:`torc_graph.engine.tasks`), indexed by workflow."""
    t = doc_table(GlobalCollection.TASKS.value)
    return _global_tables(GlobalCollection.TASKS.value) + [
        f"CREATE INDEX IF NOT EXISTS ix_{t}_workflow ON {t} (wf, json_extract(doc, '$.workflow'))",
    ]


def _dashboard_sessions() -> list[str]:
    """The dashboard's session table (:mod:`torc_graph.engine.sessions`)."""
    return _global_tables(GlobalCollection.DASHBOARD_SESSIONS.value)


@dataclass(frozen=True)
class Migration:
    """A named schema change: its statements run in one transaction and it is recorded once."""

    name: str
    statements: Callable[[], list[str]]


#: Applied in order; never edit or reorder an entry that has shipped, append a new one instead.
MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_initial", _initial),
    Migration("0002_scale_indexes", _scale_indexes),
    Migration("0003_job_columns", _job_columns),
    Migration("0004_auth_tokens", _auth_tokens),
    Migration("0005_dashboard_sessions", _dashboard_sessions),
    Migration("0006_tasks", _tasks),
    Migration("0007_job_name_column", _job_name_column),
)

_CREATE_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)


def applied(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations recorded in the database, in the order applied."""
    try:
        rows = conn.execute("SELECT name FROM schema_migrations ORDER BY rowid").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    return [r[0] for r in rows]


def pending(conn: sqlite3.Connection) -> list[Migration]:
    done = set(applied(conn))
    return [m for m in MIGRATIONS if m.name not in done]


def apply_pending(conn: sqlite3.Connection) -> list[str]:
    """Apply every pending migration inside the caller's ``BEGIN IMMEDIATE`` transaction.

    The caller holds the write lock, so no other process can apply the same migration
    concurrently; the pending list is recomputed here, under that lock. Returns the names applied.
    """
    conn.execute(_CREATE_MIGRATIONS)
    names = []
    for m in pending(conn):
        for stmt in m.statements():
            conn.execute(stmt)
        conn.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
            (m.name, _dt.datetime.now(_dt.timezone.utc).isoformat()),
        )
        names.append(m.name)
    return names
