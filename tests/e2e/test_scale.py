"""Scale: initializing a 100,000-job workflow issues exactly as many store calls (and SQL
statements) as initializing a 1,000-job workflow of the same shape.

In-process, on real SQLite files: the store from ``open_store`` is wrapped in a counting proxy
and passed to the engine's ``initialize_jobs``; every SQL statement SQLite executes meanwhile is
counted through ``sqlite3``'s trace callback. Timings are printed (``pytest -s``) and attached to
the test report.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest

from torc_graph.engine import documents, initialize, jobs, workflows
from torc_graph.store import open_store, sqlite_initialize
from torc_graph.testing import CountingStore

pytestmark = pytest.mark.slow

BATCHES = 10  # bulk_jobs batches; each job of batch b is blocked by one job of batch b-1




class SqlTrace:
    """Counts the SQL statements of every connection opened while installed (``sqlite3``'s
    trace callback), only while ``recording``."""

    def __init__(self, monkeypatch):
        self.recording = False
        self.statements: list[str] = []
        connect = sqlite3.connect

        def traced_connect(*args, **kwargs):
            conn = connect(*args, **kwargs)
            conn.set_trace_callback(self._trace)
            return conn

        monkeypatch.setattr(sqlite3, "connect", traced_connect)

    def _trace(self, statement: str) -> None:
        if self.recording:
            self.statements.append(statement)


def build_workflow(store, num_jobs: int) -> str:
    """A workflow of ``num_jobs`` jobs in BATCHES bulk inserts: two resource requirements
    (alternating), and ``blocked_by`` from every job to its twin in the previous batch."""
    wf = workflows.create_workflow(store, {"user": "e2e", "name": f"scale-{num_jobs}"})["_key"]
    rrs = [
        documents.add_document(store, wf, "resource_requirements",
                               {"name": name, "num_cpus": cpus, "memory": mem,
                                "runtime": "P0DT1H"})["_id"]
        for name, cpus, mem in (("small", 1, "1g"), ("large", 4, "8g"))
    ]
    size = num_jobs // BATCHES
    previous: list[dict[str, Any]] = []
    for b in range(BATCHES):
        batch = []
        for i in range(size):
            job = {"name": f"job{b * size + i}", "command": f"run {b * size + i}",
                   "resource_requirements": rrs[i % 2]}
            if previous:
                job["blocked_by"] = [previous[i]["_id"]]
            batch.append(job)
        previous = jobs.add_jobs(store, wf, {"jobs": batch})["items"]
    return wf


def measure(tmp_path, monkeypatch, num_jobs: int) -> dict[str, Any]:
    trace = SqlTrace(monkeypatch)
    # The status index is rebuilt (a fixed 4 statements) when a workflow's initialization
    # writes most of the table, from REBUILD_MIN_ROWS rows: both sizes take that path here.
    monkeypatch.setattr(sqlite_initialize, "REBUILD_MIN_ROWS", 0)
    store = open_store(f"sqlite:///{tmp_path / f'scale-{num_jobs}.db'}")
    try:
        start = time.perf_counter()
        wf = build_workflow(store, num_jobs)
        created = time.perf_counter() - start

        counting = CountingStore(store)
        trace.recording = True
        start = time.perf_counter()
        assert initialize.initialize_jobs(counting, wf) == {"message": "Initialized job status"}
        elapsed = time.perf_counter() - start
        trace.recording = False

        size = num_jobs // BATCHES
        assert store.count("jobs", wf, {"status": "ready"}) == size
        assert store.count("jobs", wf, {"status": "blocked"}) == num_jobs - size
        assert store.count("blocks", wf) == num_jobs - size
        sample = store.find("jobs", wf, {"name": "job1"})[0]["internal"]
        assert sample["num_cpus"] == 4 and sample["memory_bytes"] == 8 * 2**30
    finally:
        store.close()
    # PRAGMAs (e.g. a WAL checkpoint when the log grew) depend on bytes written, not queries.
    sql = [s for s in trace.statements if not s.lstrip().upper().startswith("PRAGMA")]
    return {"jobs": num_jobs, "create_s": round(created, 2), "initialize_s": round(elapsed, 2),
            "store_calls": dict(counting.calls), "sql_statements": len(sql)}


def test_initialize_jobs_issues_a_bounded_number_of_queries(tmp_path, monkeypatch,
                                                             record_property):
    small = measure(tmp_path, monkeypatch, 1_000)
    large = measure(tmp_path, monkeypatch, 100_000)
    for m in (small, large):
        print(f"\n{m}")
        record_property(f"scale_{m['jobs']}", m)

    assert large["store_calls"] == small["store_calls"]
    assert sum(small["store_calls"].values()) < 50
    assert large["sql_statements"] == small["sql_statements"]
    assert large["initialize_s"] < 30, large
