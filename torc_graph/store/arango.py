"""ArangoDB backend of the graph store (python-arango), with torc v0.6.4's storage layout.

Layout (behavior doc §1.1): global ``workflows``, ``workflow_configs``, ``workflow_statuses``,
edges ``has_workflow_config``/``has_workflow_status`` and graph ``workflow_graph``; per workflow
24 collections ``<base>__<WF>`` and graph ``workflow_graph__<WF>`` (model.EDGE_DEFINITIONS).
One extra global collection, ``torc_graph_ticks``, hands out server ticks (see below).

Keys and order
--------------
The protocol wants generated keys that increase with insertion across *all* collections and
that exceed any decimal key a caller supplied before. ArangoDB's ``traditional`` generator
(used by every collection here) tracks caller-supplied numeric keys only per collection, so
the store generates keys itself from one place: the global collection ``torc_graph_ticks``
(traditional generator). An insert of N documents first inserts N empty placeholders there and
uses their keys, in the same AQL query (so it is atomic with the insert); a second query removes
the placeholders. A caller-supplied decimal key K is first inserted there as a placeholder too,
so that every later generated key exceeds K.

The insertion sequence of a document is therefore its key as a number; a document with a
caller-supplied key stores the allocated tick in the hidden attribute ``_torc_seq`` instead.
Queries sort by ``_torc_seq`` if present, else ``TO_NUMBER(_key)``. The store strips
``_torc_seq`` from every document it returns and ignores it in inserts and patches. A new
workflow's key is such a tick too (its collections are named after it before it is inserted).

In a cluster the traditional generator of a (one-shard) collection hands out unique keys that
increase per coordinator; run torc_graph against one coordinator URL so that "increasing in
insertion order" holds across processes; with several coordinators only uniqueness is promised.

Connections and transactions
----------------------------
The client is created lazily per process (``os.getpid()`` is checked on every use, so a store
created before a gunicorn fork never shares sockets with its parent). :meth:`transaction` opens
a stream transaction over the workflow's 24 collections and the global ones, with exclusive
access to ``jobs__<WF>``; it lives in a thread-local, and every method called by that thread
inside the block runs in it. DDL (create/delete workflow) is not transactional in ArangoDB and
always runs outside it. Driver errors are translated with ``arango.errno`` (:func:`translate`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from arango import ArangoClient, errno
from arango.exceptions import ArangoClientError, ArangoServerError
from arango.http import DefaultHTTPClient

from torc_graph import model
from torc_graph.errors import (
    InvalidInput,
    NotFound,
    RevisionConflict,
    StoreError,
    StoreUnavailable,
    TorcGraphError,
    UniqueConstraintViolated,
)
from torc_graph.store.aql import (
    NO_LIMIT,
    SEQ_FIELD,
    SYSTEM_FIELDS,
    Query,
    check_key,
    collection_name,
    edge_collection_name,
    seq_expr,
)
from torc_graph.store.base import (
    Direction,
    Document,
    GraphStore,
    HasEdge,
    Neighbor,
    OrderBy,
    Where,
    WorkflowSpace,
)

log = logging.getLogger(__name__)

TICKS = "torc_graph_ticks"
GLOBAL_GRAPH = "workflow_graph"
PASSWORD_ENV = "TORC_GRAPH_ARANGO_PASSWORD"
#: Deeper than any workflow: traversals end when the reachable set is exhausted.
MAX_DEPTH = 1_000_000
_GLOBAL_DOCS = tuple(c.value for c in model.GlobalCollection)
#: The documents of one workflow (workflow, config, status), in that order.
_WORKFLOW_DOCS = tuple(c.value for c in (model.GlobalCollection.WORKFLOWS,
                                         model.GlobalCollection.WORKFLOW_CONFIGS,
                                         model.GlobalCollection.WORKFLOW_STATUSES))
_GLOBAL_EDGES = tuple(e.value for e in model.GlobalEdge)
_VERTEX_NAMES = frozenset(c.value for c in model.VERTEX_COLLECTIONS)

_NOT_FOUND = {errno.DOCUMENT_NOT_FOUND, errno.DATA_SOURCE_NOT_FOUND, errno.GRAPH_NOT_FOUND}
_CONFLICT = {errno.CONFLICT}
_DUPLICATE = {errno.UNIQUE_CONSTRAINT_VIOLATED, errno.DUPLICATE_NAME, errno.GRAPH_DUPLICATE}
_INVALID = {
    errno.DOCUMENT_KEY_BAD,
    errno.DOCUMENT_HANDLE_BAD,
    errno.INVALID_EDGE_ATTRIBUTE,
    errno.DOCUMENT_TYPE_INVALID,
}
_UNAVAILABLE = {
    errno.FORBIDDEN,
    errno.LOCK_TIMEOUT,
    errno.LOCKED,
    errno.DEADLOCK,
    errno.SHUTTING_DOWN,
    errno.HTTP_UNAUTHORIZED,
    errno.HTTP_SERVICE_UNAVAILABLE,
    errno.HTTP_GATEWAY_TIMEOUT,
    errno.CLUSTER_TIMEOUT,
    errno.CLUSTER_BACKEND_UNAVAILABLE,
    errno.DATABASE_NOT_FOUND,
}


def translate(exc: BaseException, what: str = "document") -> TorcGraphError:
    """Map a python-arango (or socket) exception to a torc_graph error; log the details.

    ``what`` names the target in NotFound/conflict messages (no driver text is copied).
    """
    if isinstance(exc, TorcGraphError):
        return exc
    if isinstance(exc, ArangoServerError):
        code = exc.error_code
        if code in _NOT_FOUND:
            return NotFound(f"{what} not found")
        if code in _CONFLICT:
            return RevisionConflict(f"conflict: {what} was changed by another write")
        if code in _DUPLICATE:
            return UniqueConstraintViolated(f"unique constraint violated: {what} already exists")
        if code in _INVALID:
            return InvalidInput(f"invalid key, id or document for {what}")
        if code in _UNAVAILABLE or exc.http_code in (401, 503, 504):
            log.warning("ArangoDB unavailable: %s", exc)
            return StoreUnavailable("the ArangoDB server is unavailable or busy")
        log.error("ArangoDB error on %s: %s", what, exc)
        return StoreError("storage error")
    if isinstance(exc, OSError):  # ConnectionAbortedError, requests.RequestException
        log.warning("cannot reach ArangoDB: %s", exc)
        return StoreUnavailable("cannot connect to the ArangoDB server")
    log.error("ArangoDB driver error on %s: %r", what, exc)
    return StoreError("storage error")


@contextlib.contextmanager
def translating(what: str = "document") -> Iterator[None]:
    """Re-raise driver and socket exceptions as torc_graph errors."""
    try:
        yield
    except (ArangoServerError, ArangoClientError, OSError) as exc:
        raise translate(exc, what) from None
    except (TypeError, ValueError) as exc:  # the JSON serializer refused a value
        log.info("cannot serialize a value for %s: %s", what, exc)
        raise InvalidInput(f"a value for {what} is not JSON-serializable") from None


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def parse_url(url: str) -> dict[str, Any]:
    """Split ``arangodb[s]://user:password@host:port/database`` into client settings.

    Raises InvalidInput for another scheme or a missing host. The password comes from the URL,
    else from ``TORC_GRAPH_ARANGO_PASSWORD``, else is empty; the user defaults to ``root`` and
    the database to ``_system``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("arangodb", "arangodbs") or not parts.hostname:
        raise InvalidInput(f"not an ArangoDB URL: {mask_url(url)!r}")
    try:
        port = parts.port or 8529
    except ValueError:
        raise InvalidInput(f"invalid port in {mask_url(url)!r}") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:
        password = os.environ.get(PASSWORD_ENV, "")
    database = unquote(parts.path.strip("/")) or "_system"
    if "/" in database:
        raise InvalidInput(f"invalid database name in {mask_url(url)!r}")
    return {
        "host": f"{'https' if scheme == 'arangodbs' else 'http'}://{host}:{port}",
        "username": unquote(parts.username) if parts.username else "root",
        "password": password,
        "database": database,
    }


