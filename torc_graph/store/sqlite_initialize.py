"""``initialize_jobs``' row writes on SQLite as one statement (:class:`InitialJobState`).

The generic :meth:`GraphStore.set_initial_job_state` runs a pass per resource requirements
document, per scheduler and per status, so every job row (and its index entries) was written
two or three times; profiled at 10^6 jobs, those writes were nearly all of ``initialize_jobs``.
Here one ``UPDATE ... FROM`` computes each job's resources, scheduler and status from its
edges and writes the row once, and only if something changes (a re-initialization that changes
nothing writes nothing). Used only when every value fits its column (:mod:`.sqlite_columns`);
otherwise the caller falls back to the generic passes.
"""

from __future__ import annotations

from typing import Any

from torc_graph import model
from torc_graph.store import sql as q
from torc_graph.store import sqlite_columns as cols
from torc_graph.store.base import HasEdge, InitialJobState, NotIn
from torc_graph.store.sqlite_schema import doc_table, edge_table

JOBS = model.Collection.JOBS.value
#: The resource fields a patch sets, in the order of the ``rr`` CTE's value columns.
_RESOURCE_PATHS = ("internal.num_cpus", "internal.num_gpus", "internal.num_nodes",
                   "internal.memory_bytes", "internal.runtime_seconds")


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


def statement(wf: str, state: InitialJobState, any_non_blocking: bool) -> tuple[str, dict[str, Any]]:
    """The UPDATE and its parameters. Requires :func:`fits`.

    ``any_non_blocking``: whether some job's status is in ``state.non_blocking``. If none is
    (a first initialization), every blocker blocks and the test is whether a ``blocks`` edge
    comes in at all: one index probe per job instead of a probe and a blocker lookup per edge.
    (Blocking edges of SQLite never dangle: deleting a job deletes its edges.)"""
    b = q.Binder()
    prefix = model.make_id(JOBS, wf, "")
    wf_p, prefix_p = b(wf), b(prefix)
    own_id = f"({prefix_p} || j.key)"
    rr_rows = [[rr_id, *(patch[p] for p in _RESOURCE_PATHS)] for rr_id, patch in state.resources]
    status = q.Field(*cols.field_sql(JOBS, "j", "status"))
    res_cols = [cols.column_for(JOBS, p).name for p in _RESOURCE_PATHS]
    sched_col = cols.column_for(JOBS, state.scheduler_path).name
    if rr_rows:
        rr_pos = (f"(SELECT r.pos FROM {edge_table('requires')} e JOIN rr r ON r.id = e.to_id "
                  f"WHERE e.wf = {wf_p} AND e.from_id = {own_id} ORDER BY r.pos DESC LIMIT 1)")
    else:
        rr_pos = "NULL"
    if state.schedulers:
        sched = (f"(SELECT s.id FROM {edge_table('scheduled_bys')} e JOIN sch s ON s.id = e.to_id "
                 f"WHERE e.wf = {wf_p} AND e.from_id = {own_id} ORDER BY s.pos DESC LIMIT 1)")
    else:
        sched = "NULL"
    blockable = q.where_doc(state.blockable, "j", b, edge=False, prefix=prefix, coll=JOBS)
    blocker_where = {"status": NotIn(state.non_blocking)} if any_non_blocking else None
    blocker = q.has_edge(HasEdge("blocks", "in", blocker_where), "j", own_id, wf, b)
    becomes_blocked = " AND ".join([*blockable, blocker])
    may_be_ready = q.condition(status, NotIn((*state.keep, state.blocked)), b)
    values = ", ".join(f"json_extract(value, '$[{i + 1}]')" for i in range(len(_RESOURCE_PATHS)))
    defaults = [b(state.default[p]) for p in _RESOURCE_PATHS]
    picked = ", ".join(f"coalesce(r.v{i}, {d}) AS c{i}" for i, d in enumerate(defaults))
    text = (
        f"WITH rr(id, pos, v0, v1, v2, v3, v4) AS (SELECT json_extract(value, '$[0]'), "
        f"CAST(key AS INTEGER), {values} "
        f"FROM json_each({b(q.dumps(rr_rows))})), "
        f"sch(id, pos) AS (SELECT value, CAST(key AS INTEGER) FROM json_each("
        f"{b(q.dumps(list(state.schedulers)))})), "
        f"x AS (SELECT j.seq AS seq, {rr_pos} AS rp, {sched} AS sid, "
        f"CASE WHEN {becomes_blocked} THEN {b(state.blocked)} "
        f"WHEN {may_be_ready} THEN {b(state.ready)} ELSE j.status END AS st "
        f"FROM {doc_table(JOBS)} j WHERE j.wf = {wf_p} AND j.seq > 0), "
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
