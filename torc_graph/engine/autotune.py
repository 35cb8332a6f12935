"""Auto-tuning of resource requirements (behavior doc §4.15).

Enabling picks one representative job per resource-requirements name and disables the others;
the client then runs the workflow; processing the results rewrites each representative's
requirements from its measured peak CPU, memory and run time, and re-enables the rest.

Fixes relative to torc v0.6.4: processing ends with ``auto_tune_status.enabled = false`` (the
original added a stray ``disabled`` key); disabling an already-disabled job and tuning a job
without resource requirements are clear 400s; both steps validate everything before writing
and run in one transaction, so a 400 changes nothing (ArangoDB may commit a large one in
chunks, :meth:`GraphStore.bulk_transaction`: each step completes when rerun over an
interrupted run of itself, which the store tells it it resumes).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from torc_graph import model
from torc_graph.engine.common import now_ms, require_workflow
from torc_graph.errors import BadRequest
from torc_graph.store.base import GraphStore
from torc_graph.store.bulk import bulk_operation
from torc_graph.store.filters import In, NotIn
from torc_graph.store.records import Document

_C, _E, _S = model.Collection, model.Edge, model.JobStatus
GiB = 1024**3

ENABLED_MESSAGE = "Enabled jobs for auto-tune mode."
PROCESSED_MESSAGE = "Processed the results of auto-tuning resource requirements."


def _rr_by_job(store: GraphStore, workflow: str, job_ids: list[str] | None = None) -> dict[str, list[Document | None]]:
    """job _id -> the resource-requirements vertices its ``requires`` edges point to."""
    out: dict[str, list[Document | None]] = defaultdict(list)
    for hop in store.neighbors(workflow, _E.REQUIRES.value, "out", job_ids):
        out[hop.start_id].append(hop.vertex)
    return out


@bulk_operation("auto_tune_resource_requirements")
def auto_tune_resource_requirements(store: GraphStore, workflow: str) -> dict[str, str]:
    """Enable auto-tune mode.

    Requires ``config.compute_node_resource_stats.process`` (else 400). In storage order,
    skipping ``blocked`` jobs, the first job of each resource-requirements name (``default``
    for jobs without) becomes the group's representative (``auto_tune_status.job_keys``); the
    other jobs of the group are set to ``disabled``. A job to disable that already is
    ``disabled`` is a 400, unless an interrupted run of this call (ArangoDB chunks) disabled
    it: a rerun resumes that run (same representatives: disabled jobs are not blocked). Atomic.
    Raises NotFound for a missing workflow.
    """
    require_workflow(store, workflow)
    with store.bulk_transaction(workflow, "auto_tune_resource_requirements") as resumed:
        space = store.workflow_space(workflow)
        stats = space.config.get("compute_node_resource_stats") or {}
        if stats.get("process") is not True:
            raise BadRequest(
                "auto-tune requires the workflow config to enable process resource stats "
                "(compute_node_resource_stats.process = true)"
            )
        rr_of = _rr_by_job(store, workflow)
        job_keys: list[str] = []
        to_disable: list[str] = []
        seen: set[str] = set()
        jobs = store.iter_find(
            _C.JOBS.value, workflow, {"status": NotIn([_S.BLOCKED.value])}
        )
        for job in jobs:
            linked = [v for v in rr_of.get(job["_id"], ()) if v is not None]
            name = linked[0].get("name", "default") if linked else "default"
            if name not in seen:
                seen.add(name)
                job_keys.append(job["_key"])
            elif job.get("status") == _S.DISABLED.value and not resumed:
                raise BadRequest(
                    f"cannot enable auto-tune: job {job['_key']} ({job.get('name')!r}) would be "
                    f"disabled but already is; enable it (e.g. reset its status) and retry"
                )
            else:
                to_disable.append(job["_key"])
        if to_disable:
            store.update_many(
                _C.JOBS.value, workflow, {"_key": In(to_disable)}, {"status": _S.DISABLED.value}
            )
        auto_tune = dict(space.status.get("auto_tune_status") or {})
        auto_tune.update(enabled=True, job_keys=job_keys)
        auto_tune.pop("disabled", None)
        store.update(
            model.GlobalCollection.WORKFLOW_STATUSES.value,
            None,
            space.status["_key"],
            {"auto_tune_status": auto_tune},
        )
    return {"message": ENABLED_MESSAGE}


def tuned_values(stats: Document, result: Document) -> dict[str, Any]:
    """New ``num_cpus``, ``memory`` and ``runtime`` from a job's peak process stats and result.

    ``num_cpus`` = ceil(max CPU % / 100), at least 1; ``memory`` = ``"<ceil(max_rss GiB)>g"``
    and ``runtime`` = ``"P0DT0H<ceil(minutes)>M"``, each at least 1 unit so a tiny or
    unmeasured job never gets a zero requirement.
    """
    cpu = stats.get("max_cpu_percent") or 0
    rss = stats.get("max_rss") or 0
    minutes = result.get("exec_time_minutes") or 0
    return {
        "num_cpus": 1 if cpu <= 0 else max(1, math.ceil(cpu / 100)),
        "memory": f"{max(1, math.ceil(rss / GiB))}g",
        "runtime": f"P0DT0H{max(1, math.ceil(minutes))}M",
    }


@bulk_operation("process_auto_tune_resource_requirements_results")
def process_auto_tune_resource_requirements_results(store: GraphStore, workflow: str) -> dict[str, str]:
    """Apply the measured results of the auto-tune run.

    For each representative job: its latest (highest ``run_id``) process stats and its result
    for the current run give new requirements (:func:`tuned_values`), saved to its resource
    requirements with one ``resource_requirements``/``update`` event each. Then every other job
    (which must be ``disabled``) goes back to ``uninitialized``, and ``auto_tune_status.enabled``
    becomes false.

    400 (nothing changed) if: auto-tune is not enabled; a representative has no process stats, no current-run result or
    no resource requirements document; two representatives share one document; another job is
    not disabled (or, resuming an interrupted run of this call, not disabled nor
    uninitialized). The jobs are written first, the requirements, events and status last (in
    the last chunk on ArangoDB). Atomic. Raises NotFound for a missing workflow.
    """
    require_workflow(store, workflow)
    with store.bulk_transaction(
            workflow, "process_auto_tune_resource_requirements_results") as resumed:
        space = store.workflow_space(workflow)
        run_id = space.status.get("run_id")
        auto_tune = dict(space.status.get("auto_tune_status") or {})
        if not auto_tune.get("enabled"):
            raise BadRequest(
                "auto-tune is not enabled for this workflow; enable it with "
                "auto_tune_resource_requirements and run the workflow first"
            )
        job_keys = list(auto_tune.get("job_keys") or [])
        job_ids = [model.make_id(_C.JOBS.value, workflow, k) for k in job_keys]

        jobs = {j["_id"]: j for j in store.find(_C.JOBS.value, workflow, {"_key": In(job_keys)})}
        rr_of = _rr_by_job(store, workflow, job_ids)
        stats_of: dict[str, list[Document]] = defaultdict(list)
        for hop in store.neighbors(workflow, _E.PROCESS_USED.value, "out", job_ids):
            if hop.vertex is not None:
                stats_of[hop.start_id].append(hop.vertex)
        result_of: dict[str, list[Document]] = defaultdict(list)
        for hop in store.neighbors(
            workflow, _E.RETURNED.value, "out", job_ids, where={"run_id": run_id}
        ):
            result_of[hop.start_id].append(hop.vertex)

        updates: list[tuple[Document, dict[str, Any]]] = []
        tuned: dict[str, str] = {}
        for key, job_id in zip(job_keys, job_ids):
            job = jobs.get(job_id)
            if job is None:
                raise BadRequest(f"auto-tune job {key} does not exist")
            label = f"job {key} ({job.get('name')!r})"
            stats = [s for s in stats_of.get(job_id, ()) if _is_number(s.get("run_id"))]
            if not stats:
                raise BadRequest(f"{label} has no process stats; was it run with auto-tune?")
            latest = max(stats, key=lambda s: s["run_id"])
            results = result_of.get(job_id)
            if not results:
                raise BadRequest(f"{label} has no result for the current run_id {run_id}")
            linked = [v for v in rr_of.get(job_id, ()) if v is not None]
            if not linked:
                raise BadRequest(
                    f"{label} has no resource requirements document to tune; "
                    "assign one to each auto-tuned job"
                )
            rr = linked[0]
            if rr["_key"] in tuned:
                raise BadRequest(
                    f"resource requirements {rr['_key']} ({rr.get('name')!r}) would be tuned "
                    f"twice, by job {tuned[rr['_key']]} and job {key}"
                )
            tuned[rr["_key"]] = key
            updates.append((rr, tuned_values(latest, results[-1])))

        others_not_disabled = store.find(
            _C.JOBS.value,
            workflow,
            {"_key": NotIn(job_keys), "status": NotIn(
                [_S.DISABLED.value] + ([_S.UNINITIALIZED.value] if resumed else []))},
            limit=1,
        )
        if others_not_disabled:
            j = others_not_disabled[0]
            raise BadRequest(
                f"job {j['_key']} ({j.get('name')!r}) is not an auto-tune job and should be "
                f"disabled, but its status is {j.get('status')!r}"
            )

        store.update_many(
            _C.JOBS.value, workflow, {"_key": NotIn(job_keys)}, {"status": _S.UNINITIALIZED.value}
        )
        events = []
        for rr, values in updates:
            new = store.update(_C.RESOURCE_REQUIREMENTS.value, workflow, rr["_key"], values)
            new.pop("_oldRev", None)
            name = rr.get("name")
            events.append(
                {
                    "timestamp": now_ms(),
                    "category": "resource_requirements",
                    "type": "update",
                    "name": name,
                    "old": rr,
                    "new": new,
                    "message": f"Updated resource requirements for name = {name}",
                }
            )
        if events:
            store.insert_many(_C.EVENTS.value, workflow, events)
        auto_tune["enabled"] = False
        auto_tune.pop("disabled", None)
        store.update(
            model.GlobalCollection.WORKFLOW_STATUSES.value,
            None,
            space.status["_key"],
            {"auto_tune_status": auto_tune},
        )
    return {"message": PROCESSED_MESSAGE}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
