"""The REAL python-arango driver, run by ArangoStore against a stub HTTP client that answers
with ArangoDB-shaped bodies (python-arango accepts ``http_client=``).

What this proves offline that a mock of the driver cannot: the HTTP requests the driver really
sends for the store's calls (endpoints, the ``x-arango-trx-id`` header on every request inside
a stream transaction, the begin body with the exclusive jobs lock and the size cap, query
options), cursor continuation outside transactions, and the driver's parsing of ArangoDB error
bodies into the errors the store maps.
"""

from __future__ import annotations

import itertools
import json
import re
from urllib.parse import urlsplit

import pytest
import requests
from arango.http import HTTPClient
from arango.response import Response

from torc_graph.errors import NotFound, StoreError, StoreUnavailable
from torc_graph.store.aql import BULK_FIELD, SEQ_FIELD, STAGED_FIELD
from torc_graph.store.arango import ArangoStore, TransactionTooLarge
from torc_graph.store.arango_lint import lint

TRX = "x-arango-trx-id"


class StubArango(HTTPClient):
    """A few endpoints of an ArangoDB 3.12 single server, answered from memory.

    ``answer(query, bind_vars)`` gives the rows of an AQL query; results are split into
    batches of the request's ``batchSize`` (capped at ``max_batch``, like a server limit)."""

    def __init__(self, answer, max_batch: int = 10**9):
        self.answer = answer
        self.max_batch = max_batch
        self.requests: list[dict] = []
        self.collections: dict[str, int] = {}
        self.graphs: list[dict] = []
        self.indexes: dict[str, list[dict]] = {}
        self.cursors: dict[str, list] = {}
        self.errors: list[tuple[str, int, int]] = []  # (path fragment, http, errorNum)
        self._ids = itertools.count(1000)
        self.trx = 76  # stream transaction ids: 77, 78, ...

    def create_session(self, host):
        return requests.Session()  # never used for I/O

    def send_request(self, session, method, url, headers=None, params=None, data=None, auth=None):
        path = urlsplit(url).path
        body = json.loads(data) if isinstance(data, (str, bytes)) and data else None
        self.requests.append({"method": method, "path": path, "headers": dict(headers or {}),
                              "params": dict(params or {}), "body": body})
        for i, (fragment, http, num) in enumerate(self.errors):
            if fragment in path or (body and fragment in str(body.get("query", ""))):
                del self.errors[i]
                return self._reply(method, url, http, {"error": True, "errorNum": num,
                                                       "errorMessage": "server said no",
                                                       "code": http})
        status, reply = self.route(method, path, params or {}, body)
        return self._reply(method, url, status, reply)

    @staticmethod
    def _reply(method, url, status, reply):
        return Response(method, url, {"content-type": "application/json"}, status,
                        "OK" if status < 400 else "Error", json.dumps(reply))

    def route(self, method, path, params, body):
        path = path.split("/_db/torc", 1)[-1]
        if path == "/_api/collection" and method == "get":
            return 200, {"error": False, "code": 200, "result": [
                {"id": str(i), "name": n, "isSystem": False, "type": t, "status": 3,
                 "globallyUniqueId": n} for i, (n, t) in enumerate(self.collections.items())]}
        if path == "/_api/collection" and method == "post":
            self.collections[body["name"]] = body.get("type", 2)
            return 200, {"id": "1", "name": body["name"], "type": body.get("type", 2),
                         "status": 3, "isSystem": False, "globallyUniqueId": body["name"]}
        if path == "/_api/gharial" and method == "get":
            return 200, {"graphs": self.graphs}
        if path == "/_api/gharial" and method == "post":
            graph = {"_id": f"_graphs/{body['name']}", "_key": body["name"], "_rev": "_r",
                     "name": body["name"], "orphanCollections": [],
                     "edgeDefinitions": body.get("edgeDefinitions", [])}
            self.graphs.append(graph)
            return 202, {"graph": graph}
        if path == "/_api/index" and method == "get":
            name = params.get("collection")
            if name not in self.collections:
                return 404, {"error": True, "errorNum": 1203, "code": 404,
                             "errorMessage": "collection or view not found"}
            return 200, {"error": False, "code": 200, "indexes": self.indexes.get(name, []),
                         "identifiers": {}}
        if path == "/_api/index" and method == "post":
            self.indexes.setdefault(params.get("collection"), []).append(
                {"id": f"{params.get('collection')}/2", "type": "persistent",
                 "fields": body["fields"], "name": body.get("name")})
            return 201, {"id": f"{params.get('collection')}/1", "type": "persistent",
                         "fields": body["fields"], "name": body.get("name"), "isNewlyCreated": True,
                         "error": False, "code": 201}
        if path.startswith("/_api/gharial/") and method == "delete":
            name = path.rsplit("/", 1)[1]
            self.graphs = [g for g in self.graphs if g["name"] != name]
            return 202, {"error": False, "code": 202, "removed": True}
        if path.startswith("/_api/collection/") and path.endswith("/properties") and method == "put":
            name = path.split("/")[-2]
            return 200, {"error": False, "code": 200, "name": name, "id": "1", "type": 2,
                         "status": 3, "globallyUniqueId": name, "isSystem": False,
                         "waitForSync": False, "computedValues": body.get("computedValues")}
        if path.startswith("/_api/collection/") and method == "delete":
            self.collections.pop(path.rsplit("/", 1)[1], None)
            return 200, {"error": False, "code": 200, "id": "1"}
        if path == "/_admin/server/role":
            return 200, {"role": "SINGLE", "mode": "default"}
        if path == "/_api/version":
            return 200, {"server": "arango", "version": "3.12.4", "license": "community"}
        if path == "/_api/transaction/begin":
            self.trx += 1
            return 201, {"result": {"id": str(self.trx), "status": "running"}}
        if path.startswith("/_api/transaction/"):
            status = "committed" if method == "put" else "aborted"
            return 200, {"result": {"id": path.rsplit("/", 1)[1], "status": status}}
        if path == "/_api/cursor" and method == "post":
            rows = list(self.answer(body["query"], body.get("bindVars", {})))
            return self._batch(rows, min(body.get("batchSize") or 1000, self.max_batch))
        if path.startswith("/_api/cursor/") and method == "post":
            cursor_id = path.rsplit("/", 1)[1]
            rows, size = self.cursors.pop(cursor_id)
            return self._batch(rows, size, cursor_id)
        if path.startswith("/_api/cursor/") and method == "delete":
            return 202, {"id": path.rsplit("/", 1)[1]}
        return 404, {"error": True, "errorNum": 404, "errorMessage": f"unknown {path}", "code": 404}

    def _batch(self, rows, size, cursor_id=None):
        head, rest = rows[:size], rows[size:]
        reply = {"error": False, "code": 201, "result": head, "hasMore": bool(rest),
                 "cached": False, "extra": {"stats": {}, "warnings": []}}
        if rest:
            cursor_id = cursor_id or str(next(self._ids))
            self.cursors[cursor_id] = (rest, size)
            reply["id"] = cursor_id
        return 201, reply

    def cursor_requests(self):
        return [r for r in self.requests if r["path"].split("/_db/torc", 1)[-1].startswith("/_api/cursor")]


