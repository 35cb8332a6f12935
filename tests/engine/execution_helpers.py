"""Helpers shared by the execution, lease and retry tests (loaded with importlib: the tests
directory is not a package)."""

from __future__ import annotations

from torc_graph.engine import execution, initialize, jobs

RES = {"num_cpus": 4, "memory_gb": 8.0}


def add_node(store, wf, host="host1"):
    return store.insert("compute_nodes", wf, {
        "hostname": host, "pid": 1, "start_time": "t", "is_active": True,
        "resources": {"num_cpus": 4, "memory_gb": 8.0, "num_gpus": 0, "num_nodes": 1}})


def make_jobs(store, wf, edges, config=None):
    """Jobs named by ``edges`` ({name: [blockers]}), initialized; returns {name: key}."""
    keys = {}
    for name, blockers in edges.items():
        body = {"name": name, "command": f"run {name}",
                "blocked_by": [f"jobs__{wf}/{keys[b]}" for b in blockers]}
        keys[name] = jobs.add_job(store, wf, body)["_key"]
    if config:
        space = store.workflow_space(wf)
        store.update("workflow_configs", None, space.config["_key"], config)
    initialize.initialize_jobs(store, wf)
    return keys


def claim(store, wf, node, limit=10, **kw):
    return execution.claim_jobs(store, wf, {"compute_node_key": node["_key"], "resources": RES,
                                            "limit": limit, **kw})


def item(job, rc=0, status="done", cause="exit", attempt=None):
    return {"job_key": job["_key"],
            "attempt_id": attempt or job["execution"]["attempt_id"], "status": status,
            "cause": cause,
            "result": {"return_code": rc, "exec_time_minutes": 0.1,
                       "completion_time": "2026-01-01T00:00:00"}}


def complete(store, wf, node, items, run_id=1, **kw):
    return execution.complete_jobs(store, wf, {"compute_node_key": node["_key"],
                                               "run_id": run_id, "completions": items, **kw})


def statuses(store, wf):
    return {j["name"]: j["status"] for j in store.find("jobs", wf)}
