"""``GraphStore.transact`` and ``rewrite_each``: the contract on every backend, and SQLite's group
commit (concurrent writers of one process share one transaction, each in its own savepoint)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest

from torc_graph.errors import InvalidInput, NotFound, StoreUnavailable
from torc_graph.store import sqlite_connection
from torc_graph.store.sqlite import SQLiteStore


def names(store, wf):
    return sorted(d["name"] for d in store.find("jobs", wf))


# -- contract (every backend) ------------------------------------------------------------------


def test_transact_commits_the_result_or_nothing(store, wf):
    assert store.transact(wf, lambda: store.insert("jobs", wf, {"name": "a"})["name"]) == "a"

    def fail():
        store.insert("jobs", wf, {"name": "b"})
        raise InvalidInput("no")

    with pytest.raises(InvalidInput):
        store.transact(wf, fail)
    assert names(store, wf) == ["a"]
    # Inside an open transaction it joins it: the outer rollback undoes it.
    with pytest.raises(InvalidInput), store.transaction(wf):
        store.transact(wf, lambda: store.insert("jobs", wf, {"name": "c"}))
        raise InvalidInput("outer")
    assert names(store, wf) == ["a"]


def test_rewrite_each_writes_back_changed_documents_in_order(store, wf):
    a, b = store.insert_many("jobs", wf, [{"name": "a", "status": "ready", "n": 1},
                                          {"name": "b", "status": "ready", "n": 2}])
    with store.transaction(wf):
        a, b = store.get("jobs", wf, a["_key"]), store.get("jobs", wf, b["_key"])
        out = store.rewrite_each("jobs", wf, [{**b, "status": "done", "x": {"y": 1}},
                                              {**a, "n": 5, "_id": "ignored"}])
    assert [d["_key"] for d in out] == [b["_key"], a["_key"]]
    assert out[0]["status"] == "done" and out[0]["x"] == {"y": 1} and out[0]["n"] == 2
    assert out[1]["n"] == 5 and out[1]["status"] == "ready" and out[1]["_id"] == a["_id"]
    assert out[0]["_oldRev"] == b["_rev"] and out[0]["_rev"] != b["_rev"]
    assert store.get("jobs", wf, b["_key"]) == {k: v for k, v in out[0].items() if k != "_oldRev"}
    assert keys_of(store.find("jobs", wf, {"status": "done"})) == [b["_key"]]
    assert store.rewrite_each("jobs", wf, []) == []


def keys_of(docs):
    return [d["_key"] for d in docs]


def test_rewrite_each_with_a_missing_or_repeated_key_writes_nothing(store, wf):
    a = store.insert("jobs", wf, {"name": "a", "n": 1})
    with pytest.raises(NotFound):
        store.rewrite_each("jobs", wf, [{**a, "n": 2}, {**a, "_key": "999999", "n": 3}])
    with pytest.raises(InvalidInput):
        store.rewrite_each("jobs", wf, [{**a, "n": 2}, {**a, "n": 3}])
    with pytest.raises(InvalidInput):
        store.rewrite_each("jobs", wf, [{**a, "_key": "bad key"}])
    assert store.get("jobs", wf, a["_key"]) == a


# -- SQLite group commit -----------------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path):
    s = SQLiteStore.from_url(f"sqlite:///{tmp_path}/g.db")
    yield s
    s.close()


@pytest.fixture
def sqlite_wf(sqlite_store):
    return sqlite_store.create_workflow({"name": "w"}, {}, {"run_id": 0}).workflow["_key"]


def _group_behind_a_blocked_leader(store, wf, fns):
    """Run ``fns`` concurrently, queued while a first caller holds the write lock; return
    each one's (result or exception, thread that ran it)."""
    entered, release = threading.Event(), threading.Event()

    def leader():
        entered.set()
        assert release.wait(10)
        return store.insert("jobs", wf, {"name": "leader"})

    out: dict[int, tuple] = {}

    def call(i, fn):
        def run():
            return fn(), threading.get_ident()
        try:
            out[i] = store.transact(wf, run)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out[i] = (exc, None)

    lead = threading.Thread(target=call, args=(-1, leader))
    lead.start()
    assert entered.wait(10)
    threads = [threading.Thread(target=call, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(store._db._group_queue) < len(fns) and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    for t in [lead, *threads]:
        t.join(10)
    return [out[i] for i in range(len(fns))]


def test_concurrent_writers_share_one_transaction(sqlite_store, sqlite_wf):
    s, wf = sqlite_store, sqlite_wf
    results = _group_behind_a_blocked_leader(
        s, wf, [lambda i=i: s.insert("jobs", wf, {"name": f"w{i}"})["name"] for i in range(6)])
    assert sorted(r for r, _ in results) == [f"w{i}" for i in range(6)]
    # All six ran on one thread: one leader, one BEGIN IMMEDIATE ... COMMIT.
    assert len({tid for _, tid in results}) == 1
    assert names(s, wf) == ["leader"] + [f"w{i}" for i in range(6)]


def test_a_failing_writer_rolls_back_alone(sqlite_store, sqlite_wf):
    s, wf = sqlite_store, sqlite_wf

    def bad():
        s.insert("jobs", wf, {"name": "bad"})
        raise InvalidInput("rejected")

    results = _group_behind_a_blocked_leader(s, wf, [
        lambda: s.insert("jobs", wf, {"name": "x"})["name"], bad,
        lambda: s.insert("jobs", wf, {"name": "z"})["name"]])
    assert results[0][0] == "x" and results[2][0] == "z"
    assert isinstance(results[1][0], InvalidInput) and results[1][0].message == "rejected"
    assert names(s, wf) == ["leader", "x", "z"]


def test_a_caller_returns_only_after_its_commit(sqlite_store, sqlite_wf):
    s, wf = sqlite_store, sqlite_wf
    seen = []

    def write(i):
        key = s.transact(wf, lambda: s.insert("jobs", wf, {"name": f"d{i}"})["_key"])
        # Another connection (another process would see the same) reads it at once.
        with sqlite3.connect(s.path) as other:
            seen.append(other.execute("SELECT count(*) FROM doc_jobs WHERE key = ?",
                                      (key,)).fetchone()[0])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen == [1] * 8


def test_the_leader_failing_to_lock_fails_only_its_own_call(sqlite_store, sqlite_wf, monkeypatch):
    s, wf = sqlite_store, sqlite_wf

    def no_lock(*args, **kwargs):
        raise StoreUnavailable("the database stayed busy past the timeout")

    monkeypatch.setattr(s._db, "_immediate", no_lock)
    with pytest.raises(StoreUnavailable):
        s.transact(wf, lambda: s.insert("jobs", wf, {"name": "never"}))
    assert s._db._group_queue == [] and not s._db._group_leading
    monkeypatch.undo()
    s.transact(wf, lambda: s.insert("jobs", wf, {"name": "later"}))
    assert names(s, wf) == ["later"]


def _child(store, wf, queue):
    queue.put(store.transact(wf, lambda: store.insert("jobs", wf, {"name": "child"})["name"]))


def _write_in_a_forked_child(store, wf):
    """A forked child group-commits a write; the parent sees it."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(store, wf, queue))
    p.start()
    assert queue.get(timeout=30) == "child"
    p.join(30)
    assert names(store, wf) == ["child", "parent"]


def test_group_commit_after_fork(sqlite_store, sqlite_wf):
    s, wf = sqlite_store, sqlite_wf
    s.transact(wf, lambda: s.insert("jobs", wf, {"name": "parent"}))
    _write_in_a_forked_child(s, wf)


def test_group_size_is_bounded(sqlite_store, sqlite_wf, monkeypatch):
    s, wf = sqlite_store, sqlite_wf
    monkeypatch.setattr(sqlite_connection, "GROUP_MAX", 2)
    results = _group_behind_a_blocked_leader(
        s, wf, [lambda i=i: s.insert("jobs", wf, {"name": f"b{i}"})["name"] for i in range(5)])
    assert sorted(r for r, _ in results) == [f"b{i}" for i in range(5)]
    assert len(names(s, wf)) == 6


def test_group_commit_in_a_child_forked_while_a_parent_thread_held_the_queue(sqlite_store,
                                                                             sqlite_wf):
    s, wf = sqlite_store, sqlite_wf
    s.transact(wf, lambda: s.insert("jobs", wf, {"name": "parent"}))
    held, release = threading.Event(), threading.Event()

    def hold():
        with s._db._group_cond:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        _write_in_a_forked_child(s, wf)
    finally:
        release.set()
        holder.join(10)
