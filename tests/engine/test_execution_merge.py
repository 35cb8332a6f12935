"""Concurrent ``complete_jobs`` calls of one process merged into one call of the engine
(``GraphStore.transact_many`` within the SQLite group commit): the same effects as one after
the other, exactly once, and a failing request changes nothing of its own while the others
commit."""

from __future__ import annotations

import threading
import time

import pytest

from torc_graph.engine import execution
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store import open_store
from torc_graph.testing import sibling_module

helpers = sibling_module(__file__, "execution_helpers")
RES, add_node, claim, complete, item, make_jobs, statuses = (
    helpers.RES, helpers.add_node, helpers.claim, helpers.complete, helpers.item,
    helpers.make_jobs, helpers.statuses)


@pytest.fixture
def store(tmp_path):
    """SQLite only (the conftest's ``wf`` uses it): merging happens in its group commit."""
    s = open_store(f"sqlite:///{tmp_path}/t.db", synchronous="NORMAL")
    yield s
    s.close()


@pytest.fixture
def merged_calls(monkeypatch):
    """The request counts of the engine's merged completion calls."""
    sizes = []
    real = execution._complete_merged

    def counted(store, workflow, requests):
        sizes.append(len(requests))
        return real(store, workflow, requests)

    monkeypatch.setattr(execution, "_complete_merged", counted)
    return sizes


def _together(store, calls):
    """Run ``calls`` on threads queued behind one group-commit leader, so that the next
    leader takes them all; returns each call's result or exception, in order."""
    release, leading = threading.Event(), threading.Event()

    def hold():
        leading.set()
        release.wait(30)

    holder = threading.Thread(target=lambda: store._db.group(hold))
    holder.start()
    assert leading.wait(30)
    out = [None] * len(calls)

    def run(i):
        try:
            out[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - compared by the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(store._db._group_queue) < len(calls) and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for t in threads + [holder]:
        t.join(30)
    return out


def test_merged_requests_complete_and_claim_exactly_once(store, wf, merged_calls):
    names = {f"j{i}": [] for i in range(12)}
    names.update({f"after{i}": [f"j{i}"] for i in range(12)})
    make_jobs(store, wf, names)
    nodes = [add_node(store, wf, f"h{i}") for i in range(3)]
    held = [claim(store, wf, n, limit=4)["jobs"] for n in nodes]
    ghost = {"_key": "999999"}
    calls = [
        (lambda n=n, jobs=jobs: complete(store, wf, n, [item(j) for j in jobs],
                                         claim={"resources": RES, "limit": 4}))
        for n, jobs in zip(nodes, held)
    ] + [lambda: complete(store, wf, ghost, [item(held[0][0])])]
    results = _together(store, calls)
    assert merged_calls == [4]
    assert isinstance(results[3], NotFound)
    claimed = []
    for resp, jobs in zip(results[:3], held):
        assert [i["outcome"] for i in resp["items"]] == ["completed"] * 4
        assert [i["job_key"] for i in resp["items"]] == [j["_key"] for j in jobs]
        claimed += [j["name"] for j in resp["claimed"]["jobs"]]
    # Each successor unblocked by the merged completions was handed to one node only.
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 12
    assert all(n.startswith("after") for n in claimed)
    st = statuses(store, wf)
    assert sum(s == "done" for s in st.values()) == 12
    assert sum(s == "submitted" for s in st.values()) == 12
    assert len(store.find("results", wf)) == len(store.find("returned", wf)) == 12
    events = [e["type"] for e in store.find("events", wf)]
    assert events.count("complete") == 12 and events.count("start") == 24


def test_the_same_completion_in_two_merged_requests_is_recorded_once(store, wf, merged_calls):
    make_jobs(store, wf, {"a": [], "b": ["a"]})
    node = add_node(store, wf)
    [job] = claim(store, wf, node)["jobs"]
    first, second = _together(store, [lambda: complete(store, wf, node, [item(job)])] * 2)
    assert merged_calls == [2]
    assert [first["items"][0]["outcome"], second["items"][0]["outcome"]] == [
        "completed", "duplicate"]
    assert len(store.find("results", wf)) == 1
    assert statuses(store, wf) == {"a": "done", "b": "ready"}


def test_a_bad_request_in_a_merged_call_writes_nothing_of_its_own(store, wf, merged_calls):
    make_jobs(store, wf, {"a": [], "b": [], "c": []},
              config={"failure_handlers": [{"name": "h", "rules": [
                  {"exit_codes": [3], "max_retries": 3}]}]})
    n1, n2 = add_node(store, wf, "h1"), add_node(store, wf, "h2")
    [a] = claim(store, wf, n1, limit=1)["jobs"]
    held = claim(store, wf, n2, limit=2)["jobs"]
    bad_stats = {"max_rss_bytes": "lots"}
    retried = {**item(held[0], rc=3)}
    store.update("jobs", wf, held[0]["_key"], {"failure_handler": "h"})
    broken = {**item(held[1]), "process_stats": bad_stats}
    results = _together(store, [
        lambda: complete(store, wf, n1, [item(a)]),
        # A retried item (a requeue written while staging) then an invalid one: all undone.
        lambda: complete(store, wf, n2, [retried, broken]),
    ])
    assert merged_calls == [2]
    assert results[0]["items"][0]["outcome"] == "completed"
    assert isinstance(results[1], InvalidInput)
    st = {j["_key"]: j for j in store.find("jobs", wf)}
    assert st[a["_key"]]["status"] == "done"
    for job in held:
        assert st[job["_key"]]["status"] == "submitted"
        assert st[job["_key"]]["execution"]["attempt_id"] == 1
    assert [r["job_key"] for r in store.find("results", wf)] == [a["_key"]]
    assert store.find("job_process_stats", wf) == []
