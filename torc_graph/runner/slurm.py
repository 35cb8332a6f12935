"""The torc_graph worker inside a Slurm allocation (``torc-graph slurm run-jobs``; the pilot
model, as torc's ``hpc slurm run-jobs``).

One worker runs per node of the allocation. It is the local runner with:

* resources from the allocation (``SLURM_CPUS_ON_NODE``, ``SLURM_MEM_PER_NODE`` or
  ``SLURM_MEM_PER_CPU``, ``SLURM_GPUS_ON_NODE``) and its end time from squeue (re-read every
  :data:`END_TIME_REFRESH` seconds, so a changed time limit is seen);
* claims limited to jobs whose runtime fits the time left minus the workflow config's
  ``compute_node_expiration_buffer_seconds``, and to jobs bound to the allocation's scheduler or
  to none;
* every job launched as a Slurm job step (``srun --overlap``, named ``torc_job_<key>_<run>``),
  so sacct has its MaxRSS, elapsed time, state and exit code; they are stored with the result
  when the worker ends (``result.slurm``);
* jobs with ``supports_termination`` get SIGTERM ``buffer`` seconds before the end, every job
  is stopped :data:`END_MARGIN` seconds before it (and on the SIGTERM Slurm sends at the end):
  such jobs are completed ``terminated``;
* the allocation document goes ``active`` at start and ``complete`` at the end; the compute node
  document carries the Slurm job id, node and environment (torc's ``scheduler`` dict).

Before running, the worker reconciles the workflow's other allocations with Slurm (jobs of
allocations that ended abnormally become ready again); after a job completes, and when it stops,
it submits allocations just in time (:func:`torc_graph.slurm.allocations.schedule_just_in_time`)
if given a :class:`~torc_graph.slurm.allocations.Submission`.

Stopgap until the runner branch's ``RunnerOptions.end_time`` lands: the walltime-aware claim and
stop are done here by overriding ``_claim`` and ``_reap``.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torc_graph.client import ApiError, Client, ServerUnreachable, seg
from torc_graph.runner.local import LocalRunner, RunnerError, RunnerOptions, RunnerSummary
from torc_graph.runner.process import JobProcess
from torc_graph.runner.resources import Resources
from torc_graph.slurm import allocations as alloc_mod
from torc_graph.slurm import commands
from torc_graph.slurm.commands import SlurmError
from torc_graph.slurm.allocations import DEFAULT_BUFFER
from torc_graph.slurm.reconcile import reconcile, step_name, store_figures

logger = logging.getLogger("torc_graph.runner")

#: Stop every job this many seconds before the allocation's end (Slurm kills at the end).
END_MARGIN = 5.0
#: How a job given back by a stopped worker is reported (docs/execution-model.md §3 cause).
INTERRUPTED = "interrupted"
#: Seconds between re-reads of the allocation's end time.
END_TIME_REFRESH = 30.0
#: At most one just-in-time scheduling pass per this many seconds while jobs complete.
SCHEDULE_INTERVAL = 5.0
MIB = 1024**2


@dataclass(frozen=True)
class Allocation:
    """The Slurm allocation this process runs in, from its ``SLURM_*`` environment."""

    job_id: str
    node_name: str
    num_cpus: int
    memory_gb: float
    num_gpus: int
    num_nodes: int
    environment: dict[str, str]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Allocation:
        """Raises RunnerError when not inside a Slurm allocation."""
        env = dict(os.environ if environ is None else environ)
        job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
        if not job_id:
            raise RunnerError("not inside a Slurm allocation (SLURM_JOB_ID is not set): "
                              "`torc-graph slurm run-jobs` is started by the allocations that "
                              "`torc-graph slurm schedule-nodes` submits")
        cpus = _int(env.get("SLURM_CPUS_ON_NODE")) or 1
        if _int(env.get("SLURM_MEM_PER_NODE")):
            mem_mb = _int(env["SLURM_MEM_PER_NODE"])
        elif _int(env.get("SLURM_MEM_PER_CPU")):
            mem_mb = _int(env["SLURM_MEM_PER_CPU"]) * cpus
        else:
            mem_mb = None
        memory_gb = mem_mb * MIB / 1024**3 if mem_mb else Resources.detect().memory_gb
        gpus = _int(env.get("SLURM_GPUS_ON_NODE")) or len(
            [g for g in env.get("SLURM_JOB_GPUS", "").split(",") if g])
        return cls(job_id=job_id, node_name=env.get("SLURMD_NODENAME") or os.uname().nodename,
                   num_cpus=cpus, memory_gb=memory_gb, num_gpus=gpus,
                   num_nodes=_int(env.get("SLURM_JOB_NUM_NODES")) or 1,
                   environment={k: v for k, v in env.items() if k.startswith("SLURM")})


class SlurmJobProcess(JobProcess):
    """A job launched as a step of the allocation (``srun``), named so sacct can find it."""

    def argv(self) -> list[str]:
        internal = self.job.get("internal") or {}
        cpus = max(int(internal.get("num_cpus") or 1), 1)
        return ["srun", "--overlap", "--nodes=1", "--ntasks=1", f"--cpus-per-task={cpus}",
                "--mem=0", "--quiet", f"--job-name={step_name(self.key, self.run_id)}",
                "--", *super().argv()]


class SlurmRunner(LocalRunner):
    """The local runner inside an allocation (see the module docstring)."""

    process_class = SlurmJobProcess

    def __init__(self, client: Client, workflow_key: str, allocation: Allocation,
                 options: RunnerOptions | None = None,
                 submission: alloc_mod.Submission | None = None, on_progress=None):
        options = options or RunnerOptions()
        options.num_cpus = options.num_cpus or allocation.num_cpus
        options.memory_gb = options.memory_gb or allocation.memory_gb
        if options.num_gpus is None:
            options.num_gpus = allocation.num_gpus
        super().__init__(client, workflow_key, options, on_progress)
        self.allocation = allocation
        self.submission = submission
        self.scheduled_node: dict[str, Any] | None = None
        self.scheduler_config_id = ""
        self.end_time: float | None = None
        self._end_checked = 0.0
        self._buffer = float(DEFAULT_BUFFER)
        self._next_schedule = 0.0

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> RunnerSummary:
        """Reconcile, mark the allocation active, run jobs, store sacct figures, mark it
        complete, schedule more allocations just in time. Raises like LocalRunner.run."""
        self._reconcile()
        self.scheduled_node = self._find_scheduled_node()
        if self.scheduled_node is not None:
            self.scheduler_config_id = self.scheduled_node.get("scheduler_config_id") or ""
            self.scheduled_node = self._set_scheduled_status("active")
        self._refresh_end_time(force=True)
        try:
            return super().run()
        finally:
            self._finish()

    def _finish(self) -> None:
        """After the loop: figures, allocation complete, just-in-time scheduling. Errors are
        logged: the worker is ending and its jobs are already reported."""
        try:
            store_figures(self.client, self.wf, [self.allocation.job_id])
        except (SlurmError, ApiError, ServerUnreachable) as exc:
            logger.warning("could not store sacct figures: %s", exc)
        try:
            self._set_scheduled_status("complete")
            self._schedule_more()
        except (SlurmError, ApiError, ServerUnreachable, alloc_mod.AllocationError) as exc:
            logger.warning("could not complete the allocation or schedule more: %s", exc)

    def _reconcile(self) -> None:
        try:
            report = reconcile(self.client, self.wf)
        except (SlurmError, ApiError) as exc:
            logger.warning("reconcile with Slurm failed: %s", exc)
            return
        if report.requeued:
            logger.info("reconcile: allocations %s ended; requeued jobs %s",
                        sorted(report.ended), report.requeued)

    def _find_scheduled_node(self) -> dict[str, Any] | None:
        for doc in alloc_mod.allocations(self.client, self.wf):
            if str(doc.get("scheduler_id")) == self.allocation.job_id:
                return doc
        logger.warning("no scheduled_compute_nodes document names Slurm job %s; running "
                       "jobs that no scheduler binds", self.allocation.job_id)
        return None

    def _set_scheduled_status(self, status: str) -> dict[str, Any] | None:
        if self.scheduled_node is None:
            return None
        self.scheduled_node = alloc_mod.set_status(self.client, self.wf, self.scheduled_node,
                                                   status)
        return self.scheduled_node

    def _schedule_more(self) -> None:
        if self.submission is None:
            return
        ids = alloc_mod.schedule_just_in_time(self.client, self.wf, self.submission)
        if ids:
            logger.info("submitted allocations just in time: %s", ids)

    # ------------------------------------------------------------------ runner hooks

    def _prepare(self) -> None:
        super()._prepare()
        self._buffer = float(self.config.get("compute_node_expiration_buffer_seconds",
                                             DEFAULT_BUFFER) or 0)

    def _register(self) -> None:
        super()._register()
        assert self.node is not None
        a = self.allocation
        self.node = self._api(self.client.update_document, self.wf, "compute_nodes", {
            **{k: v for k, v in self.node.items() if k != "_oldRev"},
            "hostname": a.node_name,
            "scheduler": {"hpc_type": "slurm", "scheduler_type": "hpc", "slurm_job_id": a.job_id,
                          "node_names": [a.node_name], "scheduler_config_id":
                          self.scheduler_config_id, "environment_variables": a.environment,
                          "output_dir": str(self.output_dir)},
        })
        logger.info("Slurm allocation %s on %s: %s CPUs, %.2f GiB, %s GPUs, ends %s",
                    a.job_id, a.node_name, a.num_cpus, a.memory_gb, a.num_gpus,
                    time.ctime(self.end_time) if self.end_time else "never")

    def _claim(self) -> int:
        """Claim jobs that fit the free resources and the time left (minus the buffer)."""
        assert self.total is not None
        free = self.total - self.in_use
        if not free.can_claim() or self._stop_signal is not None:
            return 0
        time_limit = None
        if self.end_time is not None:
            left = self.end_time - time.time() - self._buffer
            if left < 1:
                return 0
            time_limit = f"PT{int(left)}S"
        limit = None
        if self.options.max_parallel_jobs is not None:
            limit = self.options.max_parallel_jobs - len(self.procs)
            if limit <= 0:
                return 0
        jobs = self._api(
            self.client.prepare_jobs_for_submission, self.wf,
            free.to_body(self.scheduler_config_id, time_limit),
            sort_method=self.config.get("prepare_jobs_sort_method"), limit=limit,
        )
        for job in jobs:
            self._start(job)
        return len(jobs)

    def _reap(self, now: float) -> int:
        done = super()._reap(now)
        if done and self.submission is not None and now >= self._next_schedule:
            self._next_schedule = now + SCHEDULE_INTERVAL
            try:
                self._schedule_more()
            except (SlurmError, ApiError, alloc_mod.AllocationError) as exc:
                logger.warning("just-in-time scheduling failed: %s", exc)
        self._refresh_end_time()
        if self.end_time is not None and self.procs:
            left = self.end_time - time.time()
            for proc in self.procs.values():
                if proc.stop_reason is not None:
                    continue
                if left <= END_MARGIN:
                    logger.info("job %s: the allocation ends in %.0f s: terminating", proc.key,
                                left)
                    proc.request_stop("terminated", max(min(left - 1, 3.0), 0.0))
                elif proc.job.get("supports_termination") and left <= self._buffer:
                    logger.info("job %s: the allocation ends in %.0f s: SIGTERM", proc.key, left)
                    proc.request_stop("terminated", max(left - END_MARGIN, 0.0))
        return done

    def _wait(self, until: float) -> None:
        if self.end_time is not None and self.procs:  # wake up in time for the walltime stop
            wall_left = self.end_time - END_MARGIN - time.time()
            until = min(until, time.monotonic() + max(wall_left, 0.0),
                        time.monotonic() + END_TIME_REFRESH)
        super()._wait(until)

    def _shutdown(self) -> None:
        """On a stop signal that is not the walltime (scancel, node shutdown), the running
        jobs are given back (``ready`` again, to run in another allocation) instead of being
        reported ``terminated``."""
        if self.procs and self._stop_signal is not None and not self._walltime_reached():
            for proc in self.procs.values():
                proc.request_stop(INTERRUPTED, self._grace(proc))
        super()._shutdown()

    def _report(self, proc: JobProcess, status: str, rc: int,
                duration: float) -> dict[str, Any] | None:
        if status == "done" and rc != 0 and not self._walltime_reached() and (
                self._stop_signal is not None or self._allocation_ending()):
            # scancel ends the job steps (or refuses to launch new ones) and signals this
            # worker at about the same time: the step may fail before the SIGTERM arrives.
            status = INTERRUPTED
        if status != INTERRUPTED:
            return super()._report(proc, status, rc, duration)
        return self._requeue(proc)

    def _requeue(self, proc: JobProcess) -> dict[str, Any] | None:
        """Put a job this worker stopped back to ``ready`` (a new revision fences any late
        report), with a ``job/requeued`` event."""
        try:
            job = self.client.get_job(self.wf, proc.key)
            if job.get("status") not in ("submitted", "submitted_pending"):
                return job
            job = self.client.put(
                f"/workflows/{seg(self.wf)}/jobs/{seg(proc.key)}/manage_status_change/ready/"
                f"{seg(job['_rev'])}/{self.run_id}")
            self._event_job_requeued(proc)
            return job
        except (ApiError, ServerUnreachable) as exc:
            # Left submitted: the next worker's reconcile requeues it once Slurm reports the
            # allocation ended.
            logger.error("could not give back job %s: %s", proc.key, exc)
            self.summary.report_errors += 1
            return None

    def _event_job_requeued(self, proc: JobProcess) -> None:
        sig = signal.Signals(self._stop_signal).name if self._stop_signal else "a stop"
        try:
            self.client.add_event(self.wf, {
                "category": "job", "type": "requeued", "job_key": proc.key,
                "scheduler_id": self.allocation.job_id, "cause": INTERRUPTED,
                "message": f"Job {proc.key} ({proc.job.get('name')}) is ready again: Slurm "
                           f"allocation {self.allocation.job_id} was stopped ({sig}) while it "
                           "ran"})
        except (ApiError, ServerUnreachable) as exc:
            logger.warning("could not post the requeue event of job %s: %s", proc.key, exc)

    def _allocation_ending(self) -> bool:
        """Whether Slurm no longer runs this allocation (canceled, completing)."""
        try:
            entry = commands.queue([self.allocation.job_id]).get(self.allocation.job_id)
        except SlurmError as exc:
            # Slurm signals every process of the allocation, squeue too: when it was killed,
            # this worker's own SIGTERM is on its way.
            logger.warning("could not read the allocation's state: %s", exc)
            time.sleep(0.2)
            return self._stop_signal is not None
        return entry is None or entry.state != "RUNNING"

    def _walltime_reached(self) -> bool:
        return self.end_time is not None and time.time() >= self.end_time - END_MARGIN - 1

    def _refresh_end_time(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._end_checked < END_TIME_REFRESH:
            return
        self._end_checked = now
        try:
            end = commands.end_time(self.allocation.job_id)
        except SlurmError as exc:
            logger.warning("could not read the allocation's end time: %s", exc)
            return
        if end is not None and end != self.end_time:
            self.end_time = end
            logger.info("allocation %s ends at %s", self.allocation.job_id, time.ctime(end))


def _int(value: Any) -> int:
    try:
        return int(str(value).split("(")[0])
    except (TypeError, ValueError):
        return 0
