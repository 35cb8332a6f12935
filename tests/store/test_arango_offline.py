"""ArangoStore without a server: URL parsing, error translation, and every method against an
autospec fake of python-arango (wrong methods or keywords fail), with every query linted
(:mod:`torc_graph.store.arango_lint`) and transaction sizes accounted.

The fake does not evaluate AQL. What it pins: each query binds exactly the parameters it uses,
no collection is read after the query modified it, DOCUMENT() queries declare WITH, no caller
value is ever part of the query text, queries run on the transaction database inside
``transaction()``, and the client is created once per process. The numbered tests are the
defects of issue 12; each fails on 62e67c5.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from unittest.mock import create_autospec

import pytest
import requests
from arango import errno
from arango.exceptions import (
    AQLQueryExecuteError,
    CollectionCreateError,
    CursorStateError,
    DocumentGetError,
    DocumentInsertError,
    DocumentUpdateError,
    TransactionInitError,
)
from arango.aql import AQL
from arango.client import ArangoClient
from arango.collection import StandardCollection
from arango.cursor import Cursor
from arango.database import StandardDatabase, TransactionDatabase
from arango.request import Request
from arango.response import Response

from torc_graph.errors import (
    InvalidInput,
    NotFound,
    RevisionConflict,
    StoreError,
    StoreUnavailable,
    UniqueConstraintViolated,
)
from torc_graph import model
from torc_graph.store import arango as arango_mod
from torc_graph.store import arango_connection, open_store
from torc_graph.store.aql import BULK_FIELD, SEQ_FIELD, STAGED_FIELD
from torc_graph.store.arango import ArangoStore, TransactionTooLarge, mask_url, parse_url, translate
from torc_graph.store.arango_keys import RESERVE_AQL
from torc_graph.store.arango_layout import JOBS_COMPUTED
from torc_graph.store.arango_lint import lint
from torc_graph.store.base import Ge, HasEdge, In, Le, Lt, NotIn

HOSTILE = 'x" RETURN 1 //'


# -- URLs --------------------------------------------------------------------------------------


def test_parse_url_full(monkeypatch):
    monkeypatch.delenv(arango_mod.PASSWORD_ENV, raising=False)
    assert parse_url("arangodb://alice:s%40cret@db.example:8530/torc") == {
        "host": "http://db.example:8530",
        "username": "alice",
        "password": "s@cret",
        "database": "torc",
    }


def test_parse_url_defaults_and_tls(monkeypatch):
    monkeypatch.delenv(arango_mod.PASSWORD_ENV, raising=False)
    assert parse_url("arangodbs://db.example") == {
        "host": "https://db.example:8529",
        "username": "root",
        "password": "",
        "database": "_system",
    }


def test_password_from_environment_unless_in_url(monkeypatch):
    monkeypatch.setenv(arango_mod.PASSWORD_ENV, "from-env")
    assert parse_url("arangodb://bob@h:8529/db")["password"] == "from-env"
    assert parse_url("arangodb://bob:inurl@h:8529/db")["password"] == "inurl"


@pytest.mark.parametrize(
    "url", ["http://h:8529/db", "arangodb:///db", "arangodb://h:notaport/db", "arangodb://h/a/b"]
)
def test_bad_urls(url):
    with pytest.raises(InvalidInput):
        parse_url(url)


def test_mask_url():
    assert mask_url("arangodb://u:secret@h:8529/db") == "arangodb://u:***@h:8529/db"
    assert mask_url("arangodb://u@h:8529/db") == "arangodb://u@h:8529/db"
    assert mask_url("arangodbs://h/db") == "arangodbs://h/db"


def test_open_store_makes_no_connection_and_masks():
    s = open_store("arangodb://u:secret@127.0.0.1:1/db", lock_timeout=5, busy_timeout=1)
    assert isinstance(s, ArangoStore)
    assert s.url == "arangodb://u:***@127.0.0.1:1/db"
    assert "secret" not in repr(vars(s).get("url"))


def test_unreachable_server_is_store_unavailable():
    # Port 1 on localhost: connection refused at once, no network needed.
    s = ArangoStore.from_url("arangodb://u:p@127.0.0.1:1/db", request_timeout=2)
    with pytest.raises(StoreUnavailable):
        s.get("workflows", None, "1")


# -- error translation -------------------------------------------------------------------------


def server_error(cls, code, http=400, message="driver text with secrets"):
    resp = Response("post", "http://h/_api/cursor", {}, http, "Bad", "{}")
    resp.error_code, resp.error_message, resp.is_success = code, message, False
    return cls(resp, Request("post", "/_api/cursor"))


def aql_error(code, http=400):
    return server_error(AQLQueryExecuteError, code, http)


@pytest.mark.parametrize(
    "exc, expected",
    [
        (server_error(DocumentGetError, errno.DOCUMENT_NOT_FOUND, 404), NotFound),
        (server_error(AQLQueryExecuteError, errno.DOCUMENT_NOT_FOUND, 404), NotFound),
        (server_error(AQLQueryExecuteError, errno.DATA_SOURCE_NOT_FOUND, 404), NotFound),
        (server_error(DocumentUpdateError, errno.CONFLICT, 412), StoreUnavailable),
        (server_error(AQLQueryExecuteError, errno.CONFLICT, 409), StoreUnavailable),
        (server_error(DocumentInsertError, errno.UNIQUE_CONSTRAINT_VIOLATED, 409),
         UniqueConstraintViolated),
        (server_error(CollectionCreateError, errno.DUPLICATE_NAME, 409), UniqueConstraintViolated),
        (server_error(DocumentInsertError, errno.DOCUMENT_KEY_BAD), InvalidInput),
        (server_error(AQLQueryExecuteError, errno.DOCUMENT_HANDLE_BAD), InvalidInput),
        (server_error(TransactionInitError, errno.LOCK_TIMEOUT, 408), StoreUnavailable),
        (server_error(AQLQueryExecuteError, errno.SHUTTING_DOWN, 503), StoreUnavailable),
        (server_error(DocumentGetError, errno.HTTP_UNAUTHORIZED, 401), StoreUnavailable),
        (server_error(AQLQueryExecuteError, errno.QUERY_PARSE), StoreError),
        (server_error(AQLQueryExecuteError, errno.QUERY_BIND_PARAMETER_UNDECLARED), StoreError),
        (CursorStateError("cursor ID not set"), StoreError),
        (ConnectionAbortedError("Can't connect to host(s) within limit (3)"), StoreUnavailable),
        (requests.ConnectionError("refused"), StoreUnavailable),
        (requests.ReadTimeout("slow"), StoreUnavailable),
    ],
)
def test_translate(exc, expected):
    err = translate(exc, "document jobs__1/2")
    assert type(err) is expected
    assert "secrets" not in err.message and "driver" not in err.message


def test_generic_errors_carry_no_driver_text():
    err = translate(server_error(AQLQueryExecuteError, errno.QUERY_PARSE, message="syntax near x"))
    assert err.message == "storage error"


# -- an autospec fake of python-arango ---------------------------------------------------------
#
# Every driver object is ``create_autospec`` of the real python-arango class, so a method or a
# keyword the driver does not have fails here (TypeError) as it would against a server. The
# ``Server`` behind it answers by query shape (it does not evaluate AQL), keeps the collection,
# graph and index catalog, the sequence counter, a tiny edge adjacency for reachability, and
# the bytes each transaction writes against the ``maxTransactionSize`` it declared.


_SPECS: dict = {}


def spec(cls, role: str):
    """``create_autospec(cls, instance=True)``, built once per role and reset on reuse
    (building one costs 0.03-0.2 s)."""
    mock = _SPECS.get(role)
    if mock is None:
        mock = _SPECS[role] = create_autospec(cls, instance=True)
    else:
        mock.reset_mock(return_value=True, side_effect=True)
    return mock


class Server:
    def __init__(self):
        self.collections: dict[str, bool] = {}  # name -> edge
        self.graphs: set[str] = set()
        self.indexes: dict[str, list[list[str]]] = {}
        self.counter = 100
        self.log: list[tuple[str, str, dict, dict]] = []  # (db, query, bind, options)
        self.tx_events: list = []
        self.fail: list[tuple[str, Exception]] = []  # (query prefix, error), consumed once
        self.adjacency: dict[str, list[str]] = {}
        self.rows: dict[str, list] = {}  # query prefix -> rows, consumed once
        self.role = "SINGLE"
        self.props: dict = {"name": "torc"}
        self.forbid_ddl = False
        self.tx_written: dict[int, int] = {}
        self.tx_cap: dict[int, int] = {}
        self.tx_seq = 0
        self.workflows: dict[str, dict] = {}  # key -> workflow document (staged or not)
        self.touched: list[str] = []
        self.guards: list = []  # (tx, workflow, operation | None): guard written or cleared
        self.clock = 0  # ms added to the real clock
        self.batches: list = []  # (tx, number of keys) of chunked updates
        self.doc_bytes = 540  # a chunked update's NEW size: targets of 470 B + patch + claim
        self._coll = self._cursor_mock = self._tx_mock = None

    def now(self):
        """The server's clock (``DATE_NOW()``, ms); tests move it with ``clock``."""
        return int(time.time() * 1000) + self.clock

    def queries(self, prefix=""):
        return [e for e in self.log if e[1].startswith(prefix)]

    # -- catalog ---------------------------------------------------------------------------
    def create_collection(self, name, edge=False, key_generator=None, user_keys=None, **options):
        assert key_generator == "traditional" and user_keys is True
        if self.forbid_ddl:
            raise server_error(CollectionCreateError, errno.FORBIDDEN, 403)
        if name in self.collections:
            raise server_error(CollectionCreateError, errno.DUPLICATE_NAME, 409)
        self.collections[name] = edge
        self.tx_events.append(("collection", name, options))

    def create_graph(self, name, edge_definitions=None, **_):
        if self.forbid_ddl:
            raise server_error(CollectionCreateError, errno.FORBIDDEN, 403)
        if name in self.graphs:
            raise server_error(CollectionCreateError, errno.GRAPH_DUPLICATE, 409)
        self.graphs.add(name)

    def collection(self, name):
        # One autospec object serves every name (building one costs ~0.15 s).
        if self._coll is None:
            self._coll = spec(StandardCollection, "collection")
            self._coll.indexes.side_effect = lambda **_: [
                {"fields": f} for f in self.indexes.get(self._coll_name, [])]

            def add_index(data, formatter=False):
                self.indexes.setdefault(self._coll_name, []).append(list(data["fields"]))
                return {"fields": data["fields"]}

            self._coll.add_index.side_effect = add_index
        self._coll_name = name
        return self._coll

    # -- queries ---------------------------------------------------------------------------
    def execute(self, db_name, tx_id, query, bind_vars=None, **options):
        bind = dict(bind_vars or {})
        self.log.append((db_name, query, bind, options))
        for i, (prefix, exc) in enumerate(self.fail):
            if query.startswith(prefix) or prefix in query:
                del self.fail[i]
                raise exc
        for prefix in list(self.rows):
            if prefix in query:
                return self._cursor(self.rows.pop(prefix))
        return self._cursor(self.respond(query, bind, tx_id))

    def _cursor(self, rows):
        if self._cursor_mock is None:
            self._cursor_mock = spec(Cursor, "cursor")
        cursor = self._cursor_mock
        rows = list(rows)
        cursor.__iter__.side_effect = lambda: iter(rows)
        it = iter(list(rows))
        cursor.next.side_effect = lambda: next(it)
        cursor.has_more.return_value = False
        return cursor

    def respond(self, query, bind, tx_id):
        if query.startswith("UPSERT {_key: @key}"):  # sequence reservation
            self.counter = max(self.counter, bind["floor"]) + bind["n"]
            return [self.counter]
        if " INSERT d INTO " in query:  # insert_many
            docs = next(v for k, v in bind.items() if not k.startswith("@"))
            coll = next(v for k, v in bind.items() if k.startswith("@"))
            if tx_id is not None:
                self.tx_written[tx_id] += sum(len(json.dumps(d)) for d in docs)
                assert self.tx_written[tx_id] <= self.tx_cap[tx_id], "over the declared cap"
            return [{**d, "_id": f"{coll}/{d['_key']}", "_rev": "_r"} for d in docs]
        if "COLLECT t = e._to RETURN t" in query:  # one reachability level
            frontier = next(v for k, v in bind.items() if isinstance(v, list))
            out = []
            for f in frontier:
                out += [t for t in self.adjacency.get(f, []) if t not in out]
            return out
        if query.startswith("WITH") and "FOR r IN" in query:  # descendants
            reach = next(v for k, v in bind.items() if isinstance(v, list))
            return [{"_id": i, "_key": i.split("/")[1], SEQ_FIELD: 1}
                    for i, _ in sorted(reach, key=lambda r: r[1])]
        if query.startswith("LET targets = (FOR k IN"):  # update_descendants
            keys = next(v for k, v in bind.items() if isinstance(v, list))
            return [{"keys": keys, "bytes": 100 * len(keys)}]
        if "COLLECT WITH COUNT INTO n" in query:
            return [0]
        if query.startswith("LET a = "):  # find_after
            return [{"found": True, "docs": []}]
        if query.startswith("LET cur = "):  # update
            return [{"found": True, "doc": {"_key": "7", "_rev": "_new", "_oldRev": "_old",
                                            "status": "x", SEQ_FIELD: 3}}]
        if "RETURN {n: LENGTH(u), bytes: SUM(u)}" in query:
            return [{"n": 0, "bytes": None}]
        if f"UPDATE w WITH {{{BULK_FIELD}: " in query:  # the bulk guard: set (lease) or clear
            key = next(v for k, v in bind.items() if f"w._key == @{k}" in query)
            guard = next((v for v in bind.values() if isinstance(v, dict)), None)
            owner = next((v for k, v in bind.items() if f".owner == @{k}" in query), None)
            doc = self.workflows.setdefault(key, {"_key": key})
            current = doc.get(BULK_FIELD)
            self.guards.append((tx_id, key, guard and guard["op"]))
            if owner is not None and (current or {}).get("owner") != owner and not (
                    current is None and f"{BULK_FIELD} == null OR" in query):
                return []  # not ours (any more)
            if guard is None:
                doc.pop(BULK_FIELD)
            else:
                lease = next(v for v in bind.values() if isinstance(v, int))
                doc[BULK_FIELD] = {**guard, "until": self.now() + lease}
            return [1]
        if "FILTER d._key IN @" in query and " UPDATE d WITH " in query:  # a key batch
            keys = next(v for v in bind.values() if isinstance(v, list))
            self.batches.append((tx_id, len(keys)))
            return [{"k": k, "b": self.doc_bytes} for k in keys]
        if f"UPDATE w WITH {{{STAGED_FIELD}: null}}" in query:  # publish
            keys = next(v for v in bind.values() if isinstance(v, list))
            published = [k for k in keys if self.workflows.get(k, {}).get(STAGED_FIELD, 0) > 0]
            for k in published:
                del self.workflows[k][STAGED_FIELD]
            return [1] * len(published)
        if f"UPDATE w WITH {{{STAGED_FIELD}: @" in query:  # a chunk's sign of life
            key = next(v for v in bind.values() if isinstance(v, str) and not v.startswith("work"))
            stamp = next(v for v in bind.values() if isinstance(v, int))
            self.touched.append(key)
            if self.workflows.get(key, {}).get(STAGED_FIELD, 0) > 0:
                self.workflows[key][STAGED_FIELD] = stamp
                return [1]
            return []
        if f"w.{STAGED_FIELD} < @" in query:  # the sweep condemns abandoned staged workflows
            cutoff = next(v for v in bind.values() if isinstance(v, int))
            mine = next((v for v in bind.values() if isinstance(v, list)), [])
            keys = [k for k, w in self.workflows.items()
                    if w.get(STAGED_FIELD, cutoff) < cutoff and k not in mine]
            for k in keys:
                self.workflows[k][STAGED_FIELD] = 0
            return keys
        if f"UPDATE w WITH {{{STAGED_FIELD}: 0}}" in query:  # discard_staged condemns one
            key = next(v for v in bind.values() if isinstance(v, str) and not v.startswith("work"))
            if self.workflows.get(key, {}).get(STAGED_FIELD) is None:
                return []
            self.workflows[key][STAGED_FIELD] = 0
            return [1]
        if query.startswith("FOR w IN") and query.endswith("RETURN w._key"):  # which exist
            keys = next(v for v in bind.values() if isinstance(v, list))
            return [k for k in keys if k in self.workflows]
        if "LET rw = " in query:  # remove a workflow's global documents
            key = next(v for k, v in bind.items() if "x._key == @" + k in query)
            return [self.workflows.pop(key, None)]
        if query.startswith("LET w = FIRST((INSERT"):
            w, c, s = (v for k, v in bind.items() if isinstance(v, dict))
            if w["_key"] in self.workflows:
                raise aql_error(errno.UNIQUE_CONSTRAINT_VIOLATED, 409)
            self.workflows[w["_key"]] = dict(w)
            return [{"w": {**w, "_id": f"workflows/{w['_key']}", "_rev": "_r"},
                     "c": {**c, "_key": "1", "_id": "workflow_configs/1", "_rev": "_r"},
                     "s": {**s, "_key": "2", "_id": "workflow_statuses/2", "_rev": "_r"}}]
        if query.startswith("FOR w IN"):
            key = next(v for k, v in bind.items() if not k.startswith("@") and isinstance(v, str))
            mine = next((v for v in bind.values() if isinstance(v, list)), [])
            if STAGED_FIELD in self.workflows.get(key, {}) and key not in mine:
                return []  # staged: visible only to its creator
            w = {"_key": key, "_id": f"workflows/{key}", "_rev": "_r", SEQ_FIELD: 5,
                 **self.workflows.get(key, {})}
            return [{"w": w, "c": {"_key": "1"}, "s": {"_key": "2"}, "now": self.now()}]
        if "REMOVE" in query and "RETURN OLD" in query and "LET targets" in query:
            return [{"_key": "7", "_id": "jobs__12/7", SEQ_FIELD: 3}]
        if "REMOVE" in query and query.rstrip().endswith("RETURN OLD"):
            return [{"_key": "12", "_id": "workflows/12"}]
        if "LET removed" in query:
            return [0]
        if "RETURN {e: e, v: v}" in query:
            return [{"e": {"_from": "jobs__12/1", "_to": "files__12/2", SEQ_FIELD: 1},
                     "v": {"_key": "2", SEQ_FIELD: 2}}]
        if "RETURN {d: d, e: e, o:" in query:
            return [{"d": {"_key": "1"}, "e": {"_key": "3"}, "o": None}]
        return []

    # -- database objects ------------------------------------------------------------------
    def _aql(self, db_name, tx_id=None):
        aql = spec(AQL, f"aql-{db_name}")
        aql.execute.side_effect = lambda query, **kw: self.execute(db_name, tx_id, query, **kw)
        return aql

    def database(self):
        db = spec(StandardDatabase, "db")
        db.aql = self._aql("db")
        db.collections.side_effect = lambda: [{"name": n} for n in self.collections]
        db.graphs.side_effect = lambda: [{"name": n} for n in self.graphs]
        db.create_collection.side_effect = self.create_collection
        db.create_graph.side_effect = self.create_graph
        db.collection.side_effect = self.collection
        db.delete_graph.side_effect = lambda name, **_: self.graphs.discard(name)
        db.delete_collection.side_effect = lambda name, **_: self.collections.pop(name, None)
        db.version.return_value = "3.12.4"
        db.role.side_effect = lambda: self.role
        db.properties.side_effect = lambda: dict(self.props)
        db.begin_transaction.side_effect = self.begin
        return db

    def begin(self, **kwargs):
        self.tx_seq += 1
        tx_id = self.tx_seq
        self.tx_events.append(("begin", kwargs))
        self.tx_written[tx_id] = 0
        self.tx_cap[tx_id] = kwargs.get("max_size") or 2**62
        if self._tx_mock is None:
            self._tx_mock = spec(TransactionDatabase, "tx")
        tx = self._tx_mock
        tx.aql = self._aql("tx", tx_id)
        tx.commit_transaction.side_effect = lambda: self.tx_events.append(("commit", tx_id))
        tx.abort_transaction.side_effect = lambda: self.tx_events.append(("abort", tx_id))
        return tx


