"""The write paths of the SQLite store: inserts (keys from the global counter), updates,
rewrites and deletes with their edge cascade (a mixin of
:class:`~torc_graph.store.sqlite.SQLiteStore`)."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from torc_graph import model
from torc_graph.errors import InvalidInput, NotFound, RevisionConflict, UniqueConstraintViolated
from torc_graph.store import sql as q
from torc_graph.store import sqlite_columns as cols
from torc_graph.store import sqlite_schema as schema
from torc_graph.store.filters import HasEdge, Where
from torc_graph.store.records import Document
from torc_graph.store.sqlite_collections import SYSTEM, Coll, check_key, loads

_SYSTEM_BUT_KEY = SYSTEM - {"_key"}
_SYSTEM_BUT_ENDS = SYSTEM - {"_from", "_to"}


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


def _new_rev() -> str:
    return os.urandom(8).hex()


#: Rows per INSERT statement of a large insert: one statement of 100 rows costs SQLite and
#: the driver ~35 % less per row than 100 executions of a one-row statement (measured on
#: doc_jobs and edge_blocks rows, 10^4 per transaction: 13.4 -> 8.3 and 8.8 -> 4.5 us).
ROWS_PER_INSERT = 100


def _row_of(conn: sqlite3.Connection, c: Coll, wf: str, key: str) -> tuple[int, Document]:
    """``(seq, document)`` of ``key`` in ``c``. Raises NotFound."""
    row = conn.execute(f"SELECT t.seq, {c.doc('t')} FROM {c.table} t WHERE wf = ? AND key = ?",
                       (wf, key)).fetchone()
    if row is None:
        raise NotFound(f"document {model.make_id(c.name, wf or None, key)} not found")
    return row[0], loads(row[1])


@functools.lru_cache(maxsize=None)
def _insert_sql(c: Coll, count: int = 1) -> str:
    """The INSERT text of ``count`` rows of ``c`` (built once per collection and count)."""
    if c.edge:
        names, width = "wf, key, from_id, to_id, doc", 5
    elif c.columns:
        names = "wf, key, doc, rev, " + ", ".join(col.name for col in c.columns)
        width = 4 + len(c.columns)
    else:
        names, width = "wf, key, doc", 3
    row = "(" + ", ".join("?" * width) + ")"
    return f"INSERT INTO {c.table} ({names}) VALUES " + ", ".join([row] * count)


@functools.lru_cache(maxsize=None)
def _rewrite_sql(c: Coll) -> str:
    """The UPDATE text of :meth:`SQLiteStore.rewrite_each` for ``c`` (built once)."""
    if not c.columns:
        return f"UPDATE {c.table} SET doc = ? WHERE wf = ? AND key = ?"
    sets = "".join(f", {col.name} = ?" for col in c.columns)
    return f"UPDATE {c.table} SET doc = ?, rev = ?{sets} WHERE wf = ? AND key = ?"


class WriteOps:
    """Mixin of :class:`~torc_graph.store.sqlite.SQLiteStore` (uses its ``_db``, ``_coll``,
    ``_prefix``, ``_select``, ``_require_wf`` and ``workflow_exists``)."""

    def _reserve_keys(self, conn: sqlite3.Connection, n: int, floor: int) -> int:
        """Advance the global key counter past ``floor`` and by ``n``; return the first key."""
        if floor:
            conn.execute("UPDATE meta SET value = max(value, ?) WHERE name = 'key_counter'",
                         (min(floor, 2**63 - 1 - 2**40),))
        (end,) = conn.execute(
            "UPDATE meta SET value = value + ? WHERE name = 'key_counter' RETURNING value", (n,)
        ).fetchone()
        return end - n + 1

    def _insert_rows(self, conn: sqlite3.Connection, c: Coll, wf: str,
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
            elif check_key(key).isdigit() and key.isascii():
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
                    if k not in SYSTEM:
                        doc[k] = v
            text = dumps(doc)
            append_out(doc)
            if c.edge:
                append_row((wf, key, doc["_from"], doc["_to"], text))
            elif row_values is not None:
                append_row((wf, key, text, rev, *row_values(doc)))
            else:
                append_row((wf, key, text))
        self._execute_insert(conn, c, wf, rows, [r[1] for r in rows])
        return out

    def _execute_insert(self, conn: sqlite3.Connection, c: Coll, wf: str,
                        rows: Iterable[tuple], keys: list[str]) -> None:
        """Insert prepared rows (``(wf, key, ...)``, in order; ``keys`` their keys) by
        statements of :data:`ROWS_PER_INSERT` rows and one for the rest; a taken key raises
        UniqueConstraintViolated naming it (the caller's transaction then rolls back)."""
        flat = list(itertools.chain.from_iterable(rows))  # the parameters, in one C pass
        n = len(keys)
        width = len(flat) // n
        step = ROWS_PER_INSERT * width
        whole = (n - n % ROWS_PER_INSERT) * width
        # A savepoint, so a taken key is looked up with none of this insert's rows in place
        # (they would all be reported as conflicting).
        conn.execute("SAVEPOINT insert_rows")
        try:
            if whole:
                conn.executemany(_insert_sql(c, ROWS_PER_INSERT),
                                 [flat[i:i + step] for i in range(0, whole, step)])
            if whole < len(flat):
                conn.executemany(_insert_sql(c), [flat[i:i + width]
                                                  for i in range(whole, len(flat), width)])
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO insert_rows")
                conn.execute("RELEASE insert_rows")
            if not (isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)):
                raise
            taken = ", ".join(sorted(set(keys) & self._existing(conn, c, wf, keys)))
            raise UniqueConstraintViolated(
                "unique constraint violated - in index primary of type primary over '_key'; "
                f"conflicting key: {taken}") from None
        conn.execute("RELEASE insert_rows")

    def _encoded_rows(self, conn: sqlite3.Connection, c: Coll, wf: str,
                      docs: Sequence[Mapping[str, Any]],
                      texts: Sequence[str]) -> tuple[list[str], list[str]]:
        """Insert documents without system fields (edges: well-formed ``_from``/``_to``
        only) whose texts the caller encoded, with generated keys; the stored texts are spliced
        from the system fields and ``texts`` (the very text :func:`q.dumps` gives for the
        whole document: keys are decimal, ids and revisions need no JSON escape)."""
        # Runs for every created job and edge (10^6 each in a large workflow): comprehensions
        # and C-level zips; the column values are the only call per document.
        n = len(docs)
        if c.edge:
            froms, tos = [d["_from"] for d in docs], [d["_to"] for d in docs]
        if not c.is_global:
            self._require_wf(conn, wf)
        first = self._reserve_keys(conn, n, 0)
        prefix = self._prefix(c, wf)
        hexed = os.urandom(8 * n).hex()
        revs = [hexed[i:i + 16] for i in range(0, 16 * n, 16)]
        keys = list(map(str, range(first, first + n)))
        ids = [prefix + k for k in keys]
        tails = ["," + t[1:] if len(t) > 2 else "}" for t in texts]
        wfs = itertools.repeat(wf, n)
        if c.edge:
            stored = [f'{{"_key":"{k}","_id":"{i}","_from":"{f}","_to":"{t}","_rev":"{r}"{tail}'
                      for k, i, f, t, r, tail in zip(keys, ids, froms, tos, revs, tails)]
            rows = zip(wfs, keys, froms, tos, stored)
        else:
            stored = [f'{{"_key":"{k}","_id":"{i}","_rev":"{r}"{tail}'
                      for k, i, r, tail in zip(keys, ids, revs, tails)]
            row_values = cols.row_function(c.name)
            if row_values is not None:
                rows = zip(wfs, keys, stored, revs, *zip(*map(row_values, docs)))
            else:
                rows = zip(wfs, keys, stored)
        self._execute_insert(conn, c, wf, rows, keys)
        return ids, stored

    def _existing(self, conn, c: Coll, wf: str, keys: list[str]) -> set[str]:
        seen, dup = set(), set()
        for k in keys:
            (dup if k in seen else seen).add(k)
        found = conn.execute(
            f"SELECT key FROM {c.table} WHERE wf = ? AND key IN (SELECT value FROM json_each(?))",
            (wf, json.dumps(keys)),
        ).fetchall()
        return dup | {r[0] for r in found}

    def _cascade(self, conn: sqlite3.Connection, c: Coll, wf: str, ids_sql: str,
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

    def insert_encoded(self, collection: str, workflow: str | None,
                       docs: Sequence[Mapping[str, Any]],
                       texts: Sequence[str]) -> tuple[list[str], list[str]]:
        """See :meth:`GraphStore.insert_encoded`: each stored text is spliced from the
        caller's text (no second encoding); documents with a system field (a custom ``_key``)
        take :meth:`insert_many`."""
        c, wf = self._coll(collection, workflow)
        docs = list(docs)
        system = _SYSTEM_BUT_ENDS if c.edge else SYSTEM
        if (not docs or len(texts) != len(docs) or set(map(type, docs)) != {dict}
                or not all(map(system.isdisjoint, docs))):
            return super().insert_encoded(collection, workflow, docs, texts)
        if c.edge:  # before the write lock; a valid id needs no escaping in the spliced JSON
            for d in docs:
                _check_id(d.get("_from"), "_from")
                _check_id(d.get("_to"), "_to")
        with self._db.write() as conn:
            return self._encoded_rows(conn, c, wf, docs, texts)

    def update(self, collection: str, workflow: str | None, key: str, patch: Mapping[str, Any],
               *, rev: str | None = None) -> Document:
        c, wf = self._coll(collection, workflow)
        check_key(key)
        if not isinstance(patch, Mapping):
            raise InvalidInput("patch must be a JSON object")
        with self._db.write() as conn:
            seq, doc = _row_of(conn, c, wf, key)
            old = doc.get("_rev")
            if rev is not None and rev != old:
                raise RevisionConflict("conflict, _rev values do not match")
            for k, v in patch.items():
                if k not in SYSTEM:
                    doc[k] = v
            doc["_rev"] = _new_rev()
            if c.columns:
                sets = ", ".join(f"{col.name} = ?" for col in c.columns)
                conn.execute(f"UPDATE {c.table} SET doc = ?, rev = ?, {sets} WHERE seq = ?",
                             (q.dumps(doc), doc["_rev"], *cols.row_values(c.name, doc), seq))
            else:
                conn.execute(f"UPDATE {c.table} SET doc = ? WHERE seq = ?",
                             (q.dumps(doc), seq))
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
        system, check = SYSTEM, check_key
        out, rows, keys = [], [], set()
        for i, d in enumerate(docs):
            if not isinstance(d, Mapping):
                raise InvalidInput("a document must be a JSON object")
            key = check(d.get("_key"))
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

    def _matching(self, c: Coll, wf: str, where, edges, b: q.Binder) -> str:
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
        setter = q.set_clause(c.name, patch, b, system=SYSTEM)
        cond = self._matching(c, wf, where, edges, b)
        with self._db.write() as conn:
            cur = conn.execute(f"UPDATE {c.table} AS t SET {setter} WHERE {cond}", b.params)
            return cur.rowcount

    def delete(self, collection: str, workflow: str | None, key: str) -> Document:
        c, wf = self._coll(collection, workflow)
        check_key(key)
        with self._db.write() as conn:
            seq, doc = _row_of(conn, c, wf, key)
            self._cascade(conn, c, wf, ":vid", {"vid": doc["_id"]})
            conn.execute(f"DELETE FROM {c.table} WHERE seq = ?", (seq,))
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