JOBS = [{"_key": str(i), "_id": f"jobs__12/{i}", "_rev": "_r", SEQ_FIELD: i, "name": f"j{i}"}
        for i in range(1, 2501)]


def answer(query, bind):
    if query.startswith("UPSERT"):
        return [bind["floor"] + bind["n"] + 500]
    if "COLLECT WITH COUNT" in query:
        return [len(JOBS)]
    if query.startswith("FOR d IN") and query.endswith("RETURN d"):
        after = next((v for k, v in bind.items() if f"> @{k})" in query), 0)
        rows = [j for j in JOBS if j[SEQ_FIELD] > after]
        m = re.search(r"LIMIT @(\w+), @(\w+)", query)
        return rows[bind[m[1]]:bind[m[1]] + bind[m[2]]] if m else rows
    if query.startswith("LET w = FIRST((INSERT"):
        w, c, st = (v for v in bind.values() if isinstance(v, dict))
        return [{"w": {**w, "_id": f"workflows/{w['_key']}", "_rev": "_r"},
                 "c": {**c, "_key": "c1", "_id": "workflow_configs/c1", "_rev": "_r"},
                 "s": {**st, "_key": "s1", "_id": "workflow_statuses/s1", "_rev": "_r"}}]
    if " INSERT d INTO " in query:
        docs = bind[next(k for k, v in bind.items() if isinstance(v, list))]
        return [{**d, "_id": f"jobs__12/{d['_key']}", "_rev": "_r"} for d in docs]
    if f"UPDATE w WITH {{{STAGED_FIELD}: null}}" in query:  # publish
        return [1] * len(next(v for v in bind.values() if isinstance(v, list)))
    return []


