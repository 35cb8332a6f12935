"""What a runner is told (:class:`RunnerOptions`), what it reports (:class:`RunnerSummary`),
and the error it raises when it cannot run (:class:`RunnerError`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Grace between SIGTERM and SIGKILL for jobs with ``supports_termination`` (torc's value).
SUPPORTS_TERMINATION_GRACE = 30.0


class RunnerError(Exception):
    """The runner cannot start or continue (workflow not started, server gone, ...)."""


@dataclass
class RunnerOptions:
    """How a runner runs; ``None`` resource values are detected from the machine."""

    output_dir: Path = Path("output")
    num_cpus: int | None = None
    memory_gb: float | None = None
    num_gpus: int | None = None
    max_parallel_jobs: int | None = None
    #: Seconds between claims for more work while some jobs run and slots are free (an idle
    #: runner long-polls instead); also the poll period against servers without the batched
    #: execution API.
    poll_interval: float = 1.0
    #: Sample CPU/memory of each job's process tree into ``job_process_stats``.
    process_stats: bool = True
    #: Seconds between samples; None: the workflow config's ``compute_node_resource_stats
    #: .interval`` when its ``process`` flag is on, else 1 s. The first sample is taken 0.1 s
    #: after start (jobs shorter than that cost nothing and get no stats document).
    stats_interval: float | None = None
    #: Seconds between SIGTERM and SIGKILL when the runner stops a job (30 s for jobs with
    #: ``supports_termination``).
    termination_grace: float = 3.0
    #: Keep waiting this long for new jobs when none can run; None: the workflow config's
    #: ``compute_node_wait_for_new_jobs_seconds``.
    wait_for_new_jobs_seconds: float | None = None
    #: Working directory of the jobs; None: the runner's.
    cwd: str | None = None
    #: End of the allocation (epoch seconds), e.g. a Slurm job's end; None: no walltime.
    #: Claims ask only for jobs that fit in the time left minus the config's
    #: ``compute_node_expiration_buffer_seconds``; jobs with ``supports_termination`` get
    #: SIGTERM that buffer before the end; at the end every job is killed and completed
    #: ``terminated`` with cause ``walltime``.
    end_time: float | None = None
    #: Give up on an unreachable server after this many minutes; None: the config's
    #: ``compute_node_wait_for_healthy_database_minutes`` (default 20).
    wait_for_healthy_database_minutes: float | None = None
    #: Longest wait of one long poll for work (the server caps it at 60 s).
    long_poll_seconds: float = 30.0

    def sampling_interval(self, config: dict[str, Any]) -> float | None:
        """Seconds between process-stats samples given the workflow ``config``; None when
        sampling is off."""
        if not self.process_stats:
            return None
        if self.stats_interval is not None:
            return max(float(self.stats_interval), 0.01)
        stats_cfg = config.get("compute_node_resource_stats") or {}
        if stats_cfg.get("process"):
            return max(float(stats_cfg.get("interval") or 1.0), 0.01)
        return 1.0


@dataclass
class RunnerSummary:
    """What one runner did."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    terminated: int = 0
    canceled: int = 0
    #: Attempts the server requeued under the job's failure handler (``retried``).
    retried: int = 0
    #: Jobs given back unfinished (``interrupted``) or whose lease this runner lost.
    released: int = 0
    lost: int = 0
    report_errors: int = 0
    canceled_workflow: bool = False
    interrupted: bool = False
    reason: str = ""
    elapsed_seconds: float = 0.0
    outcomes: list[dict[str, Any]] = field(default_factory=list)
