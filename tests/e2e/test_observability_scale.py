"""Scale: ``explain`` and ``critical_path`` issue the same number of store calls on a 100,000-job
workflow as on a 1,000-job workflow of the same shape (no per-job round trips), on real SQLite
files. Timings are printed (``pytest -s``): the critical path loads the job list, the edge list
and the done results once, then runs a linear DP.

Shape: 10 batches; job i of batch b is blocked by job i of batch b-1 (depth 10), every job on
one of two resource requirements (1 h and 2 h); the first 100 jobs of batch 0 ran.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from torc_graph.engine import critical_path, documents, execution, explain, initialize, jobs
from torc_graph.engine import leases, workflows
from torc_graph.store import open_store
from torc_graph.testing import CountingStore

pytestmark = pytest.mark.slow

BATCHES = 10
RAN = 10


def build(store, num_jobs: int) -> tuple[str, list[str]]:
    wf = workflows.create_workflow(store, {"user": "e2e", "name": f"obs-{num_jobs}"})["_key"]
    status = store.workflow_space(wf).status
    store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
    rrs = [documents.add_document(store, wf, "resource_requirements",
                                  {"name": n, "runtime": r})["_id"]
           for n, r in (("short", "PT1H"), ("long", "PT2H"))]
    size = num_jobs // BATCHES
    previous: list[dict[str, Any]] = []
    for b in range(BATCHES):
        batch = [{"name": f"job{b * size + i}", "command": "true",
                  "resource_requirements": rrs[(b + i) % 2],
                  **({"blocked_by": [previous[i]["_id"]]} if previous else {})}
                 for i in range(size)]
        previous = jobs.add_jobs(store, wf, {"jobs": batch})["items"]
    initialize.initialize_jobs(store, wf)
    node = store.insert("compute_nodes", wf, {
        "hostname": "n", "pid": 1, "start_time": "t", "is_active": True,
        "resources": {"num_cpus": RAN, "memory_gb": 64.0, "num_gpus": 0, "num_nodes": 1}})
    claimed = execution.claim_jobs(store, wf, {
        "compute_node_key": node["_key"], "limit": RAN,
        "resources": {"num_cpus": RAN, "memory_gb": 64.0}})["jobs"]
    execution.complete_jobs(store, wf, {
        "compute_node_key": node["_key"], "run_id": 1,
        "completions": [{"job_key": j["_key"], "attempt_id": 1, "status": "done", "cause": "exit",
                         "result": {"return_code": 0, "exec_time_minutes": 30.0,
                                    "completion_time": "2026-01-01T00:00:00"}}
                        for j in claimed]})
    return wf, [p["_key"] for p in previous]


def measure(tmp_path, num_jobs: int) -> dict[str, Any]:
    leases.reset_sweep_clock()
    store = open_store(f"sqlite:///{tmp_path / f'obs-{num_jobs}.db'}")
    try:
        wf, last = build(store, num_jobs)
        counting = CountingStore(store)
        start = time.perf_counter()
        answer = explain.explain(counting, wf, last[-1])
        explained = time.perf_counter() - start
        explain_calls = dict(counting.calls)
        counting.calls.clear()
        start = time.perf_counter()
        path = critical_path.critical_path(counting, wf)
        pathed = time.perf_counter() - start
        return {"explain": answer, "explain_calls": explain_calls, "explain_s": explained,
                "path": path, "path_calls": dict(counting.calls), "path_s": pathed}
    finally:
        store.close()


def test_explain_and_critical_path_calls_do_not_grow(tmp_path):
    small = measure(tmp_path, 1_000)
    large = measure(tmp_path, 100_000)
    print(f"\nexplain: 1,000 jobs {small['explain_s']:.3f} s, 100,000 jobs "
          f"{large['explain_s']:.3f} s, store calls {large['explain_calls']}")
    print(f"critical_path: 1,000 jobs {small['path_s']:.3f} s, 100,000 jobs "
          f"{large['path_s']:.3f} s, store calls {sum(large['path_calls'].values())}")
    assert small["explain_calls"] == large["explain_calls"]
    assert small["path_calls"] == large["path_calls"]
    assert sum(large["path_calls"].values()) <= 5
    # A last-batch job waits on 9 blockers, up to a ready job of batch 0 (its twin there ran
    # only for the first RAN jobs; the last job's did not).
    (blocked,) = large["explain"]["reasons"]
    assert blocked["reason"] == "blocked"
    assert len(blocked["details"]["chain"]) == BATCHES - 1
    assert [e["state"] for e in blocked["details"]["ends"]] == ["waiting"]
    for result in (small, large):
        path = result["path"]
        assert path["num_edges"] == path["num_jobs"] - path["num_jobs"] // BATCHES
        # The longest chain alternates 1 h / 2 h: 5 h + 10 h over 10 batches.
        assert path["critical_path"]["length_seconds"] == 15 * 3600.0
        assert len(path["critical_path"]["jobs"]) == BATCHES
        assert path["remaining"]["makespan_seconds"] == 15 * 3600.0
