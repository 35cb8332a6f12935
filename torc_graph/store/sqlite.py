"""The embedded SQLite backend of the graph store (the default).

One database file holds every workflow. Tables and migrations: :mod:`.sqlite_schema`; filter,
patch and graph SQL: :mod:`.sql`; connections, transactions, busy handling and error translation
(no "database is locked" ever reaches a caller): :mod:`.sqlite_connection`; the collection
whitelist: :mod:`.sqlite_collections`; inserts, updates and deletes: :mod:`.sqlite_writes`. This
module and its mixins map each protocol operation onto set-based statements.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

from torc_graph import model
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store import sql as q
from torc_graph.store import sqlite_initialize as initial
from torc_graph.store import sqlite_schema as schema
from torc_graph.store.base import (
    Direction,
    Document,
    GraphStore,
    HasEdge,
    InitialJobState,
    Neighbor,
    OrderBy,
    Where,
    WorkflowSpace,
)
from torc_graph.store.sqlite_collections import COLLS, SYSTEM, Coll, check_key, loads
from torc_graph.store.sqlite_connection import Connections
from torc_graph.store.sqlite_staging import STAGED, StagingOps
from torc_graph.store.sqlite_writes import WriteOps

_OWNERS = model.GlobalCollection.WORKFLOW_OWNERS.value
_WF_KEY = re.compile(r"^[A-Za-z0-9_]{1,254}$")
T = TypeVar("T")


class SQLiteStore(WriteOps, StagingOps, GraphStore):
    """Graph store in one SQLite file. See the module docstring for the concurrency rules."""

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout: float = 120.0,
                 url: str | None = None):
        sync = str(synchronous).upper()
        if sync not in ("FULL", "NORMAL"):
            raise InvalidInput("synchronous must be FULL or NORMAL")
        if not path or path == ":memory:" or path.startswith("file:"):
            raise InvalidInput("the SQLite store needs a file path")
        if busy_timeout <= 0:
            raise InvalidInput("busy_timeout must be positive")
        self.path = os.path.abspath(path)
        self.synchronous = sync
        self.busy_timeout = float(busy_timeout)
        self.url = url or f"sqlite:///{self.path}"
        self._db = Connections(self.path, sync, self.busy_timeout)

    @classmethod
    def from_url(cls, url: str, *, synchronous: str = "FULL", busy_timeout: float = 120.0,
                 **_ignored: Any) -> SQLiteStore:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        prefix = "sqlite:///"
        if not isinstance(url, str) or not url.lower().startswith(prefix):
            raise InvalidInput(f"not a SQLite URL: {url!r} (use sqlite:///path/to/file.db)")
        path = unquote(url[len(prefix):].split("?", 1)[0])
        return cls(path, synchronous=synchronous, busy_timeout=busy_timeout, url=url)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close this process's connections; the store reconnects when used again."""
        self._db.close()

    @contextlib.contextmanager
    def transaction(self, workflow: str | None = None) -> Iterator[None]:
        """See :meth:`GraphStore.transaction`. Nested blocks are savepoints of the outer one;
        ``workflow`` is not needed by SQLite (the lock covers the whole file)."""
        with self._db.transaction():
            yield

    def transact(self, workflow: str | None, fn: Callable[[], T]) -> T:
        """See :meth:`GraphStore.transact`: group commit of this process's concurrent callers
        (:meth:`.sqlite_connection.Connections.group`)."""
        return self._db.group(fn)

    def transact_many(self, workflow: str | None, key: str, payload: Any,
                      fn: Callable[[list[Any]], list[Any]]) -> Any:
        """See :meth:`GraphStore.transact_many`: merged within a group commit
        (:meth:`.sqlite_connection.Connections.group`)."""
        return self._db.group(None, merge=(key, payload, fn))

    def info(self) -> dict[str, Any]:
        def run(conn):
            return {
                "backend": "sqlite",
                "sqlite_version": sqlite3.sqlite_version,
                "path": self.path,
                "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                    conn.execute("PRAGMA synchronous").fetchone()[0], "?"),
                "busy_timeout": self.busy_timeout,
                "migrations": schema.applied(conn),
            }
        return self._db.read(run)

    # -- helpers -------------------------------------------------------------------------------

    def _coll(self, name: str, workflow: str | None) -> tuple[Coll, str]:
        c = COLLS.get(name) if isinstance(name, str) else None
        if c is None:
            raise InvalidInput(f"unknown collection {name!r}")
        if c.is_global:
            if workflow is not None:
                raise InvalidInput(f"{name} is a global collection; workflow must be None")
            return c, ""
        if workflow is None:
            raise InvalidInput(f"{name} is a per-workflow collection; a workflow is required")
        check_key(workflow)
        return c, workflow

    @staticmethod
    def _prefix(c: Coll, wf: str) -> str:
        return model.make_id(c.name, wf or None, "")

    def _require_wf(self, conn: sqlite3.Connection, wf: str) -> None:
        if wf and not self._staged_here(wf) and conn.execute(
            "SELECT 1 FROM doc_workflows WHERE wf = '' AND key = ?", (wf,)
        ).fetchone() is None:
            raise NotFound(f"workflow {wf} not found")

    def _select(self, c: Coll, wf: str, where, edges, b: q.Binder, alias: str = "t") -> str:
        """The WHERE text for rows of ``c`` in ``wf`` matching ``where`` and ``edges``."""
        prefix_value = self._prefix(c, wf)
        prefix = b(prefix_value)
        conds = [f"{alias}.wf = {b(wf)}"]
        conds += q.where_doc(where, alias, b, edge=c.edge, prefix=prefix_value, coll=c.name)
        for pred in edges or ():
            conds.append(q.has_edge(pred, alias, f"({prefix} || {alias}.key)", wf, b))
        if len(conds) == 1 and not c.edge:
            # Opt in to the partial index ``(wf) WHERE seq > 0`` (always true): rows of one
            # workflow in seq order, so unfiltered pages, joins and batches stop at LIMIT
            # instead of sorting the whole workflow. Filtered queries cannot use it (their
            # WHERE lacks the term), so they keep their field indexes.
            conds.append(f"{alias}.seq > 0")
        return " AND ".join(conds)

    # -- workflows -----------------------------------------------------------------------------

    def create_workflow(self, workflow: Document, config: Document, status: Document,
                        owner: Mapping[str, Any] | None = None) -> WorkflowSpace:
        key = workflow.get("_key") if isinstance(workflow, Mapping) else None
        if key is not None and (not isinstance(key, str) or not _WF_KEY.match(key)):
            raise InvalidInput(f"invalid workflow key {key!r}")
        if owner is not None and not isinstance(owner, Mapping):
            raise InvalidInput("a workflow owner must be a JSON object")
        if self._staging() is not None:
            self.maybe_sweep()
        with self._db.write() as conn:
            wf_doc = self._insert_rows(conn, COLLS["workflows"], "", [workflow])[0]
            # The owner commits with the workflow or not at all (a stale record is replaced).
            conn.execute(f"DELETE FROM {COLLS[_OWNERS].table} WHERE wf = '' AND key = ?",
                         (wf_doc["_key"],))
            if owner is not None:
                self._insert_rows(conn, COLLS[_OWNERS], "", [{**owner, "_key": wf_doc["_key"]}])
            cfg = self._insert_rows(conn, COLLS["workflow_configs"], "", [config])[0]
            sts = self._insert_rows(conn, COLLS["workflow_statuses"], "", [status])[0]
            self._insert_rows(conn, COLLS["has_workflow_config"], "",
                              [{"_from": wf_doc["_id"], "_to": cfg["_id"]}])
            self._insert_rows(conn, COLLS["has_workflow_status"], "",
                              [{"_from": wf_doc["_id"], "_to": sts["_id"]}])
            if self._staging() is not None:  # invisible until published (.sqlite_staging)
                self._stage(conn, wf_doc["_key"])
        return WorkflowSpace(wf_doc, cfg, sts)

    def _space_rows(self, conn, key: str):
        row = conn.execute("SELECT doc FROM doc_workflows WHERE wf = ? AND key = ?",
                           (STAGED if self._staged_here(key) else "", key)).fetchone()
        if row is None:
            raise NotFound(f"workflow {key} not found")
        wf_id = "workflows/" + key
        found = {}
        for edge, coll in (("has_workflow_config", "workflow_configs"),
                           ("has_workflow_status", "workflow_statuses")):
            found[coll] = conn.execute(
                f"SELECT d.key, d.doc FROM edge_{edge} e JOIN doc_{coll} d ON d.wf = '' AND "
                f"d.key = substr(e.to_id, {len(coll) + 2}) AND e.to_id = '{coll}/' || d.key "
                "WHERE e.wf = '' AND e.from_id = ? ORDER BY e.seq LIMIT 1", (wf_id,)).fetchone()
        return row, found

    def workflow_space(self, key: str) -> WorkflowSpace:
        check_key(key)
        row, found = self._db.read(lambda conn: self._space_rows(conn, key))
        if found["workflow_configs"] is None or found["workflow_statuses"] is None:
            raise NotFound(f"workflow {key} has no config or status")
        return WorkflowSpace(loads(row[0]), loads(found["workflow_configs"][1]),
                             loads(found["workflow_statuses"][1]))

    def workflow_exists(self, key: str) -> bool:
        if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
            return False
        if self._staged_here(key):
            return True
        return self._db.read(lambda conn: conn.execute(
            "SELECT 1 FROM doc_workflows WHERE wf = '' AND key = ?", (key,)).fetchone() is not None)

    def delete_workflow(self, key: str) -> Document:
        check_key(key)
        with self._db.write() as conn:
            row, found = self._space_rows(conn, key)
            wf_id = "workflows/" + key
            for coll in ("workflow_configs", "workflow_statuses"):
                if found[coll] is not None:
                    conn.execute(f"DELETE FROM doc_{coll} WHERE wf = '' AND key = ?",
                                 (found[coll][0],))
            self._cascade(conn, COLLS["workflows"], "", ":vid", {"vid": wf_id})
            for name in schema.all_tables():
                if name not in ("doc_workflows", "doc_workflow_configs", "doc_workflow_statuses",
                                "edge_has_workflow_config", "edge_has_workflow_status"):
                    conn.execute(f"DELETE FROM {name} WHERE wf = ?", (key,))
            conn.execute(f"DELETE FROM {COLLS[_OWNERS].table} WHERE wf = '' AND key = ?",
                         (key,))
            conn.execute("DELETE FROM doc_workflows WHERE wf = '' AND key = ?", (key,))
        return loads(row[0])

    # -- reads ---------------------------------------------------------------------------------

    def get(self, collection: str, workflow: str | None, key: str) -> Document:
        c, wf = self._coll(collection, workflow)
        check_key(key)
        row = self._db.read(lambda conn: conn.execute(
            f"SELECT {c.doc('t')} FROM {c.table} t WHERE wf = ? AND key = ?", (wf, key)).fetchone())
        if row is None:
            raise NotFound(f"document {model.make_id(c.name, wf or None, key)} not found")
        return loads(row[0])

    def _find_sql(self, c: Coll, wf: str, where, edges, order_by, b: q.Binder) -> str:
        cond = self._select(c, wf, where, edges, b)
        order = q.order_clause(order_by, "t", b(self._prefix(c, wf)), edge=c.edge, coll=c.name)
        return f"SELECT {c.doc('t')} FROM {c.table} t WHERE {cond} {order}"

    def _find_texts(self, collection: str, workflow: str | None, where, edges, skip, limit,
                    order_by) -> list[str]:
        """The ``doc`` column of the matching rows (each the whole stored document)."""
        c, wf = self._coll(collection, workflow)
        b = q.Binder()
        text = self._find_sql(c, wf, where, edges, order_by, b)
        text += f" LIMIT {b(-1 if limit is None else int(limit))} OFFSET {b(int(skip or 0))}"
        # Unpacked while iterating: no intermediate list of row tuples for large pages.
        return self._db.read(lambda conn: [d for (d,) in conn.execute(text, b.params)])

    def find(self, collection: str, workflow: str | None, where: Where | None = None, *,
             edges: Sequence[HasEdge] = (), skip: int = 0, limit: int | None = None,
             order_by: OrderBy | None = None) -> list[Document]:
        texts = self._find_texts(collection, workflow, where, edges, skip, limit, order_by)
        return [loads(t) for t in texts]

    def find_json(self, collection: str, workflow: str | None, where: Where | None = None, *,
                  edges: Sequence[HasEdge] = (), skip: int = 0, limit: int | None = None,
                  order_by: OrderBy | None = None) -> list[str]:
        """See :meth:`GraphStore.find_json`: the stored text, never decoded (the ``doc``
        column holds the whole document, system fields included, and :meth:`find` returns
        exactly its decoding)."""
        return self._find_texts(collection, workflow, where, edges, skip, limit, order_by)

    def iter_find(self, collection: str, workflow: str | None, where: Where | None = None, *,
                  edges: Sequence[HasEdge] = (), order_by: OrderBy | None = None,
                  batch_size: int = 1000) -> Iterator[Document]:
        c, wf = self._coll(collection, workflow)
        batch = max(1, int(batch_size))
        b = q.Binder()
        if order_by:
            # Offset batches: stable within a transaction; order_by listings are not hot paths.
            text = self._find_sql(c, wf, where, edges, order_by, b)
            text += f" LIMIT {b(batch)} OFFSET :off"
            return self._iter_batches(text, b.params, batch, keyset=False)
        cond = self._select(c, wf, where, edges, b)
        text = (f"SELECT {c.doc('t')}, t.seq FROM {c.table} t WHERE {cond} AND t.seq > :after "
                f"ORDER BY t.seq LIMIT {b(batch)}")
        return self._iter_batches(text, b.params, batch, keyset=True)

    def _iter_batches(self, text: str, params: dict, batch: int, keyset: bool) -> Iterator[Document]:
        after, offset = -1, 0
        while True:
            p = {**params, "after": after} if keyset else {**params, "off": offset}
            rows = self._db.read(lambda conn: conn.execute(text, p).fetchall())
            for r in rows:
                yield loads(r[0])
            if len(rows) < batch:
                return
            if keyset:
                after = rows[-1][1]
            offset += len(rows)

    def count(self, collection: str, workflow: str | None, where: Where | None = None, *,
              edges: Sequence[HasEdge] = ()) -> int:
        c, wf = self._coll(collection, workflow)
        b = q.Binder()
        text = f"SELECT count(*) FROM {c.table} t WHERE {self._select(c, wf, where, edges, b)}"
        return self._db.read(lambda conn: conn.execute(text, b.params).fetchone()[0])

    def values(self, collection: str, workflow: str | None, fields: Sequence[str],
               where: Where | None = None) -> list[tuple[Any, ...]]:
        """See :meth:`GraphStore.values`: one projection query (columns and ``json_extract``;
        no document is decoded in Python)."""
        c, wf = self._coll(collection, workflow)
        b = q.Binder()
        prefix = b(self._prefix(c, wf))
        exprs = [q.doc_field("t", q.check_path(f), edge=c.edge, id_prefix=prefix,
                             coll=c.name).value for f in fields]
        cond = self._select(c, wf, where, (), b)
        text = f"SELECT {', '.join(exprs)} FROM {c.table} t WHERE {cond} ORDER BY t.seq"
        return self._db.read(lambda conn: conn.execute(text, b.params).fetchall())

    def find_after(self, collection: str, workflow: str | None, after_key: str | None,
                   where: Where | None = None, *, limit: int = 1000) -> list[Document]:
        """See :meth:`GraphStore.find_after`: a seek on ``seq`` (the rowid), one read."""
        c, wf = self._coll(collection, workflow)
        b = q.Binder()
        cond = self._select(c, wf, where, (), b)
        text = (f"SELECT {c.doc('t')} FROM {c.table} t WHERE {cond} AND t.seq > :after "
                f"ORDER BY t.seq LIMIT {b(max(1, int(limit)))}")
        seek = f"SELECT seq FROM {c.table} WHERE wf = :wf AND key = :key"

        def run(conn: sqlite3.Connection) -> list[str]:
            after = 0
            if after_key is not None:
                row = conn.execute(seek, {"wf": wf, "key": after_key}).fetchone()
                if row is None:
                    raise NotFound(f"document {after_key} not found in {collection}")
                after = row[0]
            return [d for (d,) in conn.execute(text, {**b.params, "after": after})]

        return [loads(t) for t in self._db.read(run)]

    # -- graph ---------------------------------------------------------------------------------

    def _edge(self, edge: str, workflow: str) -> tuple[Coll, str]:
        name = q.edge_name(edge)
        c = COLLS[name]
        if c.is_global:
            return c, ""
        check_key(workflow)
        return c, workflow

    def neighbors(self, workflow: str, edge: str, direction: Direction,
                  start_ids: Sequence[str] | None = None, *, where: Where | None = None,
                  edge_where: Where | None = None) -> list[Neighbor]:
        c, wf = self._edge(edge, workflow)
        if direction not in ("out", "in"):
            raise InvalidInput(f"invalid direction {direction!r}")
        own, other = ("from_id", "to_id") if direction == "out" else ("to_id", "from_id")
        b = q.Binder()
        joins, doc_expr, vcond = q.other_joins(c.name, direction, f"e.{other}", wf, where, b)
        conds = [f"e.wf = {b(wf)}", vcond]
        if start_ids is not None:
            conds.append(f"e.{own} IN (SELECT value FROM json_each({b(q.dumps(list(start_ids)))}))")
        conds += q.where_doc(edge_where, "e", b, edge=True, prefix=self._prefix(c, wf))
        text = (f"SELECT e.doc, {doc_expr} FROM {c.table} e {joins} "
                f"WHERE {' AND '.join(conds)} ORDER BY e.seq")
        rows = self._db.read(lambda conn: conn.execute(text, b.params).fetchall())
        out = []
        for e_text, v_text in rows:
            e = loads(e_text)
            out.append(Neighbor(e["_from"] if direction == "out" else e["_to"], e,
                                None if v_text is None else loads(v_text)))
        return out

    def join(self, workflow: str, collection: str, edge: str, direction: Direction,
             where: Where | None = None, *, skip: int = 0,
             limit: int | None = None) -> list[dict[str, Document | None]]:
        c, wf = self._coll(collection, workflow)
        ec, ewf = self._edge(edge, workflow)
        if direction not in ("out", "in"):
            raise InvalidInput(f"invalid direction {direction!r}")
        own, other = ("from_id", "to_id") if direction == "out" else ("to_id", "from_id")
        b = q.Binder()
        cond = self._select(c, wf, where, (), b)
        lim = f"LIMIT {b(-1 if limit is None else int(limit))} OFFSET {b(int(skip or 0))}"
        joins, doc_expr, _ = q.other_joins(ec.name, direction, f"e.{other}", ewf, None, b)
        prefix = b(self._prefix(c, wf))
        # The page's rows carry their raw columns; documents are assembled only for rows that
        # have an edge (a page of 1,000 jobs without edges costs no JSON work).
        raw = "".join(f", t.{name}" for name in (["rev"] + [k.name for k in c.columns]
                                                 if c.columns else []))
        text = (f"SELECT {c.doc('d')}, e.doc, {doc_expr} FROM "
                f"(SELECT t.seq, t.key, t.doc{raw} FROM {c.table} t WHERE {cond} "
                f"ORDER BY t.seq {lim}) d "
                f"JOIN {ec.table} e ON e.wf = {b(ewf)} AND e.{own} = {prefix} || d.key {joins} "
                f"ORDER BY d.seq, e.seq")
        rows = self._db.read(lambda conn: conn.execute(text, b.params).fetchall())
        out = []
        for d_text, e_text, o_text in rows:
            d, e = loads(d_text), loads(e_text)
            o = None if o_text is None else loads(o_text)
            out.append({"from": d, "to": o, "edge": e} if direction == "out"
                       else {"from": o, "to": d, "edge": e})
        return out

    def descendants(self, workflow: str, edge: str, start_ids: Sequence[str], *, skip: int = 0,
                    limit: int | None = None) -> list[Document]:
        c, wf = self._edge(edge, workflow)
        b = q.Binder()
        wf_param = b(wf)
        cte = q.reach_cte(c.table, wf_param,
                              f"SELECT value FROM json_each({b(q.dumps(list(start_ids)))})", "")
        joins, doc_expr, _ = q.other_joins(c.name, "out", "r.id", wf, None, b)
        lim = f"LIMIT {b(-1 if limit is None else int(limit))} OFFSET {b(int(skip or 0))}"
        text = (f"WITH RECURSIVE {cte} SELECT {doc_expr} AS doc FROM r {joins} "
                f"WHERE {doc_expr} IS NOT NULL {lim}")
        rows = self._db.read(lambda conn: conn.execute(text, b.params).fetchall())
        return [loads(r[0]) for r in rows]

    def update_descendants(self, workflow: str, edge: str, patch: Mapping[str, Any], *,
                           start_ids: Sequence[str] | None = None, start_where: Where | None = None,
                           where: Where | None = None,
                           through_matching_only: bool = False) -> list[str]:
        c, wf = self._edge(edge, workflow)
        b = q.Binder()
        wf_param = b(wf)
        if start_ids is not None:
            start = f"SELECT value FROM json_each({b(q.dumps(list(start_ids)))})"
        else:
            parts = []
            for coll in q.other_end_collections(c.name, "in"):
                sc = COLLS[coll]
                parts.append(f"SELECT {b(self._prefix(sc, wf))} || t.key FROM {sc.table} t "
                             f"WHERE {self._select(sc, wf, start_where, (), b)}")
            start = " UNION ALL ".join(parts)
        through = ""
        if through_matching_only and where:
            # The target vertex of edge ``e`` must match ``where`` to be traversed.
            through = q.other_vertex_exists(c.name, "out", "e.to_id", where, wf, b, depth=9)
        cte = q.reach_cte(c.table, wf_param, start, through)
        keys: list[tuple[int, str]] = []
        with self._db.write() as conn:
            for coll in q.other_end_collections(c.name, "out"):
                tc = COLLS[coll]
                tb = q.Binder()
                tb.params = dict(b.params)
                setter = q.set_clause(tc.name, patch, tb, system=SYSTEM)
                prefix = self._prefix(tc, wf)
                cond = self._select(tc, wf, where, (), tb, alias="d")
                # The reachable rows are selected first (rowids, driven by r), then updated: the
                # planner cannot trade the walk for a scan of every vertex matching ``where``.
                text = (f"WITH RECURSIVE {cte} UPDATE {tc.table} AS t SET {setter} "
                        f"WHERE t.seq IN (SELECT d.seq FROM r CROSS JOIN {tc.table} d ON "
                        f"d.key = substr(r.id, {tb(len(prefix) + 1)}) "
                        f"AND r.id = {tb(prefix)} || d.key WHERE {cond}) RETURNING seq, key")
                keys += conn.execute(text, tb.params).fetchall()
        return [k for _, k in sorted(keys)]

    def derive_edges(self, workflow: str, out_edge: str, producer_edge: str,
                     consumer_edge: str) -> int:
        out_c, wf = self._edge(out_edge, workflow)
        prod, _ = self._edge(producer_edge, workflow)
        cons, _ = self._edge(consumer_edge, workflow)
        if out_c.is_global or prod.is_global or cons.is_global:
            raise InvalidInput("derive_edges works on per-workflow edges")
        with self._db.write() as conn:
            (base,) = conn.execute("SELECT value FROM meta WHERE name = 'key_counter'").fetchone()
            cur = conn.execute(
                q.derive_edges_sql(out_c.table, prod.table, cons.table),
                {"wf": wf, "prefix": self._prefix(out_c, wf), "base": base},
            )
            n = cur.rowcount
            if n:
                conn.execute("UPDATE meta SET value = value + ? WHERE name = 'key_counter'", (n,))
            return n

    def dependencies_in_id_order(self, workflow: str,
                                  relations: Sequence[tuple[str, str | None]]) -> bool:
        """See :meth:`GraphStore.dependencies_in_id_order`: one indexed query per relation
        that stops at the first dependency out of order (~0.3 us per edge)."""
        texts = []
        for producer, consumer in relations:
            p, wf = self._edge(producer, workflow)
            c = self._edge(consumer, workflow)[0] if consumer is not None else None
            texts.append(q.id_order_violation_sql(p.table, c.table if c else None))

        def run(conn: sqlite3.Connection) -> bool:
            return not any(conn.execute(t, {"wf": wf}).fetchone() for t in texts)
        return self._db.read(run) if texts else True

    def set_initial_job_state(self, workflow: str, state: InitialJobState) -> None:
        """See :meth:`GraphStore.set_initial_job_state`: one statement writing each changed job
        row once (:mod:`.sqlite_initialize`; every row in one pass, with the indexes over the
        written columns rebuilt, when every status changes), or the generic passes for values
        no column holds. Atomic: inside one write transaction."""
        c, wf = self._coll(model.Collection.JOBS.value, workflow)
        if not initial.fits(state):
            super().set_initial_job_state(workflow, state)
            return
        with self._db.write() as conn:
            present = initial.statuses(conn, wf)
            if not initial.every_row_changes(state, present):
                any_non_blocking = present is None or any(s in state.non_blocking
                                                          for s in present)
                conn.execute(*initial.statement(wf, state, any_non_blocking))
                return
            rows = self.count(c.name, wf)
            with initial.indexes_rebuilt(conn, c.table, initial.written_columns(), rows):
                conn.execute(*initial.every_row_statement(wf, state))
