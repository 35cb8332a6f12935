"""``initialize_jobs``' row writes on SQLite as one statement (:class:`InitialJobState`).

The generic :meth:`GraphStore.set_initial_job_state` runs a pass per resource requirements
document, per scheduler and per status, so every job row (and its index entries) was written
two or three times; profiled at 10^6 jobs, those writes were nearly all of ``initialize_jobs``.
Here one ``UPDATE`` computes each job's resources, scheduler and status from its edges and
writes the row once. Used only when every value fits its column (:mod:`.sqlite_columns`);
otherwise the caller falls back to the generic passes. Two shapes:

* :func:`statement` (general): an ``UPDATE ... FROM`` a materialized table of the new values
  that writes only the rows where something changes (a re-initialization that changes nothing
  writes nothing).
* :func:`every_row_statement` (a first initialization, or one after a reset): when every job's
  status is one that the rules always change (:func:`every_row_changes`, decided from the
  workflow's distinct statuses), every row is written anyway, so one pass in rowid order sets
  it directly (measured at 10^6 jobs, without the index: 3.1 s CPU against 6.7 s for the
  general shape).

Index maintenance was the other half of the cost (~6 us per written row for the status/claim
order index against ~2.5 us per table row to drop and create it): when the rows written are a
large share of the table, :func:`indexes_rebuilt` drops the indexes over the written columns
and creates them again from their stored definitions, inside the same transaction (all or
nothing: a failure or a kill rolls the drop back too, and readers keep the indexed snapshot).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torc_graph import model
from torc_graph.store import sql as q
from torc_graph.store import sqlite_columns as cols
from torc_graph.store.filters import HasEdge, In, Ne, NotIn
from torc_graph.store.records import InitialJobState
from torc_graph.store.sqlite_schema import doc_table, edge_table

JOBS = model.Collection.JOBS.value
#: The resource fields a patch sets, in the order of the ``rr`` CTE's value columns.
_RESOURCE_PATHS = ("internal.num_cpus", "internal.num_gpus", "internal.num_nodes",
                   "internal.memory_bytes", "internal.runtime_seconds")
#: Rebuild the indexes over the written columns when at least this share of the table's rows
#: is written (measured at 10^6 rows: maintaining the status/claim index ~6 us per written row,
#: dropping and creating it ~2.5 us per row of the table).
REBUILD_SHARE = 0.4
#: ... and at least this many rows (below it the rebuild's fixed costs are not worth it).
REBUILD_MIN_ROWS = 50_000


def fits(state: InitialJobState) -> bool:
    """Whether the one-statement form applies: every patch sets exactly the resource column
    fields, with values those columns hold, and the two paths are the column ones."""
    if state.num_cpus_path != _RESOURCE_PATHS[0] or cols.column_for(
            JOBS, state.scheduler_path) is None:
        return False
    for patch in [state.default, *(p for _, p in state.resources)]:
        if set(patch) != set(_RESOURCE_PATHS):
            return False
        if not all(cols.column_for(JOBS, path).accepts(patch[path]) for path in _RESOURCE_PATHS):
            return False
    return all(isinstance(s, str) for s in state.schedulers)


def statuses(conn: sqlite3.Connection, wf: str) -> list[str] | None:
    """The distinct statuses of the workflow's jobs in index order, or None if some job's
    status is not a string: one seek of the status index per distinct value, not a scan."""
    status = cols.field_sql(JOBS, "j", "status")[0]
    select = f"SELECT {status} FROM {doc_table(JOBS)} j WHERE j.wf = :wf"
    order = f"ORDER BY {status} LIMIT 1"
    row = conn.execute(f"{select} {order}", {"wf": wf}).fetchone()
    found: list[str] = []
    while row is not None:
        if not isinstance(row[0], str):
            return None  # NULL and numbers sort before text, blobs after it
        found.append(row[0])
        row = conn.execute(f"{select} AND {status} > :s {order}",
                           {"wf": wf, "s": row[0]}).fetchone()
    return found


_ANY = object()


def _status_matches(where: Mapping[str, Any], status: str) -> bool | None:
    """Whether a job with ``status`` matches ``where``; None if ``where`` tests anything else."""
    if set(where) - {"status"}:
        return None
    spec = where.get("status", _ANY)
    if spec is _ANY:
        return True
    if isinstance(spec, str):
        return status == spec
    if isinstance(spec, Ne):
        return status != spec.value
    if isinstance(spec, In):
        return status in spec.values
    if isinstance(spec, NotIn):
        return status not in spec.values
    return None


def every_row_changes(state: InitialJobState, present: Sequence[str] | None) -> bool:
    """Whether every job whose status is in ``present`` gets a new status: each such status is
    blockable and neither kept, nor ``blocked``, nor ``ready`` (so the job becomes one of those
    two, which differs from what it was). E.g. every job ``uninitialized``."""
    return bool(present) and all(
        _status_matches(state.blockable or {}, s)
        and s not in (*state.keep, state.blocked, state.ready)
        for s in present)


class _Parts:
    """The SQL pieces both statement shapes share, for job rows aliased ``alias``."""

    def __init__(self, wf: str, state: InitialJobState, any_non_blocking: bool, alias: str):
        b = self.b = q.Binder()
        prefix = model.make_id(JOBS, wf, "")
        self.wf_p = b(wf)
        own_id = f"({b(prefix)} || {alias}.key)"
        rr_rows = [[rr_id, *(patch[p] for p in _RESOURCE_PATHS)]
                   for rr_id, patch in state.resources]
        values = ", ".join(f"json_extract(value, '$[{i + 1}]')"
                           for i in range(len(_RESOURCE_PATHS)))
        self.ctes = (
            f"rr(id, pos, v0, v1, v2, v3, v4) AS MATERIALIZED (SELECT json_extract(value, "
            f"'$[0]'), CAST(key AS INTEGER), {values} FROM json_each({b(q.dumps(rr_rows))})), "
            f"sch(id, pos) AS MATERIALIZED (SELECT value, CAST(key AS INTEGER) FROM json_each("
            f"{b(q.dumps(list(state.schedulers)))}))")
        self.rr_pos = self.sched = "NULL"
        if rr_rows:
            self.rr_pos = (
                f"(SELECT r.pos FROM {edge_table('requires')} e JOIN rr r ON r.id = e.to_id "
                f"WHERE e.wf = {self.wf_p} AND e.from_id = {own_id} ORDER BY r.pos DESC LIMIT 1)")
        if state.schedulers:
            self.sched = (
                f"(SELECT s.id FROM {edge_table('scheduled_bys')} e JOIN sch s ON s.id = e.to_id "
                f"WHERE e.wf = {self.wf_p} AND e.from_id = {own_id} ORDER BY s.pos DESC LIMIT 1)")
        blocker_where = {"status": NotIn(state.non_blocking)} if any_non_blocking else None
        self.blocker = q.has_edge(HasEdge("blocks", "in", blocker_where), alias, own_id, wf, b)
        self.defaults = [b(state.default[p]) for p in _RESOURCE_PATHS]
        self.res_cols = [cols.column_for(JOBS, p).name for p in _RESOURCE_PATHS]
        self.sched_col = cols.column_for(JOBS, state.scheduler_path).name
        self.prefix = prefix

    def picked(self) -> list[str]:
        """The resource values of rr row ``r`` (the default where it is NULL), in order."""
        return [f"coalesce(r.v{i}, {d})" for i, d in enumerate(self.defaults)]


def statement(wf: str, state: InitialJobState, any_non_blocking: bool) -> tuple[str, dict[str, Any]]:
    """The general UPDATE (writing only changed rows) and its parameters. Requires :func:`fits`.

    ``any_non_blocking``: whether some job's status is in ``state.non_blocking``. If none is
    (a first initialization), every blocker blocks and the test is whether a ``blocks`` edge
    comes in at all: one index probe per job instead of a probe and a blocker lookup per edge.
    (Blocking edges of SQLite never dangle: deleting a job deletes its edges.)"""
    p = _Parts(wf, state, any_non_blocking, "j")
    b = p.b
    status = q.Field(*cols.field_sql(JOBS, "j", "status"))
    blockable = q.where_doc(state.blockable, "j", b, edge=False, prefix=p.prefix, coll=JOBS)
    becomes_blocked = " AND ".join([*blockable, p.blocker])
    may_be_ready = q.condition(status, NotIn((*state.keep, state.blocked)), b)
    picked = ", ".join(f"{e} AS c{i}" for i, e in enumerate(p.picked()))
    sched_col, res_cols = p.sched_col, p.res_cols
    text = (
        f"WITH {p.ctes}, "
        f"x AS (SELECT j.seq AS seq, {p.rr_pos} AS rp, {p.sched} AS sid, "
        f"CASE WHEN {becomes_blocked} THEN {b(state.blocked)} "
        f"WHEN {may_be_ready} THEN {b(state.ready)} ELSE j.status END AS st "
        f"FROM {doc_table(JOBS)} j WHERE j.wf = {p.wf_p} AND j.seq > 0), "
        f"v AS MATERIALIZED (SELECT x.seq AS seq, x.sid AS sid, x.st AS st, {picked} FROM x "
        f"LEFT JOIN rr r ON r.pos = x.rp AND r.v0 <> 0) "
        f"UPDATE {doc_table(JOBS)} AS t SET rev = {cols.new_rev_sql(b)}, status = v.st, "
        + ", ".join(f"{c} = v.c{i}" for i, c in enumerate(res_cols))
        + f", {sched_col} = coalesce(v.sid, t.{sched_col}) FROM v WHERE t.seq = v.seq AND ("
        + " OR ".join(["t.status IS NOT v.st", f"(v.sid IS NOT NULL AND t.{sched_col} IS NOT v.sid)"]
                      + [f"t.{c} IS NOT v.c{i} OR typeof(t.{c}) <> typeof(v.c{i})"
                         for i, c in enumerate(res_cols)])
        + ")"
    )
    return text, b.params


def every_row_statement(wf: str, state: InitialJobState) -> tuple[str, dict[str, Any]]:
    """One pass over the workflow's job rows in rowid order, writing each: valid only when
    :func:`every_row_changes` (then every job is blockable, may become ready, and no job's
    status is non-blocking, so a job is ``blocked`` iff a ``blocks`` edge comes in). Requires
    :func:`fits`."""
    p = _Parts(wf, state, False, "t")
    b = p.b
    sets = [f"rev = {cols.new_rev_sql(b)}",
            f"status = CASE WHEN {p.blocker} THEN {b(state.blocked)} ELSE {b(state.ready)} END"]
    if state.resources:
        sets.append(f"({', '.join(p.res_cols)}) = (SELECT {', '.join(p.picked())} FROM "
                    f"(SELECT {p.rr_pos} AS rp) x LEFT JOIN rr r ON r.pos = x.rp AND r.v0 <> 0)")
    else:
        sets += [f"{c} = {d}" for c, d in zip(p.res_cols, p.defaults)]
    if state.schedulers:
        sets.append(f"{p.sched_col} = coalesce({p.sched}, t.{p.sched_col})")
    text = (f"WITH {p.ctes} UPDATE {doc_table(JOBS)} AS t SET {', '.join(sets)} "
            f"WHERE t.wf = {p.wf_p} AND t.seq > 0")
    return text, b.params


def written_columns() -> list[str]:
    """The job columns either statement writes: ``rev``, ``status`` and the ``internal.*``
    ones (resources, scheduler); never ``name`` or another column a later migration adds."""
    return ["rev", *(c.name for c in cols.columns(JOBS)
                     if c.path == "status" or c.path.startswith("internal."))]


@contextlib.contextmanager
def indexes_rebuilt(conn: sqlite3.Connection, table: str, columns: Sequence[str],
                    rows: int) -> Iterator[None]:
    """Around a write of ``rows`` rows of ``table``: when that is a large share of the table
    (:data:`REBUILD_SHARE`, :data:`REBUILD_MIN_ROWS`), drop the indexes whose definition
    names one of ``columns`` before it and create them again, from their stored SQL, after it.

    Call it inside the write transaction: the drop, the write and the creation commit together
    or not at all, so the database is never without the index (an exception skips the
    creation and the caller's transaction rolls the drop back)."""
    if rows < REBUILD_MIN_ROWS or rows < REBUILD_SHARE * _table_rows(conn, table):
        yield
        return
    named = re.compile(r"(?<![\w.$'\"])(" + "|".join(map(re.escape, columns)) + r")\b")
    found = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND "
                         "tbl_name = ? AND sql IS NOT NULL", (table,)).fetchall()
    mine = [(name, text) for name, text in found if named.search(text.split("(", 1)[1])]
    for name, _ in mine:
        conn.execute(f'DROP INDEX "{name}"')  # a name from the schema, not from input
    yield
    for _, text in mine:
        conn.execute(text)


def _table_rows(conn: sqlite3.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
