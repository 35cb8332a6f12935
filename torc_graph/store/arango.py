"""ArangoDB backend of the graph store (python-arango), with torc v0.6.4's storage layout.

Layout and deployments: :mod:`.arango_layout` (global ``workflows``, ``workflow_configs``,
``workflow_statuses``, the ``has_*`` edges and graph ``workflow_graph``; per workflow every
model collection as ``<base>__<WF>`` and graph ``workflow_graph__<WF>``; single server, or a
cluster database that is OneShard). Keys and order: :mod:`.arango_keys` (one sequence counter;
every document carries its number in the indexed attribute ``_torc_seq``, hidden from callers).
Graph operations: :mod:`.arango_graph`. Reads (find, pages, counts, projections):
:mod:`.arango_reads`. Connection and errno translation:
:mod:`.arango_connection`.

Transactions
------------
:meth:`ArangoStore.transaction` opens a stream transaction over the workflow's collections and
the global ones, with exclusive access to ``jobs__<WF>`` only (the other collections are
shared-write: every torc_graph writer of a workflow takes the jobs lock first, so they are
serialized anyway). It lives in a thread-local; every method the thread calls inside the block
runs in it. Its size is checked: the store declares ``maxTransactionSize`` =
``Settings.max_transaction_bytes`` (at or below the server's stream-transaction cap), counts
the bytes it writes (inserts before sending, updates as reported by the server) and refuses an
insert that would cross the cap with :class:`TransactionTooLarge` (413; nothing is written,
the transaction is rolled back); the server's own errno 32 maps to the same error. Standalone
queries (outside a block) declare the same cap and disable intermediate commits, so a large
``insert_many`` or ``update_many`` is atomic or fails whole. Every query carries
``maxRuntime`` below the client's request timeout, so the server stops what the client gave
up on. Cursors inside a transaction never continue (python-arango sends continuation requests
without the transaction header): results come in one batch, and :meth:`iter_find` pages by
keyset. DDL (create/delete workflow) is not transactional and runs outside, with compensation.

Bulk paths: a staged creation (:mod:`.arango_staging`: invisible until published, swept after
a crash) and a bulk transaction (:mod:`.arango_chunks`: guarded until its last chunk) may
commit in chunks, each under the cap. Claims read a server-computed claim-order attribute
through a sparse index (:data:`.aql.CLAIM_ORDERS`, :func:`claim_order`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arango.database import TransactionDatabase

from torc_graph import model
from torc_graph.errors import (
    InvalidInput,
    NotFound,
    RevisionConflict,
    StoreError,
)
from torc_graph.store import arango_keys
from torc_graph.store.aql import (
    HIDDEN_FIELDS,
    SEQ_FIELD,
    SYSTEM_FIELDS,
    Query,
    check_key,
    collection_name,
)
from torc_graph.store.arango_connection import (
    MIB,
    PASSWORD_ENV,
    Connection,
    Settings,
    TransactionTooLarge,
    dumps,
    mask_url,
    parse_url,
    settings_from_url,
    translate,
    translating,
)
from torc_graph.store.arango_graph import ID_PATTERN, GraphOps, clean
from torc_graph.store.arango_chunks import ChunkOps
from torc_graph.store.arango_reads import ReadOps, claim_order
from torc_graph.store.arango_staging import StagingOps
from torc_graph.store.arango_workflows import WorkflowOps, missing_workflow
from torc_graph.store.arango_layout import (
    GLOBAL_DOCS,
    GLOBAL_EDGES,
    TICKS,
    VERTEX_NAMES,
    WORKFLOW_KEY_PATTERN,
    Layout,
    workflow_names,
)
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import HasEdge, Where
from torc_graph.store.records import Document

__all__ = ["ArangoStore", "PASSWORD_ENV", "TICKS", "TransactionTooLarge", "claim_order", "mask_url",
           "parse_url", "translate"]

log = logging.getLogger(__name__)

#: Bytes the store charges per written document beyond its JSON text (key, revision, the
#: primary and sequence index entries; an upper bound of RocksDB's per-operation overhead).
DOC_OVERHEAD = 128
#: Inside a stream transaction every result comes in one batch (see the module doc).
TX_BATCH = 10_000_000
#: Standalone queries: no intermediate commit before the size cap is reached.
NO_INTERMEDIATE_COUNT = 2**53


@dataclass
class _Tx:
    db: Any
    pid: int
    depth: int = 1
    used: int = 0
    workflow: str | None = None
    #: The begin_transaction arguments (a chunk continues with the same ones).
    args: dict[str, Any] | None = None
    #: Chunked (a staged creation or a bulk transaction): commit and continue instead of
    #: refusing a write that would cross the cap.
    chunked: bool = False
    #: A bulk transaction: its operation and arguments (named by its guard), its run's id.
    operation: str = "initialize_jobs"
    op_args: dict[str, Any] | None = None
    owner: str | None = None
    #: A bulk transaction that took over an interrupted run of the same operation.
    resumed: bool = False
    #: A background rerun (:meth:`~.arango_chunks.ChunkOps.complete`): the dead run's owner.
    completing: str | None = None
    chunks: int = 1


def _is_edge(name: str) -> bool:
    return model.is_edge(name) or name in GLOBAL_EDGES


class ArangoStore(ReadOps, ChunkOps, StagingOps, WorkflowOps, GraphOps, GraphStore):
    """Graph store on an ArangoDB database. Create it with :meth:`from_url`."""

    def __init__(self, host: str, database: str, username: str = "root", password: str = "", *,
                 url: str | None = None, http_client: Any = None, **options: Any):
        settings = Settings(host=host, database=database, username=username, password=password,
                            **options)
        self.settings = settings
        self.url = mask_url(url) if url else f"{host}/{database}"
        self._layout = Layout(settings)
        self._conn = Connection(settings, self._layout.ensure_global, http_client)
        self._local = threading.local()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ArangoStore:
        """Open ``arangodb://user:password@host:8529/database[?option=value...]``
        (``arangodbs://`` = HTTPS).

        Options (URL query or keywords): ``request_timeout`` (s), ``lock_timeout`` (s),
        ``max_transaction_mib``, ``replication_factor``, ``write_concern``, ``verify`` (TLS);
        ``http_client`` (keyword only). Keywords meant for other backends are ignored. No
        connection is made until first use. Raises InvalidInput for a bad URL or option.
        """
        s = settings_from_url(url, options)
        fields = {k: v for k, v in vars(s).items() if k not in ("host", "database")}
        return cls(s.host, s.database, url=url, http_client=options.get("http_client"), **fields)

    # -- plumbing -------------------------------------------------------------------------------

    def _tx(self) -> _Tx | None:
        tx = getattr(self._local, "tx", None)
        return tx if tx is not None and tx.pid == os.getpid() else None

    def _run(self, text: str, q: Query, what: str = "document", db: Any = None) -> list[Any]:
        """Execute a query and return all rows: on ``db`` (a database or a stream transaction
        handle), else in this thread's transaction, else standalone."""
        tx = self._tx()
        cap = self.settings.max_transaction_bytes
        options: dict[str, Any] = {"max_runtime": self.settings.query_runtime}
        with translating(what, cap):
            if db is None and tx is not None:
                db = tx.db
            if isinstance(db, TransactionDatabase):
                options["batch_size"] = TX_BATCH
            else:
                db = db if db is not None else self._conn.db()
                options.update(batch_size=1000, max_transaction_size=cap,
                               intermediate_commit_size=2 * cap,
                               intermediate_commit_count=NO_INTERMEDIATE_COUNT)
            cursor = db.aql.execute(q.finish(text), bind_vars=q.bind_vars, **options)
            if "max_transaction_size" not in options and cursor.has_more():
                log.error("result of %s exceeds one batch inside a transaction", what)
                with contextlib.suppress(Exception):
                    cursor.close(ignore_missing=True)
                raise StoreError("storage error: result too large for one transaction batch")
            return list(cursor)

    def _charge(self, nbytes: int, *, after: bool = False) -> None:
        """Count ``nbytes`` written against the transaction size cap; raise
        TransactionTooLarge if crossed. ``after``: the write already happened; inside a
        transaction raising rolls it back, outside one the server enforced the cap itself
        (``maxTransactionSize``), so nothing is counted or raised."""
        cap = self.settings.max_transaction_bytes
        tx = self._tx()
        if after and tx is None:
            return
        total = nbytes + (tx.used if tx is not None else 0)
        if total > cap and not after and tx is not None and tx.chunked and tx.used:
            self._next_chunk(tx)
            total = nbytes
        if total > cap:
            raise TransactionTooLarge(
                f"this call writes about {total // MIB + 1} MiB in one ArangoDB transaction, "
                f"more than its limit of {cap // MIB} MiB; nothing was written: split the "
                "request (e.g. bulk_jobs in batches) or raise max_transaction_mib together "
                "with the server's --transaction.streaming-max-transaction-size")
        if tx is not None:
            tx.used = total

    def _filter(self, q: Query, name: str, where: Where | None, edges: Sequence[HasEdge] = (),
                workflow: str | None = None, extra: Sequence[str] = ()) -> str:
        """``FILTER`` line of a read or write of ``name``: ``extra`` conditions, ``where``,
        ``edges``, and for ``workflows`` the staged-workflow visibility (:mod:`.arango_staging`)."""
        conds = list(extra) + self.visible(q, name)
        flt = q.filter("d", where, edges, workflow)
        if flt:
            conds.append(flt[len("FILTER "):])
        return ("FILTER " + " AND ".join(conds)) if conds else ""

    def _recompute_claim_orders(self, workflow: str) -> None:
        """An existing jobs collection just got the claim orders' computed values: an empty
        update of its claimable jobs makes the server compute them (standalone, once)."""
        q = Query()
        c = q.collection(model.collection_name(model.Collection.JOBS.value, workflow))
        text = (f"FOR d IN {c} FILTER d.status IN {q.value(list(model.CLAIMABLE_STATUSES))} "
                f"UPDATE d WITH {{}} IN {c} RETURN 1")
        self._run(f"RETURN LENGTH(({text}))", q, f"workflow {workflow}", db=self._conn.db())

    def _next_chunk(self, tx: _Tx) -> None:
        """Chunked transaction: commit what it holds and go on in a new stream transaction with
        the same collections. What it commits is invisible (a staged workflow: the stamp is
        refreshed) or guarded (a bulk transaction: every chunk writes the workflow's guard,
        renewing its lease, :mod:`.arango_chunks`)."""
        what = f"workflow {tx.workflow}"
        if not self.is_staged_here(tx.workflow):  # the guard, its lease renewed
            self.set_guard(str(tx.workflow), tx)
        with translating(what, self.settings.max_transaction_bytes):
            tx.db.commit_transaction()
        tx.db = None  # committed: an error below must not abort it again
        with translating(what):
            tx.db = self._conn.db().begin_transaction(**tx.args)
        tx.used = 0
        tx.chunks += 1
        if self.is_staged_here(tx.workflow):
            self.touch_staged(str(tx.workflow))

    def _reserve(self, n: int, floor: int = 0) -> list[int]:
        """``n`` fresh sequence numbers above ``floor`` (a standalone query, see arango_keys)."""
        db = self._conn.db()

        def execute(text: str, bind: dict[str, Any]) -> list[Any]:
            return list(db.aql.execute(text, bind_vars=bind,
                                       max_runtime=self.settings.query_runtime))

        with translating("key sequence"):
            return arango_keys.reserve(execute, n, floor)

    def close(self) -> None:
        self._conn.close()

    def info(self) -> dict[str, Any]:
        with translating("server"):
            version = self._conn.db().version()
        return {"backend": "arangodb", "version": version, "url": self.url,
                "database": self.settings.database,
                "max_transaction_bytes": self.settings.max_transaction_bytes}

    # -- transactions ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, workflow: str | None = None) -> Iterator[None]:
        """Stream transaction over the workflow's and the global collections (module doc).

        Raises NotFound for a missing workflow, StoreUnavailable when the locks are not
        granted within ``lock_timeout``; rolls back and re-raises on any exception."""
        tx = self._tx()
        if tx is not None:
            tx.depth += 1
            try:
                yield
            finally:
                tx.depth -= 1
            return
        write = list(GLOBAL_DOCS + GLOBAL_EDGES)
        exclusive = None
        base = self._conn.db()
        if workflow is not None:
            check_key(workflow, "workflow key")
            if not WORKFLOW_KEY_PATTERN.match(workflow):
                raise missing_workflow(workflow)
            with translating(f"workflow {workflow}"):
                if self._layout.ensure_workflow(base, workflow):
                    self._recompute_claim_orders(workflow)
            vertex, edges, plain = workflow_names(workflow)
            jobs = model.collection_name(model.Collection.JOBS.value, workflow)
            exclusive = [jobs]
            write += [n for n in vertex + edges + plain if n != jobs]
        begin = dict(write=write, exclusive=exclusive, lock_timeout=self.settings.lock_timeout,
                     allow_implicit=True, max_size=self.settings.max_transaction_bytes)
        try:
            with translating(f"workflow {workflow}"):
                handle = base.begin_transaction(**begin)
        except NotFound:
            raise missing_workflow(str(workflow)) from None
        tx = _Tx(handle, os.getpid(), workflow=workflow, args=begin,
                 chunked=self.is_staged_here(workflow))
        self._local.tx = tx
        try:
            yield
        except BaseException:
            self._local.tx = None
            try:
                if tx.db is not None:
                    tx.db.abort_transaction()
            except Exception as exc:  # the original error matters more
                log.warning("abort of stream transaction failed: %s", exc)
            raise
        self._local.tx = None
        with translating("transaction", self.settings.max_transaction_bytes):
            tx.db.commit_transaction()

    # -- documents ------------------------------------------------------------------------------

    @staticmethod
    def _prepare(doc: Mapping[str, Any], edge: bool) -> dict[str, Any]:
        if not isinstance(doc, Mapping):
            raise InvalidInput("a document must be a JSON object")
        out = {k: v for k, v in doc.items()
               if k not in ("_id", "_rev", "_oldRev") and k not in HIDDEN_FIELDS}
        if "_key" in out:
            check_key(out["_key"])
        if edge:
            for f in ("_from", "_to"):
                v = out.get(f)
                if not isinstance(v, str) or not ID_PATTERN.match(v):
                    raise InvalidInput(f"edge {f} must be a document id, got {v!r}")
        return out

    def insert(self, collection: str, workflow: str | None, doc: Mapping[str, Any]) -> Document:
        return self.insert_many(collection, workflow, [doc])[0]

    def insert_many(
        self, collection: str, workflow: str | None, docs: Sequence[Mapping[str, Any]]
    ) -> list[Document]:
        name = collection_name(collection, workflow)
        prepared = [self._prepare(d, _is_edge(str(collection))) for d in docs]
        if not prepared:
            if workflow is not None and not self.workflow_exists(workflow):
                raise missing_workflow(workflow)
            return []
        return self._insert_prepared(name, prepared, workflow)

    def _insert_prepared(self, name: str, docs: list[dict[str, Any]], workflow: str | None) -> list[Document]:
        """Number, size-check and insert prepared documents: one query, one write each (in a
        chunked transaction: one query per piece of at most half the cap)."""
        with translating(f"collection {name}"):  # a value JSON refuses -> InvalidInput
            sizes = [len(dumps(d)) + DOC_OVERHEAD for d in docs]
        tx = self._tx()
        if tx is None or not tx.chunked:
            self._charge(sum(sizes))
        seqs = self._reserve(len(docs), arango_keys.floor_of([d.get("_key", "") for d in docs]))
        for d, s in zip(docs, seqs):
            d[SEQ_FIELD] = s
            d.setdefault("_key", str(s))
        rows: list[Any] = []
        for lo, hi, nbytes in self._pieces(sizes, tx):
            if tx is not None and tx.chunked:
                self._charge(nbytes)
            q = Query()
            text = f"FOR d IN {q.value(docs[lo:hi])} INSERT d INTO {q.collection(name)} RETURN NEW"
            try:
                rows += self._run(text, q, f"collection {name}")
            except NotFound:
                if workflow is not None and not self.workflow_exists(workflow):
                    raise missing_workflow(workflow) from None
                raise
        return [clean(d) for d in rows]

    def _pieces(self, sizes: list[int], tx: _Tx | None) -> Iterator[tuple[int, int, int]]:
        """``(lo, hi, bytes)`` slices of an insert: the whole insert, or in a chunked
        transaction pieces of at most half the cap (so a chunk is at least half full)."""
        if tx is None or not tx.chunked:
            yield 0, len(sizes), sum(sizes)
            return
        limit = self.settings.max_transaction_bytes // 2
        lo, total = 0, 0
        for i, size in enumerate(sizes):
            if i > lo and total + size > limit:
                yield lo, i, total
                lo, total = i, 0
            total += size
        if lo < len(sizes):
            yield lo, len(sizes), total

    def get(self, collection: str, workflow: str | None, key: str) -> Document:
        name = collection_name(collection, workflow)
        check_key(key)
        q = Query()
        c = q.collection(name)
        text = f"FOR d IN {c} {self._filter(q, name, None, extra=[f'd._key == {q.value(key)}'])} LIMIT 1 RETURN d"
        rows = self._run(text, q, f"{name}/{key}")
        if not rows:
            raise NotFound(f"document {name}/{key} not found")
        return clean(rows[0])

    def update(
        self,
        collection: str,
        workflow: str | None,
        key: str,
        patch: Mapping[str, Any],
        *,
        rev: str | None = None,
    ) -> Document:
        """The revision is compared in the query itself, so a server conflict (errno 1200) is
        always a write-write conflict, never a stale revision."""
        name = collection_name(collection, workflow)
        check_key(key)
        if not isinstance(patch, Mapping):
            raise InvalidInput("patch must be a JSON object")
        body = {k: v for k, v in patch.items() if k not in SYSTEM_FIELDS}
        q = Query()
        c = q.collection(name)
        k = q.value(key)
        rev_filter = "" if rev is None else f"FILTER d._rev == {q.value(rev)} "
        text = (
            f"LET cur = (FOR d IN {c} {self._filter(q, name, None, extra=[f'd._key == {k}'])} "
            "RETURN d._rev) "
            f"LET upd = (FOR d IN {c} FILTER d._key == {k} {rev_filter}"
            f"UPDATE d WITH {q.value(body)} IN {c} "
            "OPTIONS {mergeObjects: false, keepNull: true} "
            "RETURN MERGE(NEW, {_oldRev: OLD._rev})) "
            "RETURN {found: LENGTH(cur) > 0, doc: FIRST(upd)}"
        )
        row = self._run(text, q, f"document {name}/{key}")[0]
        if not row["found"]:
            raise NotFound(f"document {name}/{key} not found")
        if row["doc"] is None:
            raise RevisionConflict(f"conflict: document {name}/{key} was changed by another write")
        self._charge(len(dumps(row["doc"])) + DOC_OVERHEAD, after=True)
        return clean(row["doc"])

    def update_many(
        self,
        collection: str,
        workflow: str | None,
        where: Where | None,
        patch: Mapping[str, Any],
        *,
        edges: Sequence[HasEdge] = (),
    ) -> int:
        name = collection_name(collection, workflow)
        if not isinstance(patch, Mapping):
            raise InvalidInput("patch must be a JSON object")
        q = Query()
        c = q.collection(name)
        flt = self._filter(q, name, where, edges, workflow)
        obj = q.patch("d", patch)  # validates every path first
        nested = any("." in p for p in patch)
        tx = self._tx()
        if tx is not None and tx.chunked:  # targets on the state before, then key batches
            k = Query()
            text = (f"FOR d IN {k.collection(name)} {self._filter(k, name, where, edges, workflow)} "
                    "RETURN {k: d._key, b: LENGTH(TO_STRING(d))}")
            return len(self.update_keys(name, self._run(text, k, name), patch))
        # Targets first: a HasEdge filter may read this collection (DOCUMENT()), and AQL
        # forbids reading a collection after modifying it in the same query.
        text = (
            f"LET targets = (FOR d IN {c} {flt} RETURN {'d' if nested else 'd._key'}) "
            f"LET u = (FOR d IN targets UPDATE d WITH {obj} IN {c} "
            "OPTIONS {mergeObjects: false, keepNull: true} RETURN LENGTH(TO_STRING(NEW))) "
            "RETURN {n: LENGTH(u), bytes: SUM(u)}"
        )
        row = self._run(text, q, name)[0]
        self._charge(int(row["bytes"] or 0) + DOC_OVERHEAD * int(row["n"]), after=True)
        return int(row["n"])

    def _delete(self, name: str, workflow: str | None, q: Query, flt: str, base: str, returning: str) -> str:
        """Query text removing the matching documents of ``base`` and, for vertex collections,
        their incident edges in every edge collection of the workflow (global vertex
        collections: the ``has_*`` edges); each removed document yields ``returning``."""
        c = q.collection(name)
        parts = [f"LET targets = (FOR d IN {c} {flt} RETURN d._id)"]
        if workflow is None:
            cascade = list(GLOBAL_EDGES) if base in GLOBAL_DOCS else []
        elif base in VERTEX_NAMES:
            cascade = [model.collection_name(e.value, workflow) for e in model.Edge]
        else:
            cascade = []
        for i, edge_coll in enumerate(cascade):
            e = q.collection(edge_coll)
            # Collect the edge keys before removing: reading a collection after modifying it
            # in the same query is an error in AQL.
            parts.append(
                f"LET x{i} = (FOR id IN targets FOR e IN {e} "
                f"FILTER e._from == id OR e._to == id RETURN DISTINCT e._key)"
            )
            parts.append(f"LET r{i} = (FOR k IN x{i} REMOVE k IN {e} RETURN 1)")
        parts.append(f"FOR id IN targets REMOVE PARSE_IDENTIFIER(id).key IN {c} RETURN {returning}")
        return " ".join(parts)

    def delete(self, collection: str, workflow: str | None, key: str) -> Document:
        name = collection_name(collection, workflow)
        check_key(key)
        q = Query()
        flt = self._filter(q, name, None, extra=[f"d._key == {q.value(key)}"])
        rows = self._run(self._delete(name, workflow, q, flt, str(collection), "OLD"), q, f"{name}/{key}")
        if not rows:
            raise NotFound(f"document {name}/{key} not found")
        return clean(rows[0])

    def delete_many(
        self,
        collection: str,
        workflow: str | None,
        where: Where | None = None,
        *,
        edges: Sequence[HasEdge] = (),
    ) -> int:
        name = collection_name(collection, workflow)
        q = Query()
        flt = self._filter(q, name, where, edges, workflow)
        text = self._delete(name, workflow, q, flt, str(collection), "1")
        return int(self._run(f"LET removed = ({text}) RETURN LENGTH(removed)", q, name)[0])
