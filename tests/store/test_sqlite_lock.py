"""The SQLite store's cross-process writer lock (``<db>-wlock``): a waiter blocks in the kernel
(no polling) until the holder's release, gives up at its busy timeout with StoreUnavailable, and
a waiter that gave up never leaves the lock taken."""

from __future__ import annotations

import fcntl
import multiprocessing
import time

import pytest

from torc_graph.errors import StoreUnavailable
from torc_graph.store import sqlite_connection
from torc_graph.store.sqlite import SQLiteStore

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "t.db")


@pytest.fixture
def store(db):
    s = SQLiteStore.from_url(f"sqlite:///{db}")
    s.create_workflow({"name": "w"}, {}, {"run_id": 0})
    yield s
    s.close()


@pytest.fixture
def flocks(monkeypatch):
    """The ``flock`` calls of this process's stores (polling made hundreds per second)."""
    calls = []
    real = fcntl.flock
    monkeypatch.setattr(sqlite_connection.fcntl, "flock",
                        lambda fd, op: (calls.append(op), real(fd, op))[1])
    return calls


def _wf(store):
    return store.find("workflows", None)[0]["_key"]


def _hold(db, seconds, ready, released):
    """In another process: hold the store's write lock for ``seconds``, then report the
    monotonic time of the release (CLOCK_MONOTONIC is system-wide on Linux)."""
    s = SQLiteStore.from_url(f"sqlite:///{db}")
    wf = _wf(s)
    with s.transaction(wf):
        s.insert("jobs", wf, {"name": "holder"})
        ready.set()
        time.sleep(seconds)
    released.value = time.monotonic()


def _holder(db, seconds):
    ready, released = FORK.Event(), FORK.Value("d", 0.0)
    p = FORK.Process(target=_hold, args=(db, seconds, ready, released))
    p.start()
    assert ready.wait(30)
    return p, released


def test_a_waiter_blocks_without_polling_and_gets_the_lock_at_the_release(db, store, flocks):
    p, released = _holder(db, 1.0)
    store.insert("jobs", _wf(store), {"name": "waiter"})
    got = time.monotonic()
    p.join(30)
    # Polling every 0.2-2 ms took hundreds of tries in a second; blocking takes a few calls.
    assert len(flocks) <= 6, flocks
    assert released.value > 0 and got - released.value < 1.0
    assert [d["name"] for d in store.find("jobs", _wf(store))] == ["holder", "waiter"]


def test_a_waiter_past_its_timeout_gives_up_and_leaves_the_lock_free(db, store, flocks):
    impatient = SQLiteStore.from_url(f"sqlite:///{db}", busy_timeout=0.3)
    wf = _wf(store)
    p, _ = _holder(db, 1.5)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable):
        impatient.insert("jobs", wf, {"name": "late"})
    assert time.monotonic() - t0 < 1.4
    assert len(flocks) <= 3, flocks
    p.join(30)
    # The helper thread took the lock after the holder's release and gave it back: a writer
    # of another process gets it at once, and so does this process's next writer.
    other, _ = _holder(db, 0.0)
    other.join(30)
    t0 = time.monotonic()
    impatient.insert("jobs", wf, {"name": "after"})
    assert time.monotonic() - t0 < 1.0
    names = [d["name"] for d in store.find("jobs", wf)]
    assert names == ["holder", "holder", "after"]


def test_a_waiter_after_one_that_gave_up_gets_the_lock(db, store, flocks):
    impatient = SQLiteStore.from_url(f"sqlite:///{db}", busy_timeout=0.2)
    wf = _wf(store)
    p, _ = _holder(db, 1.0)
    with pytest.raises(StoreUnavailable):
        impatient.insert("jobs", wf, {"name": "late"})
    store.insert("jobs", wf, {"name": "patient"})  # same process; waits for the holder
    p.join(30)
    assert len(flocks) <= 8, flocks
    assert [d["name"] for d in store.find("jobs", wf)] == ["holder", "patient"]
