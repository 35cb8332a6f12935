"""Concurrency: 16 worker processes drive a 2,000-job workflow (with dependencies, many jobs
having two blockers) through gunicorn (4 workers, SQLite) with the published torc client's
DefaultApi, the way torc's job runner does (behavior doc §5, §6.3): register a compute node,
poll ``is_complete``, claim with ``prepare_jobs_for_submission``, ``start_job``, then
``complete_job``.

Every job must run exactly once (one result, one ``executed`` edge, one start and one complete
event), no request may fail (no ApiException, no 5xx), and "database is locked" must appear
nowhere (worker errors or the server log).
"""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter
from datetime import datetime

import pytest
from torc.api import make_api
from torc.openapi_client.models.compute_node_model import ComputeNodeModel
from torc.openapi_client.models.compute_nodes_resources import ComputeNodesResources
from torc.openapi_client.models.job_model import JobModel
from torc.openapi_client.models.jobs_model import JobsModel
from torc.openapi_client.models.result_model import ResultModel
from torc.openapi_client.models.workflow_model import WorkflowModel
from torc.workflow_manager import WorkflowManager

from torc_graph.testing import run_processes

pytestmark = pytest.mark.slow

NUM_WORKERS = 16
STAGES = 4
STAGE_SIZE = 500  # 2,000 jobs
DEADLINE_S = 150


def resources() -> ComputeNodesResources:
    return ComputeNodesResources(num_cpus=4, memory_gb=8.0, num_gpus=0, num_nodes=1,
                                 time_limit=None)


def worker(url: str, wf: str, index: int, queue) -> None:
    """One simulated torc worker; reports ``(index, started job keys, error or None)``."""
    started: list[str] = []
    try:
        api = make_api(url)
        run_id = api.get_workflow_status(wf).run_id
        node = api.add_compute_node(wf, ComputeNodeModel(
            hostname=f"worker{index}", pid=os.getpid(), start_time=str(datetime.now()),
            resources=resources(), is_active=True,
            scheduler={"hostname": f"worker{index}", "scheduler_type": "local"}))
        deadline = time.monotonic() + DEADLINE_S
        while not api.is_workflow_complete(wf).is_complete:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {index}: workflow not complete in {DEADLINE_S} s")
            claimed = api.prepare_jobs_for_submission(wf, resources(), limit=4).jobs
            if not claimed:
                time.sleep(0.2)
                continue
            for job in claimed:
                assert job.status == "submitted_pending", job
                job = api.start_job(wf, job.key, job.rev, run_id, node.id)
                assert job.status == "submitted", job
                started.append(job.key)
                result = ResultModel(job_key=job.key, run_id=run_id, return_code=0,
                                     exec_time_minutes=0.0,
                                     completion_time=datetime.now().isoformat(),
                                     status="done")
                # Like torc's runner: job _id in the key slot, the node key, start's rev.
                done = api.complete_job(wf, job.id, "done", job.rev, run_id, node.key, result)
                assert done.status == "done", done
        node.is_active = False
        api.modify_compute_node(wf, node.key, node)
        queue.put((index, started, None))
    except BaseException:  # noqa: BLE001 (report everything, with ApiException bodies)
        queue.put((index, started, traceback.format_exc()))


def build_workflow(api) -> tuple[str, list]:
    """STAGES × STAGE_SIZE jobs; job i of stage s>0 is blocked by jobs i and i+1 of stage s-1."""
    wf = api.add_workflow(WorkflowModel(user="e2e", name="concurrency")).key
    previous: list = []
    all_jobs: list = []
    for stage in range(STAGES):
        batch = []
        for i in range(STAGE_SIZE):
            blocked_by = None
            if previous:
                blocked_by = [previous[i].id, previous[(i + 1) % STAGE_SIZE].id]
            batch.append(JobModel(name=f"s{stage}-{i}", command="true", blocked_by=blocked_by))
        previous = api.add_jobs(wf, JobsModel(jobs=batch)).items
        all_jobs.extend(previous)
    WorkflowManager(api, wf).start()  # run_id 1, initialize_jobs
    return wf, all_jobs


def test_sixteen_workers_run_every_job_exactly_once(server, api, read, record_property):
    wf, created = build_workflow(api)
    assert len(created) == STAGES * STAGE_SIZE
    assert Counter(read.statuses(wf).values()) == {
        "ready": STAGE_SIZE, "blocked": (STAGES - 1) * STAGE_SIZE}

    start = time.monotonic()
    reports = run_processes(worker, [(server.url, wf, i) for i in range(NUM_WORKERS)],
                            DEADLINE_S + 30)
    elapsed = time.monotonic() - start
    errors = [(i, err) for i, _, err in reports if err]
    assert not errors, "\n".join(f"worker {i}:\n{err}" for i, err in errors)

    started = Counter(key for _, keys, _ in reports for key in keys)
    keys = {j.key for j in created}
    assert set(started) == keys and set(started.values()) == {1}
    busy = sum(1 for _, keys_, _ in reports if keys_)
    print(f"\n2,000 jobs, {NUM_WORKERS} workers ({busy} got jobs), 4 gunicorn workers: "
          f"{elapsed:.1f} s")
    record_property("concurrency_seconds", round(elapsed, 1))

    assert set(read.statuses(wf).values()) == {"done"}
    assert api.is_workflow_complete(wf).is_complete is True
    results = Counter(r.job_key for r in read.results(wf))
    assert set(results) == keys and set(results.values()) == {1}
    executed = Counter(e["_to"] for e in read.edges(wf, "executed"))
    assert set(executed) == {j.id for j in created} and set(executed.values()) == {1}
    events = read.job_event_counts(wf)
    assert len(events) == 2 * len(keys) and set(events.values()) == {1}
    nodes = api.list_compute_nodes(wf, limit=100).items
    assert len(nodes) == NUM_WORKERS and not any(n.is_active for n in nodes)

    log = server.log_path.read_text(errors="replace")
    assert "database is locked" not in log
    assert "Traceback" not in log
