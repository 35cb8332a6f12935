"""The graph store contract (torc_graph/store/base.py), run against every backend.

Only the protocol is used here, so the same tests hold for SQLite and ArangoDB.
"""

from __future__ import annotations

import json

import pytest

from torc_graph.errors import (
    InvalidInput,
    NotFound,
    RevisionConflict,
    TorcGraphError,
    UniqueConstraintViolated,
)
from torc_graph.store.base import Ge, GraphStore, Gt, HasEdge, In, Le, Lt, Ne, NotIn


def keys(docs):
    return [d["_key"] for d in docs]


def jobs(store, wf, n, **fields):
    return store.insert_many("jobs", wf, [{"name": f"j{i}", "n": i, **fields} for i in range(n)])


def edge(store, wf, name, a, b, **fields):
    return store.insert(name, wf, {"_from": a["_id"], "_to": b["_id"], **fields})


# -- workflows ---------------------------------------------------------------------------------


def test_create_workflow_returns_three_documents(store, wf):
    space = store.workflow_space(wf)
    assert space.workflow["_key"] == wf
    assert space.workflow["_id"] == f"workflows/{wf}"
    assert space.workflow["name"] == "test"
    assert space.config["_id"] == f"workflow_configs/{space.config['_key']}"
    assert space.status["_id"] == f"workflow_statuses/{space.status['_key']}"
    assert space.status["run_id"] == 0
    assert store.workflow_exists(wf)
    assert not store.workflow_exists("no_such_workflow")
    edges = store.neighbors(wf, "has_workflow_config", "out", [f"workflows/{wf}"])
    assert [n.vertex["_key"] for n in edges] == [space.config["_key"]]


def test_create_workflow_custom_key_and_duplicate(store, new_wf):
    key = new_wf(_key="customwf")
    assert key == "customwf"
    with pytest.raises(UniqueConstraintViolated):
        new_wf(_key="customwf")
    assert store.count("workflows", None, {"_key": "customwf"}) == 1


def test_create_workflow_records_its_owner_and_delete_removes_it(store, new_wf):
    owned = store.create_workflow({"_key": "ownedwf"}, {}, {"run_id": 0},
                                  owner={"token": "7", "name": "alice"}).workflow["_key"]
    assert store.get("workflow_owners", None, owned)["token"] == "7"
    with pytest.raises(UniqueConstraintViolated):  # a taken key changes no owner either
        store.create_workflow({"_key": "ownedwf"}, {}, {}, owner={"token": "8", "name": "eve"})
    assert store.get("workflow_owners", None, owned)["token"] == "7"
    unowned = new_wf()
    with pytest.raises(NotFound):
        store.get("workflow_owners", None, unowned)
    store.delete_workflow(owned)
    with pytest.raises(NotFound):
        store.get("workflow_owners", None, owned)


def test_create_workflow_replaces_a_stale_owner_record(store):
    # Older versions kept the owner record after a delete; a new workflow of that key must not
    # inherit it, with or without an owner of its own.
    store.insert("workflow_owners", None, {"_key": "reused", "token": "1", "name": "old"})
    store.create_workflow({"_key": "reused"}, {}, {"run_id": 0},
                          owner={"token": "2", "name": "new"})
    assert store.get("workflow_owners", None, "reused")["name"] == "new"
    store.delete_workflow("reused")
    store.insert("workflow_owners", None, {"_key": "reused", "token": "1", "name": "old"})
    store.create_workflow({"_key": "reused"}, {}, {"run_id": 0})
    with pytest.raises(NotFound):
        store.get("workflow_owners", None, "reused")
    store.delete_workflow("reused")


def test_workflow_space_missing(store):
    with pytest.raises(NotFound):
        store.workflow_space("nope")
    with pytest.raises(NotFound):
        store.delete_workflow("nope")


def test_delete_workflow_cascades(store, new_wf):
    wf, other = new_wf(), new_wf()
    space = store.workflow_space(wf)
    for w in (wf, other):
        a, b = jobs(store, w, 2)
        edge(store, w, "blocks", a, b)
        store.insert("events", w, {"x": 1})
    old = store.delete_workflow(wf)
    assert old["_key"] == wf
    assert not store.workflow_exists(wf)
    with pytest.raises(NotFound):
        store.get("workflow_configs", None, space.config["_key"])
    with pytest.raises(NotFound):
        store.get("workflow_statuses", None, space.status["_key"])
    assert store.count("has_workflow_config", None, {"_from": f"workflows/{wf}"}) == 0
    assert store.count("has_workflow_status", None, {"_from": f"workflows/{wf}"}) == 0
    # the other workflow is untouched
    assert store.count("jobs", other) == 2
    assert store.count("blocks", other) == 1
    assert store.count("events", other) == 1
    store.workflow_space(other)


# -- keys, ids, revs ---------------------------------------------------------------------------


def test_generated_keys_are_global_increasing_decimal(store, new_wf):
    w1, w2 = new_wf(), new_wf()
    seen = []
    seen += keys(jobs(store, w1, 3))
    seen.append(store.insert("files", w2, {"name": "f"})["_key"])
    seen += keys(store.insert_many("events", w1, [{}, {}]))
    seen.append(store.insert("jobs", w2, {"name": "x"})["_key"])
    assert all(k.isdigit() for k in seen)
    nums = [int(k) for k in seen]
    assert nums == sorted(nums) and len(set(nums)) == len(nums)
    assert int(w1) < int(w2) < nums[0]