@pytest.fixture
def stub():
    return StubArango(answer)


@pytest.fixture
def store(stub):
    return ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=8",
                                http_client=stub)


def test_cursor_continuation_outside_transactions(store, stub):
    """Outside a transaction the driver continues the cursor: 2,500 rows in batches of 1,000."""
    docs = store.find("jobs", "12")
    assert [d["_key"] for d in docs] == [str(i) for i in range(1, 2501)]
    assert all(SEQ_FIELD not in d for d in docs)
    find = [r for r in stub.cursor_requests() if r["method"] == "post"][-3:]
    assert find[0]["body"]["batchSize"] == 1000
    assert [r["path"].rsplit("/", 1)[-1] for r in find[1:]] == [find[1]["path"].rsplit("/", 1)[-1]] * 2
    options = find[0]["body"]["options"]
    assert options["maxRuntime"] == 55.0 and options["maxTransactionSize"] == 8 * 2**20
    assert options["intermediateCommitCount"] >= 2**53


def test_streaming_iteration_closes_its_cursor(store, stub):
    it = store.iter_find("jobs", "12", batch_size=1000)
    assert next(it)["_key"] == "1"
    it.close()
    assert stub.requests[-1]["method"] == "delete"
    assert stub.requests[-1]["path"].split("/_api/cursor/")[1]


def test_every_request_of_a_transaction_carries_its_header(store, stub):
    """Inside transaction(): the begin body declares the exclusive jobs lock and the size cap,
    every query carries ``x-arango-trx-id``, nothing continues a cursor (the driver's
    continuation would drop the header), pages are keyset queries, and commit is a PUT."""
    stub.collections["jobs__12"] = 2  # a workflow created by torc: no torc_graph indexes yet
    with store.transaction("12"):
        store.count("jobs", "12")
        got = [d["_key"] for d in store.iter_find("jobs", "12", batch_size=1000)]
        store.insert_many("jobs", "12", [{"name": "a"}, {"name": "b"}])
    assert got == [str(i) for i in range(1, 2501)]
    begin = next(r for r in stub.requests if r["path"].endswith("/_api/transaction/begin"))
    assert begin["body"]["collections"]["exclusive"] == ["jobs__12"]
    assert begin["body"]["maxTransactionSize"] == 8 * 2**20
    assert begin["body"]["lockTimeout"] == 30
    assert [i["fields"] for i in stub.indexes["jobs__12"]] == [
        [SEQ_FIELD], ["status", SEQ_FIELD], ["_torc_claim_grm"], ["_torc_claim_gmr"]]
    props = next(r for r in stub.requests if r["path"].endswith("/jobs__12/properties"))
    assert [c["name"] for c in props["body"]["computedValues"]] == ["_torc_claim_grm",
                                                                   "_torc_claim_gmr"]
    start = stub.requests.index(begin)
    inside = [r for r in stub.requests[start + 1:] if "/_api/cursor" in r["path"]]
    queries = [r["body"]["query"] for r in inside if r["body"] and "UPSERT" not in r["body"]["query"]]
    assert len(queries) == 1 + 3 + 1  # count, three keyset pages, insert
    for r in inside:
        if "UPSERT" in r["body"]["query"]:
            assert TRX not in r["headers"]  # the key reservation runs outside (arango_keys)
        else:
            assert r["headers"][TRX] == "77" and r["path"].endswith("/_api/cursor")
    commit = stub.requests[-1]
    assert commit["method"] == "put" and commit["path"].endswith("/_api/transaction/77")


