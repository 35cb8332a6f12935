"""Reconcile a workflow's allocations with Slurm (``torc-graph workflows sync``; every Slurm
worker runs it when it starts).

For every allocation still ``pending``/``active`` whose Slurm job has ended (squeue -t all, then
sacct), whatever the way (worker exit, scancel, walltime, node failure):

* jobs its workers still hold go back to ``ready`` with a ``job/requeued`` event naming the
  allocation and its Slurm state: jobs claimed through the batched execution API (their
  ``execution.compute_node`` is a node of the allocation) through ``release_jobs`` on that
  node's behalf (attempt + 1, a result row; fenced by the attempt id); jobs claimed through
  torc v0.6.4's endpoints (whose latest ``executed`` edge of the run comes from one of its
  nodes, or ``submitted_pending`` without an edge: such a claim names no node, and a live
  claimant's ``start_job`` is refused once the revision changed) through
  ``manage_status_change`` (a new revision: a late report from the dead worker is refused);
* its compute nodes become inactive;
* the sacct figures of the job steps it ran are stored with their results (``result.slurm``);
* the allocation becomes ``complete`` with a ``scheduler/allocation_ended`` event.

A Slurm job that neither squeue nor sacct knows yet is left alone (sacct lags submission): it is
never taken for lost. Leases (docs/execution-model.md §5) requeue the same jobs on their own
once they expire; whichever comes first wins, the other finds the attempt already requeued
(stale, changes nothing).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torc_graph.client import ApiError, Client, seg
from torc_graph.slurm import commands
from torc_graph.slurm.allocations import allocations, set_status

#: Name of the Slurm step that runs a job: torc_job_<job key>_<run id>[_<attempt id>].
STEP_NAME = re.compile(r"^torc_job_(\d+)_(\d+)(?:_(\d+))?$")
HELD = ("submitted", "submitted_pending")


def step_name(job_key: str, run_id: int, attempt_id: int | None = None) -> str:
    """The ``srun --job-name`` of the step that runs a job attempt (sacct finds its figures by
    it)."""
    name = f"torc_job_{job_key}_{run_id}"
    return name if attempt_id is None else f"{name}_{attempt_id}"


@dataclass
class ReconcileReport:
    """What one reconcile found and did."""

    checked: int = 0
    ended: dict[str, str] = field(default_factory=dict)  # Slurm job id -> Slurm state
    requeued: list[str] = field(default_factory=list)  # job keys
    figures: int = 0


def reconcile(client: Client, wf: str) -> ReconcileReport:
    """Bring the workflow's allocations in line with Slurm (see the module docstring).

    Raises SlurmError (squeue/sacct failed), ApiError. Each job is requeued by one
    ``manage_status_change`` (atomic on the server; a concurrent reconcile gets a stale-rev
    error for that job and skips it)."""
    report = ReconcileReport()
    live = [a for a in allocations(client, wf, ("pending", "active")) if a.get("scheduler_id")]
    report.checked = len(live)
    if not live:
        return report
    ids = [a["scheduler_id"] for a in live]
    queue = commands.queue(ids)
    unsure = [i for i in ids if i not in queue]
    acct = {e.job_id: e for e in commands.accounting(unsure)} if unsure else {}
    for alloc in live:
        sid = alloc["scheduler_id"]
        state = queue[sid].state if sid in queue else getattr(acct.get(sid), "state", None)
        if state in commands.FINISHED_STATES:
            report.ended[sid] = state
    if not report.ended:
        return report
    nodes = _compute_nodes_by_allocation(client, wf, report.ended)
    _requeue(client, wf, nodes, report)
    report.figures = store_figures(client, wf, report.ended)
    for alloc in live:
        sid = alloc["scheduler_id"]
        if sid not in report.ended:
            continue
        for node in nodes.get(sid, []):
            if node.get("is_active"):
                _put(client, wf, "compute_nodes", {**node, "is_active": False})
        set_status(client, wf, alloc, "complete")
        client.add_event(wf, {
            "category": "scheduler", "type": "allocation_ended", "scheduler_id": sid,
            "slurm_state": report.ended[sid],
            "message": f"Slurm allocation {sid} ended ({report.ended[sid]})"})
    return report


def store_figures(client: Client, wf: str, allocation_ids: Iterable[str]) -> int:
    """Store the sacct figures (state, exit code, MaxRSS, elapsed, node, step) of the job
    steps these allocations ran with the matching results (``result.slurm``), for results that
    have none yet; returns how many were stored. Raises SlurmError, ApiError."""
    stored = 0
    for entry in commands.accounting(allocation_ids):
        m = STEP_NAME.match(entry.name)
        if not m or entry.step is None:
            continue
        job_key, run_id, attempt = m.groups()
        results = [r for r in client.iter_items(f"/workflows/{seg(wf)}/results",
                                                job_key=job_key, run_id=int(run_id))
                   if not r.get("slurm")
                   and (attempt is None or str(r.get("attempt_id", attempt)) == attempt)]
        if not results:
            continue
        result = results[-1]
        if _put(client, wf, "results", {**result, "slurm": entry.figures()}):
            stored += 1
    return stored


def _compute_nodes_by_allocation(client: Client, wf: str, ended: Iterable[str]
                                 ) -> dict[str, list[dict[str, Any]]]:
    wanted = set(ended)
    nodes: dict[str, list[dict[str, Any]]] = {}
    for node in client.iter_items(f"/workflows/{seg(wf)}/compute_nodes"):
        sid = str((node.get("scheduler") or {}).get("slurm_job_id") or "")
        if sid in wanted:
            nodes.setdefault(sid, []).append(node)
    return nodes


def _requeue(client: Client, wf: str, nodes: dict[str, list[dict[str, Any]]],
             report: ReconcileReport) -> None:
    """Requeue the jobs the ended allocations' nodes hold (see the module docstring)."""
    dead = {n["_key"]: sid for sid, ns in nodes.items() for n in ns}
    by_id = {n["_id"]: sid for sid, ns in nodes.items() for n in ns}
    run_id = int(client.get_status(wf).get("run_id", 0))
    latest = _latest_starts(client, wf, run_id)
    some_ended = next(iter(report.ended))
    releases: dict[str, list[dict[str, Any]]] = {}  # dead node key -> release items
    for status in HELD:
        for job in client.iter_items(f"/workflows/{seg(wf)}/jobs", status=status):
            ex = job.get("execution") or {}
            holder = ex.get("compute_node")
            if holder:  # a lease-era claim names its node: release it on that node's behalf
                if holder in dead:
                    releases.setdefault(holder, []).append(job)
                continue
            edge = latest.get(job["_id"])
            if edge is not None:
                sid = by_id.get(edge["_from"])
            elif status == "submitted_pending":
                # A torc v0.6.4 claim names no node, so a claimed, never started job may be the
                # dead worker's. Requeueing is safe: a live claimant's start_job carries the old
                # revision and is refused, so nothing runs twice.
                sid = some_ended
            else:
                sid = None
            if sid is not None and _status_change_to_ready(client, wf, job, run_id):
                _requeued(client, wf, job, sid, status, report)
    for node_key, jobs in releases.items():
        items = [{"job_key": j["_key"], "attempt_id": int(j["execution"]["attempt_id"]),
                  "cause": "interrupted"} for j in jobs]
        answer = client.post(f"/workflows/{seg(wf)}/release_jobs",
                             {"compute_node_key": node_key, "releases": items})
        released = {i["job_key"] for i in answer.get("items", []) if i.get("outcome") == "released"}
        for job in jobs:
            if job["_key"] in released:
                _requeued(client, wf, job, dead[node_key], job["status"], report)