def test_ids_and_system_fields(store, wf):
    doc = store.insert("jobs", wf, {"name": "a", "_id": "bogus/1", "_rev": "bogus"})
    assert doc["_id"] == f"jobs__{wf}/{doc['_key']}"
    assert doc["_rev"] and doc["_rev"] != "bogus" and "/" not in doc["_rev"]
    assert store.get("jobs", wf, doc["_key"]) == doc
    e = store.insert("blocks", wf, {"_from": doc["_id"], "_to": doc["_id"]})
    assert e["_id"] == f"blocks__{wf}/{e['_key']}"
    assert (e["_from"], e["_to"]) == (doc["_id"], doc["_id"])


def test_custom_keys(store, wf):
    a = store.insert("jobs", wf, {"_key": "abc-1", "name": "a"})
    assert a["_key"] == "abc-1" and a["_id"] == f"jobs__{wf}/abc-1"
    big = store.insert("files", wf, {"_key": "900000000", "name": "f"})
    nxt = store.insert("jobs", wf, {"name": "b"})
    assert int(nxt["_key"]) > int(big["_key"])
    many = store.insert_many("jobs", wf, [{"name": "c"}, {"_key": "900000500"}, {"name": "d"}])
    assert many[1]["_key"] == "900000500"
    assert int(many[0]["_key"]) < int(many[2]["_key"])
    assert int(many[2]["_key"]) > 900000500
    with pytest.raises(UniqueConstraintViolated):
        store.insert("jobs", wf, {"_key": "abc-1"})
    # the same key in another collection is fine
    store.insert("files", wf, {"_key": "abc-1"})


def test_insert_many_duplicate_is_atomic(store, wf):
    store.insert("jobs", wf, {"_key": "dup"})
    with pytest.raises(UniqueConstraintViolated):
        store.insert_many("jobs", wf, [{"_key": "fresh"}, {"_key": "dup"}])
    with pytest.raises(UniqueConstraintViolated):
        store.insert_many("jobs", wf, [{"_key": "x1"}, {"_key": "x1"}])
    assert keys(store.find("jobs", wf)) == ["dup"]


def test_insert_many_order_and_empty(store, wf):
    docs = jobs(store, wf, 50)
    assert [d["name"] for d in docs] == [f"j{i}" for i in range(50)]
    assert [int(k) for k in keys(docs)] == sorted(int(k) for k in keys(docs))
    assert store.find("jobs", wf) == docs
    assert store.insert_many("jobs", wf, []) == []


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "x" * 255, "ä"])
def test_invalid_keys(store, wf, bad):
    with pytest.raises(InvalidInput):
        store.insert("jobs", wf, {"_key": bad})
    with pytest.raises(InvalidInput):
        store.get("jobs", wf, bad)


def test_invalid_names_and_ids(store, wf):
    for call in (
        lambda: store.insert("nope", wf, {}),
        lambda: store.find("jobs; DROP TABLE x", wf),
        lambda: store.insert("jobs", None, {}),
        lambda: store.find("workflows", wf),
        lambda: store.insert("blocks", wf, {"_from": "jobs/1"}),
        lambda: store.insert("blocks", wf, {"_from": "not an id", "_to": "jobs/1"}),
        lambda: store.find("jobs", wf, {"a..b": 1}),
        lambda: store.find("jobs", wf, {"x') OR 1=1 --": 1}),
        lambda: store.find("jobs", wf, order_by=[("bad path", False)]),
        lambda: store.update_many("jobs", wf, None, {"a b": 1}),
        lambda: store.neighbors(wf, "nope", "out"),
    ):
        with pytest.raises(InvalidInput):
            call()


def test_missing_workflow_and_documents(store, wf):
    with pytest.raises(NotFound):
        store.insert("jobs", "999999999", {"name": "x"})
    with pytest.raises(NotFound):
        store.insert_many("jobs", "999999999", [{"name": "x"}])
    for call in (
        lambda: store.get("jobs", wf, "12345"),
        lambda: store.update("jobs", wf, "12345", {"a": 1}),
        lambda: store.delete("jobs", wf, "12345"),
    ):
        with pytest.raises(NotFound):
            call()


# -- update ------------------------------------------------------------------------------------


def test_update_merges_and_changes_rev(store, wf):
    doc = store.insert("jobs", wf, {"name": "a", "keep": 1, "nested": {"x": 1, "y": 2}})
    new = store.update("jobs", wf, doc["_key"],
                       {"name": "b", "nested": {"z": 3}, "nul": None, "_key": "zz", "_rev": "r"})
    assert new["_oldRev"] == doc["_rev"]
    assert new["_rev"] != doc["_rev"]
    assert new["_key"] == doc["_key"]
    stored = store.get("jobs", wf, doc["_key"])
    assert stored == {k: v for k, v in new.items() if k != "_oldRev"}
    assert stored["name"] == "b" and stored["keep"] == 1
    assert stored["nested"] == {"z": 3}
    assert "nul" in stored and stored["nul"] is None


