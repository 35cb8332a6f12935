"""The local job runner: a worker that claims a workflow's jobs and runs them on this machine.

It speaks torc v0.6.4's worker protocol (behavior doc §6.3), so it can share a workflow with
torc's own ``jobs run`` workers: it registers a compute node, claims jobs with
``prepare_jobs_for_submission`` for the resources it has free, reports ``start_job`` and
``complete_job`` (with a result), and posts ``worker`` start/stop events.

Unlike torc's worker it does not sleep a fixed 3 s between rounds: it waits on its children
(Linux pidfds; a 20 ms poll elsewhere) and claims again as soon as a job ends and frees its
resources. The server is polled (``is_complete``, new ready jobs) every ``poll_interval`` seconds
only while nothing else wakes it up.

Stopping: the workflow's ``is_canceled`` flag makes it kill its jobs and report them
``canceled``; a job over its runtime (``internal.runtime_seconds``) is stopped and reported
``terminated``; SIGINT/SIGTERM stop every job (process groups: SIGTERM, then SIGKILL after a
grace period) and report them ``terminated``. If the runner itself is killed, its watchdog
process kills the jobs (:mod:`.watchdog`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torc_graph import __version__
from torc_graph.client import ApiError, Client, ServerUnreachable, seg
from torc_graph.runner.process import JobProcess, argv_for
from torc_graph.runner.resources import Resources
from torc_graph.runner.watchdog import Watchdog

logger = logging.getLogger("torc_graph.runner")

#: Grace between SIGTERM and SIGKILL for jobs with ``supports_termination`` (torc's value).
SUPPORTS_TERMINATION_GRACE = 30.0
#: Poll period for children where pidfds are unavailable.
FALLBACK_POLL = 0.02


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


@dataclass
class RunnerSummary:
    """What one runner did."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    terminated: int = 0
    canceled: int = 0
    report_errors: int = 0
    canceled_workflow: bool = False
    interrupted: bool = False
    reason: str = ""
    elapsed_seconds: float = 0.0
    outcomes: list[dict[str, Any]] = field(default_factory=list)


