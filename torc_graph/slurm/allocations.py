"""A workflow's Slurm allocations: submit them (torc's ``schedule-nodes`` traffic), schedule
more just in time, list them with their Slurm state, and cancel them.

An allocation is a ``scheduled_compute_nodes`` document (``scheduler_config_id`` = the
``slurm_schedulers`` ``_id``, ``scheduler_id`` = the Slurm job id) whose status goes
``uninitialized`` (before sbatch) → ``pending`` (submitted) → ``active`` (its worker runs) →
``complete`` (its worker stopped, or reconcile found it ended). The documents and events are
torc v0.6.4's, so torc-client 0.6.4's ``hpc slurm`` commands see the same collections.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torc_graph.client import ApiError, Client, seg
from torc_graph.slurm import commands
from torc_graph.slurm.commands import SlurmError, parse_walltime
from torc_graph.slurm.script import SchedulerError, batch_script, sbatch_options

SCHEDULERS = "slurm_schedulers"
ALLOCATIONS = "scheduled_compute_nodes"
#: Allocation statuses in which its Slurm job may still run.
LIVE_STATUSES = ("uninitialized", "pending", "active")
#: Ready jobs looked at when deciding whether an allocation could run any of them.
WAITING_SAMPLE = 100
#: torc's default compute_node_expiration_buffer_seconds.
DEFAULT_BUFFER = 120


class AllocationError(Exception):
    """Allocations cannot be submitted (unknown scheduler, bad scheduler, sbatch refused)."""


@dataclass(frozen=True)
class Submission:
    """Where allocations report to and write: the server URL the compute nodes use, the
    directory for the worker logs, job output and Slurm's output, and the jobs' working
    directory. ``token_file``: the credential the workers read (docs/execution-model.md §6)."""

    url: str
    output_dir: Path
    cwd: Path
    token_file: str | None = None
    max_allocations: int | None = None
    #: The scheduler (name or key) for jobs that no scheduler binds; None: no default.
    default_scheduler: str | None = None

    def worker_args(self) -> list[str]:
        """Options of ``slurm run-jobs`` that carry this submission into the allocation (so its
        worker can submit allocations just in time, with the same settings)."""
        args = []
        if self.max_allocations is not None:
            args += ["--max-allocations", str(self.max_allocations)]
        if self.default_scheduler is not None:
            args += ["--scheduler", self.default_scheduler]
        return args


def is_slurm_id(scheduler_id: Any) -> bool:
    """Whether a scheduler ``_id`` names a slurm_schedulers document (torc's test)."""
    return isinstance(scheduler_id, str) and scheduler_id.split("/")[0].split("__")[0] == SCHEDULERS


def find_scheduler(client: Client, wf: str, name_or_key: str) -> dict[str, Any]:
    """The workflow's slurm_schedulers document with this ``_key`` or ``name`` (a key wins).

    Raises AllocationError naming the known schedulers."""
    docs = list(client.iter_items(f"/workflows/{seg(wf)}/{SCHEDULERS}"))
    for doc in docs:
        if doc["_key"] == str(name_or_key):
            return doc
    named = [d for d in docs if d.get("name") == name_or_key]
    if len(named) == 1:
        return named[0]
    known = ", ".join(f"{d.get('name')} ({d['_key']})" for d in docs) or "none"
    if named:
        raise AllocationError(f"{len(named)} Slurm schedulers are named {name_or_key!r}: use a "
                              f"key ({known})")
    raise AllocationError(f"workflow {wf} has no Slurm scheduler {name_or_key!r} "
                          f"(known: {known}); add one with `torc-graph slurm schedulers add`")


def allocations(client: Client, wf: str, statuses: Iterable[str] | None = None
                ) -> list[dict[str, Any]]:
    """The workflow's Slurm allocations (scheduled_compute_nodes of a slurm scheduler)."""
    wanted = None if statuses is None else set(statuses)
    return [d for d in client.iter_items(f"/workflows/{seg(wf)}/{ALLOCATIONS}")
            if is_slurm_id(d.get("scheduler_config_id"))
            and (wanted is None or d.get("status") in wanted)]


def submit(client: Client, wf: str, scheduler: dict[str, Any], count: int,
           where: Submission) -> list[str]:
    """Submit ``count`` allocations of ``scheduler``; returns their Slurm job ids.

    Per allocation: POST the scheduled_compute_nodes document (``uninitialized``), sbatch, PUT
    it ``pending`` with the Slurm job id (DELETE it if sbatch fails), then one
    ``scheduler/submit`` event. Raises AllocationError (bad scheduler, sbatch refused) after
    the allocations submitted so far were recorded."""
    try:
        options = sbatch_options(scheduler, wf, where.output_dir)
    except SchedulerError as exc:
        raise AllocationError(f"Slurm scheduler {scheduler.get('name')!r}: {exc}") from None
    where.output_dir.mkdir(parents=True, exist_ok=True)
    script = where.output_dir / f"torc_graph_allocation_{wf}.sh"
    text = batch_script(wf, where.url, where.output_dir, where.cwd, where.token_file,
                        int(scheduler.get("nodes") or 1), where.worker_args())
    tmp = script.with_name(f".{script.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.chmod(0o700)
    os.replace(tmp, script)  # atomic: a concurrent submission never reads half a script
    job_ids: list[str] = []
    try:
        for _ in range(count):
            node = client.add_document(wf, ALLOCATIONS, {
                "scheduler_config_id": scheduler["_id"], "status": "uninitialized"})
            try:
                job_id = commands.submit(options, str(script), str(where.cwd))
            except SlurmError as exc:
                _discard(client, wf, node)
                raise AllocationError(str(exc)) from None
            client.update_document(wf, ALLOCATIONS, {
                **_strip(node), "scheduler_id": job_id, "status": "pending"})
            job_ids.append(job_id)
    finally:
        if job_ids:
            client.add_event(wf, {
                "category": "scheduler", "type": "submit", "num_jobs": len(job_ids),
                "job_ids": job_ids, "scheduler_config_id": scheduler["_id"],
                "message": f"Submitted {len(job_ids)} Slurm allocation(s) of scheduler "
                           f"{scheduler.get('name')!r}: {', '.join(job_ids)}"})
    return job_ids


def schedule_just_in_time(client: Client, wf: str, where: Submission) -> list[str]:
    """Submit allocations for jobs that nothing will run, bounded by ``where.max_allocations``
    live allocations (None: no bound); returns the new Slurm job ids.

    torc's ``schedule_compute_nodes`` semantics first: ``prepare_jobs_for_scheduling`` turns
    ready jobs with ``schedule_compute_nodes`` into ``scheduled`` and names, per job, a number
    of allocations of a scheduler. Then, if ready or scheduled jobs remain and no allocation is
    live, one allocation of the job's scheduler (or the default scheduler). Raises
    AllocationError, ApiError. Nothing is submitted for a canceled workflow (a worker ending
    because ``workflows cancel`` scancel'ed it must not start another)."""
    if (client.is_complete(wf) or {}).get("is_canceled"):
        return []
    live = len(allocations(client, wf, LIVE_STATUSES))
    room = None if where.max_allocations is None else max(where.max_allocations - live, 0)
    wanted: dict[str, int] = {}
    params = client.post(f"/workflows/{seg(wf)}/prepare_jobs_for_scheduling") or {}
    for entry in params.get("schedulers") or []:
        sid = (entry or {}).get("scheduler_id")
        if is_slurm_id(sid):
            wanted[sid] = wanted.get(sid, 0) + int(entry.get("num_jobs") or 1)
    if not wanted and live == 0:
        sid = _scheduler_for_waiting_jobs(client, wf, where.default_scheduler)
        if sid is not None:
            wanted[sid] = 1
    submitted: list[str] = []
    for sid, count in wanted.items():
        if room is not None:
            count = min(count, room - len(submitted))
        if count <= 0:
            break
        scheduler = client.get(f"/workflows/{seg(wf)}/{SCHEDULERS}/{seg(sid.split('/')[-1])}")
        submitted += submit(client, wf, scheduler, count, where)
    return submitted


def cancel(client: Client, wf: str, wait_seconds: float = 30.0) -> list[str]:
    """scancel every live allocation of the workflow and wait (up to ``wait_seconds``) until
    squeue no longer runs them; mark them ``complete`` with a ``scheduler/cancel`` event.
    Returns the canceled Slurm job ids. Raises SlurmError (scancel/squeue failed)."""
    live = [a for a in allocations(client, wf, LIVE_STATUSES) if a.get("scheduler_id")]
    ids = [a["scheduler_id"] for a in live]
    if not ids:
        return []
    commands.cancel(ids)
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        queue = commands.queue(ids)
        if all(e.state in commands.FINISHED_STATES for e in queue.values()):
            break
        time.sleep(0.5)
    for alloc in live:
        set_status(client, wf, alloc, "complete")
    client.add_event(wf, {"category": "scheduler", "type": "cancel", "job_ids": ids,
                          "message": f"Canceled Slurm allocation(s) {', '.join(ids)}"})
    return ids


def _scheduler_for_waiting_jobs(client: Client, wf: str, default: str | None) -> str | None:
    """The ``_id`` of a Slurm scheduler whose allocation could run one of the first
    :data:`WAITING_SAMPLE` ready/scheduled jobs (its own scheduler, else ``default``), or None.
    A job whose runtime exceeds the scheduler's walltime minus the workflow's
    ``compute_node_expiration_buffer_seconds`` does not count: an allocation would never
    start it."""
    buffer = int((client.get_config(wf) or {}).get("compute_node_expiration_buffer_seconds",
                                                    DEFAULT_BUFFER) or 0)
    schedulers: dict[str, dict[str, Any] | None] = {}
    for status in ("ready", "scheduled"):
        page = client.get(f"/workflows/{seg(wf)}/jobs", status=status, limit=WAITING_SAMPLE)
        for job in page.get("items") or []:
            internal = job.get("internal") or {}
            sid = internal.get("scheduler_config_id") or ""
            if not is_slurm_id(sid):
                if default is None:
                    continue
                sid = find_scheduler(client, wf, default)["_id"]
            if sid not in schedulers:
                key = seg(sid.split("/")[-1])
                schedulers[sid] = client.get(f"/workflows/{seg(wf)}/{SCHEDULERS}/{key}")
            walltime = (schedulers[sid] or {}).get("walltime")
            if not walltime or int(internal.get("runtime_seconds") or 0) <= (
                    parse_walltime(walltime) - buffer):
                return sid
    return None


def set_status(client: Client, wf: str, alloc: dict[str, Any], status: str) -> dict[str, Any]:
    """PUT the allocation document's ``status``. On a revision conflict (its worker or a
    reconcile changed it meanwhile) re-read it and try again; ``complete`` is final: it is
    never changed back. Returns the stored document. Raises ApiError."""
    path = f"/workflows/{seg(wf)}/{ALLOCATIONS}/{seg(alloc['_key'])}"
    doc = alloc
    for _ in range(5):
        if doc.get("status") in (status, "complete"):
            return doc
        try:
            return client.put(path, {**_strip(doc), "status": status})
        except ApiError as exc:
            if exc.status != 409:
                raise
            doc = client.get(path)
    raise ApiError(409, f"allocation {alloc['_key']} keeps changing; could not set {status}")


def _discard(client: Client, wf: str, node: dict[str, Any]) -> None:
    """Remove the document of an allocation sbatch refused; a worker's executor token may not
    delete (403), so it marks the document ``complete`` instead (no longer live)."""
    try:
        client.delete(f"/workflows/{seg(wf)}/{ALLOCATIONS}/{seg(node['_key'])}")
    except ApiError as exc:
        if exc.status != 403:
            raise
        set_status(client, wf, node, "complete")


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "_oldRev"}