def test_create_workflow_writes_its_documents_in_a_global_transaction(store, stub):
    """Documents first (one query in a stream transaction over the global collections,
    carrying only in-transaction options; the workflow staged), then the DDL (collections with
    indexes, then the graph), then one standalone query publishing it."""
    space = store.create_workflow({"name": "w"}, {"a": 1}, {"run_id": 0})
    key = space.workflow["_key"]
    assert SEQ_FIELD not in space.workflow and key.isdigit()
    assert f"jobs__{key}" in stub.collections and len(
        [n for n in stub.collections if n.endswith(f"__{key}")]) == 24
    assert stub.graphs[-1]["name"] == f"workflow_graph__{key}"
    insert = next(r for r in stub.requests if r["body"] and "LET w = FIRST" in r["body"].get("query", ""))
    assert insert["headers"][TRX] == "77"
    assert "maxTransactionSize" not in insert["body"].get("options", {})
    wf_doc = next(v for v in insert["body"]["bindVars"].values()
                  if isinstance(v, dict) and v.get("_key") == key)
    assert isinstance(wf_doc[STAGED_FIELD], int)
    at = stub.requests.index(insert)
    commit, ddl = stub.requests[at + 1], stub.requests[at + 2:-1]
    assert commit["method"] == "put" and commit["path"].endswith("/_api/transaction/77")
    assert any(r["path"].endswith("/_api/gharial") for r in ddl)
    publish = stub.requests[-1]
    assert f"UPDATE w WITH {{{STAGED_FIELD}: null}}" in publish["body"]["query"]
    assert TRX not in publish["headers"] and [key] in publish["body"]["bindVars"].values()


def test_a_result_over_one_batch_inside_a_transaction_is_refused(stub):
    """If the server capped the batch, continuing would run outside the transaction: the
    store refuses instead of returning another snapshot's rows."""
    stub.max_batch = 1000
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc", http_client=stub)
    with pytest.raises(StoreError):
        with store.transaction("12"):
            store.find("jobs", "12")
    assert stub.requests[-1]["method"] == "delete"  # aborted
    assert stub.requests[-1]["path"].endswith("/_api/transaction/77")


@pytest.mark.parametrize("num, http, expected, text", [
    (32, 400, TransactionTooLarge, "8 MiB"),
    (1200, 409, StoreUnavailable, "write-write conflict"),
    (1655, 404, StoreUnavailable, "expired"),
    (1500, 410, StoreUnavailable, "time limit"),
])
def test_error_bodies_are_parsed_and_mapped(store, stub, num, http, expected, text):
    store.count("jobs", "12")
    stub.errors.append(("COLLECT WITH COUNT", http, num))
    with pytest.raises(expected, match=text):
        store.count("jobs", "12")


def test_unreadable_layout_with_existing_collections_needs_no_ddl(stub):
    """A prepared database: the store lists, finds everything, and creates nothing."""
    ArangoStore.from_url("arangodb://u:pw@h:8529/torc", http_client=stub).count("jobs", "12")
    before = len([r for r in stub.requests if r["method"] == "post" and "collection" in r["path"]])
    stub.requests.clear()
    ArangoStore.from_url("arangodb://u:pw@h:8529/torc", http_client=stub).count("jobs", "12")
    posts = [r for r in stub.requests if r["method"] == "post" and "/_api/cursor" not in r["path"]]
    assert before >= 6 and posts == []