@pytest.fixture
def fake(monkeypatch):
    server = Server()
    db = server.database()
    server.db = db
    server.clients = []
    client_cls = create_autospec(ArangoClient)

    def make_client(*args, **kwargs):
        server.clients.append((os.getpid(), kwargs))
        client = spec(ArangoClient, "client")

        def database(name, username=None, password=None, **_):
            assert (username, password) == ("u", "pw")
            return db if name == "torc" else server.system

        client.db.side_effect = database
        return client

    client_cls.side_effect = make_client
    server.system = spec(StandardDatabase, "system")
    monkeypatch.setattr(arango_connection, "ArangoClient", client_cls)
    return server


@pytest.fixture
def store(fake):
    return ArangoStore.from_url("arangodb://u:pw@h:8529/torc")


def assert_queries_sound(server, *values):
    """Every query lints clean (bind parameters, access after modification, WITH, brackets),
    carries no caller value in its text, and names only whitelisted collections."""
    assert server.log
    for _, text, bind, _ in server.log:
        assert lint(text, bind) == [], text
        for v in values:
            assert v not in text
        for k, v in bind.items():
            if k.startswith("@"):
                assert re.fullmatch(r"[a-z_]+(__[A-Za-z0-9_\-]+)?", v), v


# -- general behavior ----------------------------------------------------------------------------


def exercise_every_method(store, wf="12"):
    """Call every store method once with hostile values (for the soundness and lint checks)."""
    store.insert("jobs", wf, {"name": HOSTILE})
    store.insert_many("jobs", wf, [{"_key": "k1", "name": HOSTILE}, {"name": "b"}])
    store.insert("blocks", wf, {"_from": f"jobs__{wf}/1", "_to": f"jobs__{wf}/2"})
    store.update("jobs", wf, "7", {"status": HOSTILE, "_key": "no"}, rev="_r1")
    store.update("jobs", wf, "7", {"status": "y"})
    with pytest.raises(NotFound):  # the fake stores nothing
        store.get("jobs", wf, "7")
    store.update_many("events", wf, None, {"seen": True})
    store.update_many("jobs", wf, {"status": HOSTILE}, {"internal.x": HOSTILE, "status": "ready"},
                      edges=[HasEdge("blocks", "in", {"status": In([HOSTILE])}, exists=False)])
    store.delete("jobs", wf, "7")
    store.delete_many("jobs", wf, {"name": Lt(HOSTILE)})
    store.delete_many("blocks", wf, {"_to": HOSTILE})
    store.delete_many("workflows", None, {"name": HOSTILE})
    store.find("jobs", wf, {"status": HOSTILE}, skip=5, limit=10, order_by=[("name", True)])
    store.find("jobs", wf, skip=3)
    list(store.iter_find("jobs", wf, {"name": HOSTILE}, batch_size=2))
    store.count("jobs", wf, {"a.b": Ge(HOSTILE)}, edges=[HasEdge("needs", "out")])
    store.values("jobs", wf, ["_key", "internal.hash"], {"a.b": Ge(HOSTILE)})
    store.page("jobs", wf, {"status": HOSTILE}, skip=1, limit=1)
    store.find_after("events", wf, "5", {"category": HOSTILE}, limit=3)
    store.neighbors(wf, "needs", "out", [f"jobs__{wf}/1"], where={"name": HOSTILE},
                    edge_where={"data.run_id": 3})
    store.neighbors(wf, "blocks", "in")
    store.join(wf, "jobs", "needs", "out", {"name": HOSTILE}, skip=1, limit=2)
    store.descendants(wf, "blocks", [f"jobs__{wf}/1"], limit=5)
    store.update_descendants(wf, "blocks", {"status": HOSTILE}, start_ids=[f"jobs__{wf}/1"],
                             where={"status": In(["blocked", HOSTILE])},
                             through_matching_only=True)
    store.update_descendants(wf, "blocks", {"status": "ready"}, start_where={"status": HOSTILE})
    store.derive_edges(wf, "blocks", "produces", "needs")
    store.workflow_exists(wf)
    store.workflow_space(wf)
    with store.transaction(wf):
        store.find("jobs", wf, order_by=[("status", False), ("internal.n", True)])
        list(store.iter_find("jobs", wf, {"status": "ready"}, order_by=[("x", True)], batch_size=1))
    space = store.create_workflow({"name": HOSTILE}, {"a": HOSTILE}, {"run_id": 0})
    store.delete_workflow(space.workflow["_key"])
    store.create_workflow({"name": "o"}, {}, {}, owner={"token": "1", "name": HOSTILE})


