"""Leases with fencing (docs/execution-model.md §2, §5): the job's ``execution`` record, the
compute node's ``lease``, and the expiry sweep that requeues the jobs of dead workers.

A claim stamps the job's ``execution``: the attempt it runs (``attempt_id``, the fencing token),
the node holding it and, for claims by workers that never heartbeat (torc-client 0.6.4), a
runtime-based ``lease_expires``. A heartbeating node holds one ``lease`` for all its jobs, renewed
with one write per heartbeat whatever its job count. :func:`expire` finds expired leases with two
indexed reads and writes only when something expired; it is rate-limited per process and
workflow, so the endpoints that call it pay O(1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from torc_graph import model
from torc_graph.engine.common import now_ms
from torc_graph.errors import Conflict
from torc_graph.model import Collection, JobStatus
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import In, Lt
from torc_graph.store.records import Document

JOBS = Collection.JOBS.value
NODES = Collection.COMPUTE_NODES.value
#: Statuses in which a job is held by a worker (its lease can expire).
HELD_STATUSES = (JobStatus.SUBMITTED_PENDING.value, JobStatus.SUBMITTED.value)

#: Workflow config defaults (schemas/workflow_config.json).
DEFAULT_HEARTBEAT_SECONDS = 30
DEFAULT_LEASE_SECONDS = 120
DEFAULT_MAX_INFRA_RETRIES = 3
DEFAULT_EXPIRATION_BUFFER_SECONDS = 120

#: Minimum seconds between two sweeps of one workflow in one process (``force`` ignores it).
SWEEP_INTERVAL_SECONDS = 1.0
_last_sweep: dict[tuple[str, str], float] = {}
_sweep_lock = threading.Lock()


def heartbeat_seconds(config: Mapping[str, Any]) -> int:
    return int(config.get("heartbeat_seconds") or DEFAULT_HEARTBEAT_SECONDS)


def lease_seconds(config: Mapping[str, Any]) -> int:
    return int(config.get("lease_seconds") or DEFAULT_LEASE_SECONDS)


def max_infra_retries(config: Mapping[str, Any]) -> int:
    value = config.get("max_infra_retries")
    return DEFAULT_MAX_INFRA_RETRIES if value is None else int(value)


# --------------------------------------------------------------------------------------------
# The job's execution record
# --------------------------------------------------------------------------------------------


def execution(job: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the job's ``execution`` with every field present (defaults for a job never
    claimed: attempt 1, no node, no retries)."""
    ex = dict(job.get("execution") or {})
    ex.setdefault("attempt_id", 1)
    ex.setdefault("compute_node", None)
    ex.setdefault("claimed_at", None)
    ex.setdefault("lease_expires", None)
    ex.setdefault("retries", 0)
    ex.setdefault("infra_retries", 0)
    ex.setdefault("last_cause", None)
    return ex


