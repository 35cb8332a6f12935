"""The embedded SQLite backend of the graph store (the default).

One database file holds every workflow. Tables and migrations: :mod:`.sqlite_schema`; filter,
patch and graph SQL: :mod:`.sql`; connections, transactions, busy handling and error translation
(no "database is locked" ever reaches a caller): :mod:`.sqlite_connection`; the collection
whitelist: :mod:`.sqlite_collections`; inserts, updates and deletes: :mod:`.sqlite_writes`;
traversals and set-based graph updates: :mod:`.sqlite_graph`. This module and its mixins map
each protocol operation onto set-based statements.
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
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import HasEdge, OrderBy, Where
from torc_graph.store.records import Document, InitialJobState, WorkflowSpace
from torc_graph.store.sqlite_collections import COLLS, Coll, check_key, loads
from torc_graph.store.sqlite_connection import DEFAULT_CACHE_MIB, Connections
from torc_graph.store.sqlite_graph import GraphOps
from torc_graph.store.sqlite_staging import STAGED, StagingOps
from torc_graph.store.sqlite_writes import WriteOps

_OWNERS = model.GlobalCollection.WORKFLOW_OWNERS.value
_WF_KEY = re.compile(r"^[A-Za-z0-9_]{1,254}\Z")
#: Fields whose index starts with ``(wf, field)`` (:data:`.sqlite_schema.INDEXED_FIELDS`; the
#: jobs' status index continues with the claim order): a listing ordered by one of them walks
#: that index (ties sorted by ``seq`` group by group) instead of sorting the whole workflow.
_ORDER_INDEXED = {name: frozenset(fields) for name, fields in schema.INDEXED_FIELDS.items()}
T = TypeVar("T")


def _index_ordered(c: Coll, order_by: Any) -> bool:
    """Whether ``order_by`` starts with a field of :data:`_ORDER_INDEXED`."""
    try:
        path = order_by[0][0] if order_by else None
    except (TypeError, IndexError, KeyError):
        return False
    return isinstance(path, str) and path in _ORDER_INDEXED.get(c.name, ())


class SQLiteStore(WriteOps, GraphOps, StagingOps, GraphStore):
    """Graph store in one SQLite file. See the module docstring for the concurrency rules."""

    def __init__(self, path: str, *, synchronous: str = "FULL", busy_timeout: float = 120.0,
                 cache_mib: int = DEFAULT_CACHE_MIB, url: str | None = None):
        sync = str(synchronous).upper()
        if sync not in ("FULL", "NORMAL"):
            raise InvalidInput("synchronous must be FULL or NORMAL")
        if not path or path == ":memory:" or path.startswith("file:"):
            raise InvalidInput("the SQLite store needs a file path")
        if busy_timeout <= 0:
            raise InvalidInput("busy_timeout must be positive")
        if isinstance(cache_mib, bool) or not isinstance(cache_mib, int) or cache_mib < 1:
            raise InvalidInput("cache_mib must be a positive integer")
        self.path = os.path.abspath(path)
        self.synchronous = sync
        self.busy_timeout = float(busy_timeout)
        self.url = url or f"sqlite:///{self.path}"
        self.cache_mib = cache_mib
        self._db = Connections(self.path, sync, self.busy_timeout, cache_mib)

    @classmethod
    def from_url(cls, url: str, *, synchronous: str = "FULL", busy_timeout: float = 120.0,
                 cache_mib: int = DEFAULT_CACHE_MIB, **_ignored: Any) -> SQLiteStore:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        prefix = "sqlite:///"
        if not isinstance(url, str) or not url.lower().startswith(prefix):
            raise InvalidInput(f"not a SQLite URL: {url!r} (use sqlite:///path/to/file.db)")
        path = unquote(url[len(prefix):].split("?", 1)[0])
        return cls(path, synchronous=synchronous, busy_timeout=busy_timeout,
                   cache_mib=cache_mib, url=url)

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
                "cache_mib": self.cache_mib,
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

    def _select(self, c: Coll, wf: str, where, edges, b: q.Binder, alias: str = "t",
                seq_index: bool = True) -> str:
        """The WHERE text for rows of ``c`` in ``wf`` matching ``where`` and ``edges``
        (unfiltered, with ``seq_index``: through the ``(wf) WHERE seq > 0`` index)."""
        prefix_value = self._prefix(c, wf)
        prefix = b(prefix_value)
        conds = [f"{alias}.wf = {b(wf)}"]
        conds += q.where_doc(where, alias, b, edge=c.edge, prefix=prefix_value, coll=c.name)
        for pred in edges or ():
            conds.append(q.has_edge(pred, alias, f"({prefix} || {alias}.key)", wf, b))
        if len(conds) == 1 and not c.edge and seq_index:
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

    def _find_sql(self, c: Coll, wf: str, where, edges, order_by, b: q.Binder,
                  columns: str | None = None) -> str:
        cond = self._select(c, wf, where, edges, b, seq_index=not _index_ordered(c, order_by))
        order = q.order_clause(order_by, "t", b(self._prefix(c, wf)), edge=c.edge, coll=c.name)
        return f"SELECT {columns or c.doc('t')} FROM {c.table} t WHERE {cond} {order}"

    def _page_sql(self, c: Coll, wf: str, where, edges, skip, limit, order_by,
                  b: q.Binder) -> str:
        """The SELECT of :meth:`find` (the ``doc`` of the matching rows, each the whole stored
        document). A filtered or sorted page selects the ``seq`` of its rows first and then
        reads only their documents: the sort before LIMIT holds row ids (which an index gives
        without reading the rows), not every matching document."""
        page = f" LIMIT {b(-1 if limit is None else int(limit))} OFFSET {b(int(skip or 0))}"
        if limit is None or not (where or edges or order_by):
            return self._find_sql(c, wf, where, edges, order_by, b) + page
        rows = self._find_sql(c, wf, where, edges, order_by, b, columns="t.seq") + page
        order = q.order_clause(order_by, "t", b(self._prefix(c, wf)), edge=c.edge, coll=c.name)
        return f"SELECT {c.doc('t')} FROM {c.table} t WHERE t.seq IN ({rows}) {order}"

    def _find_texts(self, collection: str, workflow: str | None, where, edges, skip, limit,
                    order_by) -> list[str]:
        """The ``doc`` column of the matching rows (:meth:`_page_sql`)."""
        c, wf = self._coll(collection, workflow)
        b = q.Binder()
        text = self._page_sql(c, wf, where, edges, skip, limit, order_by, b)
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
        return self._scan(collection, workflow, where, edges, "count(*)", "")[0]

    def exists(self, collection: str, workflow: str | None, where: Where | None = None, *,
               edges: Sequence[HasEdge] = ()) -> bool:
        """See :meth:`GraphStore.exists`: ``LIMIT 1`` with no order, so a filter the index
        answers stops at its first entry (a :meth:`find` of one must sort every match)."""
        return self._scan(collection, workflow, where, edges, "1", " LIMIT 1") is not None

    def _scan(self, collection: str, workflow: str | None, where, edges, columns: str,
              tail: str) -> tuple | None:
        """The first row of ``SELECT <columns> ... WHERE <filter><tail>`` (constant SQL)."""
        c, wf = self._coll(collection, workflow)
        b = q.Binder()
        text = f"SELECT {columns} FROM {c.table} t WHERE {self._select(c, wf, where, edges, b)}{tail}"
        return self._db.read(lambda conn: conn.execute(text, b.params).fetchone())

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

    # -- jobs ----------------------------------------------------------------------------------

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