def test_every_method_builds_sound_queries(store, fake):
    fake.adjacency = {"jobs__12/1": ["jobs__12/2"], "jobs__12/2": ["jobs__12/3"]}
    fake.rows["FOR d IN @@c1 FILTER (d[@p2] == @v3) RETURN d._id"] = [["jobs__12/1"]][0]
    fake.rows["COLLECT f = p._from"] = [{"_from": "jobs__12/1", "_to": "jobs__12/5"}]
    exercise_every_method(store)
    assert_queries_sound(fake, HOSTILE)


def test_connects_once_per_process(store, fake, monkeypatch):
    store.count("jobs", "12")
    store.count("jobs", "12")
    assert len(fake.clients) == 1
    assert {"workflows", "workflow_configs", "workflow_statuses", "has_workflow_config",
            "has_workflow_status", arango_mod.TICKS} <= set(fake.collections)
    assert "workflow_graph" in fake.graphs
    monkeypatch.setattr(arango_connection.os, "getpid", lambda: -1)  # after a fork
    store.count("jobs", "12")
    assert len(fake.clients) == 2


def test_every_model_collection_is_created_generically(store, fake):
    """A collection added to the model enums is created without an edit of the backend."""
    space = store.create_workflow({"name": "w"}, {}, {})
    key = space.workflow["_key"]
    assert {c.value for c in model.GlobalCollection} <= set(fake.collections)
    per_wf = {n for n in fake.collections if n.endswith(f"__{key}")}
    assert per_wf == {f"{c.value}__{key}" for c in model.Collection} | {
        f"{e.value}__{key}" for e in model.Edge}
    assert {n for n, edge in fake.collections.items() if edge} >= {f"{e.value}__{key}" for e in model.Edge}


def test_insert_rejects_bad_input_before_any_query(store, fake):
    store.count("jobs", "12")
    before = len(fake.log)
    for call in (
        lambda: store.insert("jobs", "12", {"_key": "a/b"}),
        lambda: store.insert("blocks", "12", {"_from": "jobs__12/1"}),
        lambda: store.insert("blocks", "12", {"_from": "jobs__12/1", "_to": HOSTILE}),
        lambda: store.insert("jobs", "1 2", {}),
        lambda: store.find("jobz", "12"),
        lambda: store.find("jobs", "12", order_by=[("a;b", False)]),
        lambda: store.descendants("12", "blocks", [HOSTILE]),
        lambda: store.update_descendants("12", "scheduled_bys", {"a": 1}, start_ids=[]),
        lambda: store.update_descendants("12", "blocks", {"a;b": 1}, start_ids=["jobs__12/1"]),
        lambda: store.insert("jobs", "12", {"x": float("nan")}),
    ):
        with pytest.raises(InvalidInput):
            call()
    assert len(fake.log) == before


def test_update_merges_nothing_and_returns_old_rev(store, fake):
    doc = store.update("jobs", "12", "7", {"status": "x", "_rev": "ignored"}, rev="_r1")
    _, text, bind, _ = fake.log[-1]
    assert "mergeObjects: false" in text and "FILTER d._rev == @" in text
    assert "_r1" in bind.values() and {"status": "x"} in bind.values()
    assert doc["_oldRev"] == "_old" and SEQ_FIELD not in doc


def test_update_of_missing_document_is_not_found(store, fake):
    fake.rows["LET cur = "] = [{"found": False, "doc": None}]
    with pytest.raises(NotFound):
        store.update("jobs", "12", "7", {})


def test_missing_documents_and_workflows_are_not_found(store, fake):
    with pytest.raises(NotFound):
        store.get("jobs", "12", "7")
    fake.fail.append((" INSERT d INTO ", aql_error(errno.DATA_SOURCE_NOT_FOUND, 404)))
    with pytest.raises(NotFound, match="key=12"):
        store.insert("jobs", "12", {"name": "a"})
    with pytest.raises(NotFound, match="key=12"):
        store.insert_many("jobs", "12", [])
    with pytest.raises(NotFound, match="key=a.b"):
        with store.transaction("a.b"):
            pass


def test_vertex_delete_cascades_to_every_edge_collection(store, fake):
    store.delete("jobs", "12", "7")
    _, text, bind, _ = fake.log[-1]
    edges = {v for k, v in bind.items() if k.startswith("@") and not v.startswith("jobs")}
    assert edges == {f"{e}__12" for e in model.Edge}
    assert text.count("REMOVE") == 12
    store.delete_many("events", "12")
    assert fake.log[-1][1].count("REMOVE") == 1


def test_transaction_routes_queries_commits_and_locks_jobs_exclusively(store, fake):
    store.count("jobs", "12")
    with store.transaction("12"):
        store.count("jobs", "12")
        with store.transaction("12"):  # nested: joins
            store.find("jobs", "12")
    begins = [e for e in fake.tx_events if e[0] == "begin"]
    assert len(begins) == 1
    kwargs = begins[0][1]
    assert kwargs["exclusive"] == ["jobs__12"] and "jobs__12" not in kwargs["write"]
    assert len(kwargs["write"]) == (len(model.Collection) + len(model.Edge) - 1
                                    + len(model.GlobalCollection) + len(model.GlobalEdge))
    assert fake.tx_events[-1][0] == "commit"
    assert {e[0] for e in fake.log[2:4]} == {"tx"}
    store.count("jobs", "12")
    assert fake.log[-1][0] == "db"


def test_transaction_aborts_on_error(store, fake):
    with pytest.raises(RuntimeError):
        with store.transaction("12"):
            store.count("jobs", "12")
            raise RuntimeError("boom")
    assert fake.tx_events[-1][0] == "abort"
    assert "commit" not in [e[0] for e in fake.tx_events]


def test_transaction_on_missing_workflow_is_not_found(store, fake):
    store.count("jobs", "1")
    fake.db.begin_transaction.side_effect = lambda **kw: (_ for _ in ()).throw(
        server_error(TransactionInitError, errno.DATA_SOURCE_NOT_FOUND, 404))
    with pytest.raises(NotFound, match="key=99"):
        with store.transaction("99"):
            pass


def test_create_workflow_cleans_up_its_collections_on_failure(store, fake):
    store.count("jobs", "1")
    before = set(fake.collections)
    fake.fail.append(("LET w = FIRST((INSERT", aql_error(errno.UNIQUE_CONSTRAINT_VIOLATED, 409)))
    with pytest.raises(UniqueConstraintViolated):
        store.create_workflow({"_key": "w1"}, {}, {})
    assert set(fake.collections) == before and "workflow_graph__w1" not in fake.graphs
    assert fake.tx_events[-1][0] == "abort"


def test_create_workflow_does_not_drop_collections_it_did_not_create(store, fake):
    """The workflow document is written before any DDL: a taken key fails there, and the
    collections of the workflow that holds it are left alone."""
    store.count("jobs", "1")
    fake.db.create_collection.reset_mock()
    fake.workflows["w2"] = {"_key": "w2"}  # e.g. another process created the same key
    fake.collections["jobs__w2"] = False
    with pytest.raises(UniqueConstraintViolated):
        store.create_workflow({"_key": "w2"}, {}, {})
    assert "jobs__w2" in fake.collections
    assert not any(n.endswith("__w2") and n != "jobs__w2" for n in fake.collections)
    assert not fake.db.create_collection.called


def test_create_workflow_replaces_orphan_collections_of_its_key(store, fake):
    """Defect-4 follow-up (issue 12, item 4): collections left by a creation that crashed
    mid-DDL no longer block the key (was: 409 until an operator dropped them)."""
    store.count("jobs", "1")
    fake.collections["jobs__w3"] = False
    fake.collections["files__w3"] = False
    space = store.create_workflow({"_key": "w3"}, {}, {})
    assert space.workflow["_key"] == "w3" and STAGED_FIELD not in space.workflow
    assert len([n for n in fake.collections if n.endswith("__w3")]) == 24
    assert STAGED_FIELD not in fake.workflows["w3"]  # published


@pytest.mark.parametrize("owner", [{"token": "7", "name": HOSTILE}, None])
def test_create_workflow_writes_its_owner_in_the_same_transaction(store, fake, owner):
    store.count("jobs", "1")
    fake.log.clear()
    space = store.create_workflow({"_key": "w5"}, {}, {}, owner=owner)
    assert space.workflow["_key"] == "w5"
    creates = fake.queries("LET w = FIRST((INSERT")
    assert len(creates) == 1 and creates[0][0] == "tx"  # one query, in the stream transaction
    db, text, bind, _ = creates[0]
    assert "workflow_owners" in bind.values()
    owner_clause = text[text.index("LET o = ("):]
    owners = [v for v in bind.values() if isinstance(v, list)]
    if owner is None:  # a stale record of the key is removed
        assert owner_clause.startswith("LET o = (REMOVE") and owners == []
    else:  # inserted with the workflow's key, replacing a stale record
        assert "INSERT r INTO" in owner_clause and "overwriteMode" in owner_clause
        (doc,) = owners[0]
        assert doc["_key"] == "w5" and doc["token"] == "7" and doc["name"] == HOSTILE
        assert SEQ_FIELD in doc
    assert [e[0] for e in fake.tx_events if e[0] in ("begin", "commit")][-2:] == ["begin", "commit"]
    assert_queries_sound(fake, HOSTILE)


def test_delete_workflow_removes_the_owner_record_in_its_transaction(store, fake):
    fake.workflows["12"] = {"_key": "12", "_id": "workflows/12"}
    store.delete_workflow("12")
    (_, text, bind, _), = [e for e in fake.log if "REMOVE" in e[1] and "RETURN OLD" in e[1]]
    own = next(k for k, v in bind.items() if v == "workflow_owners")
    assert f"REMOVE o IN @{own}" in text


def test_delete_workflow_drops_graph_collections_then_documents(store, fake):
    fake.workflows["12"] = {"_key": "12", "_id": "workflows/12"}
    old = store.delete_workflow("12")
    assert old == {"_key": "12", "_id": "workflows/12"}
    assert fake.tx_events[-1][0] == "commit"
    assert_queries_sound(fake)


def test_info(store, fake):
    info = store.info()
    assert info["version"] == "3.12.4" and info["url"] == "arangodb://u:***@h:8529/torc"
    assert info["max_transaction_bytes"] == 120 * 2**20


def test_serializer_refuses_nan():
    with pytest.raises(ValueError):
        arango_connection.dumps({"x": float("nan")})
    assert arango_connection.dumps({"a": [1, "b"]}) == '{"a":[1,"b"]}'


# -- the numbered defects of issue 12 (each test fails on 62e67c5) --------------------------------


