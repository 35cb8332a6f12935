"""Run a started workflow on Slurm from the submit host (``torc-graph run --slurm``): submit
allocations, then follow the workflow until it is complete, reconciling with Slurm and
submitting allocations just in time; on SIGINT/SIGTERM, or when nothing can progress, scancel
what is left.

The submit host runs no job itself: the allocations' workers (:mod:`torc_graph.runner.slurm`)
do. :class:`SlurmRun` has the ``summary`` / ``running`` attributes of a runner, so the CLI's
progress display and summary work unchanged.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from torc_graph.client import ApiError, Client, ServerUnreachable, seg
from torc_graph.runner.local import RunnerSummary
from torc_graph.runner.signals import SignalTrap
from torc_graph.slurm import allocations as alloc_mod
from torc_graph.slurm import commands
from torc_graph.slurm.commands import SlurmError
from torc_graph.slurm.reconcile import reconcile

logger = logging.getLogger("torc_graph.runner")

#: Seconds between reconciles with Slurm while allocations are live.
RECONCILE_INTERVAL = 10.0
#: Consecutive polls with no live allocation and none submittable before giving up.
STUCK_POLLS = 3
#: After completion, seconds to wait for the workers to stop by themselves before scancel.
DRAIN_SECONDS = 30.0


class SlurmRun:
    """Follows one workflow on Slurm (see the module docstring)."""

    def __init__(self, client: Client, wf: str, scheduler: dict[str, Any], num_allocations: int,
                 where: alloc_mod.Submission, poll_interval: float = 2.0,
                 on_progress: Callable[[SlurmRun], None] | None = None):
        self.client = client
        self.wf = str(wf)
        self.scheduler = scheduler
        self.num_allocations = num_allocations
        self.where = where
        self.poll_interval = poll_interval
        self.on_progress = on_progress
        self.summary = RunnerSummary()
        self.running = 0
        self.run_id = 0
        self.submitted: list[str] = []
        self._stop: int | None = None
        self._wake = threading.Event()

    def run(self) -> RunnerSummary:
        """Submit, follow, clean up. Raises AllocationError (the first submission failed),
        SlurmError, ApiError, ServerUnreachable. Whatever happens, no allocation of this
        workflow is left in squeue when it returns (after completion the workers get
        :data:`DRAIN_SECONDS` to stop by themselves first)."""
        t0 = time.monotonic()
        self.run_id = int(self.client.get_status(self.wf).get("run_id", 0))
        clean_exit = False
        try:
            with SignalTrap(self._on_signal):
                self.submitted += alloc_mod.submit(self.client, self.wf, self.scheduler,
                                                   self.num_allocations, self.where)
                self._follow()
            clean_exit = self.summary.reason == "the workflow is complete"
        finally:
            if clean_exit:  # the workers see the completion and stop by themselves
                self._wait_for_allocations(DRAIN_SECONDS)
            self._cancel_allocations()
            self.summary.elapsed_seconds = time.monotonic() - t0
        return self.summary

    def _follow(self) -> None:
        next_reconcile = time.monotonic() + RECONCILE_INTERVAL
        stuck = 0
        while True:
            if self._stop is not None:
                self.summary.interrupted = True
                self.summary.reason = f"stopped by signal {signal.Signals(self._stop).name}"
                return
            state = self.client.is_complete(self.wf)
            self._count()
            if self.on_progress is not None:
                self.on_progress(self)
            if state.get("is_canceled"):
                self.summary.canceled_workflow = True
                self.summary.reason = "the workflow was canceled"
                return
            if state.get("is_complete"):
                self.summary.reason = "the workflow is complete"
                return
            live = alloc_mod.allocations(self.client, self.wf, alloc_mod.LIVE_STATUSES)
            if not live or time.monotonic() >= next_reconcile:
                next_reconcile = time.monotonic() + RECONCILE_INTERVAL
                try:
                    reconcile(self.client, self.wf)
                except SlurmError as exc:
                    logger.warning("reconcile with Slurm failed: %s", exc)
            new = alloc_mod.schedule_just_in_time(self.client, self.wf, self.where)
            self.submitted += new
            if new or alloc_mod.allocations(self.client, self.wf, alloc_mod.LIVE_STATUSES):
                stuck = 0
            else:
                stuck += 1
                if stuck >= STUCK_POLLS:
                    self.summary.reason = ("no allocation runs and none can be submitted for "
                                           "the remaining jobs (see `torc-graph slurm status "
                                           f"{self.wf}`)")
                    return
            self._wake.wait(self.poll_interval)

    def _count(self) -> None:
        def count(status: str) -> int:
            page = self.client.get(f"/workflows/{seg(self.wf)}/jobs", status=status, limit=1)
            return int(page.get("total_count", 0))

        self.running = count("submitted")
        self.summary.succeeded = count("done")
        self.summary.terminated = count("terminated")
        self.summary.canceled = count("canceled")

    def _wait_for_allocations(self, seconds: float) -> None:
        """Wait until no allocation of the workflow runs in Slurm (or ``seconds`` pass)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self._stop is None:
            try:
                live = [a["scheduler_id"] for a in alloc_mod.allocations(
                    self.client, self.wf, alloc_mod.LIVE_STATUSES) if a.get("scheduler_id")]
                queue = commands.queue(live) if live else {}
            except (SlurmError, ApiError, ServerUnreachable) as exc:
                logger.warning("could not follow the allocations: %s", exc)
                return
            if all(e.state in commands.FINISHED_STATES for e in queue.values()):
                return
            self._wake.wait(0.5)

    def _cancel_allocations(self) -> None:
        try:
            canceled = alloc_mod.cancel(self.client, self.wf)
        except (SlurmError, ApiError, ServerUnreachable) as exc:
            logger.error("could not scancel the allocations of workflow %s: %s", self.wf, exc)
            return
        if canceled:
            logger.info("canceled allocations %s", canceled)

    def _on_signal(self, signum: int) -> None:
        self._stop = signum
        self._wake.set()
