"""SQLite's one-statement ``set_initial_job_state`` has exactly the effect of the generic
passes of :class:`GraphStore` (same documents, same statuses), and writes only changed rows."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys

import pytest

from torc_graph.engine import initialize, jobs, workflows
from torc_graph.store import sqlite_initialize
from torc_graph.store.base import GraphStore
from torc_graph.store.sqlite import SQLiteStore


def build_from(store, spec):
    """A workflow with three rrs (``big``, ``zero`` asking for 0 CPUs, ``small``), a local and
    a slurm scheduler, and ``spec``'s jobs: ``(name, status, rr indexes, scheduler indexes,
    blocker names)``, each job's requires / scheduled_bys edges in the order given."""
    wf = workflows.create_workflow(store, {"name": "w", "user": "u"})["_key"]
    rr = [store.insert("resource_requirements", wf, body)["_id"] for body in (
        {"name": "big", "num_cpus": 8, "num_gpus": 2, "num_nodes": 3, "memory": "4g",
         "runtime": "P0DT2H"},
        {"name": "zero", "num_cpus": 0, "memory": "1m", "runtime": "PT1M"},
        {"name": "small", "num_cpus": 2, "memory": "512m", "runtime": "PT90.5S"},
    )]
    sched = [store.insert(c, wf, {"name": n})["_id"]
             for c, n in (("local_schedulers", "l"), ("slurm_schedulers", "s"))]
    keys = {}
    for name, status, rrs, scheds, blockers in spec:
        body = {"name": name, "command": "x", "status": status,
                "blocked_by": [keys[b] for b in blockers]}
        job = jobs.add_job(store, wf, body)
        keys[name] = job["_id"]
        for r in rrs:
            store.insert("requires", wf, {"_from": job["_id"], "_to": rr[r]})
        for s in scheds:
            store.insert("scheduled_bys", wf, {"_from": job["_id"], "_to": sched[s]})
    return wf


def build(store):
    """Every case: rrs (one asking for 0 CPUs, one job with two), schedulers, blockers done /
    canceled / disabled / running, a chain, a disabled job, a job without rr."""
    return build_from(store, [
        ("a", "done", [0], [0], []),
        ("b", "canceled", [1], [], []),
        ("c", "disabled", [], [1], []),
        ("d", "submitted", [2, 0], [0, 1], []),
        ("e", "uninitialized", [], [], ["a"]),
        ("f", "uninitialized", [2], [], ["a", "b"]),
        ("g", "ready", [], [], ["d"]),
        ("h", "blocked", [], [], ["a"]),
        ("i", "uninitialized", [1], [], ["c"]),
        ("k", "done", [], [], ["g"]),
    ])


def snapshot(store, wf):
    return {j["name"]: {k: v for k, v in j.items() if k != "_rev"} for j in store.find("jobs", wf)}


@pytest.mark.parametrize("only_uninitialized", [False, True])
def test_one_statement_equals_the_generic_passes(tmp_path, monkeypatch, only_uninitialized):
    fast, slow = (SQLiteStore(str(tmp_path / f"{n}.db")) for n in ("fast", "slow"))
    wf_fast, wf_slow = build(fast), build(slow)
    assert sqlite_initialize.fits(initialize._initial_state(fast, wf_fast, only_uninitialized))
    monkeypatch.setattr(slow, "set_initial_job_state",
                        lambda wf, state: GraphStore.set_initial_job_state(slow, wf, state))
    for store, wf in ((fast, wf_fast), (slow, wf_slow)):
        initialize.initialize_jobs(store, wf, only_uninitialized=only_uninitialized)
    got, want = snapshot(fast, wf_fast), snapshot(slow, wf_slow)
    assert got == want
    assert got["e"]["status"] == "ready" and got["h"]["status"] == "blocked"
    assert got["d"]["internal"]["num_cpus"] == 2  # the last rr (in rr order) wins
    assert got["i"]["internal"]["num_cpus"] == 1  # 0 CPUs -> the default


def test_reinitializing_unchanged_jobs_writes_nothing(tmp_path):
    store = SQLiteStore(str(tmp_path / "t.db"))
    wf = build(store)
    initialize.initialize_jobs(store, wf)
    revs = {j["name"]: j["_rev"] for j in store.find("jobs", wf)}
    initialize.initialize_jobs(store, wf)
    assert {j["name"]: j["_rev"] for j in store.find("jobs", wf)} == revs


def build_uninitialized(store):
    """A never-initialized workflow: rrs (one asking for 0 CPUs, a job with two), schedulers
    (a job with two), a chain and a diamond, jobs without rr or scheduler."""
    u = "uninitialized"
    return build_from(store, [("a", u, [0], [0], []), ("b", u, [1], [], []),
                              ("c", u, [2, 0], [1, 0], ["a"]), ("d", u, [], [1], ["a"]),
                              ("e", u, [2], [], ["c", "d"]), ("f", u, [], [], [])])