def test_defect01_transaction_size_is_declared_checked_and_accounted(fake):
    """Defect 1 (fails on 62e67c5: no cap declared, no check, errno 32 a 500): the store
    declares its cap on every transaction and standalone query, refuses an insert that would
    cross it before sending anything (413, rolled back), and its accounting stays an upper
    bound of what the fake saw written, which never exceeds the declared cap."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    doc = {"name": "x" * 1000}
    with store.transaction("12"):
        store.insert_many("jobs", "12", [doc] * 400)   # ~0.4 MiB
        store.insert_many("jobs", "12", [doc] * 400)   # ~0.8 MiB
        tx = store._tx()
        sent = len(fake.queries())
        with pytest.raises(TransactionTooLarge) as info:
            store.insert_many("jobs", "12", [doc] * 400)
        assert len(fake.queries()) == sent  # nothing sent
        assert tx.used >= max(fake.tx_written.values())
    assert info.value.status == 413 and "1 MiB" in info.value.message
    begin = next(e for e in fake.tx_events if e[0] == "begin")
    assert begin[1]["max_size"] == 2**20
    assert all(w <= fake.tx_cap[t] for t, w in fake.tx_written.items())
    store.insert_many("jobs", "12", [doc])
    options = fake.log[-1][3]
    assert options["max_transaction_size"] == 2**20
    assert options["intermediate_commit_size"] > 2**20
    assert options["intermediate_commit_count"] >= 2**53
    # The server's own refusal maps to the same error.
    fake.fail.append(("LET targets", aql_error(errno.RESOURCE_LIMIT)))
    with pytest.raises(TransactionTooLarge):
        store.update_many("jobs", "12", None, {"status": "ready"})


def test_defect01_updates_are_accounted_after_the_fact(store, fake):
    """Defect 1: set-based updates report the bytes they wrote; a transaction that crossed
    the cap that way is refused before its next insert (fails on 62e67c5)."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    fake.rows["RETURN {n: LENGTH(u)"] = [{"n": 1000, "bytes": 2**20 - 200_000}]
    with pytest.raises(TransactionTooLarge):
        with store.transaction("12"):
            store.update_many("jobs", "12", None, {"status": "ready"})
            store.insert("jobs", "12", {"name": "x" * 100_000})
    assert fake.tx_events[-1][0] == "abort"


def test_defect01_after_the_fact_charges_outside_a_transaction_never_raise(fake):
    """A standalone update already committed under the server-enforced cap: reporting a
    413 for it would lie, so the store counts nothing outside a transaction."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    fake.rows["RETURN {n: LENGTH(u)"] = [{"n": 10, "bytes": 2 * 2**20}]
    assert store.update_many("jobs", "12", None, {"status": "ready"}) == 10


def test_defect02_documents_by_runtime_id_are_declared_with_with(store, fake):
    """Defect 2 (fails on 62e67c5: traversals and DOCUMENT() without WITH): no query uses
    traversal syntax, and every DOCUMENT() query starts with WITH naming the collections."""
    fake.adjacency = {"jobs__12/1": ["jobs__12/2"]}
    exercise_every_method(store)
    for _, text, bind, _ in fake.log:
        if "DOCUMENT(" in text:
            assert text.startswith("WITH @@"), text
        assert not {"OUTBOUND", "INBOUND"} & set(text.split())
    neighbors = next(e for e in fake.log if "RETURN {e: e, v: v}" in e[1])
    declared = {neighbors[2][t[1:]] for t in neighbors[1].split(" FOR ")[0].split()[1:]
                if t.startswith("@@")}
    assert declared == {"files__12"}
    assert isinstance(translate(aql_error(errno.QUERY_COLLECTION_LOCK_FAILED)), StoreError)


def test_defect03_keys_come_from_one_counter_without_placeholders(store, fake):
    """Defect 3 (fails on 62e67c5: placeholder documents in torc_graph_ticks could collide
    with generated keys in a cluster): keys come from the counter document; nothing else is
    ever inserted into the ticks collection; a decimal key raises the counter first."""
    docs = store.insert_many("jobs", "12", [{"name": "a"}, {"_key": "900"}, {"_key": "mine"}])
    reserve = fake.queries("UPSERT {_key: @key}")
    assert len(reserve) == 1 and reserve[0][2]["floor"] == 900 and reserve[0][2]["n"] == 3
    assert [d["_key"] for d in docs] == ["901", "900", "mine"]
    assert all(SEQ_FIELD not in d for d in docs)
    for _, text, bind, _ in fake.log:
        if arango_mod.TICKS in bind.values():
            assert text == RESERVE_AQL
    later = store.insert("jobs", "12", {})
    assert int(later["_key"]) > 903


def test_defect03_counter_conflicts_are_retried(store, fake):
    """Defect 3/8: concurrent reservations conflict on the counter (1200) and are retried."""
    store.count("jobs", "12")
    fake.fail.append(("UPSERT", aql_error(errno.CONFLICT, 409)))
    fake.fail.append(("UPSERT", aql_error(errno.CONFLICT, 409)))
    assert store.insert("jobs", "12", {})["_key"] == "101"
    assert len(fake.queries("UPSERT")) == 3


def test_defect04_workflow_keys_must_be_legal_collection_names(store, fake):
    """Defect 4 (fails on 62e67c5: ``a.b`` reached DDL and came back as an unmapped 1208 ->
    500; ``my-wf`` could not get edges)."""
    store.count("jobs", "1")
    ddl = len(fake.collections)
    for bad in ("a.b", "x:y", "a" * 232):
        with pytest.raises(InvalidInput, match="A-Z a-z 0-9 _ -"):
            store.create_workflow({"_key": bad}, {}, {})
    assert len(fake.collections) == ddl
    store.create_workflow({"_key": "my-wf"}, {}, {})
    store.insert("blocks", "my-wf", {"_from": "jobs__my-wf/1", "_to": "jobs__my-wf/2"})
    assert store.neighbors("my-wf", "blocks", "out", ["jobs__my-wf/1"])
    assert isinstance(translate(aql_error(errno.ILLEGAL_NAME)), InvalidInput)
    assert model.split_id("jobs__my-wf/3") == ("jobs", "my-wf", "3")


def test_defect05_reads_sort_on_the_indexed_sequence_attribute(store, fake):
    """Defect 5 (fails on 62e67c5: every read sorted on a computed expression): reads sort on
    ``d._torc_seq`` and every collection has a persistent index on it; jobs also on
    ``[status, _torc_seq]`` (claims, is_complete)."""
    space = store.create_workflow({"name": "w"}, {}, {})
    key = space.workflow["_key"]
    store.find("jobs", key, {"status": "ready"}, limit=1)
    text = fake.log[-1][1]
    assert f"SORT d.{SEQ_FIELD} ASC LIMIT" in text and "TO_NUMBER" not in text
    assert fake.indexes[f"jobs__{key}"] == [[SEQ_FIELD], ["status", SEQ_FIELD],
                                            ["_torc_claim_grm"], ["_torc_claim_gmr"]]
    assert all(fake.indexes[n] == [[SEQ_FIELD]] for n in fake.collections
               if n.endswith(f"__{key}") and not n.startswith("jobs__"))


def test_defect06_pages_inside_a_transaction_are_keyset(store, fake):
    """Defect 6 (fails on 62e67c5: offset paging re-ran and re-sorted the query per page):
    the second page resumes after the last row's sort key, without an offset."""
    rows = [{"_key": str(i), "status": "ready", SEQ_FIELD: i} for i in (5, 9)]
    fake.rows["LIMIT"] = rows
    with store.transaction("12"):
        got = list(store.iter_find("jobs", "12", {"status": "ready"}, batch_size=2))
    assert [d["_key"] for d in got] == ["5", "9"]
    pages = [e for e in fake.log if e[0] == "tx" and "RETURN d" in e[1]]
    assert len(pages) == 2
    assert "LIMIT @v" in pages[0][1] and f"d.{SEQ_FIELD} > @" not in pages[0][1]
    second = pages[1]
    assert f"(d.{SEQ_FIELD} > @" in second[1] and 9 in second[2].values()
    assert 2 in second[2].values() and not any(v == 4 for v in second[2].values())
    assert lint(second[1], second[2]) == []


def test_keyset_pages_follow_the_requested_order(store, fake):
    """With ``order_by`` the next page starts after the last row's whole sort key: equal
    leading fields fall through to the next field, descending fields compare with ``<``."""
    fake.rows["LIMIT"] = [{"_key": "5", "a": 3, "b": {"c": "x"}, SEQ_FIELD: 5}]
    with store.transaction("12"):
        list(store.iter_find("jobs", "12", order_by=[("a", True), ("b.c", False)], batch_size=1))
    _, text, bind, _ = [e for e in fake.log if e[0] == "tx" and "RETURN d" in e[1]][1]
    assert lint(text, bind) == []
    flt = text.split(" FILTER ", 1)[1].split(" SORT ")[0]
    assert flt == ("(d[@p2] < @v5) OR (d[@p2] == @v6 AND d[@p3][@p4] > @v7) OR "
                   f"(d[@p2] == @v8 AND d[@p3][@p4] == @v9 AND d.{SEQ_FIELD} > @v10)")
    assert (bind["p2"], bind["p3"], bind["p4"]) == ("a", "b", "c")
    assert [bind[f"v{i}"] for i in range(5, 11)] == [3, 3, "x", 3, "x", 5]


def test_defect07_reachability_is_level_by_level(store, fake):
    """Defect 7 (fails on 62e67c5: one traversal per start vertex): a multi-start reachability
    is one query per level over the whole frontier; shared descendants are expanded once."""
    fake.adjacency = {f"jobs__12/{i}": ["jobs__12/10"] for i in range(5)}
    fake.adjacency["jobs__12/10"] = ["jobs__12/11", "jobs__12/1"]
    got = store.descendants("12", "blocks", [f"jobs__12/{i}" for i in range(5)])
    levels = [e for e in fake.log if "COLLECT t = e._to" in e[1]]
    assert len(levels) == 3  # depth 1, depth 2, the empty frontier
    frontiers = [next(v for v in e[2].values() if isinstance(v, list)) for e in levels]
    assert frontiers[1] == ["jobs__12/10"] and frontiers[2] == ["jobs__12/11", "jobs__12/1"]
    assert [d["_key"] for d in got] == ["10", "11", "1"]
    assert all("e._from IN @" in e[1] for e in levels)


def test_defect08_stale_revision_and_write_conflict_are_told_apart(store, fake):
    """Defect 8 (fails on 62e67c5: every 1200 read as a stale revision): the revision is
    checked in the query; a server 1200 is a write-write conflict (503, retryable)."""
    fake.rows["LET cur = "] = [{"found": True, "doc": None}]
    with pytest.raises(RevisionConflict):
        store.update("jobs", "12", "7", {"a": 1}, rev="_stale")
    fake.fail.append(("LET cur = ", aql_error(errno.CONFLICT, 409)))
    with pytest.raises(StoreUnavailable, match="write-write conflict"):
        store.update("jobs", "12", "7", {"a": 1}, rev="_r")


@pytest.mark.parametrize("code, expected, text", [
    (errno.RESOURCE_LIMIT, TransactionTooLarge, "nothing was written"),
    (errno.QUERY_COLLECTION_LOCK_FAILED, StoreError, "storage error"),
    (errno.ILLEGAL_NAME, InvalidInput, "invalid"),
    (errno.TRANSACTION_NOT_FOUND, StoreUnavailable, "expired"),
    (errno.HTTP_CORRUPTED_JSON, InvalidInput, "invalid"),
    (errno.QUERY_KILLED, StoreUnavailable, "time limit"),
])
def test_defect09_errnos_are_mapped(code, expected, text):
    """Defect 9 (fails on 62e67c5: 32, 1208, 1655, 600 were generic 500s)."""
    err = translate(aql_error(code))
    assert type(err) is expected and text in err.message


def test_defect10_the_server_stops_queries_before_the_client_gives_up(fake):
    """Defect 10 (fails on 62e67c5: no maxRuntime, a client timeout left the query running):
    every query carries maxRuntime below the client's request timeout."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?request_timeout=30")
    exercise_every_method(store)
    runtimes = {e[3].get("max_runtime") for e in fake.log if e[1] != "" and "stream" not in e[3]}
    assert runtimes == {25.0}


def test_defect11_insert_many_is_one_write_per_document(store, fake):
    """Defect 11 (fails on 62e67c5: a tick insert per document doubled the operations and
    intermediate commits could split a large insert): one reservation, one insert query with
    every document, no intermediate commit below the cap."""
    store.count("jobs", "12")
    n0 = len(fake.log)
    docs = store.insert_many("jobs", "12", [{"i": i} for i in range(1000)])
    assert [int(d["_key"]) for d in docs] == list(range(101, 1101))
    sent = fake.log[n0:]
    assert [e[1].split()[0] for e in sent] == ["UPSERT", "FOR"]
    assert sent[1][1] == "FOR d IN @v1 INSERT d INTO @@c2 RETURN NEW"
    assert sent[1][3]["intermediate_commit_count"] > 1000


def test_defect12_no_ddl_when_everything_exists(fake):
    """Defect 12 (fails on 62e67c5: create_collection/create_graph ran unconditionally -> 403
    for a user without DDL rights): against a prepared database, no DDL call is made."""
    ArangoStore.from_url("arangodb://u:pw@h:8529/torc").create_workflow({"_key": "w"}, {}, {})
    fake.forbid_ddl = True
    fake.db.create_collection.reset_mock()
    fake.db.create_graph.reset_mock()
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    with store.transaction("w"):
        store.insert("jobs", "w", {"name": "a"})
    assert not fake.db.create_collection.called and not fake.db.create_graph.called


def test_defect13_cluster_layout_is_one_shard_and_replicated(fake):
    """Defect 13 (fails on 62e67c5: one shard, default replication, nothing co-located): the
    store creates its database OneShard with replication; in a cluster database that is not
    OneShard every collection follows the ticks collection's shard."""
    fake.role = "COORDINATOR"
    fake.props = {"sharding": "", "replication_factor": 2}
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?replication_factor=3&write_concern=2")
    store.create_workflow({"_key": "w"}, {}, {})
    created = {e[1]: e[2] for e in fake.tx_events if e[0] == "collection"}
    assert created.pop(arango_mod.TICKS) == {"shard_count": 1, "replication_factor": 3,
                                             "write_concern": 2}
    assert created and all(o == {"shard_like": arango_mod.TICKS} for n, o in created.items()
                           if not n.startswith("jobs__"))
    assert created["jobs__w"] == {"shard_like": arango_mod.TICKS, "computedValues": JOBS_COMPUTED}
    # In a OneShard database the database's settings place every collection.
    fake.props = {"sharding": "single", "replication_factor": 2}
    ArangoStore.from_url("arangodb://u:pw@h:8529/torc").create_workflow({"_key": "w3"}, {}, {})
    assert all(e[2] == ({} if e[1] != "jobs__w3" else {"computedValues": JOBS_COMPUTED})
               for e in fake.tx_events if e[0] == "collection" and "__w3" in e[1])
    # A missing database is created OneShard.
    fake2 = Server()
    calls = []
    fake.system.create_database.side_effect = lambda name, **kw: calls.append((name, kw))
    first = [True]

    def collections():
        if first[0]:
            first[0] = False
            raise server_error(CollectionCreateError, errno.DATABASE_NOT_FOUND, 404)
        return []

    fake.db.collections.side_effect = collections
    ArangoStore.from_url("arangodb://u:pw@h:8529/torc").count("jobs", "1")
    assert calls == [("torc", {"replication_factor": 2, "write_concern": 1, "sharding": "single"})]
    del fake2


def test_defect14_indexes_use_add_index_and_existing_workflows_get_them(store, fake):
    """Defect 14 (fails on 62e67c5: deprecated add_persistent_index; workflows whose
    collections already existed never got the status index)."""
    store.count("jobs", "1")
    for name in ("jobs__old", "files__old"):
        fake.collections[name] = False
    with store.transaction("old"):
        pass
    with store.transaction("old"):
        pass
    assert fake.indexes["jobs__old"] == [[SEQ_FIELD], ["status", SEQ_FIELD],
                                         ["_torc_claim_grm"], ["_torc_claim_gmr"]]
    # The claim orders' computed values are added, then computed for the claimable jobs.
    fake._coll.configure.assert_called_once_with(computed_values=JOBS_COMPUTED)
    (recompute,) = [e for e in fake.log if "UPDATE d WITH {} IN" in e[1]]
    assert recompute[0] == "db" and ["ready", "scheduled"] in recompute[2].values()
    assert not fake.db.collection.return_value.add_persistent_index.called
    assert "exclusive access to ``jobs__<WF>`` only" in base_doc()


def base_doc():
    from torc_graph.store import base

    return " ".join((base.__doc__ + base.GraphStore.transaction.__doc__).split())


# -- the lint itself -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, bind, problem", [
    ("FOR d IN @@c RETURN @v", {"@c": "x"}, "bind: @v is not bound"),
    ("FOR d IN @@c RETURN d", {"@c": "x", "v": 1}, "bind: v is bound but unused"),
    ("FOR d IN @@c REMOVE d IN @@c LET y = (FOR z IN @@c RETURN z) RETURN 1", {"@c": "x"},
     "after-modification: x read after it was modified"),
    ("FOR d IN @@c REMOVE d IN @@c FOR e IN @@c REMOVE e IN @@c", {"@c": "x"},
     "after-modification: x modified twice"),
    ("FOR v IN 1..2 OUTBOUND @s @@e RETURN v", {"s": "j/1", "@e": "e"},
     "with: traversal (OUTBOUND) without a leading WITH"),
    ("FOR e IN @@e RETURN DOCUMENT(e._to)", {"@e": "e"}, "with: DOCUMENT() without a leading WITH"),
    ("RETURN (1", {}, "brackets: unclosed"),
])
def test_lint_catches(text, bind, problem):
    assert problem in lint(text, bind)


