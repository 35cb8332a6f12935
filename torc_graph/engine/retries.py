"""Failure handlers and cause-aware retries (docs/execution-model.md §2, §3;
torc-spec-format.md §7): which finished attempts go back to ``ready``, and the requeue itself.

Budgets by cause:

* ``exit``, ``oom``, ``timeout``: the job's failure handler (``failure_handler`` names one of the
  config's ``failure_handlers``). The first rule whose ``exit_codes`` holds the return code wins;
  else (``oom``/``timeout`` only) the first rule with a ``memory_factor``/``runtime_factor``;
  else the first ``match_all_exit_codes`` rule. ``max_retries`` caps the attempts charged to
  the handler (torc: 3 means attempts 1, 2, 3). An ``oom`` retry multiplies the job's
  ``internal.memory_bytes`` by ``memory_factor`` (capped at ``max_memory``); a ``timeout``
  retry does the same for ``internal.runtime_seconds``. A return code of 137 counts as ``oom``.
* ``lost``, ``walltime``: ``max_infra_retries`` of the workflow config, never the handler's.
* ``interrupted``: always back to ``ready`` (no budget); ``canceled``: never retried.

A requeue never cascades: the job becomes ``ready`` with ``attempt_id + 1``, the finished attempt
keeps its ``results`` row (status ``ready``, its ``attempt_id`` and ``cause``) and an event is
written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torc_graph.engine import leases
from torc_graph.engine.common import now_iso, now_ms
from torc_graph.errors import BadRequest
from torc_graph.model import Collection, Edge, JobStatus
from torc_graph.store.base import GraphStore
from torc_graph.store.records import Document
from torc_graph.units import MAX_BYTES, duration_seconds, memory_bytes

JOBS = Collection.JOBS.value
READY = JobStatus.READY.value
TERMINATED = JobStatus.TERMINATED.value

#: Causes charged to the workflow's ``max_infra_retries``.
INFRA_CAUSES = frozenset({"lost", "walltime"})
#: Causes charged to the job's failure handler.
HANDLER_CAUSES = frozenset({"exit", "oom", "timeout"})
OOM_RETURN_CODE = 137


@dataclass(frozen=True)
class Decision:
    """What to do with a finished attempt: ``retry`` (back to ready) or complete with
    ``status``. ``charge`` names the budget counter a retry increments (or None)."""

    retry: bool
    status: str
    cause: str
    charge: str | None = None
    recovery_script: str | None = None
    internal: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def normalize_cause(cause: str | None, return_code: int) -> str:
    """The cause to record: ``exit`` with return code 137 is ``oom``."""
    cause = cause or "exit"
    if cause == "exit" and return_code == OOM_RETURN_CODE:
        return "oom"
    return cause


def find_rule(config: Mapping[str, Any], handler: str | None, cause: str,
              return_code: int) -> dict[str, Any] | None:
    """The rule of handler ``handler`` that matches (see the module docstring), or None."""
    if not handler:
        return None
    rules: Sequence[Mapping[str, Any]] = ()
    for h in config.get("failure_handlers") or ():
        if isinstance(h, Mapping) and h.get("name") == handler:
            rules = h.get("rules") or ()
            break
    rules = [r for r in rules if isinstance(r, Mapping)]
    for rule in rules:
        if return_code in (rule.get("exit_codes") or ()):
            return dict(rule)
    factor = {"oom": "memory_factor", "timeout": "runtime_factor"}.get(cause)
    if factor:
        for rule in rules:
            if rule.get(factor):
                return dict(rule)
    for rule in rules:
        if rule.get("match_all_exit_codes"):
            return dict(rule)
    return None


def _raised(current: float, factor: Any, cap_text: Any, parse, limit: float) -> float | None:
    """``current * factor`` capped at the parsed ``cap_text`` (and ``limit``); None if there
    is no factor or the cap does not parse (then nothing is raised)."""
    if not factor or factor <= 1:
        return None
    cap = limit
    if cap_text:
        try:
            cap = min(cap, parse(cap_text))
        except BadRequest:
            return None
    return min(current * factor, cap)


def decide(config: Mapping[str, Any], job: Mapping[str, Any], status: str, cause: str,
           return_code: int) -> Decision:
    """The fate of the job's current attempt, finished with ``status``/``cause``/
    ``return_code`` as reported (pure: reads nothing, writes nothing)."""
    cause = normalize_cause(cause, return_code)
    ex = leases.execution(job)
    if cause == "interrupted":
        return Decision(True, READY, cause, None, reason="interrupted: released by its worker")
    if cause in INFRA_CAUSES:
        budget = leases.max_infra_retries(config)
        if ex["infra_retries"] < budget:
            return Decision(True, READY, cause, "infra_retries",
                            reason=f"{cause}: infrastructure retry {ex['infra_retries'] + 1} "
                                   f"of max_infra_retries={budget}")
        return Decision(False, TERMINATED, cause,
                        reason=f"{cause}: max_infra_retries={budget} spent")
    failed = return_code != 0 or cause in ("oom", "timeout")
    if cause not in HANDLER_CAUSES or status == JobStatus.CANCELED.value or not failed:
        return Decision(False, status, cause)
    rule = find_rule(config, job.get("failure_handler"), cause, return_code)
    if rule is None:
        return Decision(False, status, cause, reason="no matching failure handler rule")
    max_retries = rule.get("max_retries", 3)
    if ex["retries"] + 1 >= max_retries:
        return Decision(False, status, cause,
                        reason=f"max_retries={max_retries} reached")
    internal: dict[str, Any] = {}
    res = job.get("internal") or {}
    if cause == "oom":
        mem = _raised(res.get("memory_bytes") or 0, rule.get("memory_factor"),
                      rule.get("max_memory"), memory_bytes, MAX_BYTES)
        if mem is not None:
            internal["memory_bytes"] = max(int(mem), int(res.get("memory_bytes") or 0))
    if cause == "timeout":
        runtime = _raised(res.get("runtime_seconds") or 0, rule.get("runtime_factor"),
                          rule.get("max_runtime"), duration_seconds, float("inf"))
        if runtime is not None:
            internal["runtime_seconds"] = max(runtime, res.get("runtime_seconds") or 0)
    return Decision(
        True, READY, cause, "retries", rule.get("recovery_script"), internal,
        reason=f"{cause} return_code={return_code}: retry {ex['retries'] + 1} "
               f"(max_retries={max_retries})",
    )


def requeue(
    store: GraphStore,
    workflow: str,
    job: Mapping[str, Any],
    decision: Decision,
    *,
    run_id: int,
    result: Mapping[str, Any],
    node: Mapping[str, Any] | None,
) -> Document:
    """Put the job back to ``ready`` after a finished attempt (no cascade): a results row for
    the attempt (status ``ready``, ``attempt_id``, ``cause``) with its ``returned`` edge, the job
    with ``attempt_id + 1`` and the charged counter incremented (and raised resources), and a
    ``job/retry`` event naming the cause and the node. Runs inside the caller's transaction."""
    ex = leases.execution(job)
    row = {
        "job_key": job["_key"],
        "run_id": run_id,
        "return_code": result["return_code"],
        "exec_time_minutes": result.get("exec_time_minutes", 0.0),
        "completion_time": result.get("completion_time") or now_iso(),
        "status": READY,
        "attempt_id": ex["attempt_id"],
        "cause": decision.cause,
    }
    stored = store.insert(Collection.RESULTS.value, workflow, row)
    store.insert(Edge.RETURNED.value, workflow, {"_from": job["_id"], "_to": stored["_id"]})
    new = leases.finished_execution(job, decision.cause)
    new["attempt_id"] = ex["attempt_id"] + 1
    new["claimed_at"] = None
    if decision.charge:
        new[decision.charge] = ex[decision.charge] + 1
    patch: dict[str, Any] = {"status": READY, "execution": new}
    if decision.internal:
        patch["internal"] = {**(job.get("internal") or {}), **decision.internal}
    updated = store.update(JOBS, workflow, job["_key"], patch)
    node_text = f"compute node {node['_key']} ({node.get('hostname')})" if node else "no node"
    store.insert(Collection.EVENTS.value, workflow, {
        "timestamp": now_ms(),
        "category": "job",
        "type": "retry",
        "job_key": job["_key"],
        "job_name": job.get("name"),
        "node_name": node.get("hostname") if node else None,
        "cause": decision.cause,
        "attempt_id": ex["attempt_id"],
        "message": (
            f"Requeued job {job['_key']} after attempt {ex['attempt_id']} on {node_text}: "
            f"{decision.reason or decision.cause}; next attempt {new['attempt_id']}"
        ),
    })
    return updated