class LocalRunner:
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
        self.hostname = socket.gethostname()
        self.summary = RunnerSummary()
        self.procs: dict[str, JobProcess] = {}
        self.in_use = Resources(0, 0.0, 0)
        self.total: Resources | None = None
        self.run_id = 0
        self.config: dict[str, Any] = {}
        self.node: dict[str, Any] | None = None
        self._stop_signal: int | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._watchdog: Watchdog | None = None
        self._has_produced_files = True
        self._stats_interval = 1.0
        self._next_sample: dict[str, float] = {}
        self._db_wait_seconds = 20 * 60.0
        self._log_handler: logging.Handler | None = None
        self._server_gone = False
        self._base_env: dict[str, str] = {}

    # ------------------------------------------------------------------ public

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the runner as if it got ``signum`` (safe from a signal handler or a thread).
        A second request while stopping kills the jobs at once (SIGKILL)."""
        if self._stop_signal is not None:
            for proc in list(self.procs.values()):
                proc.signal_group(signal.SIGKILL)
        self._stop_signal = signum
        if self._wake_w is not None:
            try:
                os.write(self._wake_w, b"\0")
            except OSError:
                pass

    def run(self) -> RunnerSummary:
        """Register, run jobs until the workflow is complete (or canceled / stopped), clean up.

        Raises RunnerError if the workflow cannot be run, ServerUnreachable if the server stays
        away longer than the config's ``compute_node_wait_for_healthy_database_minutes``.
        Whatever happens, no job process is left running and the compute node is marked
        inactive (when the server can still be reached).
        """
        t0 = time.monotonic()
        old_handlers: dict[int, Any] = {}
        try:
            self._prepare()
            old_handlers = self._install_signal_handlers()
            self._register()
            try:
                self._loop()
            finally:
                self._shutdown()
        finally:
            self._restore_signal_handlers(old_handlers)
            self._teardown()
            self.summary.elapsed_seconds = time.monotonic() - t0
        return self.summary

    @property
    def running(self) -> int:
        return len(self.procs)

    # ------------------------------------------------------------------ setup

    def _prepare(self) -> None:
        status = self._api(self.client.get_status, self.wf)
        self.run_id = int(status.get("run_id", 0))
        if self.run_id <= 0:
            raise RunnerError(
                f"workflow {self.wf} has not been started (run_id is 0): start it with "
                "`torc-graph run SPEC` or `torc-graph jobs run` on a workflow whose jobs are "
                "all uninitialized"
            )
        self.config = self._api(self.client.get_config, self.wf) or {}
        opts = self.options
        self.total = Resources.detect(opts.num_cpus, opts.memory_gb, opts.num_gpus)
        stats_cfg = self.config.get("compute_node_resource_stats") or {}
        if opts.stats_interval is not None:
            self._stats_interval = max(float(opts.stats_interval), 0.01)
        elif stats_cfg.get("process"):
            self._stats_interval = max(float(stats_cfg.get("interval") or 1.0), 0.01)
        self._db_wait_seconds = 60.0 * float(
            self.config.get("compute_node_wait_for_healthy_database_minutes") or 0
        )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.output_dir / f"worker_{self.hostname}_{self.wf}_{self.run_id}.log"
        self._log_handler = logging.FileHandler(log_path, encoding="utf-8")
        self._log_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(self._log_handler)
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._watchdog = Watchdog()
        env = dict(os.environ)
        env.update(self.client.env())
        if self.client.url:
            env["TORC_DATABASE_URL"] = self.client.url  # job scripts using torc's client
        env["TORC_WORKFLOW_KEY"] = self.wf
        env["TORC_GRAPH_RUN_ID"] = str(self.run_id)
        self._base_env = env

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda signum, frame: self.request_stop(signum))
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _register(self) -> None:
        assert self.total is not None
        self._event("start", f"Started worker {self.hostname}",
                    torc_graph_version=__version__, output_dir=str(self.output_dir))
        self.node = self._api(self.client.add_document, self.wf, "compute_nodes", {
            "hostname": self.hostname,
            "pid": os.getpid(),
            "start_time": str(_dt.datetime.now()),
            "resources": self.total.to_body(),
            "is_active": True,
            "scheduler": {"hostname": self.hostname, "scheduler_type": "local",
                          "output_dir": str(self.output_dir)},
        })
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
        poll = max(float(self.options.poll_interval), 0.01)
        wait_new = self.options.wait_for_new_jobs_seconds
        if wait_new is None:
            wait_new = float(self.config.get("compute_node_wait_for_new_jobs_seconds") or 0)
        next_check = 0.0
        next_claim = 0.0
        idle_since: float | None = None
        stuck_checks = 0
        while True:
            if self._stop_signal is not None:
                self.summary.interrupted = True
                self.summary.reason = f"stopped by signal {signal.Signals(self._stop_signal).name}"
                return
            completed = self._reap(time.monotonic())
            now = time.monotonic()
            state = None
            if now >= next_check:
                state = self._check_state()
                next_check = now + poll
                if state.get("is_canceled"):
                    self._cancel_running()
                    return
                if state.get("is_complete") and not self.procs:
                    self.summary.reason = "the workflow is complete"
                    return
            claimed = 0
            if completed or now >= next_claim:
                claimed = self._claim()
                next_claim = time.monotonic() + poll
            if self.on_progress is not None:
                self.on_progress(self)
            if self.procs or claimed:
                idle_since = None
                stuck_checks = 0
                self._wait(min(next_check, next_claim))
                continue
            # Nothing runs here and nothing could be claimed.
            if state is None:
                state = self._check_state()
                next_check = time.monotonic() + poll
                if state.get("is_canceled"):
                    self._cancel_running()
                    return
                if state.get("is_complete"):
                    self.summary.reason = "the workflow is complete"
                    return
            now = time.monotonic()
            if idle_since is None:
                idle_since = now
            if now - idle_since >= wait_new:
                reason = self._why_stuck()
                if reason is None:
                    stuck_checks = 0
                else:
                    stuck_checks += 1
                    # Two observations a poll apart: a job may have become ready in between.
                    if stuck_checks >= 2:
                        self.summary.reason = reason
                        logger.warning("exiting: %s", reason)
                        return
            self._wait(min(next_check, next_claim))

    def _check_state(self) -> dict[str, Any]:
        """GET is_complete; runs the completion script when this worker is the one to."""
        state = self._api(self.client.is_complete, self.wf)
        if state.get("needs_to_run_completion_script"):
            self._run_completion_script()
        return state

    def _why_stuck(self) -> str | None:
        """None while other workers still run jobs of the workflow; else why nothing can run."""
        def count(status: str) -> int:
            page = self._api(self.client.get, f"/workflows/{seg(self.wf)}/jobs",
                             status=status, limit=1)
            return int(page.get("total_count", 0))

        if count("submitted") or count("submitted_pending"):
            return None
        ready = count("ready") + count("scheduled")
        if ready:
            return (f"{ready} ready job(s) need more resources than this worker has "
                    f"({self.total})")
        return "no job can run: the remaining jobs are blocked or uninitialized"

    def _wait(self, until: float) -> None:
        """Sleep until a child exits, a signal arrives, or ``until`` / the next per-job
        deadline (runtime limit, kill, sample) passes."""
        deadline = until
        for key, proc in self.procs.items():
            if proc.kill_deadline is not None:
                deadline = min(deadline, proc.kill_deadline)
            elif proc.runtime_limit > 0:
                deadline = min(deadline, proc.start_time + proc.runtime_limit)
            if key in self._next_sample:
                deadline = min(deadline, self._next_sample[key])
        timeout = max(deadline - time.monotonic(), 0.0)
        if any(p.pidfd is None and p.started for p in self.procs.values()):
            timeout = min(timeout, FALLBACK_POLL)
        assert self._selector is not None
        for key, _ in self._selector.select(timeout):
            if key.fd == self._wake_r:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass

    def _reap(self, now: float) -> int:
        """Report every job whose process has exited; enforce runtime limits; sample stats."""
        done = 0
        for key, proc in list(self.procs.items()):
            if proc.has_exited():
                self._complete(proc)
                done += 1
                continue
            proc.enforce_kill_deadline(now)
            limit = proc.runtime_limit
            if limit > 0 and proc.stop_reason is None and proc.elapsed(now) >= limit:
                logger.info("job %s exceeded its runtime of %ss: terminating", key, limit)
                proc.request_stop("terminated", self._grace(proc))
            if key in self._next_sample and now >= self._next_sample[key]:
                proc.sample(now)
                self._next_sample[key] = now + self._stats_interval
        return done

    def _grace(self, proc: JobProcess) -> float:
        if proc.job.get("supports_termination"):
            return SUPPORTS_TERMINATION_GRACE
        return float(self.options.termination_grace)

    # ------------------------------------------------------------------ claiming and starting

    def _claim(self) -> int:
        assert self.total is not None
        free = self.total - self.in_use
        if not free.can_claim():
            return 0
        limit = None
        if self.options.max_parallel_jobs is not None:
            limit = self.options.max_parallel_jobs - len(self.procs)
            if limit <= 0:
                return 0
        jobs = self._api(
            self.client.prepare_jobs_for_submission, self.wf, free.to_body(),
            sort_method=self.config.get("prepare_jobs_sort_method"), limit=limit,
        )
        for job in jobs:
            self._start(job)
        return len(jobs)

    def _start(self, job: dict[str, Any]) -> None:
        assert self.node is not None
        key = job["_key"]
        try:
            started = self._api(self.client.start_job, self.wf, key, job["_rev"], self.run_id,
                                self.node["_id"])
        except ApiError as exc:
            # Someone else changed the job since the claim (cancel, reset): not ours to run.
            logger.warning("could not start job %s: %s", key, exc)
            return
        env = dict(self._base_env)
        env["TORC_JOB_KEY"] = key
        proc = self.process_class(started, self.run_id, self.output_dir, env, self.options.cwd)
        proc.start()
        self.procs[key] = proc
        self.in_use = self.in_use + Resources.of_job(started)
        self.summary.started += 1
        if proc.started:
            assert self._watchdog is not None and self._selector is not None
            self._watchdog.watch(proc.pid)
            if proc.pidfd is not None:
                self._selector.register(proc.pidfd, selectors.EVENT_READ, key)
            if self.options.process_stats:
                self._next_sample[key] = proc.start_time + min(0.1, self._stats_interval)
        logger.info("started job %s (%s): %s", key, started.get("name"), started.get("command"))

    # ------------------------------------------------------------------ completing

    def _complete(self, proc: JobProcess) -> None:
        """Reap, then report one job whose process exited."""
        if proc.pidfd is not None and self._selector is not None:
            self._selector.unregister(proc.pidfd)
        rc = proc.finish()
        if proc.started and self._watchdog is not None:
            self._watchdog.forget(proc.pid)
        duration = time.time() - proc.start_wall
        self.procs.pop(proc.key, None)
        self._next_sample.pop(proc.key, None)
        self.in_use = self.in_use - Resources.of_job(proc.job)
        status = proc.stop_reason or "done"
        if status == "done" and rc == 0 and self._has_produced_files:
            rc = self._check_outputs(proc)
        job = self._report(proc, status, rc, duration)
        final_status = (job or {}).get("status", status)
        if final_status == "canceled":
            self.summary.canceled += 1
        elif final_status == "terminated":
            self.summary.terminated += 1
        elif rc == 0:
            self.summary.succeeded += 1
        else:
            self.summary.failed += 1
        self.summary.outcomes.append({
            "key": proc.key, "name": proc.job.get("name"), "status": final_status,
            "return_code": rc, "duration_seconds": duration,
        })
        if self.options.process_stats and proc.stats.num_samples:
            self._post_process_stats(proc)
        logger.info("completed job %s status=%s return_code=%s duration=%.3fs",
                    proc.key, final_status, rc, duration)

    def _report(self, proc: JobProcess, status: str, rc: int,
                duration: float) -> dict[str, Any] | None:
        """``complete_job``; on a revision conflict re-read the job and retry once (the server
        may have canceled it meanwhile, in which case it is reported canceled)."""
        assert self.node is not None
        rev = proc.job["_rev"]
        if status == "canceled":
            rev = self._fresh_rev(proc.key) or rev
        for attempt in range(2):
            result = {
                "job_key": proc.key,
                "run_id": self.run_id,
                "return_code": int(rc),
                "exec_time_minutes": duration / 60.0,
                "completion_time": _dt.datetime.now().isoformat(),
                "status": status,
            }
            try:
                return self._api(self.client.complete_job, self.wf, proc.key, status, rev,
                                 self.run_id, self.node["_key"], result)
            except ApiError as exc:
                if exc.status == 409 and attempt == 0:
                    try:
                        fresh = self._api(self.client.get_job, self.wf, proc.key)
                    except ApiError:
                        break
                    rev = fresh["_rev"]
                    if fresh.get("status") == "canceled":
                        status = "canceled"
                    continue
                self.summary.report_errors += 1
                logger.error("could not report job %s as %s: %s", proc.key, status, exc)
                return None
        self.summary.report_errors += 1
        return None

    def _fresh_rev(self, key: str) -> str | None:
        try:
            return self._api(self.client.get_job, self.wf, key)["_rev"]
        except ApiError:
            return None

    def _check_outputs(self, proc: JobProcess) -> int:
        """Record the st_mtime of the files the job produced; 1 if one is missing (torc)."""
        rc = 0
        path = f"/workflows/{seg(self.wf)}/files/produced_by_job/{seg(proc.key)}"
        base = Path(self.options.cwd) if self.options.cwd else Path.cwd()
        for file in self._api(lambda: list(self.client.iter_items(path))):
            fpath = base / file["path"]
            if not fpath.exists():
                rc = 1
                message = (f"torc-graph: job {proc.key} should have produced {file['path']}, "
                           "which does not exist\n")
                logger.error(message.strip())
                with open(proc.stderr_path, "a", encoding="utf-8") as err:
                    err.write(message)
                continue
            file = dict(file)
            file["st_mtime"] = fpath.stat().st_mtime
            try:
                self._api(self.client.update_document, self.wf, "files", file)
            except ApiError as exc:
                logger.warning("could not update file %s: %s", file.get("_key"), exc)
        return rc

    def _post_process_stats(self, proc: JobProcess) -> None:
        doc = proc.stats.document(proc.key, self.run_id, str(_dt.datetime.now()))
        try:
            stats = self._api(self.client.add_document, self.wf, "job_process_stats", doc)
            self._api(self.client.add_edge, self.wf, "process_used", proc.job["_id"],
                      stats["_id"])
        except ApiError as exc:
            logger.warning("could not store process stats of job %s: %s", proc.key, exc)

    # ------------------------------------------------------------------ stopping

    def _stop_all(self, reason: str) -> None:
        """Stop every running job and report it with status ``reason``."""
        self._next_sample.clear()
        for proc in self.procs.values():
            proc.request_stop(reason, self._grace(proc))
        while self.procs:
            now = time.monotonic()
            for proc in list(self.procs.values()):
                if proc.has_exited():
                    self._complete(proc)
                else:
                    proc.enforce_kill_deadline(now)
            if self.procs:
                deadline = min(p.kill_deadline or now for p in self.procs.values())
                self._wait(max(deadline, now + 0.01))

    def _cancel_running(self) -> None:
        self.summary.canceled_workflow = True
        self.summary.reason = "the workflow was canceled"
        if self.procs:
            logger.info("workflow canceled: killing %d job(s)", len(self.procs))
        self._stop_all("canceled")

    def _shutdown(self) -> None:
        """Stop what still runs (signal or error), mark the node inactive, post the stop event.
        Reporting failures are logged, never raised: the processes must be gone first."""
        try:
            if self.procs:
                logger.info("stopping %d running job(s)", len(self.procs))
                self._stop_all("terminated")
        except (ApiError, ServerUnreachable) as exc:
            logger.error("could not report stopped jobs: %s", exc)
            for proc in self.procs.values():
                proc.signal_group(signal.SIGKILL)
                proc.finish()
            self.procs.clear()
        if self.node is not None:
            node = dict(self.node)
            node["is_active"] = False
            try:
                start = _dt.datetime.strptime(node["start_time"], "%Y-%m-%d %H:%M:%S.%f")
                node["duration_seconds"] = time.time() - start.timestamp()
            except (KeyError, ValueError):
                pass
            node.pop("_oldRev", None)
            try:
                self.client.update_document(self.wf, "compute_nodes", node)
            except (ApiError, ServerUnreachable) as exc:
                logger.warning("could not mark compute node inactive: %s", exc)
        self._event("stop", f"Stopped worker {self.hostname}",
                    num_jobs_started=self.summary.started)

    def _teardown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None
        if self._log_handler is not None:
            logger.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    # ------------------------------------------------------------------ helpers

    def _event(self, kind: str, message: str, **extra: Any) -> None:
        event = {"category": "worker", "type": kind, "node_name": self.hostname,
                 "message": message, **extra}
        try:
            self.client.add_event(self.wf, event)
        except (ApiError, ServerUnreachable) as exc:  # torc ignores these errors too
            logger.warning("could not post worker %s event: %s", kind, exc)

    def _api(self, fn: Callable, *args, **kwargs):
        """Call the client; while the server is unreachable, retry for up to the config's
        ``compute_node_wait_for_healthy_database_minutes`` (torc's worker does the same)."""
        deadline: float | None = None
        delay = 1.0
        while True:
            try:
                return fn(*args, **kwargs)
            except ServerUnreachable as exc:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._db_wait_seconds
                if now >= deadline or self._stop_signal is not None or self._server_gone:
                    # Once given up, later calls (the reports during shutdown) fail at once.
                    self._server_gone = True
                    raise
                logger.warning("%s; retrying in %.0f s", exc, delay)
                time.sleep(min(delay, max(deadline - now, 0)))
                delay = min(delay * 2, 60.0)

    def _run_script(self, label: str, script: str) -> None:
        """Run a workflow script (worker startup, completion) with the jobs' environment."""
        log = self.output_dir / f"{label}_{self.wf}_{self.run_id}.log"
        logger.info("running %s: %s", label, script)
        try:
            with open(log, "ab") as out:
                rc = subprocess.run(argv_for(script), stdout=out, stderr=subprocess.STDOUT,
                                    env=self._base_env, cwd=self.options.cwd,
                                    check=False).returncode
        except (OSError, ValueError) as exc:
            logger.error("%s could not run: %s", label, exc)
            return
        if rc != 0:
            logger.error("%s exited with %s (see %s)", label, rc, log)

    def _run_completion_script(self) -> None:
        script = self.config.get("workflow_completion_script")
        if script:
            self._run_script("workflow_completion_script", script)