def test_lint_accepts_upsert_and_update_with():
    assert lint(RESERVE_AQL, {"key": "k", "floor": 0, "n": 1, "@ticks": "t"}) == []
    assert lint("FOR d IN @@c UPDATE d WITH {a: 'x)'} IN @@c", {"@c": "x"}) == []


# -- staged creation: chunks under the cap, compensation, invisibility, the sweep (issue 12) -------


def big_spec(n: int) -> dict:
    """A 10^6-job specification scaled down: n jobs of ~0.5 KB in chains, with files."""
    jobs = [{"name": f"job{i}", "command": f"python run.py --index {i} " + "x" * 400,
             **({"blocked_by": [f"job{i - 1}"]} if i % 100 else {"output_files": [f"f{i}"]})}
            for i in range(n)]
    return {"name": "big", "jobs": jobs,
            "files": [{"name": f"f{i}", "path": f"out/{i}"} for i in range(0, n, 100)]}


def test_staged_creation_writes_chunks_under_the_cap_and_publishes_last(fake):
    """A specification ~4x the cap (the 10^6-job case with a 1 MiB cap) is created through the
    real engine: every stream transaction stays under the declared cap (the fake asserts it on
    every insert), there are several, each chunk refreshes the stamp, the workflow is staged
    (hidden) until one final query publishes it."""
    from torc_graph.engine import specifications

    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    created = specifications.create_from_specification(store, big_spec(6000))
    key = created["_key"]
    assert STAGED_FIELD not in created
    chunks = [e for e in fake.tx_events if e[0] == "begin" and "exclusive" in e[1]
              and e[1]["exclusive"] == [f"jobs__{key}"]]
    assert len(chunks) >= 4
    assert all(e[1]["max_size"] == 2**20 for e in chunks)
    assert max(fake.tx_written.values()) <= 2**20
    assert sum(fake.tx_written.values()) > 3 * 2**20
    assert fake.touched == [key] * (len(chunks) - 1)
    publish = [i for i, e in enumerate(fake.log) if f"{STAGED_FIELD}: null" in e[1]]
    assert publish == [len(fake.log) - 1]  # the last query of the call
    assert fake.log[-1][0] == "db"  # standalone, after the last chunk committed
    assert fake.tx_events[-1][0] == "commit"
    assert STAGED_FIELD not in fake.workflows[key]
    jobs = [e for e in fake.log if " INSERT d INTO " in e[1] and f"jobs__{key}" in e[2].values()]
    assert sum(len(next(v for v in e[2].values() if isinstance(v, list))) for e in jobs) == 6000
    assert_queries_sound(fake)


def test_staged_creation_compensates_a_failure_in_chunk_k(fake):
    """A storage error in the third chunk: the current chunk is aborted, the committed chunks
    and the DDL are removed (graph, 24 collections, global documents); nothing is published."""
    from torc_graph.engine import specifications

    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    store.count("jobs", "1")
    before = set(fake.collections)
    seen = []

    def fail_third_chunk(query, **kw):
        if " INSERT d INTO " in query and fake.tx_seq >= 4 and not seen:
            seen.append(fake.tx_seq)
            raise aql_error(errno.QUERY_PARSE)
        return real(query, **kw)

    real = None
    original_begin = fake.begin

    def begin(**kwargs):
        tx = original_begin(**kwargs)
        nonlocal real
        real = tx.aql.execute.side_effect
        tx.aql.execute.side_effect = fail_third_chunk
        return tx

    fake.db.begin_transaction.side_effect = begin
    with pytest.raises(StoreError):
        specifications.create_from_specification(store, big_spec(6000))
    assert seen == [4]  # tx 1: the global documents; 2, 3: the first chunks; 4: the third
    assert ("commit", 2) in fake.tx_events and ("commit", 3) in fake.tx_events
    assert ("abort", 4) in fake.tx_events and ("commit", 4) not in fake.tx_events
    assert fake.workflows == {}  # documents removed
    assert set(fake.collections) == before  # collections dropped
    assert not [g for g in fake.graphs if g.startswith("workflow_graph__")]
    assert not [e for e in fake.log if f"{STAGED_FIELD}: null" in e[1]]  # never published


def test_staged_workflows_are_invisible_until_published(fake):
    """Inside the block only its thread sees the workflow; another store (another process)
    and every read of ``workflows`` filter staged documents out; after the block it is
    visible."""
    import threading

    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    other = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    seen_by_other_thread = []
    with store.staged_creation():
        key = store.create_workflow({"name": "w"}, {}, {}).workflow["_key"]
        assert STAGED_FIELD in fake.workflows[key]
        assert store.workflow_space(key).workflow["_key"] == key
        with pytest.raises(NotFound):
            other.workflow_space(key)
        t = threading.Thread(target=lambda: seen_by_other_thread.append(
            len(fake.log) and store.workflow_exists(key)))
        t.start()
        t.join()
        fake.log.clear()
        other.find("workflows", None)
        other.count("workflows", None)
        other.find_after("workflows", None, None)
        with pytest.raises(NotFound):
            other.get("workflows", None, key)
        other.update("workflows", None, key, {"name": "x"})  # the fake does not evaluate
        other.update_many("workflows", None, None, {"name": "x"})
        for _, text, bind, _ in fake.log:
            assert f"d.{STAGED_FIELD} == null" in text, text
            assert key not in [v for v in bind.values() if isinstance(v, list)]
    assert seen_by_other_thread == [False]
    assert other.workflow_space(key).workflow["_key"] == key
    assert any(f"{STAGED_FIELD}: null" in e[1] for e in fake.log)  # published
    assert_queries_sound(fake)