def test_update_rev_conflict(store, wf):
    doc = store.insert("jobs", wf, {"name": "a"})
    ok = store.update("jobs", wf, doc["_key"], {"name": "b"}, rev=doc["_rev"])
    with pytest.raises(RevisionConflict):
        store.update("jobs", wf, doc["_key"], {"name": "c"}, rev=doc["_rev"])
    assert store.get("jobs", wf, doc["_key"])["name"] == "b"
    assert store.get("jobs", wf, doc["_key"])["_rev"] == ok["_rev"]


def test_update_edge_keeps_endpoints(store, wf):
    a, b = jobs(store, wf, 2)
    e = edge(store, wf, "blocks", a, b)
    new = store.update("blocks", wf, e["_key"], {"_from": "jobs/x", "data": 1})
    assert (new["_from"], new["_to"], new["data"]) == (a["_id"], b["_id"], 1)


def test_update_many_paths_and_revs(store, wf):
    docs = store.insert_many("jobs", wf, [
        {"status": "ready", "internal": {"num_cpus": 1, "hash": "h"}},
        {"status": "ready"},
        {"status": "ready", "internal": None},
        {"status": "blocked", "internal": {"num_cpus": 1}},
    ])
    n = store.update_many("jobs", wf, {"status": "ready"},
                          {"status": "scheduled", "internal.num_cpus": 4, "a.b.c": [1]})
    assert n == 3
    got = store.find("jobs", wf)
    assert [d["status"] for d in got] == ["scheduled", "scheduled", "scheduled", "blocked"]
    assert got[0]["internal"] == {"num_cpus": 4, "hash": "h"}
    assert got[1]["internal"] == {"num_cpus": 4}
    assert got[2]["internal"] == {"num_cpus": 4}
    assert got[3]["internal"] == {"num_cpus": 1}
    assert got[0]["a"] == {"b": {"c": [1]}}
    assert [g["_rev"] != d["_rev"] for g, d in zip(got, docs)] == [True, True, True, False]
    assert store.update_many("jobs", wf, {"status": "nope"}, {"x": 1}) == 0
    assert store.update_many("jobs", wf, None, {"obj": {"k": "v"}, "s": None}) == 4
    assert all(d["obj"] == {"k": "v"} and d["s"] is None for d in store.find("jobs", wf))


# -- filters -----------------------------------------------------------------------------------


@pytest.fixture
def typed(store, wf):
    """Documents whose field ``v`` has every JSON type (and one without ``v``)."""
    values = [1, "1", True, False, None, 2.5, "b", [1], {"a": 1}, 0, 3]
    docs = store.insert_many("files", wf, [{"i": i, "v": v} for i, v in enumerate(values)]
                             + [{"i": len(values)}])
    return wf, {d["i"]: d for d in docs}


def _is(store, wf, where):
    return [d["i"] for d in store.find("files", wf, where)]


def test_filter_equality_is_type_strict(store, typed):
    wf, _ = typed
    assert _is(store, wf, {"v": 1}) == [0]
    assert _is(store, wf, {"v": "1"}) == [1]
    assert _is(store, wf, {"v": True}) == [2]
    assert _is(store, wf, {"v": False}) == [3]
    assert _is(store, wf, {"v": 0}) == [9]
    assert _is(store, wf, {"v": [1]}) == [7]
    assert _is(store, wf, {"v": {"a": 1}}) == [8]
    # null matches a stored null and a missing field
    assert _is(store, wf, {"v": None}) == [4, 11]
    assert _is(store, wf, {"v": 1, "i": 0}) == [0]
    assert _is(store, wf, {"v": 1, "i": 1}) == []


def test_filter_ne_and_not_in_accept_missing(store, typed):
    wf, _ = typed
    assert _is(store, wf, {"v": Ne(1)}) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert _is(store, wf, {"v": Ne(None)}) == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert _is(store, wf, {"v": NotIn([1, "b", True])}) == [1, 3, 4, 5, 7, 8, 9, 10, 11]
    assert _is(store, wf, {"nope": Ne("x")}) == list(range(12))
    assert _is(store, wf, {"nope": NotIn(["x"])}) == list(range(12))


def test_filter_in(store, typed):
    wf, _ = typed
    assert _is(store, wf, {"v": In([1, "b"])}) == [0, 6]
    assert _is(store, wf, {"v": In(["1"])}) == [1]
    assert _is(store, wf, {"v": In([True, 2.5])}) == [2, 5]
    assert _is(store, wf, {"v": In([])}) == []
    assert _is(store, wf, {"i": In(range(0, 12, 3))}) == [0, 3, 6, 9]
    assert _is(store, wf, {"i": In(list(range(5000)))}) == list(range(12))


def test_filter_ordering(store, typed):
    wf, _ = typed
    assert _is(store, wf, {"i": Gt(9)}) == [10, 11]
    assert _is(store, wf, {"i": Ge(9)}) == [9, 10, 11]
    assert _is(store, wf, {"i": Lt(1)}) == [0]
    assert _is(store, wf, {"i": Le(1)}) == [0, 1]
    assert _is(store, wf, {"i": Gt(2.5)})[:2] == [3, 4]
    assert _is(store, wf, {"i": Gt(2), "v": 2.5}) == [5]
    # a missing (or null) field fails every ordering operator
    assert _is(store, wf, {"nope": Lt(10)}) == []
    assert _is(store, wf, {"nope": Gt(-10)}) == []
    assert 4 not in _is(store, wf, {"v": Lt(100)})
    assert 11 not in _is(store, wf, {"v": Lt(100)})


