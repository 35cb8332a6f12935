"""Job outcomes for display: the latest result of each job and the derived ``failed`` state.

``failed`` is not a stored status (torc v0.6.4's statuses stay what clients see on the wire):
a job is shown as failed when it is ``done`` and its latest result has a non-zero return code
(docs/execution-model.md §1). Tables, filters, the run summary and graphs use this one rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torc_graph.client import Client, seg
from torc_graph.model import JobStatus

FAILED = "failed"
#: The ``--status`` choices: the stored statuses and the derived one.
STATUS_CHOICES = [s.value for s in JobStatus] + [FAILED]


def _rank(result: Mapping[str, Any]) -> tuple[int, int]:
    key = str(result.get("_key", ""))
    return (result.get("run_id") or 0, int(key) if key.isdigit() else 0)


def latest_of(results: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The latest of one job's results (highest run_id, then the last stored), or None."""
    return max(results, key=_rank, default=None)


def latest_results(client: Client, workflow: str,
                   up_to_run: int | None = None) -> dict[str, dict[str, Any]]:
    """job key → its latest result (highest run_id, then the last stored), optionally only
    among the results of runs up to ``up_to_run``. One paged read of the results."""
    latest: dict[str, dict[str, Any]] = {}
    for result in client.iter_items(f"/workflows/{seg(workflow)}/results"):
        if up_to_run is not None and (result.get("run_id") or 0) > up_to_run:
            continue
        prev = latest.get(result.get("job_key"))
        if prev is None or _rank(result) >= _rank(prev):
            latest[result.get("job_key")] = result
    return latest


#: Up to this many jobs, their results are read job by job instead of all at once.
FEW_JOBS = 100


def results_of(client: Client, workflow: str,
               keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """job key → latest result for the jobs ``keys``: one request per job for a few (a page of
    a large workflow), else :func:`latest_results`."""
    keys = list(keys)
    if len(keys) > FEW_JOBS:
        return latest_results(client, workflow)
    path = f"/workflows/{seg(workflow)}/results"
    found = {k: latest_of(client.iter_items(path, job_key=k)) for k in keys}
    return {k: dict(r) for k, r in found.items() if r is not None}


def display_status(job: Mapping[str, Any], result: Mapping[str, Any] | None) -> str:
    """The job's status as shown to people: ``failed`` for a done job whose latest result
    has a non-zero return code, else the stored status."""
    status = str(job.get("status"))
    rc = (result or {}).get("return_code")
    if status == JobStatus.DONE.value and isinstance(rc, int) and rc != 0:
        return FAILED
    return status


def with_outcomes(jobs: Iterable[Mapping[str, Any]],
                  results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each job document plus ``display_status`` and ``return_code`` (of its latest result)."""
    out = []
    for job in jobs:
        result = results.get(job["_key"])
        out.append({**job, "display_status": display_status(job, result),
                    "return_code": (result or {}).get("return_code")})
    return out


def count_failed(client: Client, workflow: str) -> int:
    """How many done jobs failed (latest result's return code non-zero)."""
    results = latest_results(client, workflow)
    path = f"/workflows/{seg(workflow)}/jobs"
    return sum(display_status(job, results.get(job["_key"])) == FAILED
               for job in client.iter_items(path, status=JobStatus.DONE.value))
