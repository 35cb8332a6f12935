"""Critical path and estimated remaining makespan of a workflow, over the ``blocks`` DAG.

Each job's duration is **recorded** (``exec_time_minutes`` of its latest ``done`` result) when it
has run, else **declared** (``internal.runtime_seconds``, from its resource requirements). The
critical path is the longest duration-weighted path through the DAG; the remaining makespan is the
same over the unfinished jobs only (finished jobs weigh 0; a running job weighs its estimate minus
the time since it was claimed, never below 0).

Cost: three set-based reads (the jobs, the ``blocks`` edge documents, the ``done`` results), then
one linear pass in topological order (Kahn), O(jobs + edges) in memory. Reads only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torc_graph import model
from torc_graph.engine.common import now_ms, require_workflow
from torc_graph.errors import BadRequest
from torc_graph.model import Collection, Edge, JobStatus
from torc_graph.store.base import GraphStore

RUNNING = (JobStatus.SUBMITTED_PENDING.value, JobStatus.SUBMITTED.value)


def durations(jobs: list[Mapping[str, Any]], results: list[Mapping[str, Any]]
              ) -> dict[str, tuple[float, str]]:
    """``{job key: (seconds, "recorded"|"declared"|"unknown")}``: the latest done result's
    ``exec_time_minutes`` (results come in insertion order: the last one wins), else the
    declared ``internal.runtime_seconds``, else 0 ("unknown": the job was never initialized)."""
    recorded: dict[str, float] = {}
    for r in results:
        minutes = r.get("exec_time_minutes")
        if isinstance(minutes, (int, float)) and not isinstance(minutes, bool):
            recorded[r.get("job_key")] = float(minutes) * 60.0
    out: dict[str, tuple[float, str]] = {}
    for job in jobs:
        key = job["_key"]
        if key in recorded:
            out[key] = (recorded[key], "recorded")
        else:
            declared = (job.get("internal") or {}).get("runtime_seconds")
            out[key] = (float(declared), "declared") if isinstance(declared, (int, float)) \
                else (0.0, "unknown")
    return out


def longest_path(keys: list[str], edges: list[tuple[str, str]], weight: Mapping[str, float]
                 ) -> tuple[list[str], float]:
    """The maximum-weight path (vertex weights) of the DAG and its weight, in O(V + E).

    Ties go to the vertex first in ``keys`` order. Raises BadRequest if the graph has a cycle.
    """
    index = {k: i for i, k in enumerate(keys)}
    succ: list[list[int]] = [[] for _ in keys]
    indegree = [0] * len(keys)
    for a, b in edges:
        ia, ib = index.get(a), index.get(b)
        if ia is None or ib is None:
            continue  # a dangling edge
        succ[ia].append(ib)
        indegree[ib] += 1
    best = [weight[k] for k in keys]  # heaviest path ending at each vertex
    prev = [-1] * len(keys)
    order = [i for i, d in enumerate(indegree) if d == 0]
    for i in order:  # grows while iterating: Kahn's queue
        for j in succ[i]:
            candidate = best[i] + weight[keys[j]]
            if prev[j] == -1 or candidate > best[j]:
                best[j], prev[j] = candidate, i
            indegree[j] -= 1
            if indegree[j] == 0:
                order.append(j)
    if len(order) != len(keys):
        raise BadRequest("the blocks graph has a cycle: no critical path")
    if not keys:
        return [], 0.0
    end = max(range(len(keys)), key=lambda i: (best[i], -i))
    path = []
    while end != -1:
        path.append(keys[end])
        end = prev[end]
    return path[::-1], best[index[path[0]]]


def critical_path(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/critical_path``.

    Returns ``{"num_jobs", "num_edges", "critical_path": {"jobs": [...], "length_seconds"},
    "remaining": {"jobs": [...], "makespan_seconds"}}``; each path job is ``{key, name, status,
    duration_seconds, source, remaining_seconds}`` (``source``: recorded, declared or unknown).
    Raises NotFound for a missing workflow, BadRequest for a cyclic blocks graph.
    """
    require_workflow(store, workflow)
    now = now_ms()
    jobs = store.find(Collection.JOBS.value, workflow)
    blocks = store.find(Edge.BLOCKS.value, workflow)
    results = store.find(Collection.RESULTS.value, workflow, {"status": JobStatus.DONE.value})
    by_key = {j["_key"]: j for j in jobs}
    keys = list(by_key)
    duration = durations(jobs, results)
    remaining = {k: _remaining(by_key[k], duration[k][0], now) for k in keys}
    edges = [(model.split_id(e["_from"])[2], model.split_id(e["_to"])[2]) for e in blocks]
    full, length = longest_path(keys, edges, {k: duration[k][0] for k in keys})
    left, makespan = longest_path(keys, edges, remaining)

    def row(k: str) -> dict[str, Any]:
        job = by_key[k]
        seconds, source = duration[k]
        return {"key": k, "name": job.get("name"), "status": job.get("status"),
                "duration_seconds": seconds, "source": source,
                "remaining_seconds": remaining[k]}

    left = [k for k in left if remaining[k] > 0] if makespan > 0 else []
    return {
        "workflow": workflow,
        "num_jobs": len(keys),
        "num_edges": len(edges),
        "critical_path": {"jobs": [row(k) for k in full], "length_seconds": length},
        "remaining": {"jobs": [row(k) for k in left], "makespan_seconds": makespan},
    }


def _remaining(job: Mapping[str, Any], estimate: float, now: int) -> float:
    """Seconds of work left: 0 for finished jobs, the estimate minus the elapsed time for
    running ones, the whole estimate for the rest."""
    status = job.get("status")
    if status in model.FINISHED_STATUSES:
        return 0.0
    if status in RUNNING:
        claimed = (job.get("execution") or {}).get("claimed_at")
        if isinstance(claimed, (int, float)):
            return max(0.0, estimate - max(0.0, (now - claimed) / 1000.0))
    return estimate
