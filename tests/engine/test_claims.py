"""Resource-aware claiming and scheduling (behavior doc §4.3–§4.6), with torc's worked
examples, on a real SQLite store."""

from __future__ import annotations

import pytest

from torc_graph.engine import claims, documents, initialize, jobs, lifecycle
from torc_graph.errors import BadRequest

GiB = 1024**3


def rr(store, wf, name, cpus, memory, runtime, gpus=0, nodes=1):
    return documents.add_document(store, wf, "resource_requirements", {
        "name": name, "num_cpus": cpus, "num_gpus": gpus, "num_nodes": nodes, "memory": memory,
        "runtime": runtime})["_id"]


def add_jobs(store, wf, bodies):
    out = jobs.add_jobs(store, wf, {"jobs": bodies})["items"]
    initialize.initialize_jobs(store, wf)
    return out


def worker(cpus, memory_gb, gpus=0, time_limit=None, scheduler_config_id=""):
    return {"num_cpus": cpus, "memory_gb": memory_gb, "num_gpus": gpus, "num_nodes": 1,
            "time_limit": time_limit, "scheduler_config_id": scheduler_config_id}


def names(response):
    return [j["name"] for j in response["jobs"]]


def test_thirty_4cpu_jobs(store, wf):
    r = rr(store, wf, "r", 4, "4g", "P0DT1H")
    add_jobs(store, wf, [{"name": f"j{i}", "command": "c", "resource_requirements": r}
                         for i in range(30)])
    first = claims.prepare_jobs_for_submission(store, wf, worker(36, 92.0))
    assert names(first) == [f"j{i}" for i in range(9)] and first["reason"] == ""
    assert all(j["status"] == "submitted_pending" for j in first["jobs"])
    for job in first["jobs"]:
        assert store.get("jobs", wf, job["_key"])["_rev"] == job["_rev"]
    second = claims.prepare_jobs_for_submission(store, wf, worker(200, 82.0))
    assert names(second) == [f"j{i}" for i in range(9, 29)]
    third = claims.prepare_jobs_for_submission(store, wf, worker(200, 82.0))
    assert names(third) == ["j29"]
    none = claims.prepare_jobs_for_submission(store, wf, worker(200, 82.0))
    assert none["jobs"] == [] and none["reason"].startswith("No jobs matched")


def test_limit_and_invalid_sort_method(store, wf):
    add_jobs(store, wf, [{"name": f"j{i}", "command": "c"} for i in range(5)])
    assert names(claims.prepare_jobs_for_submission(store, wf, worker(36, 92.0), limit=2)) == [
        "j0", "j1"]
    assert names(claims.prepare_jobs_for_submission(store, wf, worker(36, 92.0), limit=0)) == []
    with pytest.raises(BadRequest, match="sort_method"):
        claims.prepare_jobs_for_submission(store, wf, worker(36, 92.0), sort_method="fastest")
    with pytest.raises(BadRequest, match="limit"):
        claims.prepare_jobs_for_submission(store, wf, worker(36, 92.0), limit=-1)
    assert store.count("jobs", wf, {"status": "ready"}) == 3


def test_runtime_limit(store, wf):
    add_jobs(store, wf, [
        {"name": "short", "command": "c",
         "resource_requirements": rr(store, wf, "s", 1, "1g", "PT40M")},
        {"name": "long", "command": "c",
         "resource_requirements": rr(store, wf, "l", 1, "1g", "PT50M")},
    ])
    assert names(claims.prepare_jobs_for_submission(
        store, wf, worker(8, 8.0, time_limit="PT45M"))) == ["short"]
    # A deadline already passed (the worker sends a negative duration) claims nothing.
    assert names(claims.prepare_jobs_for_submission(
        store, wf, worker(8, 8.0, time_limit="-PT3S"))) == []
    assert names(claims.prepare_jobs_for_submission(store, wf, worker(8, 8.0))) == ["long"]


@pytest.fixture
def mixed(store, wf):
    specs = [
        ("small", 1, "1g", "P0DT1H", 0),
        ("medium", 4, "8g", "P0DT8H", 0),
        ("long_job", 1, "2g", "P0DT24H", 0),
        ("large_job_no_scheduler", 8, "16g", "P0DT12H", 0),
        ("gpu_job", 1, "4g", "P0DT2H", 1),
    ]
    add_jobs(store, wf, [
        {"name": name, "command": "c",
         "resource_requirements": rr(store, wf, name, cpus, mem, runtime, gpus)}
        for name, cpus, mem, runtime, gpus in specs])
    return wf


def test_sort_methods(store, mixed):
    wf = mixed
    # Default (gpus_runtime_memory): the 24 h job first.
    assert names(claims.prepare_jobs_for_submission(store, wf, worker(64, 256.0), limit=1)) == [
        "long_job"]
    lifecycle.reset_job_status(store, wf)
    initialize.initialize_jobs(store, wf)
    assert names(claims.prepare_jobs_for_submission(
        store, wf, worker(64, 256.0), sort_method="gpus_memory_runtime", limit=1)) == [
        "large_job_no_scheduler"]
    lifecycle.reset_job_status(store, wf)
    initialize.initialize_jobs(store, wf)
    assert names(claims.prepare_jobs_for_submission(
        store, wf, worker(64, 256.0), sort_method="none")) == [
        "small", "medium", "long_job", "large_job_no_scheduler"]
    lifecycle.reset_job_status(store, wf)
    initialize.initialize_jobs(store, wf)
    assert names(claims.prepare_jobs_for_submission(store, wf, worker(64, 256.0, gpus=1))) == [
        "gpu_job", "long_job", "large_job_no_scheduler", "medium", "small"]


