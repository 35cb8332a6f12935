"""Large transactions leave their WAL checkpoint to a background thread
(torc_graph/store/sqlite_checkpoint.py), against a real SQLite file."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time

import pytest

from torc_graph.store import sqlite_checkpoint
from torc_graph.store.sqlite import SQLiteStore

FORK = multiprocessing.get_context("fork")
PAD = "x" * 2000  # ~5,000 rows of this write well over the 1,000 pages of an automatic checkpoint


@pytest.fixture
def store(tmp_path):
    """SQLite only (conftest's ``wf`` fixture makes its workflows in this one)."""
    s = SQLiteStore.from_url(f"sqlite:///{tmp_path / 't.db'}")
    yield s
    s.close()


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wal_pending_frames(path: str) -> int:
    """Frames in the WAL not yet copied into the database file, read without checkpointing:
    the main file holds only checkpointed pages, so it is smaller than the database."""
    raw = sqlite3.connect(path)
    try:
        pages = raw.execute("PRAGMA page_count").fetchone()[0]
        size = raw.execute("PRAGMA page_size").fetchone()[0]
    finally:
        raw.close()
    return max(0, pages - os.path.getsize(path) // size)


def test_a_large_insert_commits_without_checkpointing_and_the_thread_checkpoints_after(
        store, wf, monkeypatch):
    requests = []
    monkeypatch.setattr(store._db._checkpointer, "request", lambda: requests.append(1))
    store.insert_many("jobs", wf, [{"name": f"j{i}", "pad": PAD} for i in range(5000)])
    # COMMIT copied nothing into the database file: the automatic checkpoint was off ...
    assert requests == [1]
    assert wal_pending_frames(store.path) > sqlite_checkpoint.AUTOCHECKPOINT_PAGES
    # ... and is back on for the connection's next, small transactions.
    conn = store._db.conn()
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    monkeypatch.undo()

    # The background thread copies the pages in, without any writer waiting for it.
    store._db._checkpointer.request()
    assert wait_for(lambda: store._db._checkpointer.checkpoints >= 1)
    assert wait_for(lambda: wal_pending_frames(store.path) == 0)
    store.close()
    reopened = SQLiteStore.from_url(f"sqlite:///{store.path}")
    try:
        assert reopened.count("jobs", wf) == 5000
    finally:
        reopened.close()


def test_small_transactions_and_failed_large_ones_keep_the_automatic_checkpoint(store, wf,
                                                                               monkeypatch):
    requests = []
    monkeypatch.setattr(store._db._checkpointer, "request", lambda: requests.append(1))
    store.insert_many("jobs", wf, [{"name": f"j{i}"} for i in range(10)])
    assert requests == []
    taken = store.find("jobs", wf)[0]["_key"]
    rows = [{"_key": f"k{i}", "pad": PAD} for i in range(2000)] + [{"_key": taken}]
    with pytest.raises(Exception):
        store.insert_many("jobs", wf, rows)
    assert requests == []  # rolled back: nothing committed, nothing to checkpoint
    assert store.count("jobs", wf) == 10
    assert store._db.conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


def _child_large_insert(store, wf, out):
    try:
        store.insert_many("jobs", wf, [{"name": f"c{i}", "pad": PAD} for i in range(3000)])
        ok = wait_for(lambda: store._db._checkpointer.checkpoints >= 1)
        out.put((ok, store._db._checkpointer._pid == os.getpid()))
    except BaseException as exc:  # reported to the parent, which fails the test
        out.put((False, repr(exc)))


def test_a_forked_child_starts_its_own_checkpoint_thread(store, wf):
    store.insert_many("jobs", wf, [{"name": f"p{i}", "pad": PAD} for i in range(3000)])
    assert wait_for(lambda: store._db._checkpointer.checkpoints >= 1)
    parent_thread = store._db._checkpointer._thread
    out = FORK.Queue()
    child = FORK.Process(target=_child_large_insert, args=(store, wf, out))
    child.start()
    assert out.get(timeout=60) == (True, True)
    child.join(30)
    assert child.exitcode == 0
    assert store._db._checkpointer._thread is parent_thread and parent_thread.is_alive()
    assert store.count("jobs", wf) == 6000


def test_close_stops_the_thread_and_a_later_write_restarts_it(store, wf):
    store.insert_many("jobs", wf, [{"name": f"j{i}", "pad": PAD} for i in range(2000)])
    thread = store._db._checkpointer._thread
    assert thread is not None
    store.close()
    assert wait_for(lambda: not thread.is_alive())
    store.insert_many("jobs", wf, [{"name": f"k{i}", "pad": PAD} for i in range(2000)])
    assert store._db._checkpointer._thread is not thread
    assert wait_for(lambda: wal_pending_frames(store.path) == 0)
    assert store.count("jobs", wf) == 4000


def test_initialize_of_many_jobs_defers_its_checkpoint(store, wf, monkeypatch):
    from torc_graph.engine import initialize

    store.insert_many("jobs", wf, [{"name": f"j{i}", "command": "true", "status": "uninitialized"}
                                   for i in range(3000)])
    requests = []
    monkeypatch.setattr(store._db._checkpointer, "request", lambda: requests.append(1))
    initialize.initialize_jobs(store, wf)
    assert requests  # the pass that sets every job's status committed without checkpointing
    assert store.count("jobs", wf, {"status": "ready"}) == 3000
    assert store._db.conn().execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