def lose(store: GraphStore, workflow: str, jobs: Sequence[Document],
         nodes: Mapping[str, Document], now: int) -> None:
    """Finish the attempts of ``jobs`` whose lease expired (cause ``lost``): requeue them, or
    terminate them (with the downstream processing) when ``max_infra_retries`` is spent.
    ``nodes`` maps the keys of the expired nodes to their documents. Runs inside the caller's
    transaction."""
    from torc_graph.engine import lifecycle  # lifecycle imports leases; see leases.expire

    if not jobs:
        return
    space = store.workflow_space(workflow)
    run_id = space.status.get("run_id")
    terminated: list[str] = []
    for job in jobs:
        ex = leases.execution(job)
        node_key = ex["compute_node"]
        node = nodes.get(node_key) if node_key else None
        if node is None and node_key:
            node = next(iter(store.find(Collection.COMPUTE_NODES.value, workflow,
                                        {"_key": node_key})), None)
        elapsed = (now - ex["claimed_at"]) / 60000 if ex["claimed_at"] else 0.0
        result = {"return_code": -1, "exec_time_minutes": max(elapsed, 0.0),
                  "completion_time": now_iso()}
        decision = decide(space.config, job, READY, "lost", -1)
        why = ("its node stopped heartbeating" if node_key in nodes
               else "its runtime-based lease expired")
        decision = Decision(decision.retry, decision.status, "lost", decision.charge,
                            reason=f"lease lost ({why}); {decision.reason}")
        if decision.retry:
            requeue(store, workflow, job, decision, run_id=run_id, result=result, node=node)
            continue
        row = {"job_key": job["_key"], "run_id": run_id, "status": TERMINATED, **result}
        updated = lifecycle.record_completion(store, workflow, job, TERMINATED, row, cause="lost")
        lifecycle.complete_event(store, workflow, updated, node or {}, TERMINATED, -1)
        terminated.append(updated["_id"])
    lifecycle.process_completions(store, workflow, [], terminated)
