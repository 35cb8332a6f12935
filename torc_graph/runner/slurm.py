"""The torc_graph worker inside a Slurm allocation (``torc-graph slurm run-jobs``; the pilot
model, as torc's ``hpc slurm run-jobs``).

One worker runs per node of the allocation. It is the local runner with:

* resources from the allocation (``SLURM_CPUS_ON_NODE``, ``SLURM_MEM_PER_NODE`` or
  ``SLURM_MEM_PER_CPU``, ``SLURM_GPUS_ON_NODE``);
* ``end_time`` = the allocation's end from squeue minus :data:`END_MARGIN` (re-read every
  :data:`END_TIME_REFRESH` seconds, so a changed time limit counts): the runner claims only
  jobs whose runtime fits the time left minus ``compute_node_expiration_buffer_seconds`` and
  completes the jobs still running at that end ``terminated`` (cause ``walltime``) before Slurm
  kills the allocation;
* claims of the jobs bound to the allocation's scheduler, or to none;
* every job launched as a Slurm job step (``srun --overlap``, named ``torc_job_<key>_<run>``),
  so sacct has its MaxRSS, elapsed time, state and exit code; they are stored with the result
  when the worker ends (``result.slurm``);
* the allocation document goes ``active`` at start and ``complete`` at the end; the compute node
  document carries the Slurm job id, node and environment (torc's ``scheduler`` dict).

scancel sends SIGTERM: the runner gives its jobs back (``interrupted``, ready again). A job step
that fails because the allocation is going away (before the worker's own SIGTERM arrives) is
given back too, not reported failed.

Before running, the worker reconciles the workflow's other allocations with Slurm (jobs of
allocations that ended abnormally become ready again); while jobs complete, and when it stops,
it submits allocations just in time (:func:`torc_graph.slurm.allocations.schedule_just_in_time`)
if given a :class:`~torc_graph.slurm.allocations.Submission`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torc_graph.client import ApiError, Client, ServerUnreachable
from torc_graph.runner.local import LocalRunner, RunnerError, RunnerOptions, RunnerSummary
from torc_graph.runner.process import JobProcess
from torc_graph.runner.resources import Resources
from torc_graph.slurm import allocations as alloc_mod
from torc_graph.slurm import commands
from torc_graph.slurm.commands import SlurmError
from torc_graph.slurm.reconcile import reconcile, step_name, store_figures

logger = logging.getLogger("torc_graph.runner")

#: The runner's end time is this many seconds before the allocation's (Slurm kills at its end).
END_MARGIN = 5.0
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

    def _attempt(self) -> int | None:
        attempt = (self.job.get("execution") or {}).get("attempt_id")
        return int(attempt) if attempt is not None else None

    def argv(self) -> list[str]:
        internal = self.job.get("internal") or {}
        cpus = max(int(internal.get("num_cpus") or 1), 1)
        return ["srun", "--overlap", "--nodes=1", "--ntasks=1", f"--cpus-per-task={cpus}",
                "--mem=0", "--quiet",
                f"--job-name={step_name(self.key, self.run_id, self._attempt())}",
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
        self._end_checked = 0.0
        self._next_schedule = 0.0

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> RunnerSummary:
        """Reconcile, mark the allocation active, run jobs, store sacct figures, mark it
        complete, schedule more allocations just in time. Raises like LocalRunner.run."""
        self._reconcile()
        self.scheduled_node = self._find_scheduled_node()
        if self.scheduled_node is not None:
            self.scheduler_config_id = self.scheduled_node.get("scheduler_config_id") or ""
            self.scheduled_node = alloc_mod.set_status(self.client, self.wf,
                                                       self.scheduled_node, "active")
        self.options.end_time = self._slurm_end()
        ok = False
        try:
            summary = super().run()
            ok = True
            return summary
        finally:
            self._finish(schedule=ok)

    def _store_figures(self, patience: float = 10.0) -> None:
        """Store the sacct figures of the steps this worker ran. slurmdbd records a step a
        moment after it ends, so the last steps may be missing at first: ask again (only for
        results still without figures) until every reported attempt has its figures or
        ``patience`` seconds have passed."""
        s = self.summary
        expected = s.succeeded + s.failed + s.terminated + s.retried
        deadline = time.monotonic() + patience
        stored = store_figures(self.client, self.wf, [self.allocation.job_id])
        while stored < expected and time.monotonic() < deadline:
            time.sleep(0.5)
            stored += store_figures(self.client, self.wf, [self.allocation.job_id])

    def _finish(self, schedule: bool) -> None:
        """After the loop: figures, allocation complete, and (unless the worker failed, which
        a new allocation would repeat) just-in-time scheduling. Errors are logged: the worker
        is ending and its jobs are already reported."""
        try:
            self._store_figures()
        except (SlurmError, ApiError, ServerUnreachable) as exc:
            logger.warning("could not store sacct figures: %s", exc)
        try:
            if self.scheduled_node is not None:
                alloc_mod.set_status(self.client, self.wf, self.scheduled_node, "complete")
            if schedule:
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

    def _schedule_more(self) -> None:
        if self.submission is None:
            return
        ids = alloc_mod.schedule_just_in_time(self.client, self.wf, self.submission)
        if ids:
            logger.info("submitted allocations just in time: %s", ids)

    # ------------------------------------------------------------------ runner hooks

    def _prepare(self) -> None:
        super()._prepare()
        assert self.node is not None
        a = self.allocation
        self.node.hostname = self.hostname = a.node_name
        self.node.scheduler = {
            "hpc_type": "slurm", "scheduler_type": "hpc", "slurm_job_id": a.job_id,
            "node_names": [a.node_name], "scheduler_config_id": self.scheduler_config_id,
            "environment_variables": a.environment, "output_dir": str(self.output_dir)}
        logger.info("Slurm allocation %s on %s: %s CPUs, %.2f GiB, %s GPUs, ends %s",
                    a.job_id, a.node_name, a.num_cpus, a.memory_gb, a.num_gpus,
                    time.ctime(self.walltime.end_time) if self.walltime.end_time else "never")

    def _claim_body(self) -> dict[str, Any] | None:
        body = super()._claim_body()
        if body is not None:
            body["scheduler_config_id"] = self.scheduler_config_id
        return body

    def _collect(self, now: float) -> None:
        self._refresh_end_time(now)
        super()._collect(now)
        if self.submission is not None and self.summary.outcomes and now >= self._next_schedule:
            self._next_schedule = now + SCHEDULE_INTERVAL
            try:
                self._schedule_more()
            except (SlurmError, ApiError, ServerUnreachable, alloc_mod.AllocationError) as exc:
                logger.warning("just-in-time scheduling failed: %s", exc)

    def _finished(self, proc: JobProcess, rc: int, now: float) -> None:
        if proc.stop_reason is None and rc != 0 and self._allocation_ending():
            # scancel ends the job steps (or refuses to launch new ones) and signals this
            # worker at about the same time: the step may fail before the SIGTERM arrives.
            proc.stop_reason = "interrupted"
        super()._finished(proc, rc, now)

    def _shutdown(self) -> None:
        """Slurm's SIGTERM at the time limit (when the end moved and was not re-read yet)
        ends the jobs ``terminated``/``walltime`` like the runner's own walltime end."""
        if self._stop_signal is not None and self.slots is not None and self.slots.procs:
            end = self._slurm_end()
            if end is not None and time.time() >= end - 1:
                self.slots.stop_all("walltime", grace=0.0)
        super()._shutdown()

    # ------------------------------------------------------------------ Slurm state

    def _slurm_end(self) -> float | None:
        """The allocation's end minus :data:`END_MARGIN` (None if unknown)."""
        try:
            end = commands.end_time(self.allocation.job_id)
        except SlurmError as exc:
            logger.warning("could not read the allocation's end time: %s", exc)
            return self.walltime.end_time
        return None if end is None else end - END_MARGIN

    def _refresh_end_time(self, now: float) -> None:
        if now - self._end_checked < END_TIME_REFRESH:
            return
        self._end_checked = now
        end = self._slurm_end()
        if end is not None and end != self.walltime.end_time:
            logger.info("allocation %s: jobs end at %s", self.allocation.job_id, time.ctime(end))
            self.walltime.end_time = end

    def _allocation_ending(self) -> bool:
        """Whether Slurm no longer runs this allocation (canceled, completing)."""
        if self._stop_signal is not None:
            return True
        try:
            entry = commands.queue([self.allocation.job_id]).get(self.allocation.job_id)
        except SlurmError as exc:
            # Slurm signals every process of the allocation, squeue too: when it was killed,
            # this worker's own SIGTERM is on its way.
            logger.warning("could not read the allocation's state: %s", exc)
            time.sleep(0.2)
            return self._stop_signal is not None
        return entry is None or entry.state != "RUNNING"


def _int(value: Any) -> int:
    try:
        return int(str(value).split("(")[0])
    except (TypeError, ValueError):
        return 0
