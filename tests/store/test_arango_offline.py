"""ArangoStore without a server: URL parsing, masking, error translation, and every method's
queries checked against a recording fake of python-arango's database object.

The fake does not evaluate AQL. What it pins: each query binds exactly the parameters it uses
(ArangoDB rejects unused and missing ones), brackets balance, no caller value is ever part of the
query text, queries run on the transaction database inside ``transaction()``, and the client is
created once per process.
"""

from __future__ import annotations

import os
import re

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
from torc_graph.store import arango as arango_mod
from torc_graph.store import open_store
from torc_graph.store.aql import SEQ_FIELD
from torc_graph.store.arango import ArangoStore, mask_url, parse_url, translate
from torc_graph.store.base import Ge, HasEdge, In, Lt

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


@pytest.mark.parametrize(
    "exc, expected",
    [
        (server_error(DocumentGetError, errno.DOCUMENT_NOT_FOUND, 404), NotFound),
        (server_error(AQLQueryExecuteError, errno.DOCUMENT_NOT_FOUND, 404), NotFound),
        (server_error(AQLQueryExecuteError, errno.DATA_SOURCE_NOT_FOUND, 404), NotFound),
        (server_error(DocumentUpdateError, errno.CONFLICT, 412), RevisionConflict),
        (server_error(AQLQueryExecuteError, errno.CONFLICT, 409), RevisionConflict),
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


# -- a recording fake of python-arango's database ----------------------------------------------


class FakeCursor:
    def __init__(self, rows):
        self._rows = list(rows)

    def __iter__(self):
        return iter(self._rows)

    def next(self):
        if not self._rows:
            raise StopIteration
        return self._rows.pop(0)

    def close(self, ignore_missing=False):
        return True


class FakeAQL:
    def __init__(self, db):
        self.db = db

    def execute(self, query, bind_vars=None, **kwargs):
        self.db.log.append((self.db.name, query, dict(bind_vars or {}), kwargs))
        root = self.db.parent or self.db
        return FakeCursor(root.respond(query, bind_vars or {}))


class FakeCollection:
    def __init__(self, db, name):
        self.db, self.name = db, name

    def add_persistent_index(self, fields, **kwargs):
        self.db.ddl.append(("index", self.name, tuple(fields)))


class FakeDB:
    """Answers queries with plausible rows, records everything."""

    def __init__(self, name="db", parent=None):
        self.name = name
        self.parent = parent
        self.log = parent.log if parent else []
        self.ddl = parent.ddl if parent else []
        self.aql = FakeAQL(self)
        self.collections: set[str] = parent.collections if parent else set()
        self.graphs: set[str] = parent.graphs if parent else set()
        self.tick = 100
        self.tx_events: list = parent.tx_events if parent else []
        self.fail_next: Exception | None = None

    # DDL
    def create_collection(self, name, edge=False, key_generator=None, user_keys=None):
        assert key_generator == "traditional" and user_keys is True
        self.ddl.append(("collection", name, edge))
        if name in self.collections:
            raise server_error(CollectionCreateError, errno.DUPLICATE_NAME, 409)
        self.collections.add(name)
        return FakeCollection(self, name)

    def create_graph(self, name, edge_definitions=None):
        self.ddl.append(("graph", name, edge_definitions))
        self.graphs.add(name)

    def delete_graph(self, name, ignore_missing=False, drop_collections=None):
        self.ddl.append(("drop graph", name, drop_collections))
        self.graphs.discard(name)

    def delete_collection(self, name, ignore_missing=False):
        self.ddl.append(("drop collection", name))
        self.collections.discard(name)

    def collection(self, name):
        return FakeCollection(self, name)

    def version(self):
        return "3.12.4"

    # transactions
    def begin_transaction(self, **kwargs):
        self.tx_events.append(("begin", kwargs))
        return FakeDB("tx", parent=self)

    def commit_transaction(self):
        self.tx_events.append(("commit",))

    def abort_transaction(self):
        self.tx_events.append(("abort",))

    # query answers
    def respond(self, query, bind):
        root = self.parent or self
        if root.fail_next is not None:
            exc, root.fail_next = root.fail_next, None
            raise exc
        if query.startswith("FOR i IN 1..") and "INSERT {}" in query:  # ticks
            n = next(v for k, v in bind.items() if k.startswith("v"))
            root.tick += n
            return [str(root.tick - n + i + 1) for i in range(n)]
        if query.startswith("RETURN LENGTH(FOR d IN") and "LIMIT 1 RETURN 1) > 0" in query:
            return [False]  # _exists
        if "RETURN LENGTH(" in query:
            return [0]
        if query.startswith("LET ks = (FOR i IN 1.."):  # insert_many
            docs = next(v for v in bind.values() if isinstance(v, list))
            coll = next(v for k, v in bind.items() if k.startswith("@") and v != arango_mod.TICKS)
            out = []
            for d in docs:
                root.tick += 1
                extra = {SEQ_FIELD: root.tick} if "_key" in d else {"_key": str(root.tick)}
                new = {**d, **extra}
                out.append({**new, "_id": f"{coll}/{new['_key']}", "_rev": "_r"})
            return out
        if query.startswith("LET cand"):  # derive_edges
            return [["501", "502"]]
        if query.startswith("LET w = FIRST((INSERT"):
            w, c, s = (bind[f"v{i}"] for i in (6, 7, 8))
            return [{"w": {**w, "_id": f"workflows/{w['_key']}", "_rev": "_r"},
                     "c": {**c, "_key": "1", "_id": "workflow_configs/1", "_rev": "_r"},
                     "s": {**s, "_key": "2", "_id": "workflow_statuses/2", "_rev": "_r"}}]
        if query.startswith("FOR w IN @@c1 FILTER w._key"):
            key = bind["v6"]
            return [{"w": {"_key": key, "_id": f"workflows/{key}", "_rev": "_r", SEQ_FIELD: 5},
                     "c": {"_key": "1"}, "s": {"_key": "2"}}]
        if query.startswith("UPDATE"):
            return [{"_key": "7", "_rev": "_new", "_oldRev": "_old", "status": "x", SEQ_FIELD: 3}]
        if "REMOVE" in query and "RETURN OLD" in query and "LET targets" in query:
            return [{"_key": "7", "_id": "jobs__12/7", SEQ_FIELD: 3}]
        if "REMOVE" in query and query.rstrip().endswith("RETURN OLD"):
            return [{"_key": "12", "_id": "workflows/12"}]
        if "RETURN {e, v}" in query:
            return [{"e": {"_from": "jobs__12/1", "_to": "files__12/2", SEQ_FIELD: 1},
                     "v": {"_key": "2", SEQ_FIELD: 2}}]
        if "RETURN {d, e, o:" in query:
            return [{"d": {"_key": "1"}, "e": {"_key": "3"}, "o": None}]
        return []


@pytest.fixture
def fake(monkeypatch):
    db = FakeDB()
    clients = []

    class FakeClient:
        def __init__(self, hosts, **kwargs):
            clients.append((os.getpid(), hosts, kwargs))

        def db(self, name, username=None, password=None):
            assert (name, username, password) == ("torc", "u", "pw")
            return db

        def close(self):
            pass

    monkeypatch.setattr(arango_mod, "ArangoClient", FakeClient)
    db.clients = clients
    return db


@pytest.fixture
def store(fake):
    return ArangoStore.from_url("arangodb://u:pw@h:8529/torc")


def placeholders(text):
    return {m.group(1) + m.group(2) for m in re.finditer(r"@(@?)([A-Za-z_][A-Za-z0-9_]*)", text)}


def balanced(text):
    text = re.sub(r"'[^']*'", "''", text)
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def assert_queries_sound(db, *values):
    assert db.log
    for _, text, bind, _ in db.log:
        assert placeholders(text) == set(bind), text
        assert balanced(text), text
        for v in values:
            assert v not in text
        for k, v in bind.items():
            if k.startswith("@"):
                assert re.fullmatch(r"[a-z_]+(__[A-Za-z0-9_\-:.@()+,=;$!*'%]+)?", v), v


def test_connects_once_per_process_and_ensures_global_storage(store, fake, monkeypatch):
    store.count("jobs", "12")
    store.count("jobs", "12")
    assert len(fake.clients) == 1
    assert {"workflows", "workflow_configs", "workflow_statuses", "has_workflow_config",
            "has_workflow_status", arango_mod.TICKS} <= fake.collections
    assert "workflow_graph" in fake.graphs
    # After a fork the child must build its own client.
    monkeypatch.setattr(arango_mod.os, "getpid", lambda: -1)
    store.count("jobs", "12")
    assert len(fake.clients) == 2
    # Ensuring global storage again is harmless (duplicates are ignored).
    assert ("collection", "workflows", False) in fake.ddl


def test_every_method_builds_sound_queries(store, fake):
    wf = "12"
    store.insert("jobs", wf, {"name": HOSTILE})
    store.insert_many("jobs", wf, [{"_key": "k1", "name": HOSTILE}, {"name": "b"}])
    store.insert("blocks", wf, {"_from": "jobs__12/1", "_to": "jobs__12/2"})
    store.update("jobs", wf, "7", {"status": HOSTILE, "_key": "no"}, rev="_r1")
    store.update_many("jobs", wf, {"status": HOSTILE}, {"internal.x": HOSTILE, "status": "ready"},
                      edges=[HasEdge("blocks", "in", {"status": In([HOSTILE])}, exists=False)])
    store.delete("jobs", wf, "7")
    store.delete_many("jobs", wf, {"name": Lt(HOSTILE)})
    store.delete_many("blocks", wf, {"_to": HOSTILE})
    store.find("jobs", wf, {"status": HOSTILE}, skip=5, limit=10, order_by=[("name", True)])
    store.find("jobs", wf, skip=3)
    list(store.iter_find("jobs", wf, {"name": HOSTILE}, batch_size=2))
    store.count("jobs", wf, {"a.b": Ge(HOSTILE)}, edges=[HasEdge("needs", "out")])
    store.page("jobs", wf, {"status": HOSTILE}, skip=1, limit=1)
    store.neighbors(wf, "needs", "out", ["jobs__12/1"], where={"name": HOSTILE},
                    edge_where={"data.run_id": 3})
    store.neighbors(wf, "blocks", "in")
    store.join(wf, "jobs", "needs", "out", {"name": HOSTILE}, skip=1, limit=2)
    store.descendants(wf, "blocks", ["jobs__12/1"], limit=5)
    store.update_descendants(wf, "blocks", {"status": HOSTILE}, start_ids=["jobs__12/1"],
                             where={"status": In(["blocked", HOSTILE])},
                             through_matching_only=True)
    store.update_descendants(wf, "blocks", {"status": "ready"}, start_where={"status": HOSTILE})
    store.derive_edges(wf, "blocks", "produces", "needs")
    store.workflow_exists("12")
    store.workflow_space("12")
    assert_queries_sound(fake, HOSTILE)


def test_insert_allocates_keys_in_the_same_query_then_drops_placeholders(store, fake):
    docs = store.insert_many("jobs", "12", [{"name": "a"}, {"name": "b"}])
    ins = [i for i, e in enumerate(fake.log) if e[1].startswith("LET ks")]
    assert len(ins) == 1
    _, text, bind, _ = fake.log[ins[0]]
    assert {arango_mod.TICKS, "jobs__12"} <= {v for v in bind.values() if isinstance(v, str)}
    assert text.index("INSERT {} INTO") < text.index("MERGE(d, {_key: ks[i]})")
    assert all(SEQ_FIELD not in d for d in next(v for v in bind.values() if isinstance(v, list)))
    _, cleanup, cbind, _ = fake.log[ins[0] + 1]
    assert cleanup.startswith("FOR k IN") and "REMOVE k IN" in cleanup
    assert [d["_key"] for d in docs] in cbind.values()
    assert not any(e[1].startswith("INSERT {_key:") for e in fake.log)  # no floor needed


def test_custom_keys_track_a_floor_keep_order_and_results_hide_it(store, fake):
    docs = store.insert_many("jobs", "12", [{"name": "a"}, {"_key": "900", "name": "b"},
                                            {"_key": "mine"}])
    floor = [e for e in fake.log if e[1].startswith("INSERT {_key:")]
    assert len(floor) == 1 and "900" in floor[0][2].values()
    ins = next(i for i, e in enumerate(fake.log) if e[1].startswith("LET ks"))
    assert fake.log.index(floor[0]) < ins
    assert [d["_key"] for d in docs][1:] == ["900", "mine"]
    assert all(SEQ_FIELD not in d for d in docs)
    dropped = next(v for v in fake.log[ins + 1][2].values() if isinstance(v, list))
    assert "900" in dropped and len(dropped) == 4  # three allocated ticks and the floor


def test_derive_edges_allocates_keys_and_counts(store, fake):
    assert store.derive_edges("12", "blocks", "produces", "needs") == 2
    _, text, _, _ = fake.log[-2]
    assert "INSERT MERGE(cand[i], {_key: ks[i]})" in text
    assert ["501", "502"] in fake.log[-1][2].values()


def test_insert_rejects_bad_input_before_any_query(store, fake):
    with pytest.raises(InvalidInput):
        store.insert("jobs", "12", {"_key": "a/b"})
    with pytest.raises(InvalidInput):
        store.insert("blocks", "12", {"_from": "jobs__12/1"})
    with pytest.raises(InvalidInput):
        store.insert("blocks", "12", {"_from": "jobs__12/1", "_to": HOSTILE})
    with pytest.raises(InvalidInput):
        store.insert("jobs", "1 2", {})
    with pytest.raises(InvalidInput):
        store.find("jobz", "12")
    with pytest.raises(InvalidInput):
        store.find("jobs", "12", order_by=[("a;b", False)])
    with pytest.raises(InvalidInput):
        store.descendants("12", "blocks", [HOSTILE])
    with pytest.raises(InvalidInput):
        store.update_descendants("12", "scheduled_bys", {"a": 1}, start_ids=[])
    assert not [e for e in fake.log if "INSERT d INTO" in e[1] or "SORT" in e[1]]


def test_update_checks_revision_and_merges_nothing(store, fake):
    doc = store.update("jobs", "12", "7", {"status": "x", "_rev": "ignored"}, rev="_r1")
    _, text, bind, _ = fake.log[-1]
    assert "ignoreRevs: false" in text and "mergeObjects: false" in text
    assert {"_key": "7", "_rev": "_r1"} in bind.values()
    assert {"status": "x"} in bind.values()
    assert doc["_oldRev"] == "_old" and SEQ_FIELD not in doc


def test_update_conflict_and_missing_translate(store, fake):
    store.count("jobs", "12")
    fake.fail_next = server_error(AQLQueryExecuteError, errno.CONFLICT, 409)
    with pytest.raises(RevisionConflict):
        store.update("jobs", "12", "7", {}, rev="_stale")
    fake.fail_next = server_error(AQLQueryExecuteError, errno.DOCUMENT_NOT_FOUND, 404)
    with pytest.raises(NotFound):
        store.update("jobs", "12", "7", {})


def test_vertex_delete_cascades_to_every_edge_collection(store, fake):
    store.delete("jobs", "12", "7")
    _, text, bind, _ = fake.log[-1]
    edges = {v for k, v in bind.items() if k.startswith("@") and not v.startswith("jobs")}
    assert edges == {f"{e}__12" for e in arango_mod.model.Edge}
    assert text.count("REMOVE") == 12
    store.delete_many("events", "12")
    assert fake.log[-1][1].count("REMOVE") == 1


def test_transaction_routes_queries_and_commits(store, fake):
    store.count("jobs", "12")  # connect first
    with store.transaction("12"):
        store.count("jobs", "12")
        with store.transaction("12"):  # nested: joins
            store.find("jobs", "12")
        assert list(store.iter_find("jobs", "12", batch_size=5)) == []
    begins = [e for e in fake.tx_events if e[0] == "begin"]
    assert len(begins) == 1
    kwargs = begins[0][1]
    assert kwargs["exclusive"] == ["jobs__12"]
    assert "jobs__12" not in kwargs["write"]
    assert len(kwargs["write"]) == 23 + 5 + 1
    assert fake.tx_events[-1] == ("commit",)
    inside = [e for e in fake.log[1:] if "SORT" in e[1] or "LENGTH" in e[1]]
    assert {e[0] for e in inside} == {"tx"}
    assert any("LIMIT @page_skip, @page_size" in e[1] for e in inside)
    store.count("jobs", "12")
    assert fake.log[-1][0] == "db"


def test_transaction_aborts_on_error(store, fake):
    store.count("jobs", "12")
    with pytest.raises(RuntimeError):
        with store.transaction("12"):
            store.count("jobs", "12")
            raise RuntimeError("boom")
    assert fake.tx_events[-1] == ("abort",)
    assert "commit" not in [e[0] for e in fake.tx_events]


def test_transaction_on_missing_workflow_is_not_found(store, fake):
    store.count("jobs", "12")

    def begin(**kwargs):
        raise server_error(TransactionInitError, errno.DATA_SOURCE_NOT_FOUND, 404)

    fake.begin_transaction = begin
    with pytest.raises(NotFound, match="key=99"):
        with store.transaction("99"):
            pass


def test_create_workflow_creates_layout_then_inserts(store, fake):
    space = store.create_workflow({"name": "w"}, {"a": 1}, {"run_id": 0})
    key = space.workflow["_key"]
    assert key.isdigit()
    names = {d[1] for d in fake.ddl if d[0] == "collection"}
    per_wf = {n for n in names if n.endswith(f"__{key}")}
    assert len(per_wf) == 24
    edge_colls = {d[1] for d in fake.ddl if d[0] == "collection" and d[2]}
    assert {f"{e}__{key}" for e in arango_mod.model.Edge} <= edge_colls
    (graph,) = [d for d in fake.ddl if d[0] == "graph" and d[1] == f"workflow_graph__{key}"]
    assert len(graph[2]) == 11
    assert ("index", f"jobs__{key}", ("status",)) in fake.ddl
    assert fake.tx_events[-1] == ("commit",)
    assert_queries_sound(fake)


def test_create_workflow_cleans_up_its_collections_on_failure(store, fake):
    store.count("jobs", "1")
    before = set(fake.collections)

    real_respond = fake.respond

    def respond(query, bind):
        if query.startswith("LET w = FIRST((INSERT"):
            raise server_error(AQLQueryExecuteError, errno.UNIQUE_CONSTRAINT_VIOLATED, 409)
        return real_respond(query, bind)

    fake.respond = respond
    with pytest.raises(UniqueConstraintViolated):
        store.create_workflow({"_key": "w1"}, {}, {})
    assert fake.collections == before
    assert ("abort",) in fake.tx_events


def test_create_workflow_does_not_drop_collections_it_did_not_create(store, fake):
    store.count("jobs", "1")
    fake.collections.add("jobs__w2")  # e.g. another process creating the same key
    with pytest.raises(UniqueConstraintViolated):
        store.create_workflow({"_key": "w2"}, {}, {})
    assert "jobs__w2" in fake.collections
    assert not any(n.endswith("__w2") and n != "jobs__w2" for n in fake.collections)


def test_delete_workflow_drops_graph_collections_then_documents(store, fake):
    old = store.delete_workflow("12")
    assert old == {"_key": "12", "_id": "workflows/12"}
    assert ("drop graph", "workflow_graph__12", True) in fake.ddl
    dropped = {d[1] for d in fake.ddl if d[0] == "drop collection"}
    assert {"events__12", "scheduled_compute_nodes__12"} <= dropped
    assert fake.tx_events[-1] == ("commit",)
    assert_queries_sound(fake)


def test_info(store, fake):
    assert store.info() == {"backend": "arangodb", "version": "3.12.4",
                            "url": "arangodb://u:***@h:8529/torc", "database": "torc"}


def test_non_json_values_are_invalid_input(store, fake):
    store.count("jobs", "12")
    fake.fail_next = TypeError("Object of type set is not JSON serializable")
    with pytest.raises(InvalidInput):
        store.insert("jobs", "12", {"a": {1, 2}})


def test_serializer_refuses_nan():
    with pytest.raises(ValueError):
        arango_mod._dumps({"x": float("nan")})
    assert arango_mod._dumps({"a": [1, "b"]}) == '{"a":[1,"b"]}'