def test_filter_ordering_strings(store, wf):
    store.insert_many("files", wf, [{"i": i, "s": s} for i, s in enumerate(["a", "b", "c"])])
    assert _is(store, wf, {"s": Gt("a")}) == [1, 2]
    assert _is(store, wf, {"s": Le("b")}) == [0, 1]


def test_filter_nested_path_and_system_fields(store, wf):
    docs = store.insert_many("jobs", wf, [{"internal": {"num_cpus": c}} for c in (0, 2, 4)])
    assert keys(store.find("jobs", wf, {"internal.num_cpus": Gt(1)})) == keys(docs[1:])
    assert keys(store.find("jobs", wf, {"_key": docs[1]["_key"]})) == [docs[1]["_key"]]
    assert keys(store.find("jobs", wf, {"_id": docs[2]["_id"]})) == [docs[2]["_key"]]
    assert keys(store.find("jobs", wf, {"_key": In([docs[0]["_key"], "zz"])})) == [docs[0]["_key"]]
    assert keys(store.find("jobs", wf, {"_key": Ne(docs[0]["_key"])})) == keys(docs[1:])
    a, b, c = docs
    e1, e2 = edge(store, wf, "blocks", a, b), edge(store, wf, "blocks", b, c)
    assert keys(store.find("blocks", wf, {"_from": b["_id"]})) == [e2["_key"]]
    assert keys(store.find("blocks", wf, {"_to": In([b["_id"], c["_id"]])})) == keys([e1, e2])


def test_order_skip_limit_page(store, wf):
    docs = store.insert_many("jobs", wf, [{"p": p, "name": f"n{i}"}
                                          for i, p in enumerate([2, 1, 2, 1, 3])])
    asc = store.find("jobs", wf, order_by=[("p", False)])
    assert [d["name"] for d in asc] == ["n1", "n3", "n0", "n2", "n4"]
    desc = store.find("jobs", wf, order_by=[("p", True)])
    assert [d["name"] for d in desc] == ["n4", "n0", "n2", "n1", "n3"]
    two = store.find("jobs", wf, order_by=[("p", True), ("name", True)])
    assert [d["name"] for d in two] == ["n4", "n2", "n0", "n3", "n1"]
    assert keys(store.find("jobs", wf, skip=1, limit=2)) == keys(docs[1:3])
    assert store.find("jobs", wf, skip=10) == []
    assert store.find("jobs", wf, limit=0) == []
    page = store.page("jobs", wf, {"p": Ne(3)}, skip=1, limit=2)
    assert (keys(page.items), page.total) == (keys(docs[1:3]), 4)
    page = store.page("jobs", wf, limit=100)
    assert (len(page.items), page.total) == (5, 5)
    assert store.count("jobs", wf) == 5
    assert store.count("jobs", wf, {"p": 1}) == 2


def test_find_after_follows_insertion_order_not_key_order(store, wf):
    """The replayable feed's page: after a document, in insertion order, filtered, bounded;
    a caller-supplied key (smaller, or not decimal) is still in its insertion place."""
    a, b = store.insert_many("events", wf, [{"c": "x"}, {"c": "y"}])
    low = store.insert("events", wf, {"_key": "1", "c": "x"})
    word = store.insert("events", wf, {"_key": "zz", "c": "y"})
    last = store.insert("events", wf, {"c": "x"})
    everything = [a, b, low, word, last]
    assert keys(store.find_after("events", wf, None)) == keys(everything)
    assert keys(store.find_after("events", wf, b["_key"])) == keys([low, word, last])
    assert keys(store.find_after("events", wf, "zz")) == keys([last])
    assert keys(store.find_after("events", wf, "1", {"c": "x"})) == keys([last])
    assert keys(store.find_after("events", wf, None, limit=2)) == keys([a, b])
    assert store.find_after("events", wf, last["_key"]) == []
    with pytest.raises(NotFound):
        store.find_after("events", wf, "404")
    # The generic (scanning) version a backend inherits gives the same pages.
    generic = GraphStore.find_after
    assert keys(generic(store, "events", wf, b["_key"])) == keys([low, word, last])
    assert keys(generic(store, "events", wf, "1", {"c": "x"})) == keys([last])
    with pytest.raises(NotFound):
        generic(store, "events", wf, "404")


def test_iter_find_is_lazy_and_complete(store, wf):
    docs = jobs(store, wf, 25)
    assert keys(store.iter_find("jobs", wf, batch_size=4)) == keys(docs)
    assert keys(store.iter_find("jobs", wf, {"n": Ge(20)}, batch_size=2)) == keys(docs[20:])
    ordered = list(store.iter_find("jobs", wf, order_by=[("n", True)], batch_size=7))
    assert keys(ordered) == keys(docs[::-1])
    it = store.iter_find("jobs", wf, batch_size=3)
    assert next(it)["_key"] == docs[0]["_key"]


def _same_as_find(store, collection, wf, where=None, **kw):
    texts = store.find_json(collection, wf, where, **kw)
    assert all(isinstance(t, str) for t in texts)
    docs = [json.loads(t) for t in texts]
    assert docs == store.find(collection, wf, where, **kw)
    return docs


