"""Claiming ready jobs for workers and schedulers (behavior doc §4.3–§4.6, §5).

A claim is one store transaction: select the candidates in the requested order, pick them in
Python (stopping as soon as the worker is full), flip the chosen ones to ``submitted_pending``
with one set-based update and read them back with their new ``_rev``. Two workers can never
claim the same job: the second transaction starts after the first committed, and by then the
jobs no longer match ``status in (ready, scheduled)``.
"""

from __future__ import annotations

from collections.abc import Collection as Keys
from collections.abc import Mapping, Sequence
from typing import Any

from torc_graph import model
from torc_graph.engine import leases
from torc_graph.engine.common import now_ms
from torc_graph.engine.initialize import (
    DEFAULT_RESOURCE_REQUIREMENTS,
    endpoint,
    resource_internal,
    workspace,
)
from torc_graph.errors import InvalidInput
from torc_graph.model import Collection, Edge, JobStatus
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import HasEdge, In, Le, Ne, NotIn
from torc_graph.store.records import Document
from torc_graph.units import (MAX_BYTES, GiB, duration_seconds, is_iso_duration,
                              seconds_to_duration)

JOBS = Collection.JOBS.value

#: ``sort_method`` → store ``order_by`` (ties keep insertion order, as the store guarantees).
SORT_METHODS: dict[str, list[tuple[str, bool]] | None] = {
    "gpus_runtime_memory": [
        ("internal.num_gpus", True),
        ("internal.runtime_seconds", True),
        ("internal.memory_bytes", True),
    ],
    "gpus_memory_runtime": [
        ("internal.num_gpus", True),
        ("internal.memory_bytes", True),
        ("internal.runtime_seconds", True),
    ],
    "none": None,
}

CANCELED_REASON = "The workflow was canceled."


def claim(
    store: GraphStore,
    workflow: str,
    jobs: list[Document],
    config: Mapping[str, Any],
    *,
    status: str = JobStatus.SUBMITTED_PENDING.value,
    node_key: str | None = None,
    node_keys: Sequence[str] | None = None,
) -> list[Document]:
    """Set the jobs to ``status`` with their claim's ``execution`` record (leases §2) and return
    them (new ``_rev``) in the given order. The jobs must have been read in the caller's
    transaction (they are written back whole, set-based, without a second read). ``node_keys``
    (one per job) overrides ``node_key`` for claims of several nodes at once."""
    if not jobs:
        return []
    now = now_ms()
    holders = node_keys if node_keys is not None else [node_key] * len(jobs)
    claimed = store.rewrite_each(JOBS, workflow, [
        {**job, "status": status,
         "execution": leases.claimed_execution(job, now, node_key=holder, config=config)}
        for job, holder in zip(jobs, holders)])
    for job in claimed:
        del job["_oldRev"]  # claims return the stored documents, as a read would
    return claimed


def _limit(limit: float | int | None, default: int) -> int:
    if limit is None:
        return default
    if limit < 0 or limit != limit:
        raise InvalidInput(f"limit must be a non-negative number: {limit}")
    return int(min(limit, model.MAX_TRANSFER_RECORDS))


def prepare_jobs_for_submission(
    store: GraphStore,
    workflow: str,
    resources: Mapping[str, Any],
    *,
    sort_method: str = "gpus_runtime_memory",
    limit: float | int | None = model.MAX_TRANSFER_RECORDS,
) -> dict[str, Any]:
    """``POST /workflows/{wf}/prepare_jobs_for_submission`` (§4.3): claim the ready/scheduled
    jobs that fit the worker's available ``resources``, greedily, in ``sort_method`` order.

    ``resources``: ``num_cpus``, ``memory_gb``, ``num_gpus`` (0), ``num_nodes`` (1),
    ``time_limit`` (ISO duration or null = no limit), ``scheduler_config_id`` (''/null = only
    jobs without a scheduler). Returns ``{"jobs": [...], "reason": ""}``, or no jobs and a
    ``reason``. Raises BadRequest (unknown sort method, bad limit or time limit), NotFound.
    Sweeps expired leases first; the claimed jobs get a runtime-based lease (leases §5). One
    transaction, group-committed with the process's concurrent writers.
    """
    leases.expire(store, workflow)

    def write() -> dict[str, Any]:
        space = workspace(store, workflow)
        chosen, reason = choose(store, workflow, resources, sort_method=sort_method, limit=limit)
        if space.status.get("is_canceled"):
            return {"jobs": [], "reason": CANCELED_REASON}
        jobs = claim(store, workflow, chosen, space.config)
        return {"jobs": jobs, "reason": "" if jobs else reason}

    return store.transact(workflow, write)


