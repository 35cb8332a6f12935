"""SQLite's one-statement ``set_initial_job_state`` has exactly the effect of the generic
passes of :class:`GraphStore` (same documents, same statuses), and writes only changed rows."""

from __future__ import annotations

import pytest

from torc_graph.engine import initialize, jobs, workflows
from torc_graph.store import sqlite_initialize
from torc_graph.store.base import GraphStore
from torc_graph.store.sqlite import SQLiteStore


def build(store):
    """A workflow with every case: rrs (one asking for 0 CPUs, one job with two), schedulers,
    blockers done / canceled / disabled / running, a chain, a disabled job, a job without rr."""
    wf = workflows.create_workflow(store, {"name": "w", "user": "u"})["_key"]
    rr = [store.insert("resource_requirements", wf, body)["_id"] for body in (
        {"name": "big", "num_cpus": 8, "num_gpus": 2, "num_nodes": 3, "memory": "4g",
         "runtime": "P0DT2H"},
        {"name": "zero", "num_cpus": 0, "memory": "1m", "runtime": "PT1M"},
        {"name": "small", "num_cpus": 2, "memory": "512m", "runtime": "PT90.5S"},
    )]
    sched = [store.insert(c, wf, {"name": n})["_id"]
             for c, n in (("local_schedulers", "l"), ("slurm_schedulers", "s"))]
    spec = [
        ("a", "done", [rr[0]], [sched[0]], []),
        ("b", "canceled", [rr[1]], [], []),
        ("c", "disabled", [], [sched[1]], []),
        ("d", "submitted", [rr[2], rr[0]], [sched[0], sched[1]], []),
        ("e", "uninitialized", [], [], ["a"]),
        ("f", "uninitialized", [rr[2]], [], ["a", "b"]),
        ("g", "ready", [], [], ["d"]),
        ("h", "blocked", [], [], ["a"]),
        ("i", "uninitialized", [rr[1]], [], ["c"]),
        ("k", "done", [], [], ["g"]),
    ]
    keys = {}
    for name, status, rrs, scheds, blockers in spec:
        body = {"name": name, "command": "x", "status": status,
                "blocked_by": [keys[b] for b in blockers]}
        job = jobs.add_job(store, wf, body)
        keys[name] = job["_id"]
        for r in rrs:
            store.insert("requires", wf, {"_from": job["_id"], "_to": r})
        for s in scheds:
            store.insert("scheduled_bys", wf, {"_from": job["_id"], "_to": s})
    return wf


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
