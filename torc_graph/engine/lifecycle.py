"""The job state machine at run time (behavior doc §3, §4.7–§4.10): start, complete (with
downstream processing), status changes, resets, cancel and the completion check.

Every mutating function is one store transaction, and validates everything (status, ``_rev``,
``run_id``, referenced documents) before its first write, so a failed call changes nothing
(torc v0.6.4 saved the status first, §8 item 6). Downstream work is set-based: completing a job
costs a fixed number of store calls whatever the size of the workflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torc_graph import model
from torc_graph.engine import leases
from torc_graph.engine.common import now_ms, to_key
from torc_graph.engine.initialize import (
    hash_inputs, input_hash, require_not_archived, workspace,
)
from torc_graph.errors import BadRequest, InvalidInput, NotFound, RevisionConflict
from torc_graph.model import Collection, Edge, JobStatus
from torc_graph.store.base import GraphStore
from torc_graph.store.bulk import bulk_operation
from torc_graph.store.filters import HasEdge, In, Ne, NotIn
from torc_graph.store.records import Document

JOBS = Collection.JOBS.value
BLOCKS = Edge.BLOCKS.value
UNINITIALIZED = JobStatus.UNINITIALIZED.value
CANCELED = JobStatus.CANCELED.value
_STATUS_VALUES = frozenset(s.value for s in JobStatus)
_UNFINISHED = tuple(s.value for s in JobStatus if s.value not in model.FINISHED_STATUSES)


def _get_job(store: GraphStore, workflow: str, key: str) -> Document:
    try:
        return store.get(JOBS, workflow, to_key(key, JOBS, workflow))
    except NotFound:
        raise NotFound(f"Error: Document not found. Operation: Get job with key={key}") from None


def _get_compute_node(store: GraphStore, workflow: str, key: str) -> Document:
    # torc v0.6.4 crashed with a 500 here; a missing node is a plain 404.
    coll = Collection.COMPUTE_NODES.value
    try:
        return store.get(coll, workflow, to_key(key, coll, workflow))
    except NotFound:
        raise NotFound(
            f"Error: Document not found. Operation: Get compute_node with key={key}"
        ) from None


def _check_rev(job: Mapping[str, Any], rev: str, error: type[Exception]) -> None:
    if job["_rev"] != rev:
        raise error(f"Revision conflict for {job['_id']}: _rev={job['_rev']}")


def _check_run_id(status_doc: Mapping[str, Any], run_id: int) -> None:
    current = status_doc.get("run_id")
    if run_id != current:
        raise BadRequest(f"run_id={run_id} does not match the workflow's current run_id={current}")


def _event(
    store: GraphStore,
    workflow: str,
    type_: str,
    job: Mapping[str, Any],
    node: Mapping[str, Any],
    message: str,
) -> None:
    store.insert(Collection.EVENTS.value, workflow, event_doc(type_, job, node, message))


def event_doc(type_: str, job: Mapping[str, Any], node: Mapping[str, Any],
              message: str) -> dict[str, Any]:
    """A ``job/<type_>`` event document."""
    return {
        "timestamp": now_ms(),
        "category": "job",
        "type": type_,
        "job_key": job["_key"],
        "job_name": job.get("name"),
        "node_name": node.get("hostname"),
        "message": message,
    }


def _reverse(store: GraphStore, workflow: str, job_ids: list[str]) -> list[str]:
    """§3.4: every job downstream of ``job_ids`` that is not uninitialized becomes
    uninitialized (one set-based traversal). Returns their keys."""
    if not job_ids:
        return []
    return store.update_descendants(
        workflow,
        BLOCKS,
        {"status": UNINITIALIZED},
        start_ids=job_ids,
        where={"status": Ne(UNINITIALIZED)},
    )


# --------------------------------------------------------------------------------------------
# start_job
# --------------------------------------------------------------------------------------------


def start_job(
    store: GraphStore, workflow: str, key: str, rev: str, run_id: int, compute_node_key: str
) -> Document:
    """``PUT .../jobs/{key}/start_job/{rev}/{run_id}/{compute_node_key}`` (§4.7).

    ``submitted_pending`` → ``submitted``, an ``executed`` edge node→job and a ``job/start``
    event, atomically. Raises NotFound (workflow, job, compute node), BadRequest (status not
    ``submitted_pending``; ``run_id`` mismatch), RevisionConflict (``rev`` stale, 409).
    One transaction, group-committed with the process's concurrent writers
    (:meth:`~GraphStore.transact`).
    """

    def write() -> Document:
        space = workspace(store, workflow)
        job = _get_job(store, workflow, key)
        node = _get_compute_node(store, workflow, compute_node_key)
        if job.get("status") != JobStatus.SUBMITTED_PENDING.value:
            if job["_rev"] != rev and leases.execution(job)["last_cause"] == "lost":
                # Fencing: the claim's lease expired and the job was requeued (leases §5).
                raise RevisionConflict(
                    f"Revision conflict for {job['_id']}: _rev={job['_rev']} (the claim's lease "
                    "expired and the job was requeued)"
                )
            raise BadRequest(f"job status must be submitted_pending: {job.get('status')}")
        _check_rev(job, rev, RevisionConflict)
        _check_run_id(space.status, run_id)
        patch = {
            "status": JobStatus.SUBMITTED.value,
            "execution": leases.started_execution(job, node),
        }
        job = store.update(JOBS, workflow, job["_key"], patch, rev=rev)
        store.insert(
            Edge.EXECUTED.value,
            workflow,
            {"_from": node["_id"], "_to": job["_id"], "data": {"run_id": run_id}},
        )
        store.insert(Collection.EVENTS.value, workflow, start_event_doc(job, node))
        return job

    return store.transact(workflow, write)


# --------------------------------------------------------------------------------------------
# complete_job
# --------------------------------------------------------------------------------------------


def process_completion(store: GraphStore, workflow: str, job_id: str, return_code: int) -> None:
    """Downstream processing after job ``job_id`` became complete: :func:`process_completions`
    of one job."""
    if return_code != 0:
        process_completions(store, workflow, [], [job_id])
    else:
        process_completions(store, workflow, [job_id], [])


def process_completions(
    store: GraphStore, workflow: str, succeeded: list[str], failed: list[str]
) -> None:
    """Downstream processing after the jobs ``succeeded`` (return code 0) and ``failed``
    (non-zero) became complete (§3.3, with torc's cascade bug fixed), set-based over all of
    them: the same end state as processing them one by one. Must run inside the caller's
    transaction. A fixed number of set-based calls, whatever the number of jobs:

    1. From the failed jobs: every ``blocked`` job reachable from them through
       ``blocked`` jobs with ``cancel_on_blocking_job_failure`` becomes ``canceled`` — direct
       successors as in torc, and transitively their descendants (torc stopped after one hop,
       leaving the rest blocked forever, §8 item 5).
    2. ``ready`` co-blockers of the canceled jobs become ``canceled`` (as torc: running them is
       pointless), unless they also block a job that is not canceled: torc canceled those too
       and left their other successors blocked forever (§3.3). They get no result, no event.
    3. ``blocked`` successors of the jobs and of every job canceled above whose blockers are all
       complete (done/canceled/terminated) become ``ready``.
    """
    finished = list(succeeded) + list(failed)
    if not finished:
        return
    if failed:
        canceled_keys = store.update_descendants(
            workflow,
            BLOCKS,
            {"status": CANCELED},
            start_ids=list(failed),
            where={
                "status": JobStatus.BLOCKED.value,
                # A missing flag means the schema default, true.
                "cancel_on_blocking_job_failure": Ne(False),
            },
            through_matching_only=True,
        )
        if canceled_keys:
            canceled_ids = [model.make_id(JOBS, workflow, k) for k in canceled_keys]
            # Ready co-blockers whose every successor is now canceled would run for nothing.
            # Found through the edge index from the canceled jobs (not by scanning all ready
            # jobs); the key-only update keeps SQLite on the key index (see below).
            co_blockers = store.neighbors(
                workflow, BLOCKS, "in", canceled_ids, where={"status": JobStatus.READY.value}
            )
            if co_blockers:
                store.update_many(
                    JOBS,
                    workflow,
                    {"_key": In({n.vertex["_key"] for n in co_blockers})},
                    {"status": CANCELED},
                    edges=[HasEdge(BLOCKS, "out", {"status": Ne(CANCELED)}, exists=False)],
                )
            finished += canceled_ids
    # Successors first (edge index, proportional to their number), then one update keyed on
    # them: a predicate over all blocked jobs would scan the whole workflow per completion.
    successors = store.neighbors(
        workflow, BLOCKS, "out", finished, where={"status": JobStatus.BLOCKED.value}
    )
    if successors:
        store.update_many(
            JOBS,
            workflow,
            # No status condition: the successors were read as blocked in this transaction, and
            # with one SQLite's planner scans the status index instead of the keys.
            {"_key": In({n.vertex["_key"] for n in successors})},
            {"status": JobStatus.READY.value},
            edges=[HasEdge(BLOCKS, "in", {"status": NotIn(model.COMPLETE_STATUSES)}, exists=False)],
        )


def complete_job(
    store: GraphStore,
    workflow: str,
    key: str,
    status: str,
    rev: str,
    run_id: int,
    compute_node_key: str,
    result: Mapping[str, Any],
) -> Document:
    """``POST .../jobs/{key}/complete_job/{status}/{rev}/{run_id}/{compute_node_key}`` (§4.8).

    Atomically: store ``result`` and a ``returned`` edge, set the status and the input hash,
    write a ``job/complete`` event and, if the job was not already complete, run the downstream
    processing (:func:`process_completion`). Completing a job with the status it already has
    (e.g. a worker reporting a job the server canceled) skips the status logic.

    Raises BadRequest (status not done/canceled/terminated; ``run_id`` mismatch; no result for
    the current run), NotFound (workflow, job, compute node), RevisionConflict (stale ``rev``).
    All checks happen before any write. One transaction, group-committed with the process's
    concurrent writers (:meth:`~GraphStore.transact`).
    """
    if status not in model.COMPLETE_STATUSES:
        raise BadRequest(f"status={status} does not indicate completion")

    def write() -> Document:
        space = workspace(store, workflow)
        node = _get_compute_node(store, workflow, compute_node_key)
        job = _get_job(store, workflow, key)
        _check_rev(job, rev, RevisionConflict)
        old_status = job.get("status")
        changed = old_status != status
        current_run = space.status.get("run_id")
        downstream = changed and old_status not in model.COMPLETE_STATUSES
        return_code = result["return_code"]
        if changed:
            _check_run_id(space.status, run_id)
        if downstream and result.get("run_id") != current_run:
            previous = store.neighbors(
                workflow, Edge.RETURNED.value, "out", [job["_id"]], where={"run_id": current_run}
            )
            if not previous:
                raise BadRequest(
                    f"job {job['_key']} has no result for the current run_id={current_run}"
                )
            return_code = previous[0].vertex["return_code"]

        job = record_completion(store, workflow, job, status, result, rev=rev, changed=changed)
        if downstream:
            process_completion(store, workflow, job["_id"], return_code)
        complete_event(store, workflow, job, node, status, result["return_code"])
        return job

    return store.transact(workflow, write)


def record_completion(
    store: GraphStore,
    workflow: str,
    job: Mapping[str, Any],
    status: str,
    result: Mapping[str, Any],
    *,
    rev: str | None = None,
    changed: bool = True,
    cause: str = "exit",
) -> Document:
    """The writes of one completion (:func:`record_completions` of one job, with an optional
    ``_rev`` check: RevisionConflict if ``rev`` is stale)."""
    return record_completions(store, workflow, [(job, status, result, cause, changed)],
                              rev=rev)[0]


def record_completions(
    store: GraphStore,
    workflow: str,
    entries: list[tuple[Mapping[str, Any], str, Mapping[str, Any], str, bool]],
    *,
    rev: str | None = None,
) -> list[Document]:
    """The writes of completions, shared by ``complete_job`` and the batched ``complete_jobs``.
    Each entry is ``(job, status, result, cause, changed)``: the result (with the attempt's
    ``attempt_id`` and ``cause``) and its ``returned`` edge, the input hash, the status (if
    ``changed``) and the finished execution record. Returns the jobs in entry order. Runs
    inside the caller's transaction; the caller runs the downstream processing and writes the
    events (:func:`complete_event`). Set-based: two inserts, three hash reads and one
    :meth:`~GraphStore.rewrite_each` per batch (the jobs must have been read in the caller's
    transaction). RevisionConflict (nothing written) if ``rev`` is given and differs from a
    job's.
    """
    if not entries:
        return []
    if rev is not None:
        for job, *_ in entries:
            _check_rev(job, rev, RevisionConflict)
    executions = [leases.finished_execution(job, cause) for job, _, _, cause, _ in entries]
    rows = [{**result, "attempt_id": ex["attempt_id"], "cause": cause}
            for (_, _, result, cause, _), ex in zip(entries, executions)]
    stored = store.insert_many(Collection.RESULTS.value, workflow, rows)
    store.insert_many(Edge.RETURNED.value, workflow, [
        {"_from": job["_id"], "_to": doc["_id"]} for (job, *_), doc in zip(entries, stored)])
    inputs = hash_inputs(store, workflow, [job["_id"] for job, *_ in entries])
    docs = []
    for (job, status, _, _, changed), ex in zip(entries, executions):
        internal = dict(job.get("internal") or {})
        internal["hash"] = input_hash(job, *inputs.get(job["_id"], ([], [], [])))
        doc = {**job, "internal": internal, "execution": ex}
        if changed:
            doc["status"] = status
        docs.append(doc)
    return store.rewrite_each(JOBS, workflow, docs)


def complete_event(store: GraphStore, workflow: str, job: Mapping[str, Any],
                   node: Mapping[str, Any], status: str, return_code: int) -> None:
    """The ``job/complete`` event of a completion."""
    store.insert(Collection.EVENTS.value, workflow,
                 complete_event_doc(job, node, status, return_code))


def complete_event_doc(job: Mapping[str, Any], node: Mapping[str, Any], status: str,
                       return_code: int) -> dict[str, Any]:
    return event_doc("complete", job, node,
                     f"Completed job {job['_key']} with status={status} return_code={return_code}")


def start_event_doc(job: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    """The ``job/start`` event of a start."""
    return event_doc("start", job, node, f"Started job {job['_key']}")


# --------------------------------------------------------------------------------------------
# manage_status_change
# --------------------------------------------------------------------------------------------


def manage_status_change(
    store: GraphStore, workflow: str, key: str, status: str, rev: str, run_id: int
) -> Document:
    """``PUT .../jobs/{key}/manage_status_change/{status}/{rev}/{run_id}`` (§4.9).

    Sets a non-complete status. Going from done/canceled/terminated to ``uninitialized``
    resets everything downstream (§3.4). The same status is a no-op. Raises BadRequest (a
    complete or unknown status; stale ``rev`` — 400, not 409, because torc clients see 400;
    ``run_id`` mismatch), NotFound (workflow, job). Checks happen before any write.
    """
    if status in model.COMPLETE_STATUSES:
        raise BadRequest(f"status={status} indicates completion: use complete_job")
    if status not in _STATUS_VALUES:
        raise InvalidInput(f"invalid job status {status!r}")
    with store.transaction(workflow):
        space = workspace(store, workflow)
        job = _get_job(store, workflow, key)
        _check_rev(job, rev, BadRequest)
        old_status = job.get("status")
        if old_status == status:
            return job
        _check_run_id(space.status, run_id)
        job = store.update(JOBS, workflow, job["_key"], {"status": status}, rev=rev)
        if old_status in model.COMPLETE_STATUSES and status == UNINITIALIZED:
            _reverse(store, workflow, [job["_id"]])
        return job


# --------------------------------------------------------------------------------------------
# Workflow-level status endpoints
# --------------------------------------------------------------------------------------------


def reset_status(store: GraphStore, workflow: str) -> dict[str, str]:
    """``POST /workflows/{wf}/reset_status`` (§4.10); ``run_id`` is untouched. Raises NotFound,
    BadRequest (archived)."""
    with store.transaction(workflow):
        space = workspace(store, workflow)
        require_not_archived(space, "reset_status")
        store.update(
            model.GlobalCollection.WORKFLOW_STATUSES.value,
            None,
            space.status["_key"],
            {
                "is_canceled": False,
                "scheduled_compute_node_ids": [],
                "auto_tune_status": {"enabled": False, "job_keys": []},
                "has_detected_need_to_run_completion_script": False,
            },
        )
    return {"message": "Reset workflow status"}


@bulk_operation("reset_job_status")
def reset_job_status(
    store: GraphStore, workflow: str, *, failed_only: bool = False
) -> dict[str, str]:
    """``POST /workflows/{wf}/reset_job_status`` (§4.10).

    All jobs not ``uninitialized`` → ``uninitialized``; with ``failed_only``, only the jobs
    with a result of the current run whose ``return_code != 0``, plus everything downstream of
    them (§3.4). Set-based, one transaction (ArangoDB: may chunk; completes when rerun).
    Raises NotFound, BadRequest (archived).
    """
    with store.bulk_transaction(workflow, "reset_job_status", failed_only=failed_only):
        space = workspace(store, workflow)
        require_not_archived(space, "reset_job_status")
        if not failed_only:
            store.update_many(
                JOBS, workflow, {"status": Ne(UNINITIALIZED)}, {"status": UNINITIALIZED}
            )
        else:
            failed = store.find(
                JOBS,
                workflow,
                edges=[
                    HasEdge(
                        Edge.RETURNED.value,
                        "out",
                        # Rows of requeued attempts (status ready: retried, lost, released)
                        # are not failures of the job.
                        {"run_id": space.status.get("run_id"), "return_code": Ne(0),
                         "status": Ne(JobStatus.READY.value)},
                    )
                ],
            )
            if failed:
                keys = [j["_key"] for j in failed]
                store.update_many(JOBS, workflow, {"_key": In(keys)}, {"status": UNINITIALIZED})
                _reverse(store, workflow, [j["_id"] for j in failed])
    return {"message": f"Reset job status to uninitialized failed_only={str(failed_only).lower()}"}


def cancel(store: GraphStore, workflow: str) -> dict[str, str]:
    """``PUT /workflows/{wf}/cancel`` (§4.10): ``is_canceled = true`` and every ``submitted`` or
    ``submitted_pending`` job → ``canceled``, in one transaction (no results, no events)."""
    with store.transaction(workflow):
        space = workspace(store, workflow)
        store.update(
            model.GlobalCollection.WORKFLOW_STATUSES.value,
            None,
            space.status["_key"],
            {"is_canceled": True},
        )
        store.update_many(
            JOBS,
            workflow,
            {"status": In((JobStatus.SUBMITTED.value, JobStatus.SUBMITTED_PENDING.value))},
            {"status": CANCELED},
        )
    return {"message": "Canceled workflow"}


def _completion_state(store: GraphStore, workflow: str):
    space = workspace(store, workflow)
    # Existence of an unfinished job, through the status index (workers poll this constantly).
    complete = not store.exists(JOBS, workflow, {"status": In(_UNFINISHED)})
    canceled = bool(space.status.get("is_canceled"))
    needs_script = (
        complete
        and not canceled
        and bool(space.config.get("workflow_completion_script"))
        and not space.status.get("has_detected_need_to_run_completion_script")
    )
    return space, complete, canceled, needs_script


def is_complete(store: GraphStore, workflow: str) -> dict[str, bool]:
    """``GET /workflows/{wf}/is_complete`` (§4.10).

    ``needs_to_run_completion_script`` is true for exactly one caller: the first to observe a
    complete, non-canceled workflow with a completion script while the status flag is false;
    it sets the flag in the same transaction, so concurrent callers cannot both win (torc's
    conflict path crashed with a 500). The common case (nothing to claim) is a plain read.
    """
    leases.expire(store, workflow)
    space, complete, canceled, needs_script = _completion_state(store, workflow)
    if needs_script:
        with store.transaction(workflow):
            space, complete, canceled, needs_script = _completion_state(store, workflow)
            if needs_script:
                store.update(
                    model.GlobalCollection.WORKFLOW_STATUSES.value,
                    None,
                    space.status["_key"],
                    {"has_detected_need_to_run_completion_script": True},
                )
    return {
        "is_canceled": canceled,
        "is_complete": complete,
        "needs_to_run_completion_script": needs_script,
    }