def check_resources(resources: Mapping[str, Any], sort_method: str) -> tuple[float, float | None]:
    """The memory limit in bytes and the runtime limit in seconds (None: unlimited) of a
    claim's ``resources``. Raises BadRequest (unknown sort method, negative memory, bad time
    limit); reads nothing, so callers may check before their transaction."""
    if sort_method not in SORT_METHODS:
        raise InvalidInput(
            f"sort_method must be one of {', '.join(SORT_METHODS)}: {sort_method!r}"
        )
    memory = resources["memory_gb"] * GiB
    if not memory >= 0:
        raise InvalidInput(f"memory_gb must not be negative: {resources['memory_gb']!r}")
    # torc v0.6.4 accepted any non-negative number, and its runner may report absurd ones
    # (17179869184 GB seen): more than 64-bit bytes means "no memory limit" (issue 10 item 8).
    memory = min(memory, MAX_BYTES)
    time_limit = resources.get("time_limit")
    runtime = None if time_limit is None else duration_seconds(time_limit)
    return memory, runtime


def any_scheduled(store: GraphStore, workflow: str) -> bool:
    """Whether the workflow has a ``scheduled`` job (then claims consider them too)."""
    return store.exists(JOBS, workflow, {"status": JobStatus.SCHEDULED.value})


def choose(
    store: GraphStore,
    workflow: str,
    resources: Mapping[str, Any],
    *,
    sort_method: str = "gpus_runtime_memory",
    limit: float | int | None = model.MAX_TRANSFER_RECORDS,
    exclude: Keys[str] = (),
    has_scheduled: bool | None = None,
) -> tuple[list[Document], str]:
    """The ready/scheduled jobs that fit ``resources`` (see
    :func:`prepare_jobs_for_submission`), and the reason when there are none; never the jobs
    keyed in ``exclude`` (chosen for another claim of the same transaction, not yet written).
    ``has_scheduled``: :func:`any_scheduled`, if the caller already asked it in this
    transaction (a stale True only costs speed). Reads only; call it inside the transaction
    that claims them. Raises BadRequest for bad arguments."""
    memory, runtime = check_resources(resources, sort_method)
    count_limit = _limit(limit, model.MAX_TRANSFER_RECORDS)
    cpus = resources["num_cpus"]
    gpus = resources.get("num_gpus", 0) or 0
    nodes = resources.get("num_nodes", 1)
    scheduler_id = resources.get("scheduler_config_id") or ""
    # Without scheduled jobs (the common case) the status is one value, so the store walks
    # the claim-order index and stops after the batch; ``IN (ready, scheduled)`` makes SQLite
    # read and sort every ready job per claim (O(ready), profiled at 7 ms with 4,000 ready).
    status: Any = JobStatus.READY.value
    if has_scheduled is None:
        has_scheduled = any_scheduled(store, workflow)
    if has_scheduled:
        status = In(model.CLAIMABLE_STATUSES)
    where: dict[str, Any] = {
        "status": status,
        "internal.memory_bytes": Le(memory),
        "internal.num_cpus": Le(cpus),
        "internal.num_gpus": Le(gpus),
        "internal.num_nodes": Le(nodes),
        "internal.scheduler_config_id": In(("", scheduler_id)),
    }
    if runtime is not None:
        where["internal.runtime_seconds"] = Le(runtime)
    if exclude:
        where["_key"] = NotIn(list(exclude))

    chosen: list[Document] = []
    left_cpus, left_gpus, left_memory = cpus, gpus, memory
    if count_limit > 0 and left_cpus > 0 and left_memory > 0:
        # Every claimed job takes at least one CPU, so a worker with C free CPUs takes at
        # most C jobs: a first batch of 4C candidates almost always suffices (more batches
        # follow only when candidates do not fit). Reading 1,000 candidates per claim cost
        # a 2-CPU local runner ~17% of its time (one claim per finished job).
        batch = max(1, min(count_limit, 1000, 4 * max(1, int(cpus))))
        candidates = store.iter_find(
            JOBS, workflow, where, order_by=SORT_METHODS[sort_method], batch_size=batch
        )
        for seen, job in enumerate(candidates, start=1):
            res = job["internal"]
            if (
                res["num_cpus"] <= left_cpus
                and res["num_gpus"] <= left_gpus
                and res["memory_bytes"] <= left_memory
            ):
                chosen.append(job)
                left_cpus -= res["num_cpus"]
                left_gpus -= res["num_gpus"]
                left_memory -= res["memory_bytes"]
                if left_cpus <= 0 or left_memory <= 0:
                    break
            if seen >= count_limit:
                break
    runtime_text = "unlimited" if runtime is None else runtime
    return chosen, (
        f"No jobs matched status in ('ready', 'scheduled'), memory_bytes <= {int(memory)}, "
        f"num_cpus <= {cpus}, num_gpus <= {gpus}, runtime_seconds <= {runtime_text}, "
        f"num_nodes <= {nodes}, scheduler_config_id in ('', {scheduler_id!r})"
    )


