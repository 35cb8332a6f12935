"""The prefetch queue: claimed jobs waiting for a free slot, and how much to claim.

A claim asks for the free resources plus a prefetch, so a core never waits on a round trip:
the runner holds enough extra jobs to keep every slot busy for four round trips (measured),
and for at least :data:`MIN_HORIZON` (an embedded ``complete_jobs`` call costs ~3 ms of CPU
besides ~0.3 ms per job, so batches should not shrink with fast round trips); it claims again
when half of them are left, so a completion batch carries half of that, but
only while jobs are short — for jobs whose recent mean duration is at least
:data:`MAX_DURATION` it claims only what fits now, leaving the rest to other workers. Held jobs
are the node's like running ones (its lease covers them); they are released when the runner
stops.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from torc_graph.runner.resources import Resources
from torc_graph.runner.slots import JobSlots

#: Prefetch only while the recent mean job duration is below this (seconds).
MAX_DURATION = 0.5
MAX_JOBS = 256
#: Hold at least this much work (seconds); else four round trips' worth.
MIN_HORIZON = 0.2


class Prefetch:
    """Claimed jobs not started yet, and the statistics that size the next claim."""

    def __init__(self, total: Resources, max_parallel_jobs: int | None, sort_method: str):
        self.total = total
        self.width = max(max_parallel_jobs or total.num_cpus, 1)
        self.sort_method = sort_method
        #: The held jobs with what each will hold while it runs (computed once per job).
        self.jobs: deque[tuple[dict[str, Any], Resources]] = deque()
        self.reserved = Resources(0, 0.0, 0)  # what the held jobs will need
        self.mean_duration: float | None = None
        self.rtt = 0.005  # seconds, moving average of round trips that did not wait

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (job for job, _ in self.jobs)

    def keys(self) -> set[str]:
        return {job["_key"] for job, _ in self.jobs}

    def extend(self, jobs: list[dict[str, Any]]) -> None:
        for job in jobs:
            needs = Resources.of_job(job)
            self.jobs.append((job, needs))
            self.reserved = self.reserved + needs

    def discard(self, key: str) -> None:
        kept = [job for job in self if job["_key"] != key]
        self.take_all()
        self.extend(kept)

    def take_all(self) -> list[dict[str, Any]]:
        jobs = list(self)
        self.jobs.clear()
        self.reserved = Resources(0, 0.0, 0)
        return jobs

    def next_fitting(self, slots: JobSlots) -> tuple[dict[str, Any], Resources] | None:
        """Pop the next job and what it holds if it fits into the free slots now (in claim
        order)."""
        if self.jobs and slots.fits(self.jobs[0][1]):
            job, needs = self.jobs.popleft()
            self.reserved = self.reserved - needs
            return job, needs
        return None

    # ------------------------------------------------------------------ statistics

    def job_finished(self, duration: float) -> None:
        self.mean_duration = (duration if self.mean_duration is None
                              else 0.8 * self.mean_duration + 0.2 * duration)

    def round_trip(self, seconds: float) -> None:
        self.rtt = 0.8 * self.rtt + 0.2 * seconds

    def target(self) -> int:
        """Jobs to hold beyond the free slots (see the module docstring)."""
        mean = self.mean_duration
        if mean is None or mean >= MAX_DURATION:
            return 0
        rate = self.width / max(mean, 1e-4)
        return min(MAX_JOBS, max(self.width, int(rate * max(4 * self.rtt, MIN_HORIZON))))

    def low(self) -> bool:
        """Whether the queue has run down to half its target (time to claim)."""
        return len(self.jobs) <= self.target() // 2

    def claim(self, slots: JobSlots, time_limit: str | None) -> dict[str, Any] | None:
        """The ``claim_jobs`` request for the free resources plus the prefetch (without the
        compute node); None when nothing more is wanted."""
        extra = self.target()
        cpus = max(self.total.num_cpus, 1)
        ask = slots.free - self.reserved + self.total.scaled(-(-extra // cpus))
        free_slots = slots.free_job_slots()
        limit = (free_slots if free_slots is not None else max(slots.free.num_cpus, 0)) + extra
        limit -= len(self.jobs)
        if limit <= 0 or not ask.can_claim():
            return None
        resources = ask.to_body(time_limit=time_limit)
        del resources["scheduler_config_id"]
        return {"resources": resources, "scheduler_config_id": "", "limit": limit,
                "sort_method": self.sort_method}