def test_find_after_is_one_indexed_seek_through_the_real_driver(stub):
    """``find_after`` (the event stream's replay): one query that looks the anchor up by key
    and range-scans ``_torc_seq`` from it in index order with LIMIT (no generic scan from the
    first document); an unknown anchor is NotFound."""

    def seek(query, bind):
        if not query.startswith("LET a = "):
            return answer(query, bind)
        key = next((v for k, v in bind.items() if f"x._key == @{k}" in query), None)
        anchor = 0 if key is None else next((j[SEQ_FIELD] for j in JOBS if j["_key"] == key), None)
        limit = next(v for k, v in bind.items() if f"LIMIT @{k}" in query)
        docs = [j for j in JOBS if anchor is None or j[SEQ_FIELD] > anchor][:limit]
        return [{"found": anchor is not None, "docs": docs}]

    stub.answer = seek
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc", http_client=stub)
    got = store.find_after("events", "12", "2400", {"category": "job"}, limit=3)
    assert [d["_key"] for d in got] == ["2401", "2402", "2403"]
    assert all(SEQ_FIELD not in d for d in got)
    assert [d["_key"] for d in store.find_after("events", "12", None, limit=2)] == ["1", "2"]
    with pytest.raises(NotFound):
        store.find_after("events", "12", "nope")
    queries = [r["body"] for r in stub.cursor_requests() if r["body"]
               and r["body"]["query"].startswith("LET a = ")]
    assert len(queries) == 3  # one request per call
    text, bind = queries[0]["query"], queries[0]["bindVars"]
    assert f"FILTER d.{SEQ_FIELD} > a AND (d[@" in text and f"SORT d.{SEQ_FIELD} ASC LIMIT @" in text
    assert "2400" in bind.values() and "events__12" in bind.values()
    assert lint(text, bind) == []


def test_a_chunked_creation_commits_and_begins_again_through_the_real_driver(stub):
    """A staged creation over a 1 MiB cap through the real driver: each chunk is its own
    stream transaction (begin, queries with its id, commit), the begin bodies carry the same
    collections and cap, every insert is under the cap, and the publish runs last, outside."""
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1",
                                 http_client=stub)
    doc = {"name": "x" * 1000}
    with store.staged_creation():
        key = store.create_workflow({"name": "w"}, {}, {}).workflow["_key"]
        with store.transaction(key):
            for _ in range(6):
                store.insert_many("jobs", key, [doc] * 400)  # ~0.45 MiB each
    begins = [i for i, r in enumerate(stub.requests) if r["path"].endswith("/transaction/begin")]
    chunks = [stub.requests[i] for i in begins[1:]]  # the first: the global documents
    assert len(chunks) >= 3
    assert all(c["body"] == chunks[0]["body"] for c in chunks)
    assert chunks[0]["body"]["collections"]["exclusive"] == [f"jobs__{key}"]
    assert chunks[0]["body"]["maxTransactionSize"] == 2**20
    for n, start in enumerate(begins[1:]):
        trx = str(77 + 1 + n)
        end = begins[n + 2] if n + 2 < len(begins) else len(stub.requests)
        inside = stub.requests[start + 1:end]
        inserts = [r for r in inside if r["body"] and " INSERT d INTO " in r["body"].get("query", "")]
        assert all(r["headers"][TRX] == trx for r in inserts)
        assert sum(len(json.dumps(r["body"]["bindVars"])) for r in inserts) < 2**20
        assert any(r["method"] == "put" and r["path"].endswith(f"/_api/transaction/{trx}")
                   for r in inside)
    publish = stub.requests[-1]
    assert f"UPDATE w WITH {{{STAGED_FIELD}: null}}" in publish["body"]["query"]
    assert TRX not in publish["headers"]