def test_find_json_is_find_as_text(store, wf):
    docs = store.insert_many("jobs", wf, [
        {"name": f"n{i}", "p": p, "internal": {"num_cpus": p, "tags": ["x", i]}, "u": "é✓",
         "f": 1.5, "none": None, "flag": i % 2 == 0}
        for i, p in enumerate([2, 1, 2, 1, 3])])
    assert _same_as_find(store, "jobs", wf) == docs
    _same_as_find(store, "jobs", wf, {"p": Ne(3)})
    _same_as_find(store, "jobs", wf, {"internal.num_cpus": Gt(1), "flag": True})
    _same_as_find(store, "jobs", wf, {"_key": In([docs[0]["_key"], docs[3]["_key"]])})
    ordered = _same_as_find(store, "jobs", wf, order_by=[("p", True), ("name", False)])
    assert [d["name"] for d in ordered] == ["n4", "n0", "n2", "n1", "n3"]
    page = _same_as_find(store, "jobs", wf, {"p": Ne(3)}, order_by=[("p", False)], skip=1,
                         limit=2)
    assert [d["name"] for d in page] == ["n3", "n0"]
    assert _same_as_find(store, "jobs", wf, skip=10) == []
    assert _same_as_find(store, "jobs", wf, limit=0) == []
    # set-based and single updates rewrite the stored text; the text still decodes to find's
    store.update_many("jobs", wf, {"p": 1}, {"internal.num_cpus": 8, "status": "ready"})
    store.update("jobs", wf, docs[4]["_key"], {"name": "renamed", "none": 0})
    _same_as_find(store, "jobs", wf)
    _same_as_find(store, "jobs", wf, {"status": "ready"}, order_by=[("internal.num_cpus", True)])
    _same_as_find(store, "workflows", None, {"_key": wf})


def test_find_json_edges(store, wf):
    a, b, c = store.insert_many("jobs", wf, [{"name": n} for n in "abc"])
    e1, e2 = edge(store, wf, "blocks", a, b, data={"k": 1}), edge(store, wf, "blocks", b, c)
    assert _same_as_find(store, "blocks", wf) == [e1, e2]
    _same_as_find(store, "blocks", wf, {"_to": c["_id"]})
    _same_as_find(store, "blocks", wf, order_by=[("_key", True)], limit=1)
    blocked = _same_as_find(store, "jobs", wf, edges=[HasEdge("blocks", "in")])
    assert names(blocked) == ["b", "c"]
    free = _same_as_find(store, "jobs", wf, edges=[HasEdge("blocks", "in", exists=False)])
    assert names(free) == ["a"]
    _same_as_find(store, "jobs", wf, {"name": Ne("c")},
                  edges=[HasEdge("blocks", "out", {"name": "c"})], skip=0, limit=5)


# -- HasEdge -----------------------------------------------------------------------------------


@pytest.fixture
def dag(store, wf):
    """a -> b -> c (blocks), a -> c; b needs file f; b -> dangling id."""
    a, b, c, d = store.insert_many("jobs", wf, [
        {"name": "a", "status": "done"}, {"name": "b", "status": "blocked"},
        {"name": "c", "status": "blocked"}, {"name": "d", "status": "ready"}])
    f = store.insert("files", wf, {"name": "f"})
    edges = [edge(store, wf, "blocks", a, b), edge(store, wf, "blocks", b, c),
             edge(store, wf, "blocks", a, c), edge(store, wf, "needs", b, f)]
    dangling = store.insert("blocks", wf, {"_from": d["_id"], "_to": f"jobs__{wf}/999999999"})
    return wf, {"a": a, "b": b, "c": c, "d": d, "f": f, "edges": edges, "dangling": dangling}


def names(docs):
    return [d["name"] for d in docs]


def test_has_edge(store, dag):
    wf, g = dag
    find = lambda *preds, where=None: names(store.find("jobs", wf, where, edges=list(preds)))  # noqa
    assert find(HasEdge("blocks", "in")) == ["b", "c"]
    assert find(HasEdge("blocks", "in", exists=False)) == ["a", "d"]
    assert find(HasEdge("blocks", "out")) == ["a", "b", "d"]
    # a where on other fields needs the other document: dangling edges do not match
    assert find(HasEdge("blocks", "out", {"status": Ne("zzz")})) == ["a", "b"]
    # blocked jobs whose blockers are all complete
    assert find(HasEdge("blocks", "in", {"status": Ne("done")}, exists=False),
                where={"status": "blocked"}) == ["b"]
    # where on _id only is evaluated on the endpoint id (works for dangling ids)
    assert find(HasEdge("blocks", "out", {"_id": f"jobs__{wf}/999999999"})) == ["d"]
    assert find(HasEdge("blocks", "out", {"_key": "999999999"})) == ["d"]
    assert find(HasEdge("blocks", "in", {"_id": In([g["a"]["_id"]])})) == ["b", "c"]
    assert find(HasEdge("needs", "out", {"name": "f"}), HasEdge("blocks", "in")) == ["b"]
    assert store.count("jobs", wf, edges=[HasEdge("blocks", "in", {"name": "b"})]) == 1
    assert store.update_many("jobs", wf, {"status": "blocked"}, {"status": "ready"},
                             edges=[HasEdge("blocks", "in", {"status": Ne("done")}, exists=False)]) == 1
    assert store.get("jobs", wf, g["b"]["_key"])["status"] == "ready"
    assert store.get("jobs", wf, g["c"]["_key"])["status"] == "blocked"


