"""Reconcile a workflow's allocations with Slurm (``torc-graph workflows sync``; every Slurm
worker runs it when it starts).

For every allocation still ``pending``/``active`` whose Slurm job has ended (squeue -t all, then
sacct), whatever the way (worker exit, scancel, walltime, node failure):

* jobs its workers still hold (``submitted``/``submitted_pending`` whose latest ``executed`` edge
  of the run comes from one of its compute nodes), and jobs claimed but never started
  (``submitted_pending`` without an edge: a v0.6.4 claim names no node, and a live claimant's
  ``start_job`` is refused once the revision changed), go back to ``ready``
  (``manage_status_change``, which changes their revision, so a late report from the dead
  worker is refused) with a ``job/requeued`` event naming the allocation and its Slurm state;
* its compute nodes become inactive;
* the sacct figures of the job steps it ran are stored with their results (``result.slurm``);
* the allocation becomes ``complete`` with a ``scheduler/allocation_ended`` event.

A Slurm job that neither squeue nor sacct knows yet is left alone (sacct lags submission): it is
never taken for lost. When leases exist (docs/execution-model.md §5) they requeue the same jobs
on their own; both paths requeue through the server, which counts each requeue once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torc_graph.client import ApiError, Client, seg
from torc_graph.slurm import commands
from torc_graph.slurm.allocations import allocations, set_status

#: Name of the Slurm step that runs a job: torc_job_<job key>_<run id>.
STEP_NAME = re.compile(r"^torc_job_(\d+)_(\d+)$")
HELD = ("submitted", "submitted_pending")


def step_name(job_key: str, run_id: int) -> str:
    """The ``srun --job-name`` of the step that runs a job (sacct finds its figures by it)."""
    return f"torc_job_{job_key}_{run_id}"


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
        job_key, run_id = m.groups()
        results = [r for r in client.iter_items(f"/workflows/{seg(wf)}/results",
                                                job_key=job_key, run_id=int(run_id))
                   if not r.get("slurm")]
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
    holder = {n["_id"]: sid for sid, ns in nodes.items() for n in ns}
    run_id = int(client.get_status(wf).get("run_id", 0))
    latest: dict[str, dict[str, Any]] = {}  # job id -> its latest executed edge of this run
    for edge in client.iter_items(f"/workflows/{seg(wf)}/edges/executed"):
        if (edge.get("data") or {}).get("run_id", run_id) != run_id:
            continue
        prev = latest.get(edge["_to"])
        if prev is None or int(edge["_key"]) > int(prev["_key"]):
            latest[edge["_to"]] = edge
    # A job is held by the node that started it last (a requeued job started again elsewhere
    # belongs to its new node).
    held = {job_id: holder[e["_from"]] for job_id, e in latest.items() if e["_from"] in holder}
    started = set(latest)
    some_ended = next(iter(report.ended))
    for status in HELD:
        for job in client.iter_items(f"/workflows/{seg(wf)}/jobs", status=status):
            sid = held.get(job["_id"])
            if sid is None and status == "submitted_pending" and job["_id"] not in started:
                # Claimed but never started: the claimant is unknown (v0.6.4 claims name no
                # node) and may be the worker that died. Requeueing is safe: a live claimant's
                # start_job carries the old revision and is refused, so nothing runs twice.
                sid = some_ended
            if sid is None:
                continue
            path = (f"/workflows/{seg(wf)}/jobs/{seg(job['_key'])}/manage_status_change/ready/"
                    f"{seg(job['_rev'])}/{run_id}")
            try:
                client.put(path)
            except ApiError as exc:  # changed meanwhile (completed, canceled, requeued)
                if exc.status not in (400, 409):
                    raise
                continue
            report.requeued.append(job["_key"])
            state = report.ended[sid]
            client.add_event(wf, {
                "category": "job", "type": "requeued", "job_key": job["_key"],
                "scheduler_id": sid, "cause": "lost",
                "message": f"Job {job['_key']} ({job.get('name')}) is ready again: its Slurm "
                           f"allocation {sid} ended ({state}) while it was {status}"})


def _put(client: Client, wf: str, collection: str, doc: dict[str, Any]) -> bool:
    """PUT a document; False if it changed meanwhile (409). Raises other ApiErrors."""
    try:
        client.update_document(wf, collection, {k: v for k, v in doc.items() if k != "_oldRev"})
    except ApiError as exc:
        if exc.status != 409:
            raise
        return False
    return True
