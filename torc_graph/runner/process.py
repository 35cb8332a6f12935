"""One job's operating-system process: how it is started, watched, measured and stopped.

Command rule (documented in the README): a job's command line (``invocation_script`` + `` `` +
``command`` when the job has an invocation script, as torc does) is started **directly**, with
``shlex.split`` giving the argv, unless it uses shell syntax: any of ``| & ; < > ( ) $ ` * ? [ ]
{ } ~ #``, a newline, or a leading ``NAME=value`` assignment. Such a command runs as
``/bin/sh -c COMMAND``. sh and shlex quote alike, so the rule never changes the arguments of a
plain command; it only decides whether pipes, redirections, globs and variables work.

Every job runs in its own session and process group (``start_new_session``), so the runner can
signal the job together with everything it started. When the job's main process exits, whatever
it left running in its group is killed (the job is over; stray processes would hold resources the
runner has already handed to the next job). The exit is detected without reaping the process
(``waitid(WNOWAIT)``), so its pid, and with it the group id, cannot be reused before that kill.

Starting is ``os.posix_spawn`` (glibc: vfork + exec; about a third of ``subprocess.Popen``'s
CPU in the runner): the program is looked up in the job environment's ``PATH`` as ``execvp``
would, the stdio files are opened by the child, SIGPIPE and SIGXFSZ get their default action back
(as Popen's ``restore_signals``), and the runner's descriptors are all close-on-exec (Python
creates them so; :func:`seal_inherited_fds` marks those the runner itself inherited). A job with
its own working directory (``cwd``) is started with Popen, which can change directory.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

#: Characters that make a command line need a shell.
SHELL_SYNTAX = re.compile(r"[|&;<>()$`*?\[\]{}~#\n]|^\s*[A-Za-z_][A-Za-z0-9_]*=")
#: The exit code reported when a command cannot be started (as a shell reports it).
RC_NOT_STARTED = 127
JOB_STDIO_DIR = "job-stdio"  # torc's name: `torc reports results` finds the files there
#: How the child opens its stdio files (truncating, as ``open(path, "wb")``).
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
#: Signals Python ignores that a job must see with their default action.
_DEFAULT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ")
                         if hasattr(signal, name))
#: (program, PATH) -> resolved path; only hits are cached (a missing program may appear later).
_PROGRAMS: dict[tuple[str, str], str] = {}
#: Directories known to exist (the stdio directory is created once, not per job).
_MADE_DIRS: set[str] = set()
_sealed = False


def seal_inherited_fds() -> None:
    """Mark every descriptor above stderr close-on-exec, once per process: jobs started with
    posix_spawn must not inherit what the runner inherited (Popen's ``close_fds``)."""
    global _sealed
    if _sealed:
        return
    _sealed = True
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 256))
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def find_program(program: str, env: dict[str, str]) -> str:
    """``program`` as ``execvp`` would find it in ``env``'s ``PATH`` (unchanged if it contains a
    slash). Raises FileNotFoundError when no directory has it as an executable file."""
    if "/" in program:
        return program
    search = env.get("PATH", os.defpath)
    cached = _PROGRAMS.get((program, search))
    if cached is not None:
        return cached
    for directory in search.split(os.pathsep):
        path = os.path.join(directory or ".", program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            _PROGRAMS[(program, search)] = path
            return path
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def spawn(argv: list[str], env: dict[str, str], stdout: str | Path, stderr: str | Path) -> int:
    """Start ``argv`` in a new session with stdin from /dev/null and stdout/stderr truncated
    into the given files; return its pid. Raises OSError (no such program, not executable,
    stdio file not writable)."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, str(stdout), _WRITE_FLAGS, 0o666),
               (os.POSIX_SPAWN_OPEN, 2, str(stderr), _WRITE_FLAGS, 0o666)]
    for attempt in range(2):
        path = find_program(argv[0], env)
        try:
            return os.posix_spawn(path, argv, env, file_actions=actions, setsid=True,
                                  setsigdef=_DEFAULT_SIGNALS)
        except (FileNotFoundError, PermissionError):
            # A cached program that moved away: look it up again once.
            if attempt or _PROGRAMS.pop((argv[0], env.get("PATH", os.defpath)), None) is None:
                raise
    raise AssertionError("unreachable")


def command_line(job: dict[str, Any]) -> str:
    """The job's full command line: ``invocation_script command`` or ``command``."""
    script = job.get("invocation_script")
    return f"{script} {job['command']}" if script else job["command"]


def argv_for(command: str) -> list[str]:
    """The argv that runs ``command`` (see the module docstring for the shell rule).

    Raises ValueError for a command that shlex cannot split (e.g. an unclosed quote).
    """
    return list(_argv(command))


@functools.lru_cache(maxsize=4096)
def _argv(command: str) -> tuple[str, ...]:
    """:func:`argv_for`, cached (many jobs share a command line; errors are not cached)."""
    if SHELL_SYNTAX.search(command):
        return ("/bin/sh", "-c", command)
    argv = shlex.split(command)
    if not argv:
        raise ValueError("the command is empty")
    return tuple(argv)


def stdio_paths(output_dir: Path, job_key: str, run_id: int) -> tuple[Path, Path]:
    """Where a job's stdout and stderr go: ``<output>/job-stdio/<key>_<run_id>.o`` / ``.e``."""
    base = Path(output_dir) / JOB_STDIO_DIR / f"{job_key}_{run_id}"
    return base.with_suffix(".o"), base.with_suffix(".e")


@dataclass
class ProcessStats:
    """CPU and memory samples of a job's process tree."""

    cpu_percent: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return len(self.rss)

    def document(self, job_key: str, run_id: int, timestamp: str) -> dict[str, Any]:
        """The ``job_process_stats`` document (all fields required by torc's model)."""
        n = self.num_samples
        return {
            "job_key": job_key,
            "run_id": int(run_id),
            "avg_cpu_percent": sum(self.cpu_percent) / n if n else 0.0,
            "max_cpu_percent": max(self.cpu_percent, default=0.0),
            "avg_rss": sum(self.rss) / n if n else 0.0,
            "max_rss": float(max(self.rss, default=0)),
            "num_samples": n,
            "timestamp": timestamp,
        }


class JobProcess:
    """A running job: the process, its stdio files, timing, samples and termination state."""

    def __init__(self, job: dict[str, Any], run_id: int, output_dir: Path, env: dict[str, str],
                 cwd: str | None = None):
        self.job = job
        self.key: str = job["_key"]
        self.run_id = run_id
        # Strings, not Paths: this runs once per job (same files as :func:`stdio_paths`).
        self.stdio_dir = os.path.join(output_dir, JOB_STDIO_DIR)
        base = os.path.join(self.stdio_dir, f"{self.key}_{run_id}")
        self.stdout_path, self.stderr_path = base + ".o", base + ".e"
        self.env = env
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None  # only for jobs with their own cwd
        self._pid: int | None = None
        self.start_time = 0.0  # time.monotonic()
        self.start_wall = 0.0  # time.time()
        self.return_code: int | None = None
        self.stats = ProcessStats()
        #: Why the runner is stopping the job, a cause of docs/execution-model.md §3:
        #: "timeout" (runtime limit), "walltime", "canceled", "interrupted" (the runner was
        #: stopped), "lost" (the server gave the job away); None while it runs on its own.
        self.stop_reason: str | None = None
        self.kill_deadline: float | None = None
        self._cpu_seen: dict[int, float] = {}
        self._last_sample: float = 0.0
        self.pidfd: int | None = None

    @property
    def pid(self) -> int:
        assert self._pid is not None
        return self._pid

    @functools.cached_property
    def runtime_limit(self) -> float:
        """Seconds the job may run (``internal.runtime_seconds``); 0 means no limit."""
        return float((self.job.get("internal") or {}).get("runtime_seconds") or 0)

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.start_time

    def start(self) -> None:
        """Start the process with stdout/stderr going to the job's files.

        A command that cannot be started (no such program, bad quoting) does not raise: the
        reason is written to the stderr file and :attr:`return_code` is set to 127.
        """
        directory = self.stdio_dir
        if directory not in _MADE_DIRS:
            os.makedirs(directory, exist_ok=True)
            _MADE_DIRS.add(directory)
        self.start_time = self._last_sample = time.monotonic()
        self.start_wall = time.time()
        try:
            try:
                self._pid = self._launch()
            except FileNotFoundError:
                if os.path.isdir(directory):
                    raise
                os.makedirs(directory, exist_ok=True)  # removed while the runner ran
                self._pid = self._launch()
        except (OSError, ValueError) as exc:
            open(self.stdout_path, "wb").close()
            with open(self.stderr_path, "wb") as err:
                err.write(f"torc-graph: cannot start job {self.key}: {exc}\n".encode())
            self.return_code = RC_NOT_STARTED
            return
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(self._pid)
            except OSError:  # kernels before 5.3: the runner polls instead
                self.pidfd = None

    def _launch(self) -> int:
        """Start the job's argv (posix_spawn, or Popen for a job with its own cwd); its pid.
        Raises OSError, ValueError."""
        argv = self.argv()
        if self.cwd is None and hasattr(os, "posix_spawn"):
            seal_inherited_fds()
            return spawn(argv, self.env, self.stdout_path, self.stderr_path)
        return self._popen(argv)

    def _popen(self, argv: list[str]) -> int:
        """Start ``argv`` with subprocess (it can change directory); return its pid."""
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self.env,
                cwd=self.cwd, start_new_session=True, close_fds=True,
            )
        return self.popen.pid

    def argv(self) -> list[str]:
        """The job's argv (a launcher such as srun prefixes it in a subclass). Raises
        ValueError (see :func:`argv_for`)."""
        return argv_for(command_line(self.job))

    @property
    def started(self) -> bool:
        return self._pid is not None

    def has_exited(self) -> bool:
        """True once the main process has exited (or never started). Does not reap it."""
        if self.return_code is not None:
            return True
        if self._pid is None:
            return True
        try:
            info = os.waitid(os.P_PID, self._pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # already reaped
            return True
        return info is not None

    def finish(self) -> int:
        """Kill what the job left in its process group, reap the main process and return its
        exit code (negative signal number when a signal ended it)."""
        if self.return_code is not None and self._pid is None:
            return self.return_code
        assert self._pid is not None
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.return_code = self.popen.wait()
        else:
            self.return_code = os.waitstatus_to_exitcode(os.waitpid(self._pid, 0)[1])
        self.close()
        return self.return_code

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the job's process group (the job and everything it started)."""
        if self._pid is None:
            return
        try:
            os.killpg(self._pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def request_stop(self, reason: str, grace: float) -> None:
        """Ask the job to stop (SIGTERM to its group); SIGKILL follows after ``grace`` seconds
        (:meth:`enforce_kill_deadline`). The first reason given is kept."""
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.kill_deadline is None:
            self.kill_deadline = time.monotonic() + grace
            self.signal_group(signal.SIGTERM)

    def enforce_kill_deadline(self, now: float) -> None:
        if self.kill_deadline is not None and now >= self.kill_deadline:
            self.signal_group(signal.SIGKILL)

    def sample(self, now: float) -> None:
        """Record one CPU%/RSS sample of the process tree (CPU% from CPU-time deltas since the
        previous sample, so the first sample is meaningful too)."""
        if self._pid is None:
            return
        try:
            root = psutil.Process(self._pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return
        interval = max(now - self._last_sample, 1e-6)
        cpu_delta = 0.0
        rss = 0
        seen: dict[int, float] = {}
        for proc in procs:
            try:
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    times = proc.cpu_times()
                    total = times.user + times.system
                    rss += proc.memory_info().rss
            except psutil.Error:
                continue
            seen[proc.pid] = total
            cpu_delta += total - self._cpu_seen.get(proc.pid, 0.0)
        if not seen:
            return
        self._cpu_seen = seen
        self._last_sample = now
        self.stats.cpu_percent.append(max(cpu_delta, 0.0) / interval * 100.0)
        self.stats.rss.append(rss)