# -- delete ------------------------------------------------------------------------------------


def test_delete_cascades_to_incident_edges(store, dag):
    wf, g = dag
    old = store.delete("jobs", wf, g["b"]["_key"])
    assert old == g["b"]
    assert keys(store.find("blocks", wf)) == [g["edges"][2]["_key"], g["dangling"]["_key"]]
    assert store.count("needs", wf) == 0
    # deleting an edge does not touch vertices
    store.delete("blocks", wf, g["edges"][2]["_key"])
    assert store.count("jobs", wf) == 3


def test_delete_many_cascades(store, dag):
    wf, g = dag
    assert store.delete_many("jobs", wf, {"status": "blocked"}) == 2
    assert names(store.find("jobs", wf)) == ["a", "d"]
    assert keys(store.find("blocks", wf)) == [g["dangling"]["_key"]]
    assert store.count("needs", wf) == 0
    assert store.delete_many("blocks", wf) == 1
    assert store.count("jobs", wf) == 2
    assert store.delete_many("jobs", wf, edges=[HasEdge("blocks", "out")]) == 0
    assert store.delete_many("jobs", wf) == 2


# -- neighbors / join / descendants --------------------------------------------------------------


def test_neighbors(store, dag):
    wf, g = dag
    out = store.neighbors(wf, "blocks", "out", [g["a"]["_id"], g["d"]["_id"]])
    assert [(n.start_id, n.edge["_key"], n.vertex and n.vertex["name"]) for n in out] == [
        (g["a"]["_id"], g["edges"][0]["_key"], "b"),
        (g["a"]["_id"], g["edges"][2]["_key"], "c"),
        (g["d"]["_id"], g["dangling"]["_key"], None),
    ]
    inb = store.neighbors(wf, "blocks", "in", [g["c"]["_id"]])
    assert [(n.start_id, n.vertex["name"]) for n in inb] == [(g["c"]["_id"], "b"), (g["c"]["_id"], "a")]
    assert len(store.neighbors(wf, "blocks", "out")) == 4
    filtered = store.neighbors(wf, "blocks", "out", where={"status": "blocked"})
    assert [n.vertex["name"] for n in filtered] == ["b", "c", "c"]
    e = store.insert("blocks", wf,
                     {"_from": g["c"]["_id"], "_to": g["d"]["_id"], "data": {"run_id": 3}})
    got = store.neighbors(wf, "blocks", "out", edge_where={"data.run_id": 3})
    assert [n.edge["_key"] for n in got] == [e["_key"]]
    assert store.neighbors(wf, "blocks", "out", []) == []


def test_join(store, dag):
    wf, g = dag
    rows = store.join(wf, "jobs", "blocks", "out")
    assert [(r["from"]["name"], r["to"] and r["to"]["name"], r["edge"]["_key"]) for r in rows] == [
        ("a", "b", g["edges"][0]["_key"]), ("a", "c", g["edges"][2]["_key"]),
        ("b", "c", g["edges"][1]["_key"]), ("d", None, g["dangling"]["_key"]),
    ]
    rows = store.join(wf, "jobs", "blocks", "in", {"name": "c"})
    assert [(r["from"]["name"], r["to"]["name"]) for r in rows] == [("b", "c"), ("a", "c")]
    rows = store.join(wf, "jobs", "blocks", "out", skip=1, limit=1)
    assert [(r["from"]["name"], r["to"]["name"]) for r in rows] == [("b", "c")]
    rows = store.join(wf, "jobs", "needs", "out")
    assert [(r["from"]["name"], r["to"]["name"]) for r in rows] == [("b", "f")]


def _chain(store, wf, n, cycle=False):
    docs = jobs(store, wf, n, status="blocked")
    store.insert_many("blocks", wf,
                      [{"_from": a["_id"], "_to": b["_id"]} for a, b in zip(docs, docs[1:])])
    if cycle:
        store.insert("blocks", wf, {"_from": docs[-1]["_id"], "_to": docs[0]["_id"]})
    return docs


def test_descendants_bfs(store, wf):
    r, a, b, c, d, e = store.insert_many("jobs", wf, [{"name": x} for x in "rabcde"])
    for x, y in ((r, a), (r, b), (a, c), (b, d), (c, e), (a, d)):
        edge(store, wf, "blocks", x, y)
    got = names(store.descendants(wf, "blocks", [r["_id"]]))
    assert got[:2] == ["a", "b"] and set(got[2:4]) == {"c", "d"} and got[4:] == ["e"]
    assert names(store.descendants(wf, "blocks", [a["_id"]])) == ["c", "d", "e"]
    assert names(store.descendants(wf, "blocks", [r["_id"], a["_id"]])) == ["a", "b", "c", "d", "e"]
    assert len(store.descendants(wf, "blocks", [r["_id"]], skip=1, limit=2)) == 2
    assert store.descendants(wf, "blocks", [e["_id"]]) == []


def test_descendants_cycle(store, wf):
    docs = _chain(store, wf, 5, cycle=True)
    got = store.descendants(wf, "blocks", [docs[0]["_id"]])
    assert keys(got) == keys(docs[1:]) + [docs[0]["_key"]]