def _latest_starts(client: Client, wf: str, run_id: int) -> dict[str, dict[str, Any]]:
    """Job id -> its latest ``executed`` edge of this run (a requeued job started again
    elsewhere belongs to its new node)."""
    latest: dict[str, dict[str, Any]] = {}
    for edge in client.iter_items(f"/workflows/{seg(wf)}/edges/executed"):
        if (edge.get("data") or {}).get("run_id", run_id) != run_id:
            continue
        prev = latest.get(edge["_to"])
        if prev is None or int(edge["_key"]) > int(prev["_key"]):
            latest[edge["_to"]] = edge
    return latest


def _status_change_to_ready(client: Client, wf: str, job: dict[str, Any], run_id: int) -> bool:
    """torc v0.6.4's way back to ``ready``; False if the job changed meanwhile."""
    path = (f"/workflows/{seg(wf)}/jobs/{seg(job['_key'])}/manage_status_change/ready/"
            f"{seg(job['_rev'])}/{run_id}")
    try:
        client.put(path)
    except ApiError as exc:  # changed meanwhile (completed, canceled, requeued)
        if exc.status not in (400, 409):
            raise
        return False
    return True


def _requeued(client: Client, wf: str, job: dict[str, Any], sid: str, status: str,
              report: ReconcileReport) -> None:
    report.requeued.append(job["_key"])
    client.add_event(wf, {
        "category": "job", "type": "requeued", "job_key": job["_key"], "scheduler_id": sid,
        "cause": "lost",
        "message": f"Job {job['_key']} ({job.get('name')}) is ready again: its Slurm "
                   f"allocation {sid} ended ({report.ended[sid]}) while it was {status}"})


def _put(client: Client, wf: str, collection: str, doc: dict[str, Any]) -> bool:
    """PUT a document; False if it changed meanwhile (409). Raises other ApiErrors."""
    try:
        client.update_document(wf, collection, {k: v for k, v in doc.items() if k != "_oldRev"})
    except ApiError as exc:
        if exc.status != 409:
            raise
        return False
    return True
