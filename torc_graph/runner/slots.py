"""The runner's job slots: the running job processes, the resources they hold, and the waiting.

:class:`JobSlots` starts claimed jobs as :class:`~.process.JobProcess`, registers them with the
watchdog (:mod:`.watchdog`), watches their exits (Linux pidfds in a selector; a 20 ms poll
elsewhere), enforces runtime limits and kill deadlines, samples process statistics, and sleeps
until the next thing happens: a child exits, a deadline passes, or :meth:`wake` is called (from
a signal handler).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time
from pathlib import Path
from typing import Any

from torc_graph.runner.options import SUPPORTS_TERMINATION_GRACE
from torc_graph.runner.process import JobProcess
from torc_graph.runner.resources import Resources
from torc_graph.runner.watchdog import Watchdog

logger = logging.getLogger("torc_graph.runner")

#: Poll period for children where pidfds are unavailable.
FALLBACK_POLL = 0.02


class JobSlots:
    """The jobs running on this worker (see the module docstring)."""

    def __init__(self, total: Resources, *, output_dir: Path, env: dict[str, str],
                 cwd: str | None, termination_grace: float, max_parallel_jobs: int | None,
                 stats_interval: float | None, process_class: type[JobProcess] = JobProcess):
        self.total = total
        self.process_class = process_class  # how a job's process is made (Slurm: a job step)
        self.in_use = Resources(0, 0.0, 0)
        self.procs: dict[str, JobProcess] = {}
        self._holds: dict[str, Resources] = {}  # what each running job holds
        self.output_dir = output_dir
        self.env = env
        self.cwd = cwd
        self.termination_grace = termination_grace
        self.max_parallel_jobs = max_parallel_jobs
        self.stats_interval = stats_interval
        self._next_sample: dict[str, float] = {}
        #: Jobs whose pidfd the last :meth:`wait` saw readable (their main process exited).
        self._signaled: set[str] = set()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._watchdog = Watchdog()

    def __len__(self) -> int:
        return len(self.procs)

    # ------------------------------------------------------------------ capacity

    @property
    def free(self) -> Resources:
        return self.total - self.in_use

    def free_job_slots(self) -> int | None:
        """How many more jobs ``max_parallel_jobs`` allows (None: no such limit)."""
        if self.max_parallel_jobs is None:
            return None
        return max(self.max_parallel_jobs - len(self.procs), 0)

    def fits(self, needs: Resources) -> bool:
        """Whether a job holding ``needs`` can start now (free resources and
        ``max_parallel_jobs``)."""
        if self.free_job_slots() == 0:
            return False
        return self.free.holds(needs)

    # ------------------------------------------------------------------ starting and ending

    def start(self, job: dict[str, Any], run_id: int,
              needs: Resources | None = None) -> JobProcess:
        """Start ``job`` (a claimed, started job document) in its own process group; it holds
        ``needs`` (default: :meth:`Resources.of_job`) until it exits."""
        key = job["_key"]
        if needs is None:
            needs = Resources.of_job(job)
        env = dict(self.env)
        env["TORC_JOB_KEY"] = key
        proc = self.process_class(job, run_id, self.output_dir, env, self.cwd)
        proc.start()
        self.procs[key] = proc
        self._holds[key] = needs
        self.in_use = self.in_use + needs
        if proc.started:
            self._watchdog.watch(proc.pid)
            if proc.pidfd is not None:
                self._selector.register(proc.pidfd, selectors.EVENT_READ, key)
            if self.stats_interval is not None:
                self._next_sample[key] = proc.start_time + min(0.1, self.stats_interval)
        return proc

    def exited(self) -> list[JobProcess]:
        """Reap every job whose main process exited (its group is killed, its resources
        freed); each returned process has ``return_code`` set. A job with a pidfd is checked
        only once :meth:`wait` saw its pidfd readable (one system call fewer per job and
        iteration; the pidfd stays readable, so an exit is never missed, only seen at the
        next wait, which then returns at once)."""
        done = []
        signaled, self._signaled = self._signaled, set()
        for key, proc in list(self.procs.items()):
            if proc.pidfd is not None and key not in signaled:
                continue
            if not proc.has_exited():
                continue
            if proc.pidfd is not None:
                self._selector.unregister(proc.pidfd)
            proc.finish()
            if proc.started:
                self._watchdog.forget(proc.pid)
            del self.procs[key]
            self._next_sample.pop(key, None)
            self.in_use = self.in_use - self._holds.pop(key)
            done.append(proc)
        return done

    def grace(self, proc: JobProcess) -> float:
        if proc.job.get("supports_termination"):
            return SUPPORTS_TERMINATION_GRACE
        return self.termination_grace

    def stop(self, key: str, cause: str, grace: float | None = None) -> None:
        """Ask job ``key`` to stop (SIGTERM, SIGKILL after the grace) for ``cause``."""
        proc = self.procs.get(key)
        if proc is not None:
            proc.request_stop(cause, self.grace(proc) if grace is None else grace)

    def stop_all(self, cause: str, grace: float | None = None) -> None:
        self._next_sample.clear()
        for key in list(self.procs):
            self.stop(key, cause, grace)

    def kill_all(self) -> None:
        """SIGKILL every job group and reap it (last resort; no report)."""
        for proc in self.procs.values():
            proc.signal_group(signal.SIGKILL)
        self.exited_blocking()

    def exited_blocking(self) -> list[JobProcess]:
        done = []
        while self.procs:
            done += self.exited()
            if self.procs:
                self.wait(time.monotonic() + 0.05)
        return done

    def enforce(self, now: float) -> None:
        """Kill deadlines, runtime limits (cause ``timeout``), process-stats samples."""
        for key, proc in self.procs.items():
            proc.enforce_kill_deadline(now)
            limit = proc.runtime_limit
            if limit > 0 and proc.stop_reason is None and proc.elapsed(now) >= limit:
                logger.info("job %s exceeded its runtime of %ss: terminating", key, limit)
                proc.request_stop("timeout", self.grace(proc))
            if key in self._next_sample and now >= self._next_sample[key]:
                proc.sample(now)
                self._next_sample[key] = now + (self.stats_interval or 1.0)

    # ------------------------------------------------------------------ waiting

    def next_deadline(self, until: float) -> float:
        """The earliest of ``until`` and every per-job deadline (runtime, kill, sample)."""
        deadline = until
        for key, proc in self.procs.items():
            if proc.kill_deadline is not None:
                deadline = min(deadline, proc.kill_deadline)
            elif proc.runtime_limit > 0 and proc.stop_reason is None:
                deadline = min(deadline, proc.start_time + proc.runtime_limit)
            if key in self._next_sample:
                deadline = min(deadline, self._next_sample[key])
        return deadline

    def wait(self, until: float) -> None:
        """Sleep until a child exits, :meth:`wake` is called, or ``until`` / the next per-job
        deadline passes."""
        timeout = max(self.next_deadline(until) - time.monotonic(), 0.0)
        if any(p.pidfd is None and p.started for p in self.procs.values()):
            timeout = min(timeout, FALLBACK_POLL)
        for key, _ in self._selector.select(timeout):
            if key.fd == self._wake_r:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
            else:
                self._signaled.add(key.data)

    def wake(self) -> None:
        """Interrupt :meth:`wait` (safe from a signal handler)."""
        try:
            os.write(self._wake_w, b"\0")
        except OSError:
            pass

    def close(self) -> None:
        """Close the watchdog (it kills whatever is still registered), selector and pipe."""
        self._watchdog.close()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