def test_values_is_a_projection_through_the_real_driver(stub):
    """``values`` sends one projection query (``RETURN [d[@p]..]``: only the named fields,
    never the whole document), in sequence order, continued over batches by the driver; a
    missing field is None; the text passes the lint."""
    nested = [{**j, "internal": {"hash": f"h{j['_key']}"}} for j in JOBS]

    def project(query, bind):
        if " RETURN [" not in query:
            return answer(query, bind)
        columns = [re.findall(r"@(\w+)", col) for col in
                   re.findall(r"d((?:\[@\w+\])+)", query.split(" RETURN [", 1)[1])]
        flt = next((v for k, v in bind.items() if f"== @{k})" in query), None)

        def pick(doc, names):
            for n in names:
                doc = doc.get(bind[n]) if isinstance(doc, dict) else None
            return doc

        return [[pick(d, c) for c in columns] for d in nested if flt is None or d["name"] == flt]

    stub.answer = project
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc", http_client=stub)
    got = store.values("jobs", "12", ["_key", "internal.hash", "missing.field"])
    assert got[:2] == [("1", "h1", None), ("2", "h2", None)] and len(got) == 2500
    assert store.values("jobs", "12", ["internal.hash"], {"name": "j7"}) == [("h7",)]
    posts = [r for r in stub.cursor_requests() if r["method"] == "post" and r["body"]]
    assert len(posts) == 2 and len([r for r in stub.cursor_requests() if not r["body"]]) >= 2
    text, bind = posts[0]["body"]["query"], posts[0]["body"]["bindVars"]
    assert text.endswith("]") and "RETURN d" not in text and f"SORT d.{SEQ_FIELD}" in text
    assert {"internal", "hash", "missing", "field", "_key"} <= set(bind.values())
    assert lint(text, bind) == [] and lint(posts[1]["body"]["query"], posts[1]["body"]["bindVars"]) == []


def test_a_guarded_bulk_update_takes_over_and_renews_its_lease_through_the_real_driver(stub):
    """A bulk update of 6,000 jobs over a 1 MiB cap through the real driver, on a workflow an
    interrupted run of the same operation left guarded (lease over): the first query inside
    the first stream transaction reads the workflow and the server clock, the next writes the
    new guard (new owner, ``until: DATE_NOW() + lease``) in that transaction; every chunk
    writes the guard again just before its commit; the last one clears it before its commit."""
    dead = {"op": "reset_job_status", "args": {"failed_only": True}, "owner": "dead", "until": 5}

    def server(query, bind):
        if "now: DATE_NOW()" in query:  # workflow_space
            return [{"w": {"_key": "12", "_id": "workflows/12", "_rev": "_r", BULK_FIELD: dead},
                     "c": {"_key": "c1"}, "s": {"_key": "s1"}, "now": 10_000}]
        if query.endswith("RETURN {k: d._key, b: LENGTH(TO_STRING(d))}"):
            return [{"k": str(i), "b": 470} for i in range(6000)]
        if "FILTER d._key IN @" in query and " UPDATE d WITH " in query:
            return [{"k": k, "b": 540} for k in next(v for v in bind.values() if isinstance(v, list))]
        if f"UPDATE w WITH {{{BULK_FIELD}: " in query:
            return [1]
        return answer(query, bind)

    stub.answer = server
    store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc?max_transaction_mib=1&bulk_lease=60",
                                 http_client=stub)
    with store.bulk_transaction("12", "reset_job_status", failed_only=True) as resumed:
        assert resumed is True
        store.update_many("jobs", "12", None, {"status": "uninitialized"})
    begins = [i for i, r in enumerate(stub.requests) if r["path"].endswith("/transaction/begin")]
    assert len(begins) >= 3
    queries = [r for r in stub.requests[begins[0]:] if r["body"] and "query" in r["body"]]
    assert "now: DATE_NOW()" in queries[0]["body"]["query"]
    takeover = queries[1]["body"]
    guard = next(v for v in takeover["bindVars"].values() if isinstance(v, dict))
    assert guard["op"] == "reset_job_status" and guard["args"] == {"failed_only": True}
    assert guard["owner"] != "dead" and "DATE_NOW() + @" in takeover["query"]
    assert 60_000 in takeover["bindVars"].values() and lint(takeover["query"], takeover["bindVars"]) == []
    for n, start in enumerate(begins):
        trx = str(77 + n)
        end = begins[n + 1] if n + 1 < len(begins) else len(stub.requests)
        inside = stub.requests[start + 1:end]
        commit = next(i for i, r in enumerate(inside)
                      if r["method"] == "put" and r["path"].endswith(f"/_api/transaction/{trx}"))
        last_query = [r for r in inside[:commit] if r["body"] and "query" in r["body"]][-1]
        assert last_query["headers"][TRX] == trx
        assert f"UPDATE w WITH {{{BULK_FIELD}: " in last_query["body"]["query"]
        cleared = "null}" in last_query["body"]["query"]
        assert cleared == (n == len(begins) - 1)  # renewals, then the clear in the last chunk
        if not cleared:
            renewed = next(v for v in last_query["body"]["bindVars"].values() if isinstance(v, dict))
            assert renewed == guard


