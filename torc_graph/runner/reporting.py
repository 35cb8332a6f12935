"""What the runner tells the server about finished jobs: completion items, the queue that
batches them,.

A finished job becomes one ``complete_jobs`` item (docs/execution-model.md §4) with its status
and cause (§3): a job that exited by itself is ``done`` with cause ``exit`` — or ``oom`` when it
died of SIGKILL that the runner did not send, or exited 137 (the kernel's OOM killer); a job
the runner stopped at its runtime limit is ``terminated``/``timeout``, at the allocation's end
``terminated``/``walltime``, on a workflow cancel ``canceled``/``canceled``. A job stopped
because the runner was interrupted is not completed but released (cause ``interrupted``), and
a job whose lease the server gave away is dropped.

:class:`ReportQueue` holds the items until they are sent: the runner flushes it with the next
claim (one round trip per finished batch) and keeps it through server outages; an item leaves
the queue only when the server has answered for it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import signal
from typing import Any

from torc_graph.runner.process import JobProcess

logger = logging.getLogger("torc_graph.runner")

#: Return codes of a process killed by SIGKILL: the signal itself, or 128+9 from a shell.
OOM_CODES = (-signal.SIGKILL, 128 + signal.SIGKILL)
#: Stop reasons that complete the job with this status.
STOP_STATUS = {"timeout": "terminated", "walltime": "terminated", "canceled": "canceled"}


def attempt_of(job: dict[str, Any]) -> int:
    """The attempt id a claimed job runs (1 when the server does not track attempts)."""
    return int((job.get("execution") or {}).get("attempt_id") or 1)


def completion_item(proc: JobProcess, rc: int, duration: float,
                    stats: dict[str, Any] | None) -> dict[str, Any]:
    """The ``complete_jobs`` item of a finished job (see the module docstring for causes)."""
    reason = proc.stop_reason
    if reason in STOP_STATUS:
        status, cause = STOP_STATUS[reason], reason
    else:
        status, cause = "done", ("oom" if rc in OOM_CODES else "exit")
    return {
        "job_key": proc.key,
        "attempt_id": attempt_of(proc.job),
        "status": status,
        "cause": cause,
        "result": {
            "return_code": int(rc),
            "exec_time_minutes": duration / 60.0,
            "completion_time": _dt.datetime.now().isoformat(),
        },
        "process_stats": stats,
    }


def release_item(job: dict[str, Any], cause: str = "interrupted") -> dict[str, Any]:
    """The ``release_jobs`` item that gives ``job`` back unfinished."""
    return {"job_key": job["_key"], "attempt_id": attempt_of(job), "cause": cause}


class ReportQueue:
    """Completions and releases not yet acknowledged by the server."""

    def __init__(self) -> None:
        self.completions: list[dict[str, Any]] = []
        self.releases: list[dict[str, Any]] = []
        self.since: float | None = None  # monotonic time of the oldest queued completion

    def __len__(self) -> int:
        return len(self.completions) + len(self.releases)

    def add(self, item: dict[str, Any], now: float) -> None:
        self.completions.append(item)
        if self.since is None:
            self.since = now

    def release(self, item: dict[str, Any]) -> None:
        self.releases.append(item)

    def take(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` completions (they stay queued until :meth:`acknowledge`)."""
        return self.completions[:limit]

    def acknowledge(self, count: int, now: float) -> None:
        """The server answered for the first ``count`` completions: drop them."""
        del self.completions[:count]
        self.since = now if self.completions else None