def test_update_descendants(store, wf):
    docs = _chain(store, wf, 6)
    store.update("jobs", wf, docs[2]["_key"], {"status": "done"})
    # expand through everything, update only matching
    got = store.update_descendants(wf, "blocks", {"status": "uninitialized"},
                                   start_ids=[docs[0]["_id"]], where={"status": Ne("done")})
    assert got == keys(docs[1:2] + docs[3:])
    assert [d["status"] for d in store.find("jobs", wf)] == [
        "blocked", "uninitialized", "done", "uninitialized", "uninitialized", "uninitialized"]


def test_update_descendants_through_matching_only(store, wf):
    docs = _chain(store, wf, 6)
    store.update("jobs", wf, docs[3]["_key"], {"status": "done"})
    got = store.update_descendants(wf, "blocks", {"status": "x"}, start_ids=[docs[0]["_id"]],
                                   where={"status": "blocked"}, through_matching_only=True)
    assert got == keys(docs[1:3])
    assert [d["status"] for d in store.find("jobs", wf)] == [
        "blocked", "x", "x", "done", "blocked", "blocked"]


def test_update_descendants_start_where_and_cycles(store, wf):
    docs = _chain(store, wf, 4, cycle=True)
    other = jobs(store, wf, 2, status="ready")
    edge(store, wf, "blocks", other[0], other[1])
    store.update("jobs", wf, docs[1]["_key"], {"status": "uninitialized"})
    got = store.update_descendants(wf, "blocks", {"internal.num_cpus": 7},
                                   start_where={"status": "uninitialized"})
    # the start vertex is included because the cycle reaches it again
    assert sorted(got, key=int) == sorted(keys(docs), key=int)
    assert all(d["internal"]["num_cpus"] == 7 for d in store.find("jobs", wf, {"status": Ne("ready")}))
    assert all("internal" not in d for d in store.find("jobs", wf, {"status": "ready"}))
    revs = {d["_key"]: d["_rev"] for d in store.find("jobs", wf)}
    assert store.update_descendants(wf, "blocks", {"a": 1}, start_ids=[other[1]["_id"]]) == []
    assert {d["_key"]: d["_rev"] for d in store.find("jobs", wf)} == revs


def test_derive_edges(store, wf):
    p1, p2, c1, c2 = jobs(store, wf, 4)
    f1, f2 = store.insert_many("files", wf, [{"name": "f1"}, {"name": "f2"}])
    for j, f in ((p1, f1), (p2, f2), (p1, f2)):
        edge(store, wf, "produces", j, f)
    for j, f in ((c1, f1), (c2, f1), (c2, f2)):
        edge(store, wf, "needs", j, f)
    existing = edge(store, wf, "blocks", p1, c1)
    n = store.derive_edges(wf, "blocks", "produces", "needs")
    assert n == 2  # p1->c2, p2->c2 (p1->c1 existed)
    pairs = [(e["_from"], e["_to"]) for e in store.find("blocks", wf)]
    assert pairs == [(p1["_id"], c1["_id"]), (p1["_id"], c2["_id"]), (p2["_id"], c2["_id"])]
    new = store.find("blocks", wf)[1:]
    assert all(e["_id"] == f"blocks__{wf}/{e['_key']}" and e["_rev"] for e in new)
    assert int(new[0]["_key"]) > int(existing["_key"])
    assert store.derive_edges(wf, "blocks", "produces", "needs") == 0
    assert store.count("blocks", wf) == 3
    later = store.insert("jobs", wf, {})
    assert int(later["_key"]) > max(int(e["_key"]) for e in new)


# -- transactions ------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_transaction_commit_and_rollback(store, wf):
    with store.transaction(wf):
        a = store.insert("jobs", wf, {"name": "a"})
        store.update("jobs", wf, a["_key"], {"status": "ready"})
        assert store.get("jobs", wf, a["_key"])["status"] == "ready"
        assert store.count("jobs", wf) == 1
    assert store.get("jobs", wf, a["_key"])["status"] == "ready"
    with pytest.raises(Boom):
        with store.transaction(wf):
            store.insert("jobs", wf, {"name": "b"})
            store.update_many("jobs", wf, None, {"status": "done"})
            store.delete("jobs", wf, a["_key"])
            raise Boom()
    assert names(store.find("jobs", wf)) == ["a"]
    assert store.get("jobs", wf, a["_key"])["status"] == "ready"


def test_bulk_transaction_within_one_transaction_is_all_or_nothing(store, wf):
    """A bulk transaction that fits one backend transaction is exactly a transaction."""
    with store.bulk_transaction(wf):
        a = store.insert("jobs", wf, {"name": "a"})
        store.update_many("jobs", wf, None, {"status": "ready"})
    assert store.get("jobs", wf, a["_key"])["status"] == "ready"
    with pytest.raises(Boom):
        with store.bulk_transaction(wf, "reset_job_status"):
            store.update_many("jobs", wf, None, {"status": "uninitialized"})
            store.insert("jobs", wf, {"name": "b"})
            raise Boom()
    assert names(store.find("jobs", wf)) == ["a"]
    assert store.get("jobs", wf, a["_key"])["status"] == "ready"
    with store.transaction(wf):  # no guard left behind
        store.workflow_space(wf)