def test_the_sweep_removes_abandoned_creations_and_orphan_collections(fake):
    """After a crash (kill -9) mid-creation: a staged workflow silent for the grace period is
    purged, a recent one is left alone; collections and graphs of a workflow key without any
    workflow document (a crash mid-DDL, or in a deletion) are dropped. The first
    create_workflow of a process sweeps, rate-limited after that; no manual step."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?staging_grace=60")
    store.count("jobs", "1")
    now = 10**12
    for key, stamp in (("old", now - 61_000), ("busy", now - 1_000)):
        fake.workflows[key] = {"_key": key, STAGED_FIELD: stamp}
        for base in ("jobs", "files", "blocks"):
            fake.collections[f"{base}__{key}"] = base == "blocks"
        fake.graphs.add(f"workflow_graph__{key}")
    fake.workflows["live"] = {"_key": "live"}
    fake.collections["jobs__live"] = False
    fake.collections["jobs__orphan"] = False
    fake.collections["needs__orphan"] = True
    fake.graphs.add("workflow_graph__gone")
    fake.collections["jobs__x__orphan"] = False  # a key containing "__": not "orphan"'s
    fake.workflows["x__orphan"] = {"_key": "x__orphan"}
    assert sorted(store.sweep(now)) == ["gone", "old", "orphan"]
    assert set(fake.workflows) == {"busy", "live", "x__orphan"}
    left = {n for n in fake.collections if "__" in n}
    assert left == {"jobs__busy", "files__busy", "blocks__busy", "jobs__live", "jobs__x__orphan"}
    assert fake.graphs & {"workflow_graph__old", "workflow_graph__gone"} == set()
    # Lazily: the first creation of a process sweeps, the next within the interval does not.
    fake.collections["jobs__orphan2"] = False
    fresh = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    fresh.create_workflow({"name": "a"}, {}, {})
    assert "jobs__orphan2" not in fake.collections
    fake.collections["jobs__orphan3"] = False
    fresh.create_workflow({"name": "b"}, {}, {})
    assert "jobs__orphan3" in fake.collections
    assert_queries_sound(fake)


def test_discard_staged_removes_only_a_staged_workflow_and_sweep_staged_sweeps(fake):
    """The protocol's discard_staged/sweep_staged on ArangoDB (a task that finds its creation's
    process dead discards the workflow): a staged workflow is condemned and purged with its
    collections; a published one is left alone (False); sweep_staged is the grace-period
    sweep."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?staging_grace=60")
    store.count("jobs", "1")
    for key, stamp in (("staged", 10**12), ("published", None)):
        fake.workflows[key] = {"_key": key} if stamp is None else {"_key": key,
                                                                   STAGED_FIELD: stamp}
        fake.collections[f"jobs__{key}"] = False
        fake.graphs.add(f"workflow_graph__{key}")
    assert store.discard_staged("published") is False
    assert "published" in fake.workflows and "jobs__published" in fake.collections
    assert store.discard_staged("staged") is True
    assert "staged" not in fake.workflows and "jobs__staged" not in fake.collections
    assert "workflow_graph__staged" not in fake.graphs
    assert store.discard_staged("staged") is False  # idempotent
    fake.workflows["old"] = {"_key": "old", STAGED_FIELD: 1}
    assert store.sweep_staged() == ["old"]
    assert "published" in fake.workflows
    assert_queries_sound(fake)


def test_a_crash_between_documents_and_ddl_leaves_only_a_staged_document(fake):
    """create_workflow writes the (staged) documents before any DDL: killed during the DDL,
    what remains is invisible and swept; the same custom key then works again."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?staging_grace=1")
    store.count("jobs", "1")
    real_create = fake.db.create_collection.side_effect
    calls = []

    def crash(name, **kw):
        calls.append(name)
        if len(calls) == 5:
            raise KeyboardInterrupt  # stands for kill -9: no compensation runs after it
        return real_create(name, **kw)

    fake.db.create_collection.side_effect = crash
    with pytest.raises(KeyboardInterrupt):
        with contextlib.ExitStack():
            store.purge_workflow = lambda key: None  # the process is gone: nothing undoes
            store.create_workflow({"_key": "mine"}, {}, {})
    fake.db.create_collection.side_effect = real_create
    assert STAGED_FIELD in fake.workflows["mine"] and store.workflow_exists("mine") is False
    first_ddl = next(i for i, e in enumerate(fake.tx_events) if e[0] == "collection"
                     and e[1].endswith("__mine"))
    assert fake.tx_events[first_ddl - 1][0] == "commit"  # the documents committed before
    later = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?staging_grace=1")
    fake.workflows["mine"][STAGED_FIELD] -= 2_000
    later.create_workflow({"_key": "mine"}, {}, {})  # swept first, then created
    assert STAGED_FIELD not in fake.workflows["mine"]
    assert len([n for n in fake.collections if n.endswith("__mine")]) == 24


def test_sqlite_staged_creation_changes_nothing(tmp_path):
    """The protocol's default: SQLite creates and writes in its one transaction, as before;
    the workflow is visible at once, also inside the block."""
    s = open_store(f"sqlite:///{tmp_path}/t.db")
    with s.staged_creation():
        key = s.create_workflow({"name": "w"}, {}, {}).workflow["_key"]
        assert s.workflow_exists(key)
        with s.transaction(key):
            s.insert_many("jobs", key, [{"name": "a"}])
    assert s.count("jobs", key) == 1
    s.close()


# -- claims read an index in claim order (issue 12, item 2) ---------------------------------------


def claim_where():
    return {"status": In(list(model.CLAIMABLE_STATUSES)), "internal.num_cpus": Le(4),
            "internal.memory_bytes": Le(2**30), "internal.scheduler_config_id": In(["", "s"])}


def test_every_claim_sort_method_has_an_indexed_claim_order():
    """The engine's sort methods and the store's claim orders cannot drift apart."""
    from torc_graph.engine.claims import SORT_METHODS

    for method, order in SORT_METHODS.items():
        got = arango_mod.claim_order("jobs__1", claim_where(), order)
        assert (got is None) == (order is None), method
    assert arango_mod.claim_order("jobs__1", {"status": "ready"}, SORT_METHODS["gpus_runtime_memory"]) is None
    assert arango_mod.claim_order("files__1", claim_where(), SORT_METHODS["gpus_runtime_memory"]) is None


def test_claims_read_the_claim_order_index_without_a_sort(store, fake):
    """Defect 5 follow-up: the default claim order (three fields descending, ties in insertion
    order) mixed directions and made the server scan every claimable job. It now reads the
    computed claim-order attribute, one direction, so its sparse index serves the order and
    LIMIT; keyset pages resume below the last row's claim key. The hot-query lint (mixed
    sort directions) passes for it and fails for the form it replaced."""
    from torc_graph.engine.claims import SORT_METHODS

    order = SORT_METHODS["gpus_runtime_memory"]
    last = {"_key": "9", SEQ_FIELD: 9, "_torc_claim_grm": [0, 600, 2**20, -9]}
    fake.rows["LIMIT"] = [{"_key": "8", SEQ_FIELD: 8, "_torc_claim_grm": [1, 60, 1, -8]}, last]
    with store.transaction("12"):
        got = list(store.iter_find("jobs", "12", claim_where(), order_by=order, batch_size=2))
    assert [d["_key"] for d in got] == ["8", "9"] and "_torc_claim_grm" not in got[1]
    first, second = [e for e in fake.log if e[0] == "tx" and "RETURN d" in e[1]]
    for _, text, bind, _ in (first, second):
        assert lint(text, bind, hot=True) == [], text
        assert "FILTER d._torc_claim_grm != null AND" in text
        assert "SORT d._torc_claim_grm DESC LIMIT" in text
        assert "status" not in bind.values() and SEQ_FIELD not in text
    assert "FILTER d._torc_claim_grm < @" in second[1]
    assert [0, 600, 2**20, -9] in second[2].values()
    text, q = store._find_query("jobs__12", "12", claim_where(), (), None, limit=4)
    generic, gq = store._find_query("jobs__12", "12", {"status": "ready"}, (),
                                    [("internal.num_gpus", True)], limit=4)
    assert lint(generic, gq.bind_vars, hot=True) == [
        "sort: SORT mixes ASC and DESC (no index can serve it)"]


def test_new_jobs_collections_compute_the_claim_orders(store, fake):
    """The server maintains the claim-order attributes (computed values on insert, update and
    replace): claimable jobs get ``[f1, f2, f3, -_torc_seq]``, others nothing."""
    key = store.create_workflow({"name": "w"}, {}, {}).workflow["_key"]
    (options,) = [e[2] for e in fake.tx_events if e[0] == "collection" and e[1] == f"jobs__{key}"]
    computed = {c["name"]: c for c in options["computedValues"]}
    assert computed["_torc_claim_grm"]["expression"] == (
        "RETURN @doc.status IN ['ready', 'scheduled'] ? [@doc.internal.num_gpus, "
        "@doc.internal.runtime_seconds, @doc.internal.memory_bytes, -@doc._torc_seq] : null")
    assert all(c["computeOn"] == ["insert", "update", "replace"] and c["overwrite"]
               and c["keepNull"] is False for c in computed.values())
    assert "_torc_claim_grm" not in store.insert("jobs", key, {"_torc_claim_grm": [9]})
    sent = fake.queries("FOR d IN @v")[-1][2]  # a caller cannot write the hidden attribute
    assert all("_torc_claim_grm" not in d for v in sent.values() if isinstance(v, list) for d in v)


# -- bulk transactions: initialize_jobs at 10^6 in chunks, guarded (issue 12, item 1) --------------


def test_bulk_update_larger_than_the_cap_runs_in_guarded_chunks(fake):
    """A set-based update of 6,000 jobs x ~0.6 KB with a 1 MiB cap (10^6 jobs at 120 MiB,
    scaled): targets read once on the state before, then key batches, each fitting the room
    left with a 2x margin; several chunks; the guard is set inside the first chunk (before it
    commits) and cleared inside the last one."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    fake.rows["LENGTH(TO_STRING(d))}"] = [{"k": str(i), "b": 470} for i in range(6000)]
    with store.bulk_transaction("12"):
        n = store.update_many("jobs", "12", {"status": "blocked"}, {"status": "ready"})
    assert n == 6000 and sum(k for _, k in fake.batches) == 6000
    per_tx: dict = {}
    for tx_id, k in fake.batches:
        per_tx[tx_id] = per_tx.get(tx_id, 0) + k * (fake.doc_bytes + 128)
    assert len(per_tx) >= 4 and max(per_tx.values()) <= 2**20
    last = max(per_tx)  # every chunk renews the guard's lease before it commits
    assert fake.guards == [(t, "12", "initialize_jobs") for t in sorted(per_tx)[:-1]] + [
        (last, "12", None)]
    sets = [e for e in fake.log if f"{BULK_FIELD}: MERGE(" in e[1]]
    assert "DATE_NOW() + @" in sets[0][1] and f"AND w.{BULK_FIELD} != null" not in sets[0][1]
    written = [next(v for v in e[2].values() if isinstance(v, dict)) for e in sets]
    assert all(g == written[0] for g in written)  # one owner, one operation
    commits = [e[1] for e in fake.tx_events if e[0] == "commit"]
    assert commits == sorted(per_tx) and BULK_FIELD not in fake.workflows["12"]
    targets = [e for e in fake.log if e[1].endswith("LENGTH(TO_STRING(d))}")]
    assert len(targets) == 1 and targets[0][0] == "tx"
    assert_queries_sound(fake)


def test_a_bulk_update_that_fits_one_transaction_is_unchanged(fake):
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    fake.rows["LENGTH(TO_STRING(d))}"] = [{"k": str(i), "b": 470} for i in range(100)]
    with store.bulk_transaction("12"):
        store.update_many("jobs", "12", None, {"status": "ready"})
    assert [e[0] for e in fake.tx_events if e[0] in ("begin", "commit")] == ["begin", "commit"]
    assert fake.guards == [(1, "12", None)]  # the clear, conditional: writes only if set
    clear = next(e for e in fake.log if BULK_FIELD in e[1])
    assert f"AND w.{BULK_FIELD}.owner == @" in clear[1]  # writes only our own guard


@contextlib.contextmanager
def killed_in_chunk(fake, n=3):
    """The block's first key batch in its ``n``-th chunk fails (as if the process died
    there: the earlier chunks are committed); yields the chunk ids seen."""
    chunks = []
    real = fake.execute

    def execute(db_name, tx_id, query, bind_vars=None, **options):
        if " UPDATE d WITH " in query and "FILTER d._key IN @" in query:
            chunks.append(tx_id)
            if len(set(chunks)) == n:
                raise aql_error(errno.QUERY_KILLED, 410)
        return real(db_name, tx_id, query, bind_vars, **options)

    fake.execute = execute
    try:
        with pytest.raises(StoreUnavailable):
            yield chunks
    finally:
        fake.execute = real
    assert len(set(chunks)) == n


def _interrupted_bulk_update(store, fake, operation="initialize_jobs", **args):
    """A chunked bulk update of 6,000 jobs that dies in its 3rd chunk (as if killed): the
    first two chunks are committed, with the guard."""
    fake.rows["LENGTH(TO_STRING(d))}"] = [{"k": str(i), "b": 470} for i in range(6000)]
    with killed_in_chunk(fake), store.bulk_transaction("12", operation, **args):
        store.update_many("jobs", "12", None, {"status": "ready"})
    assert fake.tx_events[-1][0] == "abort"
    return fake.workflows["12"][BULK_FIELD]


