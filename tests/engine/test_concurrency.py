"""Concurrent workers on one SQLite file: claims are atomic, every job runs exactly once.

Eight forked processes, each with its own store object on the same database file, act like
torc workers: poll is_complete, claim with prepare_jobs_for_submission, start_job,
complete_job, until a 500-job workflow with dependencies is complete.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback


from torc_graph.engine import claims, initialize, jobs, lifecycle, workflows
from torc_graph.store import open_store

NUM_WORKERS = 8
NUM_JOBS = 500


def build(url: str) -> str:
    store = open_store(url, synchronous="NORMAL")
    wf = workflows.create_workflow(store, {"user": "test", "name": "concurrency"})["_key"]
    status = store.workflow_space(wf).status
    store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
    stored = jobs.add_jobs(store, wf, {"jobs": [
        {"name": f"j{i}", "command": "true"} for i in range(NUM_JOBS)]})["items"]
    edges = []
    for i in range(1, NUM_JOBS):
        blockers = {(i - 1) // 2} | ({i - 3} if i % 5 == 0 else set())
        edges += [{"_from": stored[b]["_id"], "_to": stored[i]["_id"]} for b in blockers]
    store.insert_many("blocks", wf, edges)
    initialize.initialize_jobs(store, wf)
    store.close()
    return wf


def worker(url: str, wf: str, queue) -> None:
    """One worker process: its own store (opened after the fork)."""
    ran: list[str] = []
    try:
        store = open_store(url, synchronous="NORMAL")
        node = store.insert("compute_nodes", wf, {
            "hostname": f"host{os.getpid()}", "pid": os.getpid(), "start_time": "t",
            "resources": {"num_cpus": 4, "memory_gb": 8.0}})
        resources = {"num_cpus": 4, "memory_gb": 8.0, "num_gpus": 0, "num_nodes": 1,
                     "time_limit": None, "scheduler_config_id": ""}
        deadline = time.monotonic() + 120
        while not lifecycle.is_complete(store, wf)["is_complete"]:
            if time.monotonic() > deadline:
                raise TimeoutError("workflow did not complete")
            claimed = claims.prepare_jobs_for_submission(store, wf, resources)["jobs"]
            if not claimed:
                time.sleep(0.005)
                continue
            for job in claimed:
                job = lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_id"])
                lifecycle.complete_job(
                    store, wf, job["_id"], "done", job["_rev"], 1, node["_key"],
                    {"job_key": job["_key"], "run_id": 1, "return_code": 0,
                     "exec_time_minutes": 0.0, "completion_time": "t", "status": "done"})
                ran.append(job["_key"])
        queue.put(("ok", ran))
    except BaseException:  # report everything to the parent, which fails the test
        queue.put(("error", traceback.format_exc()))


def test_workers_run_every_job_exactly_once(tmp_path):
    url = f"sqlite:///{tmp_path}/torc.db"
    wf = build(url)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, wf, queue)) for _ in range(NUM_WORKERS)]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [detail for kind, detail in reports if kind == "error"]
    assert errors == []
    assert all(p.exitcode == 0 for p in procs)

    ran = [key for _kind, keys in reports for key in keys]
    assert len(ran) == NUM_JOBS and len(set(ran)) == NUM_JOBS
    # More than one worker got work (the claims really were concurrent).
    assert sum(1 for _kind, keys in reports if keys) > 1

    store = open_store(url)
    assert store.count("jobs", wf, {"status": "done"}) == NUM_JOBS
    assert store.count("results", wf) == NUM_JOBS
    assert store.count("executed", wf) == NUM_JOBS
    assert store.count("events", wf) == 2 * NUM_JOBS
    # Every job started after all its blockers completed.
    done_at = {e["job_key"]: e["timestamp"] for e in store.find("events", wf, {"type": "complete"})}
    started_at = {e["job_key"]: e["timestamp"] for e in store.find("events", wf, {"type": "start"})}
    for edge in store.find("blocks", wf):
        blocker, blocked = edge["_from"].split("/")[1], edge["_to"].split("/")[1]
        assert done_at[blocker] <= started_at[blocked]
    store.close()


def poll_is_complete(url: str, wf: str, barrier, queue) -> None:
    try:
        store = open_store(url, synchronous="NORMAL")
        barrier.wait(timeout=60)
        queue.put(("ok", lifecycle.is_complete(store, wf)["needs_to_run_completion_script"]))
    except BaseException:
        queue.put(("error", traceback.format_exc()))


def test_exactly_one_poller_runs_the_completion_script(tmp_path):
    url = f"sqlite:///{tmp_path}/torc.db"
    store = open_store(url, synchronous="NORMAL")
    wf = workflows.create_workflow(store, {"user": "test", "name": "script"})["_key"]
    config = store.workflow_space(wf).config
    store.update("workflow_configs", None, config["_key"], {"workflow_completion_script": "x"})
    store.close()
    ctx = multiprocessing.get_context("fork")
    queue, barrier = ctx.Queue(), ctx.Barrier(NUM_WORKERS)
    procs = [ctx.Process(target=poll_is_complete, args=(url, wf, barrier, queue))
             for _ in range(NUM_WORKERS)]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [kind for kind, _ in reports] == ["ok"] * NUM_WORKERS, reports
    assert sorted(flag for _, flag in reports) == [False] * (NUM_WORKERS - 1) + [True]
