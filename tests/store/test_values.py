"""``GraphStore.values`` (the projection the dashboard aggregates over) and the dashboard's
global ``dashboard_sessions`` collection, on every backend (ArangoDB when configured)."""

from __future__ import annotations

import pytest

from torc_graph.errors import InvalidInput
from torc_graph.store.base import GraphStore, In, Lt


def test_values_are_the_fields_in_insertion_order(store, wf):
    docs = store.insert_many("jobs", wf, [{"name": f"j{i}", "status": "ready" if i % 2 else
                                          "done", "n": i, "internal": {"cpus": i}}
                                         for i in range(7)])
    store.insert("blocks", wf, {"_from": docs[0]["_id"], "_to": docs[1]["_id"]})
    rows = store.values("jobs", wf, ("_key", "name", "status", "internal.cpus", "missing"))
    assert rows == [(d["_key"], d["name"], d["status"], d["n"], None) for d in docs]
    assert [tuple(r) for r in rows] == \
        [tuple(r) for r in GraphStore.values(store, "jobs", wf, ("_key", "name", "status",
                                                                 "internal.cpus", "missing"))]
    assert store.values("jobs", wf, ("n",), {"status": "done", "n": In([0, 2, 5])}) == \
        [(0,), (2,)]
    assert store.values("blocks", wf, ("_from", "_to")) == [(docs[0]["_id"], docs[1]["_id"])]
    assert store.values("results", wf, ("job_key",)) == []
    with pytest.raises(InvalidInput):
        store.values("jobs", wf, ("bad path!",))
    with pytest.raises(InvalidInput):
        store.values("no_such_collection", wf, ("name",))


def test_dashboard_sessions_is_a_global_collection(store):
    key = "s" + "ab" * 32
    store.insert("dashboard_sessions", None, {"_key": key, "token": "1", "expires": 5.0})
    try:
        assert store.get("dashboard_sessions", None, key)["expires"] == 5.0
        assert store.delete_many("dashboard_sessions", None, {"expires": Lt(10.0)}) >= 1
    finally:
        store.delete_many("dashboard_sessions", None, {"_key": key})
