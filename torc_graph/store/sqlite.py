"""The embedded SQLite backend of the graph store (the default).

One database file holds every workflow. Tables and migrations: :mod:`.sqlite_schema`; filter,
patch and graph SQL: :mod:`.sql`; connections, transactions, busy handling and error translation
(no "database is locked" ever reaches a caller): :mod:`.sqlite_connection`. This module maps
each protocol operation onto set-based statements.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

from torc_graph import json_codec, model
from torc_graph.errors import InvalidInput, NotFound, RevisionConflict, UniqueConstraintViolated
from torc_graph.store import sql as q
from torc_graph.store import sqlite_columns as cols
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
from torc_graph.store.sqlite_connection import Connections
from torc_graph.store.sqlite_staging import STAGED, StagingOps

_SYSTEM = frozenset(("_key", "_id", "_rev", "_from", "_to", "_oldRev"))
_SYSTEM_BUT_KEY = _SYSTEM - {"_key"}
_OWNERS = model.GlobalCollection.WORKFLOW_OWNERS.value
_WF_KEY = re.compile(r"^[A-Za-z0-9_]{1,254}$")
T = TypeVar("T")


class _Coll:
    """A whitelisted collection: its table and kind."""

    __slots__ = ("name", "edge", "is_global", "vertex", "table", "columns")

    def __init__(self, name: str, edge: bool, is_global: bool, vertex: bool):
        self.name, self.edge, self.is_global, self.vertex = name, edge, is_global, vertex
        self.table = schema.edge_table(name) if edge else schema.doc_table(name)
        self.columns = cols.columns(name)

    def doc(self, alias: str) -> str:
        """SQL for the whole stored document of row ``alias`` (columns overlaid)."""
        return cols.read_expr(self.name, alias)


_COLLS: dict[str, _Coll] = {}
for _c in model.Collection:
    _COLLS[_c.value] = _Coll(_c.value, False, False, _c in model.VERTEX_COLLECTIONS)
for _e in model.Edge:
    _COLLS[_e.value] = _Coll(_e.value, True, False, False)
for _g in model.GlobalCollection:
    _COLLS[_g.value] = _Coll(_g.value, False, True, True)
for _ge in model.GlobalEdge:
    _COLLS[_ge.value] = _Coll(_ge.value, True, True, False)


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
        raise InvalidInput(f"invalid document key {key!r}")
    return key


#: Collection parts (``jobs__12``) of ids already found well-formed: an id with one of them
#: and a decimal key is well-formed without the regex (bulk inserts check 10^6 edge ends).
_GOOD_ID_HEADS: set[str] = set()


def _check_id(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a document id")
    head, _, key = value.partition("/")
    if head in _GOOD_ID_HEADS and key.isdigit() and key.isascii() and len(key) <= 254:
        return value
    try:
        model.split_id(value)
    except ValueError:
        raise InvalidInput(f"{field} is not a document id: {value!r}") from None
    if len(_GOOD_ID_HEADS) < 4096:
        _GOOD_ID_HEADS.add(head)
    return value


def _loads(text: str) -> Document:
    return json_codec.loads(text)


def _new_rev() -> str:
    return os.urandom(8).hex()


@functools.lru_cache(maxsize=None)
def _insert_sql(c: _Coll) -> str:
    """The INSERT text of one row of ``c`` (built once per collection)."""
    if c.edge:
        return f"INSERT INTO {c.table} (wf, key, from_id, to_id, doc) VALUES (?, ?, ?, ?, ?)"
    if c.columns:
        names = ", ".join(col.name for col in c.columns)
        marks = ", ".join("?" * len(c.columns))
        return f"INSERT INTO {c.table} (wf, key, doc, rev, {names}) VALUES (?, ?, ?, ?, {marks})"
    return f"INSERT INTO {c.table} (wf, key, doc) VALUES (?, ?, ?)"


@functools.lru_cache(maxsize=None)
def _rewrite_sql(c: _Coll) -> str:
    """The UPDATE text of :meth:`SQLiteStore.rewrite_each` for ``c`` (built once)."""
    if not c.columns:
        return f"UPDATE {c.table} SET doc = ? WHERE wf = ? AND key = ?"
    sets = "".join(f", {col.name} = ?" for col in c.columns)
    return f"UPDATE {c.table} SET doc = ?, rev = ?{sets} WHERE wf = ? AND key = ?"


class SQLiteStore(StagingOps, GraphStore):
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

    def _coll(self, name: str, workflow: str | None) -> tuple[_Coll, str]:
        c = _COLLS.get(name) if isinstance(name, str) else None
        if c is None:
            raise InvalidInput(f"unknown collection {name!r}")
        if c.is_global:
            if workflow is not None:
                raise InvalidInput(f"{name} is a global collection; workflow must be None")
            return c, ""
        if workflow is None:
            raise InvalidInput(f"{name} is a per-workflow collection; a workflow is required")
        _check_key(workflow)
        return c, workflow

    @staticmethod
    def _prefix(c: _Coll, wf: str) -> str:
        return model.make_id(c.name, wf or None, "")

    def _require_wf(self, conn: sqlite3.Connection, wf: str) -> None:
        if wf and not self._staged_here(wf) and conn.execute(
            "SELECT 1 FROM doc_workflows WHERE wf = '' AND key = ?", (wf,)
        ).fetchone() is None:
            raise NotFound(f"workflow {wf} not found")

    def _select(self, c: _Coll, wf: str, where, edges, b: q.Binder, alias: str = "t") -> str:
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

    def _reserve_keys(self, conn: sqlite3.Connection, n: int, floor: int) -> int:
        """Advance the global key counter past ``floor`` and by ``n``; return the first key."""
        if floor:
            conn.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'key_counter'",
                         (min(floor, 2**63 - 1 - 2**40),))
        (end,) = conn.execute(
            "UPDATE meta SET value = value + ? WHERE name = 'key_counter' RETURNING value", (n,)
        ).fetchone()
        return end - n + 1

    def _insert_rows(self, conn: sqlite3.Connection, c: _Coll, wf: str,
                     docs: Sequence[Mapping[str, Any]]) -> list[Document]:
        # Runs once per inserted document (10^6 for a large workflow): one pass of plain dict
        # operations per document; checks that would cost a regex per id are cached per form.
        floor, need = 0, 0
        for d in docs:
            if not isinstance(d, Mapping):
                raise InvalidInput("a document must be a JSON object")
            key = d.get("_key")
            if key is None:
                need += 1
            elif _check_key(key).isdigit() and key.isascii():
                floor = max(floor, int(key))
            if c.edge:
                _check_id(d.get("_from"), "_from")
                _check_id(d.get("_to"), "_to")
        if not c.is_global:
            self._require_wf(conn, wf)
        next_key = self._reserve_keys(conn, need, floor) if (need or floor) else 0
        prefix = self._prefix(c, wf)
        revs = os.urandom(8 * len(docs)).hex()
        dumps, row_values = q.dumps, cols.row_function(c.name)
        out, rows = [], []
        append_out, append_row = out.append, rows.append
        for i, d in enumerate(docs):
            key = d.get("_key")
            if key is None:
                key = str(next_key)
                next_key += 1
            rev = revs[16 * i:16 * i + 16]
            doc: Document = {"_key": key, "_id": prefix + key}
            if c.edge:
                doc["_from"], doc["_to"] = d["_from"], d["_to"]
            doc["_rev"] = rev
            if _SYSTEM_BUT_KEY.isdisjoint(d):
                doc.update(d)  # a "_key" in d is the same value: its place stays first
                doc["_key"] = key
            else:
                for k, v in d.items():
                    if k not in _SYSTEM:
                        doc[k] = v
            text = dumps(doc)
            append_out(doc)
            if c.edge:
                append_row((wf, key, doc["_from"], doc["_to"], text))
            elif row_values is not None:
                append_row((wf, key, text, rev, *row_values(doc)))
            else:
                append_row((wf, key, text))
        sql_text = _insert_sql(c)
        try:
            conn.executemany(sql_text, rows)
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc):
                raise
            taken = ", ".join(sorted({r[1] for r in rows} & self._existing(conn, c, wf, rows)))
            raise UniqueConstraintViolated(
                "unique constraint violated - in index primary of type primary over '_key'; "
                f"conflicting key: {taken}") from None
        return out

    def _existing(self, conn, c: _Coll, wf: str, rows) -> set[str]:
        keys = [r[1] for r in rows]
        seen, dup = set(), set()
        for k in keys:
            (dup if k in seen else seen).add(k)
        found = conn.execute(
            f"SELECT key FROM {c.table} WHERE wf = ? AND key IN (SELECT value FROM json_each(?))",
            (wf, json.dumps(keys)),
        ).fetchall()
        return dup | {r[0] for r in found}

    def _cascade(self, conn: sqlite3.Connection, c: _Coll, wf: str, ids_sql: str,
                 params: Mapping[str, Any]) -> None:
        """Delete every edge of the workflow's graph incident to the vertices ``ids_sql``."""
        if not c.vertex:
            return
        names = [e.value for e in model.GlobalEdge] if c.is_global else [e.value for e in model.Edge]
        p = {**params, "cwf": wf}
        for name in names:
            t = schema.edge_table(name)
            # Two statements: with OR the planner scans the workflow's edges instead of using
            # the (wf, from_id) and (wf, to_id) indexes.
            conn.execute(f"DELETE FROM {t} WHERE wf = :cwf AND from_id IN ({ids_sql})", p)
            conn.execute(f"DELETE FROM {t} WHERE wf = :cwf AND to_id IN ({ids_sql})", p)

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
            wf_doc = self._insert_rows(conn, _COLLS["workflows"], "", [workflow])[0]
            # The owner commits with the workflow or not at all (a stale record is replaced).
            conn.execute(f"DELETE FROM {_COLLS[_OWNERS].table} WHERE wf = '' AND key = ?",
                         (wf_doc["_key"],))
            if owner is not None:
                self._insert_rows(conn, _COLLS[_OWNERS], "", [{**owner, "_key": wf_doc["_key"]}])
            cfg = self._insert_rows(conn, _COLLS["workflow_configs"], "", [config])[0]
            sts = self._insert_rows(conn, _COLLS["workflow_statuses"], "", [status])[0]
            self._insert_rows(conn, _COLLS["has_workflow_config"], "",
                              [{"_from": wf_doc["_id"], "_to": cfg["_id"]}])
            self._insert_rows(conn, _COLLS["has_workflow_status"], "",
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
        _check_key(key)
        row, found = self._db.read(lambda conn: self._space_rows(conn, key))
        if found["workflow_configs"] is None or found["workflow_statuses"] is None:
            raise NotFound(f"workflow {key} has no config or status")
        return WorkflowSpace(_loads(row[0]), _loads(found["workflow_configs"][1]),
                             _loads(found["workflow_statuses"][1]))

    def workflow_exists(self, key: str) -> bool:
        if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
            return False
        if self._staged_here(key):
            return True
        return self._db.read(lambda conn: conn.execute(
            "SELECT 1 FROM doc_workflows WHERE wf = '' AND key = ?", (key,)).fetchone() is not None)

    def delete_workflow(self, key: str) -> Document:
        _check_key(key)
        with self._db.write() as conn:
            row, found = self._space_rows(conn, key)
            wf_id = "workflows/" + key
            for coll in ("workflow_configs", "workflow_statuses"):
                if found[coll] is not None:
                    conn.execute(f"DELETE FROM doc_{coll} WHERE wf = '' AND key = ?",
                                 (found[coll][0],))
            self._cascade(conn, _COLLS["workflows"], "", ":vid", {"vid": wf_id})
            for name in schema.all_tables():
                if name not in ("doc_workflows", "doc_workflow_configs", "doc_workflow_statuses",
                                "edge_has_workflow_config", "edge_has_workflow_status"):
                    conn.execute(f"DELETE FROM {name} WHERE wf = ?", (key,))
            conn.execute(f"DELETE FROM {_COLLS[_OWNERS].table} WHERE wf = '' AND key = ?",
                         (key,))
            conn.execute("DELETE FROM doc_workflows WHERE wf = '' AND key = ?", (key,))
        return _loads(row[0])

    # -- documents -----------------------------------------------------------------------------

    def insert(self, collection: str, workflow: str | None, doc: Mapping[str, Any]) -> Document:
        c, wf = self._coll(collection, workflow)
        with self._db.write() as conn:
            return self._insert_rows(conn, c, wf, [doc])[0]

    def insert_many(self, collection: str, workflow: str | None,
                    docs: Sequence[Mapping[str, Any]]) -> list[Document]:
        c, wf = self._coll(collection, workflow)
        docs = list(docs)
        if not docs:
            if not c.is_global and not self.workflow_exists(wf):
                raise NotFound(f"workflow {wf} not found")
            return []
        with self._db.write() as conn:
            return self._insert_rows(conn, c, wf, docs)

    def get(self, collection: str, workflow: str | None, key: str) -> Document:
        c, wf = self._coll(collection, workflow)
        _check_key(key)
        row = self._db.read(lambda conn: conn.execute(
            f"SELECT {c.doc('t')} FROM {c.table} t WHERE wf = ? AND key = ?", (wf, key)).fetchone())
        if row is None:
            raise NotFound(f"document {model.make_id(c.name, wf or None, key)} not found")
        return _loads(row[0])

    def update(self, collection: str, workflow: str | None, key: str, patch: Mapping[str, Any],
               *, rev: str | None = None) -> Document:
        c, wf = self._coll(collection, workflow)
        _check_key(key)
        if not isinstance(patch, Mapping):
            raise InvalidInput("patch must be a JSON object")
        with self._db.write() as conn:
            row = conn.execute(f"SELECT t.seq, {c.doc('t')} FROM {c.table} t "
                               "WHERE wf = ? AND key = ?", (wf, key)).fetchone()
            if row is None:
                raise NotFound(f"document {model.make_id(c.name, wf or None, key)} not found")
            doc = _loads(row[1])
            old = doc.get("_rev")
            if rev is not None and rev != old:
                raise RevisionConflict("conflict, _rev values do not match")
            for k, v in patch.items():
                if k not in _SYSTEM:
                    doc[k] = v
            doc["_rev"] = _new_rev()
            if c.columns:
                sets = ", ".join(f"{col.name} = ?" for col in c.columns)
                conn.execute(f"UPDATE {c.table} SET doc = ?, rev = ?, {sets} WHERE seq = ?",
                             (q.dumps(doc), doc["_rev"], *cols.row_values(c.name, doc), row[0]))
            else:
                conn.execute(f"UPDATE {c.table} SET doc = ? WHERE seq = ?",
                             (q.dumps(doc), row[0]))
        doc["_oldRev"] = old
        return doc

    def rewrite_each(self, collection: str, workflow: str | None,
                     docs: Sequence[Mapping[str, Any]]) -> list[Document]:
        """See :meth:`GraphStore.rewrite_each`: one ``executemany``, no read."""
        c, wf = self._coll(collection, workflow)
        if c.edge:
            raise InvalidInput("rewrite_each writes documents, not edges")
        prefix = self._prefix(c, wf)
        revs = os.urandom(8 * len(docs)).hex()
        dumps, row_values = q.dumps, cols.row_function(c.name)
        system, check_key = _SYSTEM, _check_key
        out, rows, keys = [], [], set()
        for i, d in enumerate(docs):
            if not isinstance(d, Mapping):
                raise InvalidInput("a document must be a JSON object")
            key = check_key(d.get("_key"))
            if key in keys:
                raise InvalidInput(f"rewrite_each: document {key} is given twice")
            keys.add(key)
            rev = revs[16 * i:16 * i + 16]
            doc: Document = {"_key": key, "_id": prefix + key, "_rev": rev}
            for k, v in d.items():
                if k not in system:
                    doc[k] = v
            text = dumps(doc)
            if row_values is not None:
                rows.append((text, rev, *row_values(doc), wf, key))
            else:
                rows.append((text, wf, key))
            doc["_oldRev"] = d.get("_rev")  # after the encoding: not part of the stored text
            out.append(doc)
        if not rows:
            return []
        with self._db.write() as conn:
            cur = conn.executemany(_rewrite_sql(c), rows)
            if cur.rowcount != len(rows):
                missing = [r[-1] for r in rows if conn.execute(
                    f"SELECT 1 FROM {c.table} WHERE wf = ? AND key = ?", (wf, r[-1])
                ).fetchone() is None]
                raise NotFound(f"document {prefix}{missing[0] if missing else '?'} not found")
        return out

    def _matching(self, c: _Coll, wf: str, where, edges, b: q.Binder) -> str:
        """WHERE text for the rows an UPDATE/DELETE (aliased ``t``) changes. With graph
        predicates the matches are selected first (a non-correlated ``IN``, evaluated once), so
        changing one row cannot change whether another row matches in the same statement."""
        if not edges:
            return self._select(c, wf, where, edges, b)
        cond = self._select(c, wf, where, edges, b, alias="m")
        return f"t.seq IN (SELECT m.seq FROM {c.table} m WHERE {cond})"

    def update_many(self, collection: str, workflow: str | None, where: Where | None,
                    patch: Mapping[str, Any], *, edges: Sequence[HasEdge] = ()) -> int:
        c, wf = self._coll(collection, workflow)
        b = q.Binder()
        setter = q.set_clause(c.name, patch, b, system=_SYSTEM)
        cond = self._matching(c, wf, where, edges, b)
        with self._db.write() as conn:
            cur = conn.execute(f"UPDATE {c.table} AS t SET {setter} WHERE {cond}", b.params)
            return cur.rowcount

    def delete(self, collection: str, workflow: str | None, key: str) -> Document:
        c, wf = self._coll(collection, workflow)
        _check_key(key)
        with self._db.write() as conn:
            row = conn.execute(f"SELECT t.seq, {c.doc('t')} FROM {c.table} t "
                               "WHERE wf = ? AND key = ?", (wf, key)).fetchone()
            if row is None:
                raise NotFound(f"document {model.make_id(c.name, wf or None, key)} not found")
            doc = _loads(row[1])
            self._cascade(conn, c, wf, ":vid", {"vid": doc["_id"]})
            conn.execute(f"DELETE FROM {c.table} WHERE seq = ?", (row[0],))
        return doc

    def delete_many(self, collection: str, workflow: str | None, where: Where | None = None,
                    *, edges: Sequence[HasEdge] = ()) -> int:
        c, wf = self._coll(collection, workflow)
        b = q.Binder()
        cond = self._matching(c, wf, where, edges, b)
        with self._db.write() as conn:
            keys = [r[0] for r in conn.execute(
                f"DELETE FROM {c.table} AS t WHERE {cond} RETURNING key", b.params).fetchall()]
            if c.vertex and keys:
                prefix = self._prefix(c, wf)
                self._cascade(conn, c, wf, "SELECT value FROM json_each(:ids)",
                              {"ids": q.dumps([prefix + k for k in keys])})
            return len(keys)

    def _find_sql(self, c: _Coll, wf: str, where, edges, order_by, b: q.Binder) -> str:
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
        return [_loads(t) for t in texts]

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
                yield _loads(r[0])
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

        return [_loads(t) for t in self._db.read(run)]

    # -- graph ---------------------------------------------------------------------------------

    def _edge(self, edge: str, workflow: str) -> tuple[_Coll, str]:
        name = q.edge_name(edge)
        c = _COLLS[name]
        if c.is_global:
            return c, ""
        _check_key(workflow)
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
            e = _loads(e_text)
            out.append(Neighbor(e["_from"] if direction == "out" else e["_to"], e,
                                None if v_text is None else _loads(v_text)))
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
            d, e = _loads(d_text), _loads(e_text)
            o = None if o_text is None else _loads(o_text)
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
        return [_loads(r[0]) for r in rows]

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
                sc = _COLLS[coll]
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
                tc = _COLLS[coll]
                tb = q.Binder()
                tb.params = dict(b.params)
                setter = q.set_clause(tc.name, patch, tb, system=_SYSTEM)
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