def test_the_guard_holds_claims_off_during_its_lease(fake):
    """Killed mid-way (here: an error in a later chunk), the committed chunks stay with the
    guard: during its lease plain transactions that read the workflow (claims, completions)
    and other bulk runs get 503 ("retry in N s"); reads outside transactions work."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    guard = _interrupted_bulk_update(store, fake)
    assert guard["op"] == "initialize_jobs" and guard["args"] == {} and len(guard["owner"]) == 32
    assert 299_000 < guard["until"] - fake.now() <= 300_000  # bulk_lease, server clock
    assert store.workflow_space("12").workflow["_key"] == "12"  # reads outside: fine
    for op in ("transaction", "initialize_jobs", "reset_job_status"):
        with pytest.raises(StoreUnavailable, match=r"being changed by initialize_jobs .* retry in 300 s"):
            with (store.transaction("12") if op == "transaction" else store.bulk_transaction("12", op)):
                store.workflow_space("12")
    assert fake.workflows["12"][BULK_FIELD] == guard  # untouched


def test_a_run_whose_lease_ran_out_between_chunks_rolls_back_instead_of_interleaving(fake):
    """A run slower than its lease between two chunks, taken over meanwhile by another run:
    its next guard renewal (just before its chunk commits) finds the guard is not its own and
    rolls that chunk back with 503; it never clears the other run's guard."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    fake.rows["LENGTH(TO_STRING(d))}"] = [{"k": str(i), "b": 470} for i in range(6000)]
    real = fake.execute
    seen = []

    def thief(db_name, tx_id, query, bind_vars=None, **options):
        if " UPDATE d WITH " in query and "FILTER d._key IN @" in query:
            seen.append(tx_id)
            if len(set(seen)) == 2 and fake.workflows["12"][BULK_FIELD]["owner"] != "thief":
                fake.workflows["12"][BULK_FIELD]["owner"] = "thief"  # took over after the lease
        return real(db_name, tx_id, query, bind_vars, **options)

    fake.execute = thief
    with pytest.raises(StoreUnavailable, match="took longer than its lease"):
        with store.bulk_transaction("12"):
            store.update_many("jobs", "12", None, {"status": "ready"})
    fake.execute = real
    assert fake.tx_events[-1] == ("abort", 2)  # the second chunk: rolled back, not committed
    assert [e for e in fake.tx_events if e[0] == "commit"] == [("commit", 1)]
    assert fake.workflows["12"][BULK_FIELD]["owner"] == "thief"


def test_after_its_lease_the_same_operation_takes_the_guard_over_and_completes(fake):
    """After the lease, a run of the same operation and arguments takes the guard over (its
    own owner and lease, written before anything else), is told it resumes, and clears the
    guard when it completes; then plain transactions pass."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1&bulk_lease=60")
    dead = _interrupted_bulk_update(store, fake, "test_unregistered", failed_only=True)
    fake.clock += 61_000
    with pytest.raises(StoreUnavailable, match="being completed"):  # other arguments: not it
        with store.bulk_transaction("12", "test_unregistered", failed_only=False):
            pass
    n = len(fake.guards)
    with store.bulk_transaction("12", "test_unregistered", failed_only=True) as resumed:
        taken = fake.workflows["12"][BULK_FIELD]
        assert resumed is True and taken["owner"] != dead["owner"]
        assert taken["until"] > fake.now() + 59_000 and taken["args"] == {"failed_only": True}
        store.workflow_space("12")  # ours now
        store.update_many("jobs", "12", None, {"status": "ready"})
    assert BULK_FIELD not in fake.workflows["12"]
    assert fake.guards[n][2] == "test_unregistered" and fake.guards[-1][2] is None
    with store.transaction("12"):
        store.workflow_space("12")
    with store.bulk_transaction("12", "test_unregistered", failed_only=True) as resumed:
        assert resumed is False  # nothing to resume


def test_after_its_lease_any_other_caller_triggers_the_rerun_in_the_background(fake):
    """After the lease, a claim (a plain transaction) gets 503 while the store reruns the
    registered operation with the recorded arguments in a background thread, once per
    process; the rerun takes the guard over and clears it; then claims pass. No manual step."""
    import threading

    from torc_graph.store import base

    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1&bulk_lease=1")
    ran, release = [], threading.Event()

    def rerun(store_, workflow, **args):
        release.wait(5)
        with store_.bulk_transaction(workflow, "test_rerun", **args) as resumed:
            store_.workflow_space(workflow)  # as the engine's operations do: ours now
            ran.append((workflow, args, resumed))

    base.BULK_OPERATIONS["test_rerun"] = rerun
    try:
        _interrupted_bulk_update(store, fake, "test_rerun", level=3)
        fake.clock += 2_000
        for _ in range(2):  # the second caller does not start a second rerun
            with pytest.raises(StoreUnavailable, match="interrupted test_rerun is being completed"):
                with store.transaction("12"):
                    store.workflow_space("12")
        release.set()
        worker = next(t for t in threading.enumerate() if t.name == "complete-test_rerun-12")
        worker.join(5)
        assert ran == [("12", {"level": 3}, True)] and BULK_FIELD not in fake.workflows["12"]
        with store.transaction("12"):
            store.workflow_space("12")
    finally:
        del base.BULK_OPERATIONS["test_rerun"]


def test_a_background_rerun_of_a_guard_completed_meanwhile_does_nothing(fake, caplog):
    """The background rerun starts only its own takeover: if the caller's own call completed
    the interrupted run first, the rerun finds no guard and writes nothing (running a
    completed reset_job_status again would reset jobs that started since)."""
    import logging
    import threading

    from torc_graph.store import base

    caplog.set_level(logging.INFO)
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    ran, release = [], threading.Event()

    def rerun(store_, workflow, **args):
        if threading.current_thread().name.startswith("complete-"):
            release.wait(5)
        with store_.bulk_transaction(workflow, "test_again", **args) as resumed:
            ran.append((threading.current_thread().name, resumed))
            store_.update_many("jobs", workflow, None, {"status": "uninitialized"})

    base.BULK_OPERATIONS["test_again"] = rerun
    try:
        fake.workflows["12"] = {"_key": "12", BULK_FIELD: {
            "op": "test_again", "args": {}, "owner": "dead", "until": 0}}
        with pytest.raises(StoreUnavailable, match="being completed"):
            with store.transaction("12"):
                store.workflow_space("12")
        rerun(store, "12")  # the client calls it again itself: takes over, completes
        assert ran == [("MainThread", True)] and BULK_FIELD not in fake.workflows["12"]
        writes = len(fake.log)
        release.set()
        next(t for t in threading.enumerate() if t.name == "complete-test_again-12").join(5)
        assert ran == [("MainThread", True)]
        assert not [e for e in fake.log[writes:] if "UPDATE" in e[1]]
        assert "completed by another caller" in caplog.text
    finally:
        del base.BULK_OPERATIONS["test_again"]


def test_an_unregistered_operation_is_left_to_a_process_that_has_it(fake, caplog):
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    fake.workflows["12"] = {"_key": "12", BULK_FIELD: {"op": "nope", "args": {}, "owner": "x",
                                                       "until": 0}}
    with pytest.raises(StoreUnavailable, match="interrupted nope"):
        with store.transaction("12"):
            store.workflow_space("12")
    assert "no bulk operation 'nope' registered" in caplog.text


def test_the_engine_bulk_operations_are_registered_and_rerunnable():
    """Every bulk transaction the engine opens names a registered operation whose function
    takes the arguments it records (a rerun calls ``fn(store, workflow, **args)``)."""
    import inspect

    from torc_graph.engine import autotune, initialize, lifecycle  # noqa: F401  (registers)
    from torc_graph.store.base import BULK_OPERATIONS

    assert {"initialize_jobs", "reset_job_status", "process_changed_job_inputs",
            "auto_tune_resource_requirements",
            "process_auto_tune_resource_requirements_results"} <= set(BULK_OPERATIONS)
    for name, fn in BULK_OPERATIONS.items():
        params = list(inspect.signature(fn).parameters)
        assert params[:2] == ["store", "workflow"], name


@pytest.mark.slow
def test_chunks_per_call_scale_with_bytes_over_the_cap(monkeypatch, capsys):
    """The chunk figures of docs/arango-at-scale.md (``pytest -s -k chunks_per_call``): the
    real engine's creation and a bulk update of every job, at 1 MiB caps, for two sizes. Every
    chunk stays under the cap; chunks grow linearly with bytes / cap."""
    from torc_graph.engine import specifications

    rows = []
    for n in (6000, 12000):
        server = Server()
        db = server.database()
        client = create_autospec(ArangoClient)
        client.side_effect = lambda *a, **k: _client_for(db, server)
        monkeypatch.setattr(arango_connection, "ArangoClient", client)
        store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
        wf = specifications.create_from_specification(store, big_spec(n))["_key"]
        chunks = [e for e in server.tx_events
                  if e[0] == "begin" and e[1].get("exclusive") == [f"jobs__{wf}"]]
        total = sum(server.tx_written.values())
        assert max(server.tx_written.values()) <= 2**20
        rows.append(("create spec", n, total, len(chunks), len(server.log)))
        server.rows["LENGTH(TO_STRING(d))}"] = [{"k": str(i), "b": 470} for i in range(n)]
        log0 = len(server.log)
        with store.bulk_transaction(wf):
            store.update_many("jobs", wf, None, {"status": "ready"})
        per_tx: dict = {}
        for tx_id, k in server.batches:
            per_tx[tx_id] = per_tx.get(tx_id, 0) + k * (server.doc_bytes + 128)
        assert max(per_tx.values()) <= 2**20
        rows.append(("bulk update of every job", n, sum(per_tx.values()), len(per_tx),
                     len(server.log) - log0))
    with capsys.disabled():
        print(f"\n{'call (1 MiB cap)':26} {'N':>6} {'MiB':>6} {'chunks':>6} {'queries':>7}")
        for label, n, total, chunks, queries in rows:
            print(f"{label:26} {n:>6} {total / 2**20:>6.2f} {chunks:>6} {queries:>7}")
    for label in ("create spec", "bulk update of every job"):
        (a, b) = [r for r in rows if r[0] == label]
        assert a[3] >= 4 and 1.5 <= b[3] / a[3] <= 2.5  # linear in bytes / cap


def _client_for(db, server):
    client = spec(ArangoClient, "client")
    client.db.side_effect = lambda name, **_: db if name == "torc" else server.system
    server.system = spec(StandardDatabase, "system")
    return client


def test_reset_job_status_resumes_its_interrupted_run(fake):
    """reset_job_status may chunk too: its guard records its arguments, and the same call
    after the lease takes an interrupted run over and lifts the guard."""
    from torc_graph.engine import lifecycle

    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    fake.workflows["12"] = {"_key": "12", BULK_FIELD: {
        "op": "reset_job_status", "args": {"failed_only": False}, "owner": "dead", "until": 0}}
    lifecycle.reset_job_status(store, "12")
    assert BULK_FIELD not in fake.workflows["12"]
    assert fake.guards[-2][2] == "reset_job_status" and fake.guards[-1][2] is None


def test_a_creation_the_sweep_condemned_is_never_published(fake):
    """A creation slower than the grace period: the sweep condemns it (stamp 0) and removes
    it; the creator's publish then finds nothing to publish and fails (StoreError), and its
    compensation runs: nothing acknowledged is lost, nothing half-made is published."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    other = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?staging_grace=60")
    with pytest.raises(StoreError, match="staging grace"):
        with store.staged_creation():
            key = store.create_workflow({"name": "slow"}, {}, {}).workflow["_key"]
            fake.workflows[key][STAGED_FIELD] -= 61_000
            assert other.sweep() == [key]
    assert key not in fake.workflows
    publish = [e for e in fake.log if f"{STAGED_FIELD}: null" in e[1]]
    assert len(publish) == 1 and f"w.{STAGED_FIELD} > 0" in publish[0][1]
    condemn = next(e for e in fake.log if f"UPDATE w WITH {{{STAGED_FIELD}: 0}}" in e[1])
    assert f"w.{STAGED_FIELD} < @" in condemn[1]
    assert_queries_sound(fake)