class _Process:
    """The client and database handle of one process."""

    def __init__(self, pid: int, client: ArangoClient, db: Any):
        self.pid, self.client, self.db = pid, client, db


def _dumps(value: Any) -> str:
    """Strict JSON: NaN and infinities are refused (ValueError -> InvalidInput) instead of
    being sent as tokens the server rejects."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _clean(doc: Any) -> Any:
    if isinstance(doc, dict) and SEQ_FIELD in doc:
        doc = {k: v for k, v in doc.items() if k != SEQ_FIELD}
    return doc


def _workflow_names(wf: str) -> tuple[list[str], list[str], list[str]]:
    """(vertex, edge, plain) collection names of a workflow."""
    return (
        [model.collection_name(c.value, wf) for c in model.VERTEX_COLLECTIONS],
        [model.collection_name(e.value, wf) for e in model.Edge],
        [model.collection_name(c.value, wf) for c in model.PLAIN_COLLECTIONS],
    )


def _edge_definitions(wf: str | None) -> list[dict[str, Any]]:
    if wf is None:
        return [
            {"edge_collection": "has_workflow_config", "from_vertex_collections": ["workflows"],
             "to_vertex_collections": ["workflow_configs"]},
            {"edge_collection": "has_workflow_status", "from_vertex_collections": ["workflows"],
             "to_vertex_collections": ["workflow_statuses"]},
        ]
    return [
        {
            "edge_collection": model.collection_name(d.edge.value, wf),
            "from_vertex_collections": [model.collection_name(c.value, wf) for c in d.from_collections],
            "to_vertex_collections": [model.collection_name(c.value, wf) for c in d.to_collections],
        }
        for d in model.EDGE_DEFINITIONS.values()
    ]


def _is_edge(name: str) -> bool:
    return model.is_edge(name) or name in _GLOBAL_EDGES


def _check_ids(ids: Sequence[str] | None) -> list[str] | None:
    if ids is None:
        return None
    if isinstance(ids, str):
        raise InvalidInput("expected a list of document ids")
    for i in ids:
        if not isinstance(i, str) or not model.ID_PATTERN.match(i):
            raise InvalidInput(f"invalid document id {i!r}")
    return list(ids)


def _edge_name(edge: str, workflow: str) -> str:
    return edge_collection_name(edge, workflow)


def _floor(keys: Sequence[str]) -> int:
    """The largest decimal key among ``keys`` that the key generator can track (else 0)."""
    nums = [int(k) for k in keys if k.isdigit() and k.isascii()]
    nums = [n for n in nums if 0 < n < 2**53]
    return max(nums, default=0)


class ArangoStore(GraphStore):
    """Graph store on an ArangoDB database. Create it with :meth:`from_url`."""

    def __init__(
        self,
        host: str,
        database: str,
        username: str = "root",
        password: str = "",
        *,
        url: str | None = None,
        request_timeout: float = 60,
        lock_timeout: int = 30,
        verify: bool | str | None = None,
    ):
        self.url = mask_url(url) if url else f"{host}/{database}"
        self._host, self._database = host, database
        self._username, self._password = username, password
        self._request_timeout, self._lock_timeout, self._verify = request_timeout, lock_timeout, verify
        self._proc: _Process | None = None
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()
        self._local = threading.local()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ArangoStore:
        """Open ``arangodb://user:password@host:8529/database`` (``arangodbs://`` = HTTPS).

        Options: ``request_timeout`` (s), ``lock_timeout`` (s, stream transactions),
        ``verify`` (TLS). Other options (meant for other backends) are ignored. No connection
        is made until first use.
        """
        known = {k: options[k] for k in ("request_timeout", "lock_timeout", "verify") if k in options}
        return cls(**parse_url(url), url=url, **known)

    # -- connection -----------------------------------------------------------------------------

    def _base(self) -> Any:
        """This process's database handle (connects and ensures global storage on first use)."""
        pid = os.getpid()
        proc = self._proc
        if proc is not None and proc.pid == pid:
            return proc.db
        if self._lock_pid != pid:  # a lock copied by fork may be held by a vanished thread
            self._lock, self._lock_pid = threading.Lock(), pid
        with self._lock:
            if self._proc is None or self._proc.pid != pid:
                # The driver's default (3 tries x 3 urllib3 retries with backoff) makes an
                # unreachable server take ~18 s to report; fail within a couple of seconds.
                http = DefaultHTTPClient(
                    request_timeout=self._request_timeout, retry_attempts=1, backoff_factor=0.2,
                    pool_maxsize=32,
                )
                client = ArangoClient(
                    hosts=self._host, http_client=http, resolver_max_tries=2,
                    verify_override=self._verify, serializer=_dumps,
                )
                db = client.db(self._database, username=self._username, password=self._password)
                with translating("database"):
                    self._ensure_global(client, db)
                self._proc = _Process(pid, client, db)
            return self._proc.db

    def _ensure_global(self, client: ArangoClient, db: Any) -> None:
        """Create the global collections and graph unless they exist (idempotent, race-safe)."""
        try:
            self._create_collection(db, TICKS)
        except ArangoServerError as exc:
            if exc.error_code != errno.DATABASE_NOT_FOUND:
                raise
            sys_db = client.db("_system", username=self._username, password=self._password)
            try:
                sys_db.create_database(self._database)
            except ArangoServerError as exc2:
                if exc2.error_code != errno.DUPLICATE_NAME:
                    raise
            self._create_collection(db, TICKS)
        for name in _GLOBAL_DOCS:
            self._create_collection(db, name)
        for name in _GLOBAL_EDGES:
            self._create_collection(db, name, edge=True)
        self._create_graph(db, GLOBAL_GRAPH, _edge_definitions(None))

    @staticmethod
    def _create_collection(db: Any, name: str, edge: bool = False) -> bool:
        """Create a collection; False if it already exists."""
        try:
            db.create_collection(name, edge=edge, key_generator="traditional", user_keys=True)
            return True
        except ArangoServerError as exc:
            if exc.error_code == errno.DUPLICATE_NAME:
                return False
            raise

    @staticmethod
    def _create_graph(db: Any, name: str, definitions: list[dict[str, Any]]) -> bool:
        try:
            db.create_graph(name, edge_definitions=definitions)
            return True
        except ArangoServerError as exc:
            if exc.error_code == errno.GRAPH_DUPLICATE:
                return False
            raise

    def _db(self) -> Any:
        """The transaction database when this thread is inside :meth:`transaction`."""
        tx = getattr(self._local, "tx", None)
        if tx is not None and getattr(self._local, "pid", None) == os.getpid():
            return tx
        return self._base()

    def _in_tx(self) -> bool:
        return getattr(self._local, "tx", None) is not None and self._local.pid == os.getpid()

    def _run(self, text: str, q: Query, what: str = "document", db: Any = None) -> list[Any]:
        """Execute a query and return all results."""
        with translating(what):
            db = db if db is not None else self._db()
            # Inside a stream transaction take everything in one response: continuation
            # requests of a cursor do not carry the transaction header.
            batch = 100_000 if self._in_tx() else 1000
            cursor = db.aql.execute(text, bind_vars=q.bind_vars, batch_size=batch)
            return list(cursor)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.pid == os.getpid():
            with contextlib.suppress(Exception):
                proc.client.close()

    def info(self) -> dict[str, Any]:
        with translating("server"):
            version = self._base().version()
        return {"backend": "arangodb", "version": version, "url": self.url,
                "database": self._database}

    # -- transactions ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, workflow: str | None = None) -> Iterator[None]:
        """Stream transaction over the workflow's and the global collections (see module doc)."""
        loc = self._local
        if self._in_tx():
            loc.depth += 1
            try:
                yield
            finally:
                loc.depth -= 1
            return
        write = list(_WORKFLOW_DOCS + _GLOBAL_EDGES) + [TICKS]
        exclusive = None
        if workflow is not None:
            check_key(workflow, "workflow key")
            vertex, edges, plain = _workflow_names(workflow)
            jobs = model.collection_name(model.Collection.JOBS.value, workflow)
            exclusive = [jobs]
            write += [n for n in vertex + edges + plain if n != jobs]
        base = self._base()
        try:
            with translating(f"workflow {workflow}"):
                tx = base.begin_transaction(
                    write=write, exclusive=exclusive, lock_timeout=self._lock_timeout,
                    allow_implicit=True,
                )
        except NotFound:
            raise NotFound(
                f"Error: Document not found. Operation: Get workflow with key={workflow}"
            ) from None
        loc.tx, loc.pid, loc.depth = tx, os.getpid(), 1
        try:
            yield
        except BaseException:
            loc.tx = None
            try:
                tx.abort_transaction()
            except Exception as exc:  # the original error matters more
                log.warning("abort of stream transaction failed: %s", exc)
            raise
        loc.tx = None
        with translating("transaction"):
            tx.commit_transaction()

    # -- workflows ------------------------------------------------------------------------------

    def _track_floor(self, floor: int, db: Any = None) -> None:
        """Make every later generated key exceed ``floor`` (a caller-supplied decimal key)."""
        q = Query()
        text = (f"INSERT {{_key: {q.value(str(floor))}}} INTO {q.collection(TICKS)} "
                "OPTIONS {ignoreErrors: true}")
        self._run(text, q, db=db)

    def _drop_ticks(self, keys: Sequence[str], db: Any = None) -> None:
        """Remove used placeholders (best effort: leftovers only cost a little space)."""
        if not keys:
            return
        q = Query()
        text = f"FOR k IN {q.value(list(keys))} REMOVE k IN {q.collection(TICKS)} OPTIONS {{ignoreErrors: true}}"
        try:
            self._run(text, q, db=db)
        except TorcGraphError as exc:
            log.warning("could not remove key placeholders: %s", exc.message)

    def _ticks(self, n: int, db: Any = None) -> list[int]:
        """``n`` fresh keys from the global generator, increasing."""
        q = Query()
        t = q.collection(TICKS)
        keys = self._run(f"FOR i IN 1..{q.value(n)} INSERT {{}} INTO {t} RETURN NEW._key", q, db=db)
        self._drop_ticks(keys, db)
        return [int(k) for k in keys]

    def create_workflow(self, workflow: Document, config: Document, status: Document) -> WorkflowSpace:
        db = self._base()
        wf_doc = self._prepare(workflow, edge=False)
        conf_doc, stat_doc = self._prepare(config, False), self._prepare(status, False)
        for d in (conf_doc, stat_doc):
            d.pop("_key", None)
        if _floor([wf_doc.get("_key", "")]):
            self._track_floor(_floor([wf_doc["_key"]]), db)
        tick = self._ticks(1, db)[0]
        key = wf_doc.get("_key")
        if key is None:
            key = wf_doc["_key"] = str(tick)
        else:
            wf_doc[SEQ_FIELD] = tick
        if self._exists(db, model.GlobalCollection.WORKFLOWS.value, key):
            raise UniqueConstraintViolated(f"unique constraint violated: workflow {key} exists")
        vertex, edges, plain = _workflow_names(key)
        graph = f"workflow_graph__{key}"
        created: list[str] = []
        graph_created = False
        try:
            with translating(f"workflow {key}"):
                for name in vertex + plain + edges:
                    if not self._create_collection(db, name, edge=name in edges):
                        raise UniqueConstraintViolated(
                            f"unique constraint violated: collection {name} exists")
                    created.append(name)
                graph_created = self._create_graph(db, graph, _edge_definitions(key))
                if not graph_created:
                    raise UniqueConstraintViolated(f"unique constraint violated: graph {graph}")
                db.collection(model.collection_name("jobs", key)).add_persistent_index(
                    fields=["status"])
                tx = db.begin_transaction(write=list(_WORKFLOW_DOCS + _GLOBAL_EDGES))
                try:
                    q = Query()
                    w, c, s = (q.collection(n) for n in _WORKFLOW_DOCS)
                    hc, hs = (q.collection(n) for n in _GLOBAL_EDGES)
                    text = (
                        f"LET w = FIRST((INSERT {q.value(wf_doc)} INTO {w} RETURN NEW)) "
                        f"LET c = FIRST((INSERT {q.value(conf_doc)} INTO {c} RETURN NEW)) "
                        f"LET s = FIRST((INSERT {q.value(stat_doc)} INTO {s} RETURN NEW)) "
                        f"LET e1 = (INSERT {{_from: w._id, _to: c._id}} INTO {hc} RETURN 1) "
                        f"LET e2 = (INSERT {{_from: w._id, _to: s._id}} INTO {hs} RETURN 1) "
                        "RETURN {w: w, c: c, s: s}"
                    )
                    row = self._run(text, q, f"workflow {key}", db=tx)[0]
                    tx.commit_transaction()
                except BaseException:
                    with contextlib.suppress(Exception):
                        tx.abort_transaction()
                    raise
        except BaseException:
            # DDL is not transactional: undo what this call created, and nothing else.
            with contextlib.suppress(Exception):
                if graph_created:
                    db.delete_graph(graph, ignore_missing=True, drop_collections=False)
                for name in created:
                    db.delete_collection(name, ignore_missing=True)
            raise
        return WorkflowSpace(_clean(row["w"]), _clean(row["c"]), _clean(row["s"]))

    def _exists(self, db: Any, name: str, key: str) -> bool:
        q = Query()
        c = q.collection(name)
        text = f"RETURN LENGTH((FOR d IN {c} FILTER d._key == {q.value(key)} LIMIT 1 RETURN 1)) > 0"
        return bool(self._run(text, q, db=db)[0])

    def delete_workflow(self, key: str) -> Document:
        check_key(key, "workflow key")
        doc = self.workflow_space(key).workflow
        db = self._base()
        vertex, edges, plain = _workflow_names(key)
        with translating(f"workflow {key}"):
            db.delete_graph(f"workflow_graph__{key}", ignore_missing=True, drop_collections=True)
            for name in vertex + edges + plain:  # plain ones, and leftovers of a partial drop
                db.delete_collection(name, ignore_missing=True)
        q = Query()
        w, c, s = (q.collection(n) for n in _WORKFLOW_DOCS)
        hc, hs = (q.collection(n) for n in _GLOBAL_EDGES)
        wid = q.value(doc["_id"])
        text = (
            f"LET cs = (FOR e IN {hc} FILTER e._from == {wid} REMOVE e IN {hc} RETURN OLD._to) "
            f"LET ss = (FOR e IN {hs} FILTER e._from == {wid} REMOVE e IN {hs} RETURN OLD._to) "
            f"LET rc = (FOR i IN cs REMOVE PARSE_IDENTIFIER(i).key IN {c} "
            "OPTIONS {ignoreErrors: true} RETURN 1) "
            f"LET rs = (FOR i IN ss REMOVE PARSE_IDENTIFIER(i).key IN {s} "
            "OPTIONS {ignoreErrors: true} RETURN 1) "
            f"REMOVE {q.value(key)} IN {w} RETURN OLD"
        )
        with translating(f"workflow {key}"):
            tx = db.begin_transaction(write=list(_WORKFLOW_DOCS + _GLOBAL_EDGES))
            try:
                old = self._run(text, q, f"workflow {key}", db=tx)[0]
                tx.commit_transaction()
            except BaseException:
                with contextlib.suppress(Exception):
                    tx.abort_transaction()
                raise
        return _clean(old)

    def workflow_space(self, key: str) -> WorkflowSpace:
        check_key(key, "workflow key")
        q = Query()
        w, c, s = (q.collection(n) for n in _WORKFLOW_DOCS)
        hc, hs = (q.collection(n) for n in _GLOBAL_EDGES)
        text = (
            f"FOR w IN {w} FILTER w._key == {q.value(key)} "
            f"LET c = FIRST((FOR e IN {hc} FILTER e._from == w._id "
            f"FOR x IN {c} FILTER x._id == e._to RETURN x)) "
            f"LET s = FIRST((FOR e IN {hs} FILTER e._from == w._id "
            f"FOR x IN {s} FILTER x._id == e._to RETURN x)) "
            "RETURN {w: w, c: c, s: s}"
        )
        rows = self._run(text, q, f"workflow {key}")
        if not rows:
            raise NotFound(f"Error: Document not found. Operation: Get workflow with key={key}")
        row = rows[0]
        if row["c"] is None or row["s"] is None:
            log.error("workflow %s lacks its config or status document", key)
            raise StoreError("storage error: workflow config or status missing")
        return WorkflowSpace(_clean(row["w"]), _clean(row["c"]), _clean(row["s"]))

    def workflow_exists(self, key: str) -> bool:
        if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
            return False
        return self._exists(self._db(), model.GlobalCollection.WORKFLOWS.value, key)

    # -- documents ------------------------------------------------------------------------------

    @staticmethod
    def _prepare(doc: Mapping[str, Any], edge: bool) -> dict[str, Any]:
        if not isinstance(doc, Mapping):
            raise InvalidInput("a document must be a JSON object")
        out = {k: v for k, v in doc.items() if k not in ("_id", "_rev", "_oldRev", SEQ_FIELD)}
        if "_key" in out:
            check_key(out["_key"])
        if edge:
            for f in ("_from", "_to"):
                v = out.get(f)
                if not isinstance(v, str) or not model.ID_PATTERN.match(v):
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
                raise NotFound(
                    f"Error: Document not found. Operation: Get workflow with key={workflow}")
            return []
        floor = _floor([d["_key"] for d in prepared if "_key" in d])
        if floor:
            self._track_floor(floor)
        q = Query()
        c, t = q.collection(name), q.collection(TICKS)
        docs_var, n = q.value(prepared), q.value(len(prepared))
        # Keys come from the global generator (module doc), allocated in the same query.
        text = (
            f"LET ks = (FOR i IN 1..{n} INSERT {{}} INTO {t} RETURN NEW._key) "
            f"FOR i IN 0..({n} - 1) LET d = {docs_var}[i] "
            f"INSERT (HAS(d, '_key') ? MERGE(d, {{{SEQ_FIELD}: TO_NUMBER(ks[i])}}) "
            f": MERGE(d, {{_key: ks[i]}})) INTO {c} RETURN NEW"
        )
        try:
            rows = self._run(text, q, f"collection {name}")
        except NotFound:
            if workflow is not None and not self.workflow_exists(workflow):
                raise NotFound(
                    f"Error: Document not found. Operation: Get workflow with key={workflow}"
                ) from None
            raise
        used = [str(d[SEQ_FIELD]) if SEQ_FIELD in d else d["_key"] for d in rows]
        self._drop_ticks(used + ([str(floor)] if floor else []))
        return [_clean(d) for d in rows]

    def get(self, collection: str, workflow: str | None, key: str) -> Document:
        name = collection_name(collection, workflow)
        check_key(key)
        q = Query()
        text = f"FOR d IN {q.collection(name)} FILTER d._key == {q.value(key)} LIMIT 1 RETURN d"
        rows = self._run(text, q, f"{name}/{key}")
        if not rows:
            raise NotFound(f"document {name}/{key} not found")
        return _clean(rows[0])

    def update(
        self,
        collection: str,
        workflow: str | None,
        key: str,
        patch: Mapping[str, Any],
        *,
        rev: str | None = None,
    ) -> Document:
        name = collection_name(collection, workflow)
        check_key(key)
        if not isinstance(patch, Mapping):
            raise InvalidInput("patch must be a JSON object")
        body = {k: v for k, v in patch.items() if k not in SYSTEM_FIELDS}
        q = Query()
        c = q.collection(name)
        target = q.value(key if rev is None else {"_key": key, "_rev": rev})
        text = (
            f"UPDATE {target} WITH {q.value(body)} IN {c} "
            "OPTIONS {mergeObjects: false, keepNull: true, ignoreRevs: false} "
            "RETURN MERGE(NEW, {_oldRev: OLD._rev})"
        )
        return _clean(self._run(text, q, f"document {name}/{key}")[0])

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
        flt = q.filter("d", where, edges, workflow)
        obj = q.patch("d", patch)  # validates every path first
        nested = any("." in p for p in patch)
        # Targets first: a HasEdge filter may read this collection (DOCUMENT()), and AQL
        # forbids reading a collection after modifying it in the same query.
        text = (
            f"LET targets = (FOR d IN {c} {flt} RETURN {'d' if nested else 'd._key'}) "
            f"LET u = (FOR d IN targets UPDATE d WITH {obj} IN {c} "
            "OPTIONS {mergeObjects: false, keepNull: true} RETURN 1) "
            "RETURN LENGTH(u)"
        )
        return int(self._run(text, q, name)[0])

    def _delete(
        self, name: str, workflow: str | None, q: Query, flt: str, base: str, returning: str
    ) -> str:
        """Query text removing the matching documents of ``base`` and, for vertex collections,
        their incident edges in every edge collection of the workflow (global vertex
        collections: the ``has_*`` edges); each removed document yields ``returning``."""
        c = q.collection(name)
        parts = [f"LET targets = (FOR d IN {c} {flt} RETURN d._id)"]
        if workflow is None:
            cascade = list(_GLOBAL_EDGES) if base in _GLOBAL_DOCS else []
        elif base in _VERTEX_NAMES:
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
        flt = f"FILTER d._key == {q.value(key)}"
        text = self._delete(name, workflow, q, flt, str(collection), "OLD")
        rows = self._run(text, q, f"{name}/{key}")
        if not rows:
            raise NotFound(f"document {name}/{key} not found")
        return _clean(rows[0])

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
        flt = q.filter("d", where, edges, workflow)
        text = self._delete(name, workflow, q, flt, str(collection), "1")
        text = f"LET removed = ({text}) RETURN LENGTH(removed)"
        return int(self._run(text, q, name)[0])

    def _find_text(self, q: Query, name: str, workflow, where, edges, order_by) -> str:
        c = q.collection(name)
        return f"FOR d IN {c} {q.filter('d', where, edges, workflow)} {q.sort('d', order_by)}"

    def find(
        self,
        collection: str,
        workflow: str | None,
        where: Where | None = None,
        *,
        edges: Sequence[HasEdge] = (),
        skip: int = 0,
        limit: int | None = None,
        order_by: OrderBy | None = None,
    ) -> list[Document]:
        name = collection_name(collection, workflow)
        q = Query()
        text = self._find_text(q, name, workflow, where, edges, order_by)
        if skip or limit is not None:
            text += f" LIMIT {q.value(int(skip))}, {q.value(NO_LIMIT if limit is None else int(limit))}"
        return [_clean(d) for d in self._run(text + " RETURN d", q, name)]

    def iter_find(
        self,
        collection: str,
        workflow: str | None,
        where: Where | None = None,
        *,
        edges: Sequence[HasEdge] = (),
        order_by: OrderBy | None = None,
        batch_size: int = 1000,
    ) -> Iterator[Document]:
        name = collection_name(collection, workflow)
        q = Query()
        text = self._find_text(q, name, workflow, where, edges, order_by)
        if self._in_tx():
            return self._iter_pages(name, text, q, batch_size)
        return self._iter_cursor(name, text + " RETURN d", q, batch_size)

    def _iter_cursor(self, name: str, text: str, q: Query, batch_size: int) -> Iterator[Document]:
        with translating(name):
            cursor = self._base().aql.execute(
                text, bind_vars=q.bind_vars, batch_size=max(1, batch_size), stream=True, ttl=600
            )
        try:
            while True:
                with translating(name):
                    try:
                        doc = cursor.next()
                    except StopIteration:
                        return
                yield _clean(doc)
        finally:
            with contextlib.suppress(Exception):
                cursor.close(ignore_missing=True)

    def _iter_pages(self, name: str, text: str, q: Query, batch_size: int) -> Iterator[Document]:
        """Inside a transaction: one query per page, each seeing the transaction's state."""
        skip, size = 0, max(1, batch_size)
        while True:
            q.bind_vars.update({"page_skip": skip, "page_size": size})
            rows = self._run(f"{text} LIMIT @page_skip, @page_size RETURN d", q, name)
            for d in rows:
                yield _clean(d)
            if len(rows) < size:
                return
            skip += size

    def count(
        self,
        collection: str,
        workflow: str | None,
        where: Where | None = None,
        *,
        edges: Sequence[HasEdge] = (),
    ) -> int:
        name = collection_name(collection, workflow)
        q = Query()
        c = q.collection(name)
        flt = q.filter("d", where, edges, workflow)
        text = f"RETURN LENGTH((FOR d IN {c} {flt} RETURN 1))"
        return int(self._run(text, q, name)[0])

    # -- graph ----------------------------------------------------------------------------------

    def neighbors(
        self,
        workflow: str,
        edge: str,
        direction: Direction,
        start_ids: Sequence[str] | None = None,
        *,
        where: Where | None = None,
        edge_where: Where | None = None,
    ) -> list[Neighbor]:
        near, far = _ends(direction)
        q = Query()
        e = q.collection(_edge_name(edge, workflow))
        starts = _check_ids(start_ids)
        parts = [f"FOR e IN {e}"]
        if starts is not None:
            parts.append(f"FILTER e.{near} IN {q.value(starts)}")
        parts.append(q.filter("e", edge_where))
        parts.append(f"LET v = DOCUMENT(e.{far})")
        if where is not None:
            parts.append("FILTER v != null " + " ".join(f"AND {x}" for x in q.where("v", where)))
        parts.append(f"SORT {seq_expr('e')}, e._key RETURN {{e: e, v: v}}")
        rows = self._run(" ".join(parts), q, f"edges {edge}")
        return [Neighbor(r["e"][near], _clean(r["e"]), _clean(r["v"])) for r in rows]

    def join(
        self,
        workflow: str,
        collection: str,
        edge: str,
        direction: Direction,
        where: Where | None = None,
        *,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Document | None]]:
        near, far = _ends(direction)
        q = Query()
        c = q.collection(collection_name(collection, workflow))
        e = q.collection(_edge_name(edge, workflow))
        text = f"FOR d IN {c} {q.filter('d', where)} {q.sort('d', None)}"
        if skip or limit is not None:
            text += f" LIMIT {q.value(int(skip))}, {q.value(NO_LIMIT if limit is None else int(limit))}"
        text += (
            f" LET es = (FOR e IN {e} FILTER e.{near} == d._id SORT {seq_expr('e')}, e._key "
            "RETURN e) FOR e IN es "
            f"RETURN {{d: d, e: e, o: DOCUMENT(e.{far})}}"
        )
        rows = self._run(text, q, f"edges {edge}")
        out = []
        for r in rows:
            d, o = _clean(r["d"]), _clean(r["o"])
            pair = {"from": d, "to": o} if direction == "out" else {"from": o, "to": d}
            out.append({**pair, "edge": _clean(r["e"])})
        return out

    def _reach(self, q: Query, e: str, starts: str, where: Where | None, through: bool) -> str:
        """LETs computing ``reach``: ``[{id, depth}]`` of every vertex reachable from the ids in
        AQL expression ``starts`` (one entry per id, minimal depth), including start vertices
        reachable over at least one edge (a traversal never re-reports its own start)."""
        prune = ""
        keep = ""
        if through and where:
            cond = " AND ".join(q.where("v", where))
            prune = f"PRUNE e != null AND NOT ({cond})"
            keep = "FILTER " + " AND ".join(q.where("v", where))
        return (
            f"LET starts = {starts} "
            f"LET hops = (FOR s IN starts FOR v, e, p IN 1..{q.value(MAX_DEPTH)} OUTBOUND s {e} "
            f"{prune} OPTIONS {{order: 'bfs', uniqueVertices: 'global'}} FILTER v != null {keep} "
            "RETURN {id: v._id, depth: LENGTH(p.edges)}) "
            "LET agg = (FOR h IN hops COLLECT id = h.id AGGREGATE depth = MIN(h.depth) "
            "RETURN {id: id, depth: depth}) "
            "LET depth_of = ZIP(agg[*].id, agg[*].depth) "
            "LET back = (FOR s IN UNIQUE(starts) FILTER !HAS(depth_of, s) "
            f"LET ds = (FOR x IN {e} FILTER x._to == s "
            "LET fd = x._from IN starts ? 0 : depth_of[x._from] "
            "FILTER fd != null RETURN fd + 1) "
            "FILTER LENGTH(ds) > 0 RETURN {id: s, depth: MIN(ds)}) "
            "LET reach = APPEND(agg, back) "
        )

    def descendants(
        self,
        workflow: str,
        edge: str,
        start_ids: Sequence[str],
        *,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[Document]:
        starts = _check_ids(start_ids) or []
        if not starts:
            return []
        q = Query()
        e = q.collection(_edge_name(edge, workflow))
        text = self._reach(q, e, q.value(starts), None, False)
        text += f"FOR r IN reach LET v = DOCUMENT(r.id) FILTER v != null SORT r.depth, {seq_expr('v')}, v._key"
        if skip or limit is not None:
            text += f" LIMIT {q.value(int(skip))}, {q.value(NO_LIMIT if limit is None else int(limit))}"
        return [_clean(d) for d in self._run(text + " RETURN v", q, f"edges {edge}")]

    def update_descendants(
        self,
        workflow: str,
        edge: str,
        patch: Mapping[str, Any],
        *,
        start_ids: Sequence[str] | None = None,
        start_where: Where | None = None,
        where: Where | None = None,
        through_matching_only: bool = False,
    ) -> list[str]:
        definition = model.EDGE_DEFINITIONS.get(model.Edge(str(edge))) if model.is_edge(str(edge)) else None
        if definition is None or len(definition.to_collections) != 1:
            raise InvalidInput(f"update_descendants needs an edge with one target collection: {edge!r}")
        target = collection_name(definition.to_collections[0].value, workflow)
        q = Query()
        e = q.collection(_edge_name(edge, workflow))
        vc = q.collection(target)
        ids = _check_ids(start_ids)
        if ids is not None:
            starts = q.value(ids)
        else:
            src = q.collection(collection_name(definition.from_collections[0].value, workflow))
            starts = f"(FOR d IN {src} {q.filter('d', start_where)} RETURN d._id)"
        text = self._reach(q, e, starts, where, through_matching_only)
        flt = " ".join(f"AND {x}" for x in q.where("v", where))
        text += (
            f"LET targets = (FOR r IN reach FILTER PARSE_IDENTIFIER(r.id).collection == "
            f"{q.value(target)} LET v = DOCUMENT(r.id) FILTER v != null {flt} "
            f"SORT {seq_expr('v')}, v._key RETURN v) "
            f"FOR d IN targets UPDATE d WITH {q.patch('d', patch)} IN {vc} "
            "OPTIONS {mergeObjects: false, keepNull: true} RETURN NEW._key"
        )
        return self._run(text, q, f"edges {edge}")

    def derive_edges(self, workflow: str, out_edge: str, producer_edge: str, consumer_edge: str) -> int:
        q = Query()
        out = q.collection(_edge_name(out_edge, workflow))
        prod = q.collection(_edge_name(producer_edge, workflow))
        cons = q.collection(_edge_name(consumer_edge, workflow))
        text = (
            f"LET cand = (FOR p IN {prod} FOR c IN {cons} FILTER c._to == p._to "
            f"COLLECT f = p._from, t = c._from AGGREGATE ps = MIN({seq_expr('p')}), "
            f"cs = MIN({seq_expr('c')}) "
            f"FILTER LENGTH((FOR b IN {out} FILTER b._from == f AND b._to == t LIMIT 1 RETURN 1)) == 0 "
            "SORT ps, cs RETURN {_from: f, _to: t}) "
            f"LET ks = (FOR x IN cand INSERT {{}} INTO {q.collection(TICKS)} RETURN NEW._key) "
            "LET ins = (FOR i IN 0..(LENGTH(cand) - 1) FILTER i >= 0 AND i < LENGTH(cand) "
            f"INSERT MERGE(cand[i], {{_key: ks[i]}}) INTO {out} RETURN 1) "
            "RETURN ks"
        )
        keys = self._run(text, q, f"edges {out_edge}")[0]
        self._drop_ticks(keys)
        return len(keys)


def _ends(direction: Direction) -> tuple[str, str]:
    if direction == "out":
        return "_from", "_to"
    if direction == "in":
        return "_to", "_from"
    raise InvalidInput(f"invalid direction {direction!r}")