def claimed_execution(
    job: Mapping[str, Any], now: int, *, node_key: str | None = None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The execution record of a claim at ``now``. With ``node_key`` (a batched claim by a
    heartbeating node) the node's lease governs and ``lease_expires`` is null; without it
    (torc-client 0.6.4 ``prepare_*``), ``lease_expires`` = claim + runtime + the config's
    ``compute_node_expiration_buffer_seconds`` + ``lease_seconds``."""
    ex = execution(job)
    ex["compute_node"] = node_key
    ex["claimed_at"] = now
    ex["lease_expires"] = None
    if node_key is None:
        config = config or {}
        runtime = float((job.get("internal") or {}).get("runtime_seconds") or 0)
        buffer = config.get("compute_node_expiration_buffer_seconds")
        buffer = DEFAULT_EXPIRATION_BUFFER_SECONDS if buffer is None else int(buffer)
        ex["lease_expires"] = now + int((runtime + buffer + lease_seconds(config)) * 1000)
    return ex


def started_execution(job: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    """``start_job``: the node now holds the job; a heartbeating node's lease replaces the
    job's own runtime-based one."""
    ex = execution(job)
    ex["compute_node"] = node["_key"]
    if ex["claimed_at"] is None:
        ex["claimed_at"] = now_ms()
    if node.get("lease"):
        ex["lease_expires"] = None
    return ex


def finished_execution(job: Mapping[str, Any], cause: str) -> dict[str, Any]:
    """A finished attempt: nobody holds the job; ``last_cause`` records why it ended."""
    ex = execution(job)
    ex.update(compute_node=None, lease_expires=None, last_cause=cause)
    return ex


def holds(job: Mapping[str, Any], node_key: str, attempt_id: int) -> bool:
    """Whether ``node_key`` holds ``attempt_id`` of the job right now (the fencing check)."""
    ex = job.get("execution") or {}
    return (
        job.get("status") in HELD_STATUSES
        and ex.get("attempt_id", 1) == attempt_id
        and ex.get("compute_node") == node_key
    )


# --------------------------------------------------------------------------------------------
# Node leases
# --------------------------------------------------------------------------------------------


def is_live(node: Mapping[str, Any], now: int) -> bool:
    """Whether the node may claim or heartbeat: active, and its lease (if any) not expired."""
    lease = node.get("lease") or {}
    return node.get("is_active") is not False and lease.get("expires", now) >= now


def require_live_node(node: Mapping[str, Any], now: int) -> None:
    """Conflict (409) unless :func:`is_live`: the node's jobs were or will be requeued; the
    worker must register a new node."""
    if not is_live(node, now):
        raise Conflict(
            f"compute node {node['_key']} lost its lease (inactive since its lease expired or "
            "it stopped): its jobs were requeued; register a new compute node"
        )


def renew(
    store: GraphStore, workflow: str, node: Mapping[str, Any], config: Mapping[str, Any],
    now: int, seconds: int | None = None,
) -> Document:
    """Renew the node's lease: ONE write (the node document), whatever its job count.
    Returns the node. Runs inside the caller's transaction."""
    seconds = int(seconds or (node.get("lease") or {}).get("seconds") or lease_seconds(config))
    lease = {"seconds": seconds, "expires": now + seconds * 1000, "heartbeat": now}
    return store.update(NODES, workflow, node["_key"], {"lease": lease, "is_active": True})


# --------------------------------------------------------------------------------------------
# Expiry sweep
# --------------------------------------------------------------------------------------------


def _expired(store: GraphStore, workflow: str, now: int) -> tuple[list[Document], list[Document]]:
    """The active nodes whose lease expired, and the held jobs they held or whose own lease
    expired (two or three indexed reads)."""
    nodes = store.find(NODES, workflow, {"is_active": True, "lease.expires": Lt(now)})
    jobs = store.find(
        JOBS, workflow, {"status": In(HELD_STATUSES), "execution.lease_expires": Lt(now)}
    )
    if nodes:
        seen = {j["_key"] for j in jobs}
        held = store.find(
            JOBS, workflow,
            {"status": In(HELD_STATUSES), "execution.compute_node": In([n["_key"] for n in nodes])},
        )
        jobs += [j for j in held if j["_key"] not in seen]
    return nodes, jobs


def expire(store: GraphStore, workflow: str, now: int | None = None, *,
           force: bool = False) -> list[str]:
    """Sweep expired leases of ``workflow`` (docs/execution-model.md §5); returns the keys of
    the jobs it requeued or terminated.

    Every active node whose ``lease.expires < now`` becomes inactive (event
    ``compute_node/lease_expired``); every job it held and every held job whose own
    ``execution.lease_expires < now`` is requeued with cause ``lost`` (or ends ``terminated``
    when ``max_infra_retries`` is spent), with an event naming the node and the reason. One
    transaction; the lock is taken only when the lock-free read found something. Skipped (returns
    ``[]``) if this process swept the workflow less than :data:`SWEEP_INTERVAL_SECONDS` ago,
    unless ``force``.
    """
    mark = time.monotonic()
    slot = (str(getattr(store, "url", id(store))), workflow)
    with _sweep_lock:
        if not force and mark - _last_sweep.get(slot, float("-inf")) < SWEEP_INTERVAL_SECONDS:
            return []
        _last_sweep[slot] = mark
    now = now_ms() if now is None else now
    if not store.workflow_exists(workflow):
        return []
    nodes, jobs = _expired(store, workflow, now)
    if not nodes and not jobs:
        return []
    # Lazy: retries and lifecycle import this module (they record executions).
    from torc_graph.engine import retries

    with store.transaction(workflow):
        nodes, jobs = _expired(store, workflow, now)  # again, under the write lock
        by_key = {n["_key"]: n for n in nodes}
        if nodes:
            store.update_many(NODES, workflow, {"_key": In(list(by_key))}, {"is_active": False})
        for node in nodes:
            held = [j["_key"] for j in jobs
                    if (j.get("execution") or {}).get("compute_node") == node["_key"]]
            store.insert(model.Collection.EVENTS.value, workflow, {
                "timestamp": now,
                "category": "compute_node",
                "type": "lease_expired",
                "node_name": node.get("hostname"),
                "compute_node_key": node["_key"],
                "job_keys": held,
                "message": (
                    f"Compute node {node['_key']} ({node.get('hostname')}) stopped heartbeating: "
                    f"its lease expired at {node['lease']['expires']}; it is inactive and its "
                    f"{len(held)} job(s) are requeued"
                ),
            })
        retries.lose(store, workflow, jobs, by_key, now)
    return [j["_key"] for j in jobs]


def reset_sweep_clock() -> None:
    """Forget when workflows were last swept (tests)."""
    with _sweep_lock:
        _last_sweep.clear()