@pytest.mark.parametrize("only_uninitialized", [False, True])
def test_first_initialization_writes_every_row_in_one_pass_like_the_generic_passes(
        tmp_path, monkeypatch, only_uninitialized):
    fast, slow = (SQLiteStore(str(tmp_path / f"{n}.db")) for n in ("fast", "slow"))
    wf_fast, wf_slow = build_uninitialized(fast), build_uninitialized(slow)
    monkeypatch.setattr(slow, "set_initial_job_state",
                        lambda wf, state: GraphStore.set_initial_job_state(slow, wf, state))
    initialize.initialize_jobs(slow, wf_slow, only_uninitialized=only_uninitialized)

    def general(*args):
        raise AssertionError("every job is uninitialized: the one-pass statement applies")
    monkeypatch.setattr(sqlite_initialize, "statement", general)
    initialize.initialize_jobs(fast, wf_fast, only_uninitialized=only_uninitialized)
    got, want = snapshot(fast, wf_fast), snapshot(slow, wf_slow)
    assert got == want
    assert {n: j["status"] for n, j in got.items()} == {
        "a": "ready", "b": "ready", "c": "blocked", "d": "blocked", "e": "blocked", "f": "ready"}
    assert got["c"]["internal"]["num_cpus"] == 2  # the last rr (in rr order) wins
    assert got["b"]["internal"]["num_cpus"] == 1  # 0 CPUs -> the default
    assert got["c"]["internal"]["scheduler_config_id"].startswith("slurm_schedulers")


def test_reset_workflow_takes_the_one_pass_path_again(tmp_path, monkeypatch):
    store = SQLiteStore(str(tmp_path / "t.db"))
    wf = build_uninitialized(store)
    initialize.initialize_jobs(store, wf)
    calls = []
    one_pass = sqlite_initialize.every_row_statement
    monkeypatch.setattr(sqlite_initialize, "every_row_statement",
                        lambda *a: calls.append(1) or one_pass(*a))
    initialize.initialize_jobs(store, wf)  # statuses ready/blocked: the general statement
    assert calls == []
    store.update_many("jobs", wf, None, {"status": "uninitialized"})
    initialize.initialize_jobs(store, wf)
    assert calls == [1]
    assert store.get("jobs", wf, store.find("jobs", wf, {"name": "e"})[0]["_key"])["status"] \
        == "blocked"


STATUS_INDEX = "ix_doc_jobs_status_claim"


def index_sql(path):
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                 "AND tbl_name = 'doc_jobs'").fetchall())


def traced(store):
    seen: list[str] = []
    store._db.conn().set_trace_callback(seen.append)
    return seen


def test_status_index_is_rebuilt_in_the_same_transaction_when_most_rows_change(
        tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_initialize, "REBUILD_MIN_ROWS", 0)
    path = str(tmp_path / "t.db")
    store = SQLiteStore(path)
    small = build_uninitialized(store)  # 6 jobs
    big = workflows.create_workflow(store, {"name": "big", "user": "u"})["_key"]
    jobs.add_jobs(store, big, {"jobs": [{"name": f"j{i}", "command": "x"} for i in range(20)]})
    before = index_sql(path)
    seen = traced(store)
    initialize.initialize_jobs(store, small)  # 6 of 26 rows: the index is maintained
    assert not [s for s in seen if s.startswith("DROP INDEX")]
    seen.clear()
    initialize.initialize_jobs(store, big)  # 20 of 26: dropped, written, created again
    drops = [i for i, s in enumerate(seen) if s.startswith("DROP INDEX")]
    assert [seen[i] for i in drops] == [f'DROP INDEX "{STATUS_INDEX}"']
    create = seen.index(before[STATUS_INDEX])
    begins = [i for i, s in enumerate(seen) if s.startswith("BEGIN")]
    commit = seen.index("COMMIT")
    assert begins and begins[-1] < drops[0] < create < commit  # one transaction
    assert index_sql(path) == before
    assert {j["status"] for j in store.find("jobs", big)} == {"ready"}
    assert [j["name"] for j in store.find("jobs", big, {"status": "ready"}, limit=3)] == \
        ["j0", "j1", "j2"]


def test_failed_write_keeps_the_dropped_index(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_initialize, "REBUILD_MIN_ROWS", 0)
    path = str(tmp_path / "t.db")
    store = SQLiteStore(path)
    wf = build_uninitialized(store)
    before = index_sql(path)
    monkeypatch.setattr(sqlite_initialize, "every_row_statement",
                        lambda *a: ("UPDATE doc_jobs SET status = no_such_column", {}))
    seen = traced(store)
    with pytest.raises(Exception):
        initialize.initialize_jobs(store, wf)
    assert any(s.startswith("DROP INDEX") for s in seen)
    assert index_sql(path) == before
    assert {j["status"] for j in store.find("jobs", wf)} == {"uninitialized"}


KILL_SCRIPT = """
import os, signal, sys
from torc_graph.engine import initialize
from torc_graph.store import sqlite_initialize
from torc_graph.store.sqlite import SQLiteStore
sqlite_initialize.REBUILD_MIN_ROWS = 0
sqlite_initialize.every_row_statement = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
initialize.initialize_jobs(SQLiteStore(sys.argv[1]), sys.argv[2])
"""


def test_kill_9_after_the_index_drop_leaves_the_index_and_nothing_initialized(tmp_path):
    path = str(tmp_path / "t.db")
    store = SQLiteStore(path)
    wf = build_uninitialized(store)
    store.close()
    before = index_sql(path)
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, path, wf], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert index_sql(path) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = SQLiteStore(path)
    assert {j["status"] for j in store.find("jobs", wf)} == {"uninitialized"}
    initialize.initialize_jobs(store, wf)
    assert {j["name"] for j in store.find("jobs", wf, {"status": "ready"})} == {"a", "b", "f"}
