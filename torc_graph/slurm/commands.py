"""The Slurm command-line tools (``sbatch``, ``squeue``, ``sacct``, ``scancel``) and the parsing
of their output. Every Slurm program torc_graph runs is run from here, with an argv (never a
shell) and a timeout.

Slurm facts relied on: finished jobs leave plain ``squeue`` at once but stay in ``squeue -t all``
for ``MinJobAge`` seconds; ``sacct`` (slurmdbd) lags submission by about half a second, so a job
missing from both is *unknown*, never *lost*.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Slurm job states after which nothing of the job runs any more.
FINISHED_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "REVOKED", "TIMEOUT",
})
#: Finished states that are not a normal end of the allocation's worker.
ABNORMAL_STATES = FINISHED_STATES - {"COMPLETED"}
TIMEOUT = 60.0
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


class SlurmError(Exception):
    """A Slurm command is missing, failed or printed something unexpected."""


@dataclass(frozen=True)
class QueueEntry:
    """One job as ``squeue -t all`` shows it."""

    job_id: str
    state: str
    end_time: float | None
    nodes: str
    reason: str


@dataclass(frozen=True)
class AccountingEntry:
    """One job or step as ``sacct`` shows it (sizes in bytes, times in seconds)."""

    job_id: str  # "12" or "12.batch" or "12.3"
    name: str
    state: str
    exit_code: int | None
    signal: int | None
    max_rss_bytes: int | None
    elapsed_seconds: int | None
    nodes: str

    @property
    def allocation_id(self) -> str:
        return self.job_id.split(".", 1)[0]

    @property
    def step(self) -> str | None:
        return self.job_id.split(".", 1)[1] if "." in self.job_id else None

    def figures(self) -> dict[str, Any]:
        """The figures stored with a job's result (``result.slurm``)."""
        return {"slurm_job_id": self.allocation_id, "step_id": self.step, "node": self.nodes,
                "state": self.state, "exit_code": self.exit_code, "signal": self.signal,
                "max_rss_bytes": self.max_rss_bytes, "elapsed_seconds": self.elapsed_seconds}


def missing_tools() -> str | None:
    """Why Slurm cannot be used from this machine (a missing tool or no controller), or None."""
    for tool in ("sbatch", "squeue", "sacct", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        _run(["squeue", "-h", "-o", "%i"], timeout=10)
    except SlurmError as exc:
        return f"the Slurm controller does not answer: {exc}"
    return None


def submit(options: list[str], script: str, cwd: str) -> str:
    """``sbatch --parsable OPTIONS SCRIPT`` from ``cwd``; returns the Slurm job id.

    Raises SlurmError (sbatch rejected the job: its message)."""
    out = _run(["sbatch", "--parsable", *options, script], cwd=cwd).strip()
    job_id = out.splitlines()[-1].split(";", 1)[0] if out else ""
    if not job_id.isdigit():
        raise SlurmError(f"sbatch printed no job id: {out!r}")
    return job_id


def cancel(job_ids: Iterable[str]) -> None:
    """``scancel`` these jobs (already finished ones are ignored). Raises SlurmError."""
    ids = sorted({str(j) for j in job_ids if str(j).isdigit()}, key=int)
    if ids:
        _run(["scancel", *ids], ok_codes=(0, 1))


def queue(job_ids: Iterable[str] | None = None) -> dict[str, QueueEntry]:
    """What ``squeue -t all`` knows about these jobs (all jobs when None), by job id.
    Jobs finished more than ``MinJobAge`` ago are absent. ``end_time`` is the start plus the
    time limit (not squeue's EndTime, which a scancel moves to the cancel time). Raises
    SlurmError."""
    out = _run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%S|%l|%N|%r"])
    wanted = None if job_ids is None else {str(j) for j in job_ids}
    entries = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 6 or (wanted is not None and parts[0] not in wanted):
            continue
        job_id, state, start, limit, nodes, reason = parts
        begin = parse_timestamp(start)
        try:
            end = None if begin is None else begin + parse_walltime(limit)
        except ValueError:  # UNLIMITED, INVALID
            end = None
        entries[job_id] = QueueEntry(job_id, state, end, nodes, reason)
    return entries


def accounting(job_ids: Iterable[str]) -> list[AccountingEntry]:
    """``sacct`` lines (allocations and their steps) of these jobs. Raises SlurmError."""
    ids = sorted({str(j) for j in job_ids if str(j).isdigit()}, key=int)
    if not ids:
        return []
    out = _run(["sacct", "-n", "-P", "-j", ",".join(ids),
                "-o", "JobID,JobName,State,ExitCode,MaxRSS,ElapsedRaw,NodeList"])
    entries = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != 7:
            continue
        job_id, name, state, exit_code, rss, elapsed, nodes = parts
        code, sig = (exit_code.split(":", 1) + [""])[:2] if exit_code else ("", "")
        entries.append(AccountingEntry(
            job_id=job_id, name=name, state=state.split(" ", 1)[0],
            exit_code=int(code) if code.isdigit() else None,
            signal=int(sig) if sig.isdigit() else None,
            max_rss_bytes=parse_size(rss), elapsed_seconds=int(elapsed) if elapsed.isdigit() else None,
            nodes=nodes))
    return entries


def end_time(job_id: str) -> float | None:
    """The allocation's end (epoch seconds) as squeue shows it now; None if unknown."""
    entry = queue([job_id]).get(str(job_id))
    return entry.end_time if entry else None


def parse_timestamp(text: str) -> float | None:
    """A Slurm local timestamp (``2026-12-03T10:23:22``) as epoch seconds; None for ``N/A``."""
    try:
        return _dt.datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_walltime(text: str) -> int:
    """Seconds of a Slurm time limit: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``. Raises ValueError naming the text."""
    m = _WALLTIME.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"not a Slurm time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S): {text!r}")
    days, a, b, c = m.groups()
    if days is not None:  # D-H[:M[:S]]
        h, mi, s = int(a), int(b or 0), int(c or 0)
        return ((int(days) * 24 + h) * 60 + mi) * 60 + s
    if c is not None:  # H:M:S
        return (int(a) * 60 + int(b)) * 60 + int(c)
    if b is not None:  # M:S
        return int(a) * 60 + int(b)
    return int(a) * 60  # M


def parse_size(text: str) -> int | None:
    """Bytes of a Slurm size (``1234K``, ``2G``, ``512``); None when empty or unparsable."""
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGTP]?)$", (text or "").strip())
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)]) if m else None


def _run(argv: list[str], cwd: str | None = None, timeout: float = TIMEOUT,
         ok_codes: tuple[int, ...] = (0,)) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} is not installed (is this a Slurm submit host?)") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{argv[0]} did not answer within {timeout:.0f} s") from None
    if done.returncode not in ok_codes:
        message = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise SlurmError(f"{argv[0]} failed: {message}")
    return done.stdout