def test_staged_creation_publishes_on_normal_exit(store):
    """Workflows created inside ``staged_creation`` exist (and are listed) after the block."""
    with store.staged_creation():
        key = store.create_workflow({"name": "staged"}, {}, {"run_id": 0}).workflow["_key"]
        with store.transaction(key):
            store.insert_many("jobs", key, [{"name": "a"}, {"name": "b"}])
    try:
        assert store.workflow_exists(key)
        assert key in [w["_key"] for w in store.find("workflows", None)]
        assert store.count("jobs", key) == 2
    finally:
        store.delete_workflow(key)


def test_discard_staged_leaves_a_published_workflow_alone(store):
    """``discard_staged`` removes only an unpublished creation: on a published workflow (or a
    missing key) it returns False and changes nothing."""
    key = store.create_workflow({"name": "published"}, {}, {"run_id": 0}).workflow["_key"]
    try:
        with store.transaction(key):
            store.insert("jobs", key, {"name": "a"})
        assert store.discard_staged(key) is False
        assert store.discard_staged("no_such_workflow") is False
        assert store.workflow_exists(key) and store.count("jobs", key) == 1
    finally:
        store.delete_workflow(key)


def test_transaction_nesting(store, wf):
    with pytest.raises(Boom):
        with store.transaction(wf):
            store.insert("jobs", wf, {"name": "outer"})
            with store.transaction(wf):
                store.insert("jobs", wf, {"name": "inner"})
            raise Boom()
    assert store.count("jobs", wf) == 0
    with pytest.raises(Boom):
        with store.transaction(wf):
            store.insert("jobs", wf, {"name": "outer"})
            with store.transaction(wf):
                store.insert("jobs", wf, {"name": "inner"})
                raise Boom()
    assert store.count("jobs", wf) == 0
    with store.transaction(wf):
        store.insert("jobs", wf, {"name": "outer"})
        with store.transaction(wf):
            store.insert("jobs", wf, {"name": "inner"})
        assert store.count("jobs", wf) == 2
    assert names(store.find("jobs", wf)) == ["outer", "inner"]


def test_transaction_error_inside_rolls_back(store, wf):
    store.insert("jobs", wf, {"_key": "taken"})
    with pytest.raises(UniqueConstraintViolated):
        with store.transaction(wf):
            store.insert("jobs", wf, {"name": "x"})
            store.insert("jobs", wf, {"_key": "taken"})
    assert keys(store.find("jobs", wf)) == ["taken"]


def test_errors_are_store_errors(store, wf):
    for call in (
        lambda: store.get("jobs", wf, "nope"),
        lambda: store.insert("jobs", wf, {"x": float("nan")}),
        lambda: store.insert("jobs", wf, {"x": object()}),
    ):
        with pytest.raises(TorcGraphError):
            call()


def test_info(store):
    info = store.info()
    assert info["backend"] in ("sqlite", "arangodb")


def test_iter_find_sees_transaction_state(store, wf):
    jobs(store, wf, 3)
    with store.transaction(wf):
        store.insert("jobs", wf, {"name": "inside"})
        store.update_many("jobs", wf, {"name": "j0"}, {"name": "renamed"})
        got = [d["name"] for d in store.iter_find("jobs", wf, batch_size=2)]
    assert got == ["renamed", "j1", "j2", "inside"]


def test_id_filters(store, new_wf):
    wf, other = new_wf(), new_wf()
    a, b = jobs(store, wf, 2)
    (x,) = jobs(store, other, 1)
    f = store.insert("files", wf, {"_key": a["_key"]})
    ids = [b["_id"], x["_id"], f["_id"], "junk"]
    assert keys(store.find("jobs", wf, {"_id": In(ids)})) == [b["_key"]]
    assert keys(store.find("jobs", wf, {"_id": NotIn([b["_id"], f["_id"]])})) == [a["_key"]]
    assert keys(store.find("jobs", wf, {"_id": Ne(x["_id"])})) == keys([a, b])
    assert store.find("jobs", wf, {"_id": f["_id"]}) == []
    assert keys(store.find("files", wf, {"_id": f["_id"]})) == [f["_key"]]
    assert store.workflow_exists("no/such") is False


def test_set_based_writes_see_a_snapshot(store, wf):
    docs = _chain(store, wf, 5)
    # each job whose blockers are all done becomes done: only the head, in one statement
    n = store.update_many("jobs", wf, {"status": "blocked"}, {"status": "done"},
                          edges=[HasEdge("blocks", "in", {"status": Ne("done")}, exists=False)])
    assert n == 1
    assert [d["status"] for d in store.find("jobs", wf)] == ["done"] + ["blocked"] * 4
    # deleting every job with an inbound edge: the cascade must not change what matches
    assert store.delete_many("jobs", wf, edges=[HasEdge("blocks", "in")]) == 4
    assert keys(store.find("jobs", wf)) == [docs[0]["_key"]]
    assert store.count("blocks", wf) == 0



def test_exists_is_type_strict_and_per_workflow(store, typed, new_wf):
    wf, _ = typed
    assert store.exists("files", wf)
    for where, want in [({"v": 1}, True), ({"v": "1"}, True), ({"v": In([9, "b"])}, True),
                        ({"v": "2.5"}, False), ({"v": In([])}, False), ({"v": 1.5}, False)]:
        assert store.exists("files", wf, where) is want, where
    assert store.exists("files", new_wf()) is False