# -- change detection and auto-tune in chunks (issue 12, item 1 of what was left) -----------------


class EngineRows:
    """Answers the real engine's reads of a workflow ``12`` of ``n`` jobs (chains of 100 over
    ``blocks``) on the fake, and records every chunked update's key batch in order.

    ``jobs``: the job documents (``SEQ_FIELD`` = key); a chunked update's target read answers
    its bound keys (``NOT IN``: the other jobs) at ``TARGET_BYTES`` each."""

    TARGET_BYTES = 470

    def __init__(self, fake, jobs, config=None, status=None, neighbors=None):
        self.fake, self.jobs = fake, jobs
        self.by_key = {j["_key"]: j for j in jobs}
        self.config, self.status, self.neighbors = config or {}, status or {}, neighbors or {}
        self.batches: list[tuple[int, list[str]]] = []  # (tx, keys) of each key batch
        self.real = fake.execute
        fake.execute = self.execute
        fake.adjacency = {f"jobs__12/{k}": [f"jobs__12/{k + 1}"]
                          for k in range(1, len(jobs)) if k % 100}

    def execute(self, db_name, tx_id, query, bind_vars=None, **options):
        bind = dict(bind_vars or {})
        lists = [(k, v) for k, v in bind.items() if isinstance(v, list)]
        rows = None
        if query.endswith("RETURN {k: d._key, b: LENGTH(TO_STRING(d))}"):  # targets
            name, keys = lists[0]
            if f"NOT IN @{name}" in query:
                keys = [k for k in self.by_key if k not in set(keys)]
            rows = [{"k": k, "b": self.TARGET_BYTES} for k in keys]
        elif "FILTER d._key IN @" in query and " UPDATE d WITH " in query:
            self.batches.append((tx_id, list(lists[0][1])))
        elif query.endswith("LIMIT 1 RETURN 1") and "workflows" in bind.values():
            rows = [1]  # workflow_exists
        elif "now: DATE_NOW()" in query:  # workflow_space
            rows = self.fake.respond(query, bind, tx_id)
            rows[0]["c"].update(self.config)
            rows[0]["s"].update(self.status)
        elif "RETURN {e: e, v: v}" in query:  # neighbors, by edge collection
            edge = next(v for k, v in bind.items() if k.startswith("@"))
            rows = self.neighbors.get(edge.partition("__")[0], [])
        elif query.startswith("FOR d IN") and query.endswith("RETURN d") and "jobs__12" in bind.values():
            rows = self._find(query, bind, lists)
        if rows is None:
            return self.real(db_name, tx_id, query, bind, **options)
        self.fake.log.append((db_name, query, bind, options))
        return self.fake._cursor(rows)

    def _find(self, query, bind, lists):
        jobs = self.jobs
        lists = [(k, v) for k, v in lists if v != ["blocked"]]  # auto-tune: none is blocked
        if lists and " NOT IN @" in query:
            return []  # "another job not disabled": none
        if lists:
            wanted = set(lists[0][1])
            jobs = [j for j in jobs if j["_key"] in wanted]
        status = next((v for v in bind.values() if v in ("done", "disabled", "ready")), None)
        if status == "done":
            jobs = [j for j in jobs if j["status"] == "done"]
        after = next((v for k, v in bind.items() if f"> @{k})" in query), 0)
        jobs = [j for j in jobs if j[SEQ_FIELD] > after]
        m = re.search(r"LIMIT @(\w+), @(\w+)", query)
        return jobs[bind[m[1]]:bind[m[1]] + bind[m[2]]] if m else jobs

    def per_chunk_bytes(self):
        """Bytes each stream transaction's key batches wrote, by the fake's NEW sizes."""
        out: dict[int, int] = {}
        for tx, keys in self.batches:
            out[tx] = out.get(tx, 0) + len(keys) * (self.fake.doc_bytes + 128)
        return out


def _jobs(n, **fields):
    return [{"_key": str(i), "_id": f"jobs__12/{i}", "_rev": "_r", SEQ_FIELD: i,
             "name": f"j{i}", "command": f"run {i}", **fields} for i in range(1, n + 1)]


def test_process_changed_job_inputs_runs_in_guarded_chunks_changed_jobs_last(fake):
    """The real engine's change detection over 6,000 done jobs (60 chains of 100, the chain
    heads changed) with a 1 MiB cap (the bytes/cap ratio of 10^6 jobs at 120 MiB): a bulk
    operation in several chunks, each under the cap; the downstream jobs are written first
    and the changed ones last (so an interrupted run leaves them ``done``, selected again by
    the rerun); the guard names the operation and is cleared at the end; every job reported."""
    from torc_graph.engine import initialize

    jobs = _jobs(6000, status="done")
    for j in jobs:
        stale = int(j["_key"]) % 100 == 1
        j["internal"] = {"hash": -1 if stale else initialize.input_hash(j, (), (), ())}
    rows = EngineRows(fake, jobs)
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    got = initialize.process_changed_job_inputs(store, "12")
    assert got == {"reinitialized_jobs": [j["_key"] for j in jobs]}
    per_chunk = rows.per_chunk_bytes()
    assert len(per_chunk) >= 4 and max(per_chunk.values()) <= 2**20
    written = [k for _, keys in rows.batches for k in keys]
    heads = [j["_key"] for j in jobs if int(j["_key"]) % 100 == 1]
    assert sorted(written, key=int) == [j["_key"] for j in jobs]
    assert written[-len(heads):] == heads  # the changed jobs last
    assert {g[2] for g in fake.guards[:-1]} == {"process_changed_job_inputs"}
    assert fake.guards[-1][2] is None and BULK_FIELD not in fake.workflows["12"]
    assert_queries_sound(fake)


def test_auto_tune_runs_in_guarded_chunks_and_a_rerun_resumes_it(fake):
    """Auto-tune enable over 6,000 jobs (one representative, 5,999 to disable) at a 1 MiB cap:
    chunks under the cap, guard named. Interrupted in its 3rd chunk, the committed chunks
    stay disabled; the same call after the lease is told it resumes and completes, where a
    fresh call would refuse the already disabled jobs (400) as before."""
    from torc_graph.engine import autotune
    from torc_graph.errors import BadRequest

    jobs = _jobs(6000, status="ready")
    stats = {"compute_node_resource_stats": {"process": True}}
    rows = EngineRows(fake, jobs, config=stats)
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1&bulk_lease=60")
    assert autotune.auto_tune_resource_requirements(store, "12")["message"]
    per_chunk = rows.per_chunk_bytes()
    assert len(per_chunk) >= 4 and max(per_chunk.values()) <= 2**20
    assert sorted((k for _, ks in rows.batches for k in ks), key=int) == [str(i) for i in range(2, 6001)]
    assert {g[2] for g in fake.guards[:-1]} == {"auto_tune_resource_requirements"}
    assert BULK_FIELD not in fake.workflows["12"]

    rows.batches.clear()
    with killed_in_chunk(fake):
        autotune.auto_tune_resource_requirements(store, "12")
    done = {k for _, ks in rows.batches for k in ks}  # the chunks committed before the kill
    assert done
    for k in done:
        rows.by_key[k]["status"] = "disabled"
    assert fake.workflows["12"][BULK_FIELD]["op"] == "auto_tune_resource_requirements"
    fake.clock += 61_000
    assert autotune.auto_tune_resource_requirements(store, "12")["message"]  # resumes
    assert BULK_FIELD not in fake.workflows["12"]
    with pytest.raises(BadRequest, match="already is"):  # not resuming: refused, as before
        autotune.auto_tune_resource_requirements(store, "12")


def test_processing_auto_tune_results_writes_the_jobs_first_in_chunks(fake):
    """Processing the auto-tune results over 6,000 jobs at a 1 MiB cap: the 5,999 other jobs
    go back to ``uninitialized`` in chunks under the cap, before the requirements, the event
    and the status (the last chunk); the guard names the operation."""
    from torc_graph.engine import autotune

    jobs = _jobs(6000, status="disabled")
    jobs[0]["status"] = "done"
    rr = {"_key": "r1", "_id": "resource_requirements__12/r1", SEQ_FIELD: 9, "name": "small"}
    edge = {"_from": "jobs__12/1", "_to": "x", SEQ_FIELD: 1}
    neighbors = {
        "requires": [{"e": edge, "v": rr}],
        "process_used": [{"e": edge, "v": {"run_id": 1, "max_cpu_percent": 250, "max_rss": 2**30}}],
        "returned": [{"e": edge, "v": {"run_id": 1, "exec_time_minutes": 3}}],
    }
    status = {"run_id": 1, "auto_tune_status": {"enabled": True, "job_keys": ["1"]}}
    rows = EngineRows(fake, jobs, status=status, neighbors=neighbors)
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1")
    n = len(fake.log)
    assert autotune.process_auto_tune_resource_requirements_results(store, "12")["message"]
    per_chunk = rows.per_chunk_bytes()
    assert len(per_chunk) >= 4 and max(per_chunk.values()) <= 2**20
    assert sorted((k for _, ks in rows.batches for k in ks), key=int) == [str(i) for i in range(2, 6001)]
    log = fake.log[n:]
    last_batch = max(i for i, e in enumerate(log) if "FILTER d._key IN @" in e[1] and " UPDATE d WITH " in e[1])
    updates = [i for i, e in enumerate(log) if e[1].startswith("LET cur = ")]  # rr, status
    events = [i for i, e in enumerate(log) if " INSERT d INTO " in e[1]]
    assert len(updates) == 2 and len(events) == 1 and min(updates + events) > last_batch
    assert {g[2] for g in fake.guards[:-1]} == {"process_auto_tune_resource_requirements_results"}


@pytest.mark.slow
def test_chunked_updates_of_a_million_jobs_stay_under_the_default_cap(fake, capsys):
    """The write phases of change detection (every job downstream, then the changed ones)
    and auto-tune (every job but one) at 10^6 jobs of ~0.5 KB with the default 120 MiB cap:
    each stream transaction's writes stay under the cap, every job is written once per
    update, the guard is renewed by every chunk and cleared at the end. ``pytest -s -k
    million`` prints the chunks and queries per call (docs/arango-at-scale.md)."""
    n = 10**6
    rows = EngineRows(fake, _jobs(0))
    rows.by_key = {str(i): None for i in range(1, n + 1)}
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc")
    cap = store.settings.max_transaction_bytes
    keys = [str(i) for i in range(1, n + 1)]
    figures = []
    for label, operation, updates in [
        ("process_changed_job_inputs writes", "process_changed_job_inputs",
         [(In(keys[100:]),), (In(keys[:100]),)]),
        ("auto-tune enable writes", "auto_tune_resource_requirements", [(NotIn(["1"]),)]),
    ]:
        log0, batches0 = len(fake.log), len(rows.batches)
        with store.bulk_transaction("12", operation):
            for (cond,) in updates:
                store.update_many("jobs", "12", {"_key": cond}, {"status": "uninitialized"})
        chunks = {tx for tx, _ in rows.batches[batches0:]}
        figures.append((label, len(chunks), len(rows.batches) - batches0, len(fake.log) - log0))
    per_chunk = rows.per_chunk_bytes()
    assert max(per_chunk.values()) <= cap and len(per_chunk) >= 8
    written = [k for _, ks in rows.batches for k in ks]
    assert len(written) == 2 * n - 1 and written[n - 100:n] == keys[:100]
    guards = [g[2] for g in fake.guards]
    assert guards.count(None) == 2 and len(guards) == len(per_chunk)  # n - 1 renewals + clear
    assert BULK_FIELD not in fake.workflows["12"]
    with capsys.disabled():
        print(f"\n{'10^6 jobs, 120 MiB cap':36} {'chunks':>6} {'batches':>7} {'queries':>7} "
              f"{'max MiB':>7}")
        for label, chunks, batches, queries in figures:
            print(f"{label:36} {chunks:>6} {batches:>7} {queries:>7} "
                  f"{max(per_chunk.values()) / 2**20:>7.1f}")
