"""The end of the allocation a runner lives in (a Slurm job's end time, for instance).

With an end time (epoch seconds), claims ask only for jobs whose runtime fits in the time left
minus the workflow config's ``compute_node_expiration_buffer_seconds``; inside that buffer jobs
with ``supports_termination`` get SIGTERM (SIGKILL at the end); at the end every job still
running is killed and completed ``terminated`` with cause ``walltime``. Without an end time
nothing here applies.
"""

from __future__ import annotations

import math
import time

from torc_graph.runner.slots import JobSlots


class Walltime:
    """``end_time`` (epoch s, or None) and the expiration buffer (s)."""

    def __init__(self, end_time: float | None, buffer_seconds: float):
        self.end_time = end_time
        self.buffer = max(float(buffer_seconds), 0.0)

    def left(self) -> float:
        """Seconds until the end (infinite without an end time)."""
        if self.end_time is None:
            return math.inf
        return max(self.end_time - time.time(), 0.0)

    def claimable(self) -> float:
        """Seconds a newly claimed job may run: the time left minus the buffer."""
        return self.left() - self.buffer

    def time_limit(self) -> str | None:
        """The claim's ``time_limit`` (ISO 8601 duration), None without an end time."""
        if self.end_time is None:
            return None
        return f"PT{max(int(self.claimable()), 0)}S"

    def can_claim(self) -> bool:
        return self.end_time is None or self.claimable() > 1

    def warn(self, slots: JobSlots) -> None:
        """Inside the buffer: SIGTERM to jobs with ``supports_termination`` (kill at the end)."""
        if self.end_time is None:
            return
        left = self.left()
        if left > self.buffer:
            return
        for key, proc in slots.procs.items():
            if proc.job.get("supports_termination") and proc.stop_reason is None:
                slots.stop(key, "walltime", grace=left)

    def over(self) -> bool:
        return self.end_time is not None and self.left() <= 0

    def next_event(self, now: float) -> float:
        """Monotonic time of the next walltime event (buffer start or end); inf if none."""
        if self.end_time is None:
            return math.inf
        left = self.left()
        if left > self.buffer:
            return now + left - self.buffer
        return now + left + 0.01
