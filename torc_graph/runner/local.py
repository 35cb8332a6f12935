"""The local job runner: a worker that claims a workflow's jobs and runs them on this machine.

It registers a compute node (:mod:`.node`) and loops: exited jobs are reaped (:mod:`.slots`)
and queued as completions (:mod:`.reporting`); claimed jobs wait in a small prefetch queue
(:mod:`.prefetch`) and start as soon as resources free up; queued completions go out in one
``complete_jobs`` request that also claims the next jobs (:mod:`.execution`; when to send what
is :mod:`.conversation`), carried by a
background thread (:mod:`.courier`) while the loop goes on reaping and starting jobs; an idle
runner long-polls ``claim_jobs``; one heartbeat per interval covers all its jobs (:mod:`.heartbeat`);
while the server is unreachable jobs keep running and reports wait (:mod:`.link`).

Stopping: SIGINT/SIGTERM stop the running jobs (SIGTERM to their groups, SIGKILL after the
grace) and release them as ``interrupted``; a second signal kills at once. A workflow cancel
reports them ``canceled``; a runtime-limit kill is cause ``timeout``; at the allocation's end
(:mod:`.walltime`) cause ``walltime``. If the runner itself is killed, its watchdog kills the
jobs (:mod:`.watchdog`) and the server requeues them when the lease expires.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torc_graph import __version__
from torc_graph.client import ApiError, Client, ServerUnreachable, seg
from torc_graph.runner.conversation import REPORT_DELAY, Conversation, Interrupted
from torc_graph.runner.courier import Courier
from torc_graph.runner.execution import Execution, why_stuck
from torc_graph.runner.heartbeat import Heartbeat, LeaseLost
from torc_graph.runner.link import LinkDown, ServerLink
from torc_graph.runner.node import ComputeNode
from torc_graph.runner.options import RunnerError, RunnerOptions, RunnerSummary
from torc_graph.runner.outputs import check_outputs
from torc_graph.runner.process import JobProcess
from torc_graph.runner.reporting import ReportQueue, attempt_of, completion_item, release_item
from torc_graph.runner.prefetch import Prefetch
from torc_graph.runner.resources import Resources
from torc_graph.runner.scripts import run_workflow_script
from torc_graph.runner.signals import SignalTrap
from torc_graph.runner.slots import JobSlots
from torc_graph.runner.walltime import Walltime
from torc_graph.runner.worklog import WorkerLog

__all__ = ["REPORT_DELAY", "LocalRunner", "RunnerError", "RunnerOptions", "RunnerSummary"]

logger = logging.getLogger("torc_graph.runner")

#: Exit codes of a job that a signal meant for the runner may have reached first.
STOP_CODES = (-signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM)
#: How long such a job's completion is held back, in case the runner's stop follows.
STOP_HOLD = 0.5
#: Longest the worker log's latest lines stay unflushed while the loop is busy (seconds).
LOG_FLUSH_DELAY = 0.1


class LocalRunner(Conversation):
    """Runs the jobs of one workflow on this machine until the workflow is complete.

    ``on_progress(runner)`` is called once per loop iteration (it should rate-limit itself).
    """

    #: How a job's process is made (the Slurm worker launches jobs as job steps).
    process_class: type[JobProcess] = JobProcess

    def __init__(self, client: Client, workflow_key: str, options: RunnerOptions | None = None,
                 on_progress: Callable[[LocalRunner], None] | None = None):
        self.client = client
        self.wf = str(workflow_key)
        self.options = options or RunnerOptions()
        self.on_progress = on_progress
        self.output_dir = Path(self.options.output_dir).absolute()
        self.summary = RunnerSummary()
        self.run_id = 0
        self.config: dict[str, Any] = {}
        self.node: ComputeNode | None = None
        self.total: Resources | None = None
        self.slots: JobSlots | None = None
        self.execution: Execution | None = None
        self.courier: Courier | None = None
        #: The courier's call: ("complete" | "claim", completions sent, claim sent, when).
        self._sent: tuple[str, list[dict[str, Any]], dict[str, Any] | None, float] | None = None
        self.link = ServerLink(20 * 60.0)
        self.heartbeat = Heartbeat()
        self.queue = ReportQueue()
        self.prefetch: Prefetch | None = None
        self.walltime = Walltime(self.options.end_time, 0)
        self.hostname = ""
        self._held: list[tuple[JobProcess, float]] = []  # stop-coded exits, held STOP_HOLD
        self._stop_signal: int | None = None
        self._long_polling = False
        self._state: dict[str, Any] = {}  # latest is_complete / is_canceled from the server
        self._next_claim = 0.0
        self._claim_uncertain = False
        self._has_produced_files = True
        self._log_handler: WorkerLog | None = None
        self._log_flushed = 0.0  # monotonic time of the last flush of the worker log
        self._base_env: dict[str, str] = {}

    # ------------------------------------------------------------------ public

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the runner as if it got ``signum`` (safe from a signal handler or a thread).
        A second request while stopping kills the jobs at once (SIGKILL)."""
        if self._stop_signal is not None and self.slots is not None:
            for proc in list(self.slots.procs.values()):
                proc.signal_group(signal.SIGKILL)
        self._stop_signal = signum
        if self.slots is not None:
            self.slots.wake()
        if self._long_polling:
            self._long_polling = False
            raise Interrupted()

    def run(self) -> RunnerSummary:
        """Register, run jobs until the workflow is complete (or canceled / stopped), clean up.

        Raises RunnerError if the workflow cannot be run, ServerUnreachable if the server stays
        away longer than ``compute_node_wait_for_healthy_database_minutes``. Whatever happens,
        no job process is left running and the compute node is marked inactive (when the
        server can still be reached).
        """
        t0 = time.monotonic()
        try:
            self._prepare()
            with SignalTrap(self.request_stop):
                self._register()
                try:
                    self._loop()
                finally:
                    self._shutdown()
        finally:
            self._teardown()
            self.summary.elapsed_seconds = time.monotonic() - t0
        return self.summary

    @property
    def running(self) -> int:
        return len(self.slots) if self.slots is not None else 0

    def running_job_names(self) -> list[str]:
        """Names (else keys) of the jobs running now, in start order (progress displays)."""
        procs = self.slots.procs.values() if self.slots is not None else ()
        return [str(p.job.get("name") or p.key) for p in list(procs)]

    # ------------------------------------------------------------------ setup

    def _prepare(self) -> None:
        opts = self.options
        status = self.link.wait(self.client.get_status, self.wf)
        self.run_id = int(status.get("run_id", 0))
        if self.run_id <= 0:
            raise RunnerError(
                f"workflow {self.wf} has not been started (run_id is 0): start it with "
                "`torc-graph run SPEC` or `torc-graph jobs run` on a workflow whose jobs are "
                "all uninitialized"
            )
        self.config = self.link.wait(self.client.get_config, self.wf) or {}
        minutes = opts.wait_for_healthy_database_minutes
        if minutes is None:
            minutes = float(self.config.get("compute_node_wait_for_healthy_database_minutes")
                            or 0)
        self.link.give_up_seconds = 60.0 * float(minutes)
        self.heartbeat.seconds = float(self.config.get("heartbeat_seconds") or 30)
        self.walltime = Walltime(opts.end_time,
                                 self.config.get("compute_node_expiration_buffer_seconds") or 0)
        self.total = Resources.detect(opts.num_cpus, opts.memory_gb, opts.num_gpus)
        self.prefetch = Prefetch(self.total, opts.max_parallel_jobs,
                                 self.config.get("prepare_jobs_sort_method")
                                 or "gpus_runtime_memory")
        self.node = ComputeNode(self.client, self.wf, self.link, self.total, self.output_dir)
        self.hostname = self.node.hostname
        self.output_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.output_dir / f"worker_{self.hostname}_{self.wf}_{self.run_id}.log"
        self._log_handler = WorkerLog(log_path)
        logger.addHandler(self._log_handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        env = dict(os.environ)
        env.update(self.client.env())
        if self.client.url:
            env["TORC_DATABASE_URL"] = self.client.url  # job scripts using torc's client
        env["TORC_WORKFLOW_KEY"] = self.wf
        env["TORC_GRAPH_RUN_ID"] = str(self.run_id)
        self._base_env = env
        self.slots = JobSlots(self.total, output_dir=self.output_dir, env=env, cwd=opts.cwd,
                              termination_grace=float(opts.termination_grace),
                              max_parallel_jobs=opts.max_parallel_jobs,
                              stats_interval=opts.sampling_interval(self.config),
                              process_class=self.process_class)
        # The loop's calls run on the courier's thread too (a client of their own), and must
        # not block in the client's own connect retries.
        loop_client = self.client.another(
            retries=0, timeout=max(self.client.timeout, opts.long_poll_seconds + 30))
        self.execution = Execution(loop_client, self.wf, self.run_id)
        self.courier = Courier(self.slots.wake)

    def _register(self) -> None:
        assert self.node is not None and self.execution is not None
        self.node.event("start", f"Started worker {self.hostname}",
                        torc_graph_version=__version__, output_dir=str(self.output_dir))
        self.execution.node_key = self.node.register(lambda: self._stop_signal is not None)
        try:
            produces = self.client.get(f"/workflows/{seg(self.wf)}/edges/produces", limit=1)
            self._has_produced_files = bool(produces.get("total_count", 1))
        except ApiError:
            self._has_produced_files = True
        script = self.config.get("worker_startup_script")
        if script:
            self._run_script("worker_startup_script", script)
        logger.info("worker %s pid=%s workflow=%s run_id=%s resources=%s output=%s",
                    self.hostname, os.getpid(), self.wf, self.run_id, self.total,
                    self.output_dir)

    # ------------------------------------------------------------------ main loop

    def _loop(self) -> None:
        assert self.slots is not None
        wait_new = self.options.wait_for_new_jobs_seconds
        if wait_new is None:
            wait_new = float(self.config.get("compute_node_wait_for_new_jobs_seconds") or 0)
        idle_since: float | None = None
        stuck_checks = 0
        while True:
            if self._stop_signal is not None:
                self.summary.interrupted = True
                self.summary.reason = f"stopped by signal {signal.Signals(self._stop_signal).name}"
                return
            now = time.monotonic()
            self._collect(now)
            self.slots.enforce(now)
            self.walltime.warn(self.slots)
            if self.walltime.over():
                self._walltime_end()
                return
            self._start_prefetched()
            polled = False
            if self.link.ready(now) or self.courier.answered:
                try:
                    polled = self._receive()
                    if not self.courier.busy and self.link.ready(now):
                        polled = self._talk(now) or polled
                except LeaseLost as exc:
                    self._lease_lost(str(exc))
                except Interrupted:
                    continue
                except LinkDown:
                    pass
            if self._state.get("is_canceled"):
                self._cancel_running()
                return
            if self._state.get("is_complete") and not self._busy():
                self._check_completion_script()
                self.summary.reason = "the workflow is complete"
                return
            if self.on_progress is not None:
                self.on_progress(self)
            if self._busy() or not polled:
                idle_since = None
                stuck_checks = 0
            else:
                # Nothing runs here and a claim found nothing.
                now = time.monotonic()
                idle_since = now if idle_since is None else idle_since
                if now - idle_since >= wait_new:
                    reason = self.link.wait(why_stuck, self.client, self.wf, self.total)
                    stuck_checks = 0 if reason is None else stuck_checks + 1
                    # Two observations a poll apart: a job may have become ready in between.
                    if stuck_checks >= 2:
                        self.summary.reason = reason or ""
                        logger.warning("exiting: %s", reason)
                        return
            until = self._next_wakeup()
            self._flush_log(until)
            self.slots.wait(until)

    def _busy(self) -> bool:
        assert self.slots is not None and self.prefetch is not None
        assert self.courier is not None
        return bool(self.slots.procs or self.prefetch or len(self.queue) or self._held
                    or self.courier.busy)

    # ------------------------------------------------------------------ starting and reaping

    def _start_prefetched(self) -> None:
        assert self.slots is not None and self.prefetch is not None
        while self._stop_signal is None:
            fitting = self.prefetch.next_fitting(self.slots)
            if fitting is None:
                return
            job, needs = fitting
            self.slots.start(job, self.run_id, needs)
            self.summary.started += 1
            self._job_log(f"started job {job['_key']} ({job.get('name')}) attempt "
                          f"{attempt_of(job)}: {job.get('command')}")
            self.walltime.warn(self.slots)

    def _collect(self, now: float) -> None:
        """Reap exited jobs: queue a completion, a release (interrupted) or nothing (lost)."""
        assert self.slots is not None
        for proc in self.slots.exited():
            rc = proc.return_code if proc.return_code is not None else -1
            if proc.stop_reason is None and rc in STOP_CODES:
                self._held.append((proc, now + STOP_HOLD))
                continue
            self._finished(proc, rc, now)
        still = []
        for proc, until in self._held:
            if self._stop_signal is not None:
                proc.stop_reason = "interrupted"
            if proc.stop_reason is not None or now >= until:
                self._finished(proc, proc.return_code or 0, now)
            else:
                still.append((proc, until))
        self._held = still

    def _finished(self, proc: JobProcess, rc: int, now: float) -> None:
        """Queue what the server must hear about one reaped job; count it."""
        assert self.prefetch is not None
        duration = time.time() - proc.start_wall
        if proc.stop_reason == "lost":
            self.summary.lost += 1
            logger.info("job %s stopped: its lease was lost", proc.key)
            return
        if proc.stop_reason == "interrupted":
            self.queue.release(release_item(proc.job))
            logger.info("job %s interrupted: released", proc.key)
            return
        if proc.stop_reason is None and rc == 0 and self._has_produced_files:
            rc = check_outputs(self.client, self.link, self.wf, proc, self.options.cwd)
        stats = None
        if proc.stats.num_samples:
            stats = proc.stats.document(proc.key, self.run_id, str(_dt.datetime.now()))
        item = completion_item(proc, rc, duration, stats)
        self.queue.add(item, now)
        self.prefetch.job_finished(duration)
        status = item["status"]
        self.summary.count(status, rc)
        self.summary.outcomes.append({
            "key": proc.key, "name": proc.job.get("name"), "status": status,
            "cause": item["cause"], "return_code": rc, "duration_seconds": duration,
        })
        self._job_log(f"finished job {proc.key} status={status} cause={item['cause']} "
                      f"return_code={rc} duration={duration:.3f}s")

    def _flush_log(self, until: float) -> None:
        """Flush the worker log before a wait of :data:`LOG_FLUSH_DELAY` or more, else at
        most once per :data:`LOG_FLUSH_DELAY` (a write system call per loop iteration is a
        noticeable share of a short job's cost)."""
        if self._log_handler is None:
            return
        now = time.monotonic()
        if until - now >= LOG_FLUSH_DELAY or now - self._log_flushed >= LOG_FLUSH_DELAY:
            self._log_handler.flush()
            self._log_flushed = now

    def _job_log(self, message: str) -> None:
        """One per-job INFO line, straight into the worker log (see :mod:`.worklog`)."""
        if self._log_handler is not None and logger.isEnabledFor(logging.INFO):
            self._log_handler.info(message)

    # ------------------------------------------------------------------ leases, walltime, cancel

    def _drop_lost(self, key: str) -> None:
        """The server gave job ``key`` away: kill it, do not report it."""
        assert self.slots is not None and self.prefetch is not None
        self.slots.stop(key, "lost", grace=0.0)
        self.prefetch.discard(key)
        self.queue.completions = [c for c in self.queue.completions if c["job_key"] != key]

    def _lease_lost(self, message: str) -> None:
        """The whole node was declared dead: every job it held runs elsewhere now."""
        assert self.slots is not None and self.prefetch is not None
        assert self.node is not None and self.execution is not None
        logger.warning("this worker's lease expired (%s): dropping its %d job(s), "
                       "registering again", message, len(self.slots) + len(self.prefetch))
        for key in list(self.slots.procs):
            self._drop_lost(key)
        self.prefetch.take_all()
        self.execution.node_key = self.node.register(lambda: self._stop_signal is not None)

    def _walltime_end(self) -> None:
        """The allocation ends: kill every job, complete it ``terminated``/``walltime``."""
        assert self.slots is not None
        logger.warning("the allocation's walltime ended: killing %d job(s)", len(self.slots))
        self.slots.stop_all("walltime", grace=0.0)
        self._drain()
        self.summary.reason = "the allocation's walltime ended"

    def _cancel_running(self) -> None:
        assert self.slots is not None
        self.summary.canceled_workflow = True
        self.summary.reason = "the workflow was canceled"
        if self.slots.procs:
            logger.info("workflow canceled: killing %d job(s)", len(self.slots))
        self.slots.stop_all("canceled")
        self._drain()

    # ------------------------------------------------------------------ stopping

    def _drain(self) -> None:
        """Wait for every stopping job to exit (kill deadlines enforced) and queue its report."""
        assert self.slots is not None
        while self.slots.procs or self._held:
            now = time.monotonic()
            self.slots.enforce(now)
            self._collect(now)
            if self.slots.procs or self._held:
                self.slots.wait(min(self._next_wakeup(), now + 0.05))

    def _shutdown(self) -> None:
        """Stop what still runs (interrupt or error) and give it back with what was never
        started, send every queued report, mark the node inactive, post the stop event.
        Reporting failures are logged, never raised: the processes must be gone first."""
        if self.slots is None or self.prefetch is None:
            return
        if self.slots.procs:
            logger.info("stopping %d running job(s)", len(self.slots))
        self.slots.stop_all("interrupted")
        self._stop_signal = self._stop_signal or signal.SIGTERM
        self._settle()
        try:
            self._drain()
        except BaseException:
            self.slots.kill_all()
            raise
        finally:
            if self._claim_uncertain:  # a claim's answer was lost: find what it handed out
                try:
                    self._adopt_orphans()
                except (LinkDown, ApiError, ServerUnreachable) as exc:
                    logger.warning("could not look for jobs of a lost claim: %s", exc)
            for job in self.prefetch.take_all():
                self.queue.release(release_item(job))
        self._send_remaining()
        if self.node is not None:
            self.node.deactivate()
            self.node.event("stop", f"Stopped worker {self.hostname}",
                            num_jobs_started=self.summary.started)

    def _settle(self) -> None:
        """Wait for the courier's call in flight and handle its answer (claimed jobs stay in
        the prefetch queue, to be released); a failure is logged, its reports stay queued."""
        if self.courier is None or not self.courier.busy:
            return
        try:
            self._receive(block=True)
        except (LinkDown, ApiError, ServerUnreachable) as exc:
            logger.warning("the last request before stopping failed: %s", exc)

    def _send_remaining(self, patience: float = 30.0) -> None:
        """Send the queued reports, waiting up to ``patience`` seconds for the server."""
        give_up = time.monotonic() + patience
        while len(self.queue):
            try:
                if self.queue.completions:
                    self._flush(time.monotonic(), None, wait=True)
                else:
                    self._talk(time.monotonic())
            except LinkDown:
                if time.monotonic() > give_up:
                    break
                time.sleep(max(self.link.retry_at - time.monotonic(), 0.0))
            except (ApiError, ServerUnreachable, LeaseLost) as exc:
                logger.error("could not report %d job(s): %s", len(self.queue), exc)
                break
        if len(self.queue):
            self.summary.report_errors += len(self.queue)
            logger.error("%d report(s) not sent; the server requeues those jobs when their "
                         "lease expires", len(self.queue))

    def _teardown(self) -> None:
        if self.courier is not None:
            self.courier.close()
        if self.slots is not None:
            self.slots.close()
        if self.execution is not None:
            self.execution.client.close()
        if self._log_handler is not None:
            logger.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    # ------------------------------------------------------------------ helpers

    def _check_completion_script(self) -> None:
        """Run the workflow completion script if the server says this worker is the one to."""
        if not self.config.get("workflow_completion_script"):
            return
        if "script" not in self._state:
            try:
                state = self.link.wait(self.client.is_complete, self.wf)
            except ApiError:
                return
            self._state["script"] = bool(state.get("needs_to_run_completion_script"))
        if self._state["script"]:
            self._run_script("workflow_completion_script",
                             self.config["workflow_completion_script"])

    def _run_script(self, label: str, script: str) -> None:
        """Run a workflow script (worker startup, completion) with the jobs' environment."""
        run_workflow_script(label, script, self.output_dir / f"{label}_{self.wf}_{self.run_id}.log",
                            self._base_env, self.options.cwd)