def prepare_next_jobs_for_submission(
    store: GraphStore, workflow: str, *, limit: float | int | None = 1
) -> dict[str, Any]:
    """``POST /workflows/{wf}/prepare_next_jobs_for_submission`` (§4.4): claim the first
    ``limit`` ready/scheduled jobs in insertion order, without resource checks."""
    count_limit = _limit(limit, 1)
    leases.expire(store, workflow)

    def write() -> dict[str, Any]:
        space = workspace(store, workflow)
        if space.status.get("is_canceled"):
            return {"jobs": []}
        if count_limit == 0:
            return {"jobs": []}
        jobs = store.find(
            JOBS, workflow, {"status": In(model.CLAIMABLE_STATUSES)}, limit=count_limit
        )
        return {"jobs": claim(store, workflow, jobs, space.config)}

    return store.transact(workflow, write)

def prepare_jobs_for_scheduling(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``POST /workflows/{wf}/prepare_jobs_for_scheduling`` (§4.5): every ``ready`` job with
    ``schedule_compute_nodes`` becomes ``scheduled``; returns their params, one per job."""
    where = {"status": JobStatus.READY.value, "schedule_compute_nodes": Ne(None)}
    with store.transaction(workflow):
        if workspace(store, workflow).status.get("is_canceled"):
            return {"schedulers": []}
        jobs = store.find(JOBS, workflow, where)
        if jobs:
            store.update_many(
                JOBS,
                workflow,
                {"_key": In([j["_key"] for j in jobs])},
                {"status": JobStatus.SCHEDULED.value},
            )
        return {"schedulers": [j["schedule_compute_nodes"] for j in jobs]}


def ready_job_requirements(
    store: GraphStore, workflow: str, *, scheduler_config_id: str | None = None
) -> dict[str, Any]:
    """``GET /workflows/{wf}/ready_job_requirements`` (§4.6): the summed requirements of the
    ``ready`` jobs (optionally those usable by ``scheduler_config_id``), from each job's current
    resource requirements (not ``internal``). One count per rr document plus one for the jobs
    on the default; raises BadRequest for an rr with a bad memory/runtime string.
    """
    workspace(store, workflow)
    where: dict[str, Any] = {"status": JobStatus.READY.value}
    if scheduler_config_id is not None:
        where["internal.scheduler_config_id"] = In(("", scheduler_config_id))
    rrs = store.find(Collection.RESOURCE_REQUIREMENTS.value, workflow)
    groups: list[tuple[Mapping[str, Any], int]] = []
    for rr in rrs:
        n = store.count(
            JOBS, workflow, where, edges=[HasEdge(Edge.REQUIRES.value, "out", endpoint(rr["_id"]))]
        )
        if n:
            groups.append((rr, n))
    rr_ids = [rr["_id"] for rr in rrs]
    n_default = store.count(
        JOBS,
        workflow,
        where,
        edges=[HasEdge(Edge.REQUIRES.value, "out", {"_id": In(rr_ids)}, exists=False)],
    )
    if n_default:
        groups.append((DEFAULT_RESOURCE_REQUIREMENTS, n_default))
    totals = {"num_jobs": 0, "num_cpus": 0, "num_gpus": 0, "memory_gb": 0.0, "max_num_nodes": 0}
    max_runtime, max_runtime_text = None, ""
    memory = 0
    for rr, n in groups:
        res = resource_internal(rr)
        totals["num_jobs"] += n
        totals["num_cpus"] += n * res["internal.num_cpus"]
        totals["num_gpus"] += n * res["internal.num_gpus"]
        memory += n * res["internal.memory_bytes"]
        totals["max_num_nodes"] = max(totals["max_num_nodes"], res["internal.num_nodes"])
        if max_runtime is None or res["internal.runtime_seconds"] > max_runtime:
            max_runtime = res["internal.runtime_seconds"]
            text = rr.get("runtime") or ""
            # The client parses this with isodate, which needs uppercase ISO designators
            # (a short form such as "2H" is rewritten too).
            uppercase = bool(text) and text == text.upper() and is_iso_duration(text)
            max_runtime_text = text if uppercase else seconds_to_duration(max_runtime)
    totals["memory_gb"] = memory / GiB
    totals["max_runtime"] = max_runtime_text
    return totals