def test_gpu_worker_with_one_cpu(store, mixed):
    assert names(claims.prepare_jobs_for_submission(store, mixed, worker(1, 64.0, gpus=1))) == [
        "gpu_job"]


def test_scheduler_id(store, wf):
    bigmem = documents.add_document(store, wf, "slurm_schedulers",
                                    {"name": "bigmem", "account": "a", "nodes": 1})["_id"]
    large = rr(store, wf, "large", 18, "100g", "P2D")
    add_jobs(store, wf, [
        {"name": "large_job1", "command": "c", "resource_requirements": large,
         "scheduler": bigmem},
        {"name": "large_job2", "command": "c", "resource_requirements": large,
         "scheduler": bigmem},
    ] + [{"name": f"small{i}", "command": "c"} for i in range(4)])
    assert names(claims.prepare_jobs_for_submission(store, wf, worker(36, 500.0), limit=100)) == [
        "small0", "small1", "small2", "small3"]
    lifecycle.reset_job_status(store, wf)
    initialize.initialize_jobs(store, wf)
    assert names(claims.prepare_jobs_for_submission(
        store, wf, worker(36, 500.0, scheduler_config_id=bigmem))) == ["large_job1", "large_job2"]


def test_prepare_next_jobs_on_diamond(store, wf):
    f = {n: documents.add_document(store, wf, "files", {"name": n, "path": n})["_id"]
         for n in ("in", "f1", "f2", "f3", "f4")}
    add_jobs(store, wf, [
        {"name": "pre", "command": "c", "input_files": [f["in"]],
         "output_files": [f["f1"], f["f2"]]},
        {"name": "w1", "command": "c", "input_files": [f["f1"]], "output_files": [f["f3"]]},
        {"name": "w2", "command": "c", "input_files": [f["f2"]], "output_files": [f["f4"]]},
        {"name": "post", "command": "c", "input_files": [f["f3"], f["f4"]]},
    ])
    node = store.insert("compute_nodes", wf, {"hostname": "h", "pid": 1, "start_time": "t",
                                              "resources": {"num_cpus": 1, "memory_gb": 1.0}})
    sizes = []
    while True:
        batch = claims.prepare_next_jobs_for_submission(store, wf, limit=10)["jobs"]
        if not batch:
            break
        sizes.append(len(batch))
        for job in batch:
            job = lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_key"])
            lifecycle.complete_job(store, wf, job["_key"], "done", job["_rev"], 1, node["_key"], {
                "job_key": job["_key"], "run_id": 1, "return_code": 0,
                "exec_time_minutes": 1.0, "completion_time": "t", "status": "done"})
    assert sizes == [1, 2, 1]
    assert lifecycle.is_complete(store, wf)["is_complete"] is True
    # Default limit: one job.
    assert claims.prepare_next_jobs_for_submission(store, wf) == {"jobs": []}


def test_prepare_jobs_for_scheduling(store, wf):
    params = {"num_jobs": 2, "scheduler_id": "slurm_schedulers__1/9", "max_parallel_jobs": None,
              "start_one_worker_per_node": False}
    a, b, c = add_jobs(store, wf, [
        {"name": "a", "command": "c", "schedule_compute_nodes": params},
        {"name": "b", "command": "c"},
        {"name": "c", "command": "c", "schedule_compute_nodes": params},
    ])
    store.insert("blocks", wf, {"_from": a["_id"], "_to": c["_id"]})
    initialize.initialize_jobs(store, wf)
    out = claims.prepare_jobs_for_scheduling(store, wf)
    assert out == {"schedulers": [store.get("jobs", wf, a["_key"])["schedule_compute_nodes"]]}
    assert store.get("jobs", wf, a["_key"])["status"] == "scheduled"
    assert claims.prepare_jobs_for_scheduling(store, wf) == {"schedulers": []}
    # Scheduled jobs are claimable by any worker.
    assert names(claims.prepare_next_jobs_for_submission(store, wf, limit=5)) == ["a", "b"]


def test_ready_job_requirements(store, wf):
    sched = documents.add_document(store, wf, "slurm_schedulers",
                                   {"name": "s", "account": "a", "nodes": 1})["_id"]
    medium = rr(store, wf, "medium", 4, "8g", "P0DT8H", nodes=2)
    a, *_ = add_jobs(store, wf, [
        {"name": "m1", "command": "c", "resource_requirements": medium},
        {"name": "m2", "command": "c", "resource_requirements": medium},
        {"name": "d1", "command": "c"},
        {"name": "blocked", "command": "c", "resource_requirements": medium},
        {"name": "mine", "command": "c", "scheduler": sched},
    ])
    blocked = store.find("jobs", wf, {"name": "blocked"})[0]
    store.insert("blocks", wf, {"_from": a["_id"], "_to": blocked["_id"]})
    initialize.initialize_jobs(store, wf)
    everything = claims.ready_job_requirements(store, wf)
    assert everything == {"num_jobs": 4, "num_cpus": 10, "num_gpus": 0,
                          "memory_gb": (16 * GiB + 2 * 1048576) / GiB, "max_num_nodes": 2,
                          "max_runtime": "P0DT8H"}
    unscheduled = claims.ready_job_requirements(store, wf, scheduler_config_id="")
    assert unscheduled["num_jobs"] == 3
    assert claims.ready_job_requirements(store, wf, scheduler_config_id=sched)["num_jobs"] == 4
    store.update_many("jobs", wf, None, {"status": "done"})
    assert claims.ready_job_requirements(store, wf) == {
        "num_jobs": 0, "num_cpus": 0, "num_gpus": 0, "memory_gb": 0.0, "max_num_nodes": 0,
        "max_runtime": ""}