def test_values_moves_a_fraction_of_the_bytes_of_whole_documents(capsys):
    """Through the real driver, ``values(jobs, [status, internal.hash])`` over 5,000 job
    documents of ~0.45 KB: the projection receives under a tenth of the response bytes of
    the generic whole-document version, with the same rows. ``pytest -s -k fraction_of_the
    bytes`` prints the figures (docs/arango-at-scale.md)."""
    from torc_graph.store.base import GraphStore

    n = 5000
    jobs = [{"_key": str(i), "_id": f"jobs__12/{i}", "_rev": "_r", SEQ_FIELD: i, "name": f"job{i}",
             "command": f"python run.py --index {i} --out out/{i}.h5", "status": "ready",
             "internal": {"hash": i * 7919, "num_cpus": 1, "memory_bytes": 2**30,
                          "runtime_seconds": 600, "scheduler_config_id": ""},
             "resource_requirements": "small", "invocation_script": None,
             "supports_termination": False, "cancel_on_blocking_job_failure": True}
            for i in range(1, n + 1)]

    def server(query, bind):
        if " RETURN [" in query:
            columns = [re.findall(r"@(\w+)", col) for col in
                       re.findall(r"d((?:\[@\w+\])+)", query.split(" RETURN [", 1)[1])]
            return [[j[bind[c[0]]] if len(c) == 1 else j[bind[c[0]]][bind[c[1]]] for c in columns]
                    for j in jobs]
        if query.startswith("FOR d IN") and query.endswith("RETURN d"):
            return jobs
        return answer(query, bind)

    figures = {}
    for label, values in [("projection", ArangoStore.values), ("whole documents", GraphStore.values)]:
        stub = StubArango(server)
        replies = []
        reply = stub._reply
        stub._reply = lambda m, u, s, body, _r=reply: replies.append(len(json.dumps(body))) or _r(m, u, s, body)
        store = ArangoStore.from_url("arangodb://u:pw@h:8529/torc", http_client=stub)
        rows = values(store, "jobs", "12", ["status", "internal.hash"])
        figures[label] = (rows, len(replies), sum(replies))
    assert figures["projection"][0] == figures["whole documents"][0]
    assert figures["projection"][0][4] == ("ready", 5 * 7919)
    assert figures["projection"][2] * 10 < figures["whole documents"][2]
    with capsys.disabled():
        for label, (_, requests_, nbytes) in figures.items():
            print(f"\nvalues over {n} jobs, {label:16} {requests_:3} responses {nbytes:>9} bytes", end="")
        print()
