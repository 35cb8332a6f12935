"""torc_graph's batched execution API (docs/execution-model.md §4): claim and start many jobs in
one transaction, complete many in one transaction, heartbeat, release.

Each batched call has exactly the effects of the single-job torc v0.6.4 endpoints it replaces
(``prepare_jobs_for_submission`` + ``start_job``; ``complete_job``): the same status changes,
``executed``/``returned`` edges, results, input hashes, events and downstream processing; only
the number of transactions and round trips differs. Downstream processing of a completion batch
is set-based over the whole batch.

Fencing: a completion or release names the attempt (``attempt_id``) it reports; unless the
calling node holds exactly that attempt of the job right now, the item is ``stale`` (409) and
changes nothing, or ``duplicate`` (200, nothing written) when that attempt was already recorded.

Long poll: ``claim_jobs`` with ``wait_seconds`` waits outside any transaction, polling a cheap
indexed read (the first claimable job keys) every :data:`POLL_SECONDS`; it claims again only
when that changes, so an idle poller holds no lock and costs one small read per poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torc_graph import model, validation
from torc_graph.engine import claims, leases, lifecycle, queries, retries
from torc_graph.engine.common import now_ms, to_key
from torc_graph.engine.initialize import workspace
from torc_graph.errors import InvalidInput
from torc_graph.model import Collection, Edge, JobStatus
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import In
from torc_graph.store.records import Document

JOBS = Collection.JOBS.value
NODES = Collection.COMPUTE_NODES.value
SUBMITTED = JobStatus.SUBMITTED.value

#: Longest accepted ``wait_seconds``.
MAX_WAIT_SECONDS = 60.0
#: Interval of the long poll's change check.
POLL_SECONDS = 0.05
#: The change check reads at most this many claimable job keys.
POLL_WINDOW = 64
#: Seconds between two completion checks of a waiting long poll.
COMPLETION_CHECK_SECONDS = 0.5
#: Largest ``limit`` of one claim and largest number of items in one batch.
MAX_BATCH = 10_000


def _node(store: GraphStore, workflow: str, key: str) -> Document:
    return queries.get_document(store, workflow, NODES, to_key(key, NODES, workflow),
                                "compute_node")


def _claim_args(body: Mapping[str, Any]) -> tuple[dict[str, Any], int, str, float]:
    limit = body.get("limit", 100)
    if not 0 <= limit <= MAX_BATCH:
        raise InvalidInput(f"limit must be an integer from 0 to {MAX_BATCH}: {limit}")
    wait = body.get("wait_seconds", 0) or 0
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise InvalidInput(f"wait_seconds must be a number from 0 to {MAX_WAIT_SECONDS:g}: {wait}")
    resources = {**body["resources"], "scheduler_config_id": body.get("scheduler_config_id") or ""}
    return resources, limit, body.get("sort_method") or "gpus_runtime_memory", float(wait)


# --------------------------------------------------------------------------------------------
# claim_jobs
# --------------------------------------------------------------------------------------------


def _claim_once(store: GraphStore, workflow: str, node_key: str, resources: Mapping[str, Any],
                limit: int, sort_method: str) -> dict[str, Any]:
    """One claim-and-start transaction (group-committed with the process's other writers)."""

    def write() -> dict[str, Any]:
        space = workspace(store, workflow)
        return _claim_in(store, workflow, space, _node(store, workflow, node_key), resources,
                         limit, sort_method)

    return store.transact(workflow, write)


def _claim_in(store: GraphStore, workflow: str, space: Any, node: Document,
              resources: Mapping[str, Any], limit: int, sort_method: str) -> dict[str, Any]:
    """Claim and start inside the caller's transaction, for ``node`` of the workflow whose
    documents are ``space`` (both read in that transaction)."""
    return _claim_many(store, workflow, space, [(node, resources, limit, sort_method)])[0]


def _claim_many(store: GraphStore, workflow: str, space: Any,
                asks: Sequence[tuple[Document, Mapping[str, Any], int, str]]) -> list[dict]:
    """Claims and starts of several nodes ``(node, resources, limit, sort_method)`` inside the
    caller's transaction, with the effects of one claim after the other: each chooses among
    the jobs the earlier ones left, and each node's lease is renewed; then the jobs of all of
    them are written together (statuses, ``executed`` edges, ``job/start`` events). Raises
    Conflict (a node lost its lease) and BadRequest (arguments)."""
    now = now_ms()
    canceled = bool(space.status.get("is_canceled"))
    taken: set[str] = set()
    picks: list[tuple[Document, list[Document], str]] = []
    scheduled = claims.any_scheduled(store, workflow)
    for node, resources, limit, sort_method in asks:
        leases.require_live_node(node, now)
        chosen, reason = claims.choose(store, workflow, resources, sort_method=sort_method,
                                       limit=limit, exclude=taken, has_scheduled=scheduled)
        if canceled:
            chosen, reason = [], claims.CANCELED_REASON
        taken.update(j["_key"] for j in chosen)
        picks.append((leases.renew(store, workflow, node, space.config, now), chosen, reason))
    jobs = claims.claim(store, workflow, [j for _, chosen, _ in picks for j in chosen],
                        space.config, status=SUBMITTED,
                        node_keys=[n["_key"] for n, chosen, _ in picks for _ in chosen])
    run_id = space.status.get("run_id")
    if jobs:
        nodes = [n for n, chosen, _ in picks for _ in chosen]
        store.insert_many(Edge.EXECUTED.value, workflow, [
            {"_from": n["_id"], "_to": j["_id"], "data": {"run_id": run_id}}
            for n, j in zip(nodes, jobs)
        ])
        store.insert_many(Collection.EVENTS.value, workflow,
                          [lifecycle.start_event_doc(j, n) for n, j in zip(nodes, jobs)])
    complete = None
    out, at = [], 0
    for node, chosen, reason in picks:
        mine, at = jobs[at:at + len(chosen)], at + len(chosen)
        if not mine and complete is None:
            complete = _is_complete(store, workflow)
        out.append({
            "jobs": mine,
            "run_id": run_id,
            "heartbeat_seconds": leases.heartbeat_seconds(space.config),
            "lease_seconds": leases.lease_seconds(space.config),
            "is_complete": False if mine else complete,
            "is_canceled": canceled,
            "reason": "" if mine else reason,
        })
    return out


_UNFINISHED = tuple(s.value for s in JobStatus if s.value not in model.FINISHED_STATUSES)


def _is_complete(store: GraphStore, workflow: str) -> bool:
    return not store.exists(JOBS, workflow, {"status": In(_UNFINISHED)})


@dataclass
class _Watch:
    """What the waiting long polls of one process watch on one workflow."""

    read_at: float = float("-inf")
    keys: tuple[str, ...] = ()
    checked_at: float = float("-inf")
    finished: bool = False


#: (store URL, workflow) -> its watch: one read per poll interval serves every long poll of
#: the process waiting on the workflow.
_watches: dict[tuple[str, str], _Watch] = {}
_watches_lock = threading.Lock()


def _watch(store: GraphStore, workflow: str) -> tuple[tuple[str, ...], bool]:
    """The first claimable job keys (re-read at most every :data:`POLL_SECONDS`) and whether
    the workflow is complete or canceled (at most every :data:`COMPLETION_CHECK_SECONDS`),
    shared by the waiting threads of this process."""
    slot = (str(getattr(store, "url", id(store))), workflow)
    now = time.monotonic()
    with _watches_lock:
        watch = _watches.setdefault(slot, _Watch())
        stale_keys = now - watch.read_at >= POLL_SECONDS * 0.9
        stale_done = now - watch.checked_at >= COMPLETION_CHECK_SECONDS
        if stale_keys:
            watch.read_at = now
        if stale_done:
            watch.checked_at = now
    if stale_keys:
        watch.keys = tuple(d["_key"] for d in store.find(
            JOBS, workflow, {"status": In(model.CLAIMABLE_STATUSES)}, limit=POLL_WINDOW))
    if stale_done:
        status = workspace(store, workflow).status
        watch.finished = bool(status.get("is_canceled")) or _is_complete(store, workflow)
    return watch.keys, watch.finished


def claim_jobs(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/claim_jobs``: sweep expired leases, then claim **and start** up to
    ``limit`` jobs that fit ``resources`` in one transaction (each: ``submitted``, an
    ``executed`` edge, a ``job/start`` event, ``execution`` held by the node), renewing the
    node's lease. With nothing to hand out and the workflow neither complete nor canceled, wait
    up to ``wait_seconds`` (at most half the lease) for jobs to become ready (no lock held
    while waiting).

    Raises NotFound (workflow, node), InvalidInput (bad arguments), Conflict (409: the node
    lost its lease or is inactive).
    """
    resources, limit, sort_method, wait = _claim_args(body)
    node_key = body["compute_node_key"]
    started = time.monotonic()
    leases.expire(store, workflow)
    resp = _claim_once(store, workflow, node_key, resources, limit, sort_method)
    if resp["jobs"] or resp["is_complete"] or resp["is_canceled"] or limit == 0:
        return resp
    # The claim renewed the node's lease; a wait never outlives half of it, so a node that
    # only long-polls (no heartbeat thread) keeps its lease.
    deadline = started + min(wait, resp["lease_seconds"] / 2)
    seen, _ = _watch(store, workflow)
    while time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        leases.expire(store, workflow)
        keys, finished = _watch(store, workflow)
        if keys == seen and not finished:
            continue
        seen = keys
        resp = _claim_once(store, workflow, node_key, resources, limit, sort_method)
        if resp["jobs"] or resp["is_complete"] or resp["is_canceled"]:
            return resp
    return resp


# --------------------------------------------------------------------------------------------
# complete_jobs / release_jobs
# --------------------------------------------------------------------------------------------


def _item(job_key: str, attempt_id: int, outcome: str, status: str | None, code: int,
          message: str, recovery_script: str | None = None) -> dict[str, Any]:
    return {"job_key": job_key, "attempt_id": attempt_id, "outcome": outcome, "status": status,
            "code": code, "message": message, "recovery_script": recovery_script}


def _recorded(store: GraphStore, workflow: str, job: Mapping[str, Any], run_id: int,
              attempt_id: int, release: bool) -> bool:
    """Whether the same report of the attempt was already recorded: a result row of the
    attempt written by a completion (``release=False``) or by a release (``release=True``).
    Rows the server wrote itself (``lost``) never make a report a duplicate."""
    rows = store.neighbors(workflow, Edge.RETURNED.value, "out", [job["_id"]],
                           where={"run_id": run_id, "attempt_id": attempt_id})
    causes = [n.vertex.get("cause") for n in rows]
    if release:
        return "interrupted" in causes
    return any(c not in ("lost", "interrupted") for c in causes)


def _fence(store: GraphStore, workflow: str, job: Mapping[str, Any] | None, key: str,
           node_key: str, attempt_id: int, run_id: int, current_run: int, *,
           release: bool = False) -> dict | None:
    """None when the node holds the attempt; else the ``duplicate``/``stale`` item."""
    if job is None:
        return _item(key, attempt_id, "stale", None, 409, f"job {key} does not exist")
    if run_id != current_run:
        return _item(key, attempt_id, "stale", job.get("status"), 409,
                     f"run_id={run_id} is not the workflow's current run_id={current_run}")
    if leases.holds(job, node_key, attempt_id):
        return None
    recorded = _recorded(store, workflow, job, run_id, attempt_id, release)
    ex = leases.execution(job)
    if (not release and not recorded and job.get("status") == JobStatus.CANCELED.value
            and ex["compute_node"] == node_key and ex["attempt_id"] == attempt_id):
        return None  # canceled while this node ran it: its completion is recorded
    if recorded:
        return _item(key, attempt_id, "duplicate", job.get("status"), 200,
                     f"attempt {attempt_id} of job {key} was already recorded")
    return _item(
        key, attempt_id, "stale", job.get("status"), 409,
        f"compute node {node_key} does not hold attempt {attempt_id} of job {key} (job status "
        f"{job.get('status')}, current attempt {ex['attempt_id']} held by "
        f"{ex['compute_node'] or 'no node'}): its lease was lost or the job was reset",
    )


def _open_batch(store: GraphStore, workflow: str, node_key: str, keys: Sequence[str]):
    """Inside a batch's transaction: the node and the named jobs by key. Raises NotFound
    (workflow, node)."""
    node = _node(store, workflow, node_key)
    jobs = {d["_key"]: d for d in store.find(JOBS, workflow, {"_key": In(list(set(keys)))})}
    return node, jobs


def _check_batch(items: Sequence[Any], what: str, workflow: str) -> list[str]:
    if len(items) > MAX_BATCH:
        raise InvalidInput(f"{what}: at most {MAX_BATCH} items per request, got {len(items)}")
    keys = []
    for i, item in enumerate(items):
        try:
            keys.append(to_key(item["job_key"], JOBS, workflow))
        except InvalidInput as exc:
            raise InvalidInput(f"{what}[{i}].job_key: {exc.message}") from None
    return keys


def _process_stats(store: GraphStore, workflow: str, job: Mapping[str, Any], run_id: int,
                   stats: Mapping[str, Any], index: int) -> None:
    doc = {"job_key": job["_key"], "run_id": run_id, **stats}
    try:
        doc = validation.validate("job_process_stats", doc)
    except InvalidInput as exc:
        raise InvalidInput(f"completions[{index}].process_stats: {exc.message}") from None
    stored = store.insert(Collection.JOB_PROCESS_STATS.value, workflow, doc)
    store.insert(Edge.PROCESS_USED.value, workflow, {"_from": job["_id"], "_to": stored["_id"]})


@dataclass
class _Completions:
    """One ``complete_jobs`` request, checked outside the transaction; then, while staged in
    the merged call, its node and items."""

    node_key: str
    run_id: int
    items: Sequence[Mapping[str, Any]]
    keys: list[str]
    claim: tuple[dict[str, Any], int, str, float] | None
    node: Document | None = None
    out: list[dict[str, Any]] | None = None


def complete_jobs(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/complete_jobs``: record up to N finished attempts in one
    transaction, then (optionally, same transaction) claim more.

    Per item, exactly ``complete_job``'s effects (result with ``attempt_id``/``cause`` and its
    ``returned`` edge, input hash, status, ``job/complete`` event, downstream processing — done
    set-based for the whole batch), or a requeue when the failure handler / cause says so
    (outcome ``retried``, with the rule's ``recovery_script``). Fenced items are ``stale``
    (409) or ``duplicate`` (200) and write nothing. Raises NotFound (workflow, node) and
    InvalidInput (bad body, bad process stats): then nothing of this request is written.

    Concurrent requests of one server process on the same workflow may be merged into one
    call of :func:`_complete_merged` (``GraphStore.transact_many``): the same effects as
    running them one after the other, with the fixed cost of a batch paid once.
    """
    node_key = body["compute_node_key"]
    items_in = body["completions"]
    keys = _check_batch(items_in, "completions", workflow)
    claim_args = None
    if body.get("claim") is not None:
        claim_args = _claim_args(body["claim"])
        claims.check_resources(claim_args[0], claim_args[2])  # never a 400 after the writes
    request = _Completions(node_key, body["run_id"], items_in, keys, claim_args)
    out, claimed, complete = store.transact_many(
        workflow, f"complete_jobs {workflow}", request,
        lambda requests: _complete_merged(store, workflow, requests))
    if claimed is not None and claim_args[3] > 0 and not (
        claimed["jobs"] or claimed["is_complete"] or claimed["is_canceled"]
    ):
        # Wait (long poll) only after the completions committed: never with the lock held.
        claimed = claim_jobs(store, workflow, {**body["claim"], "compute_node_key": node_key})
        complete = claimed["is_complete"]
    return {"items": out, "is_complete": complete, "claimed": claimed}


def _complete_merged(store: GraphStore, workflow: str,
                     requests: list[_Completions]) -> list[Any]:
    """Inside one transaction: the completions of ``requests`` (each checked and its
    requeues written in a savepoint of its own: its error is its outcome and undoes only it),
    then the writes of all their completions together (results, edges, hashes, statuses,
    events, downstream processing: set-based), then their claims together
    (:func:`_claim_many`). Returns per request ``(items, claimed, is_complete)`` or its
    exception."""
    space = workspace(store, workflow)
    wanted = list({k for r in requests for k in r.keys})
    known = {d["_key"]: d for d in store.find(JOBS, workflow, {"_key": In(wanted)})}
    pending: dict[str, tuple[int, str | None]] = {}  # key -> (attempt, old status), all requests
    entries: list[tuple[Document, str, dict[str, Any], str, bool]] = []
    nodes: list[Document] = []
    outcomes: list[Any] = []
    for request in requests:
        staged: dict[str, tuple[int, str | None]] = {}
        jobs = {k: known[k] for k in request.keys if k in known}
        try:
            with store.transaction(workflow):
                mine = _stage(store, workflow, space, request, jobs, pending, staged)
        except Exception as exc:  # noqa: BLE001 - this request's outcome; the others go on
            outcomes.append(exc)
            continue
        known.update(jobs)  # requeued documents, for the requests after this one
        pending.update(staged)
        entries += mine
        nodes += [request.node] * len(mine)
        outcomes.append(request)
    succeeded: list[str] = []
    failed: list[str] = []
    updated = lifecycle.record_completions(store, workflow, entries)
    events = []
    for (_, status, row, _, changed), new, node in zip(entries, updated, nodes):
        rc = row["return_code"]
        if changed and pending[new["_key"]][1] not in model.COMPLETE_STATUSES:
            (failed if rc != 0 else succeeded).append(new["_id"])
        events.append(lifecycle.complete_event_doc(new, node, status, rc))
    if events:
        store.insert_many(Collection.EVENTS.value, workflow, events)
    lifecycle.process_completions(store, workflow, succeeded, failed)
    now = now_ms()
    claiming = [i for i, r in enumerate(outcomes) if isinstance(r, _Completions)
                and r.claim is not None and leases.is_live(r.node, now)]
    claimed = dict(zip(claiming, _claim_many(store, workflow, space, [
        (outcomes[i].node, *outcomes[i].claim[:3]) for i in claiming]) if claiming else []))
    complete = None
    for i, request in enumerate(outcomes):
        if isinstance(request, _Completions):
            if i not in claimed and complete is None:
                complete = _is_complete(store, workflow)
            got = claimed.get(i)
            outcomes[i] = request.out, got, got["is_complete"] if got else complete
    return outcomes


def _stage(store: GraphStore, workflow: str, space: Any, request: _Completions,
           jobs: dict[str, Document], pending: Mapping[str, tuple[int, str | None]],
           staged: dict[str, tuple[int, str | None]]) -> list[tuple]:
    """Fence and decide the items of one request (process stats and requeues written now);
    return its completion entries, its items in ``request.out`` and its node in
    ``request.node``. ``jobs``: its jobs as read in this transaction (requeued ones replaced);
    ``pending``: the jobs completed by earlier requests of the merged call; this request's go
    to ``staged``. Raises NotFound (node), InvalidInput (process stats)."""
    node = request.node = _node(store, workflow, request.node_key)
    current_run = space.status.get("run_id")
    run_id = request.run_id
    out = request.out = []
    entries: list[tuple[Document, str, dict[str, Any], str, bool]] = []
    for i, (key, item) in enumerate(zip(request.keys, request.items)):
        attempt = item["attempt_id"]
        earlier = staged.get(key) or pending.get(key)
        if earlier is not None:  # the same job twice in this batch (or merged batches)
            same = earlier[0] == attempt
            out.append(_item(key, attempt, "duplicate" if same else "stale", None,
                             200 if same else 409, "reported twice in this batch"))
            continue
        job = jobs.get(key)
        fenced = _fence(store, workflow, job, key, node["_key"], attempt, run_id, current_run)
        if fenced is not None:
            out.append(fenced)
            continue
        res = item["result"]
        status = item["status"]
        old_status = job.get("status")
        decision = retries.decide(space.config, job, status, item.get("cause") or "exit",
                                  res["return_code"])
        if old_status not in leases.HELD_STATUSES:
            # Canceled while running (workflow cancel): recorded as complete_job does,
            # never retried.
            decision = retries.Decision(False, status, decision.cause)
        if item.get("process_stats"):
            _process_stats(store, workflow, job, run_id, item["process_stats"], i)
        if decision.retry:
            jobs[key] = retries.requeue(store, workflow, job, decision, run_id=run_id,
                                        result=res, node=node)
            out.append(_item(key, attempt, "retried", JobStatus.READY.value, 200,
                             decision.reason, decision.recovery_script))
            continue
        status = decision.status
        row = {"job_key": key, "run_id": run_id, "status": status, **res}
        entries.append((job, status, row, decision.cause, old_status != status))
        staged[key] = (attempt, old_status)
        out.append(_item(key, attempt, "completed", status, 200, decision.reason))
    return entries


def release_jobs(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/release_jobs``: give held jobs back without a result of their
    own: each goes back to ``ready`` (``attempt_id + 1``, a result row with the cause, a
    ``job/retry`` event), no cascade, one transaction. Items are fenced like
    :func:`complete_jobs`' (``released``, ``duplicate`` or ``stale``)."""
    node_key = body["compute_node_key"]
    items_in = body["releases"]
    keys = _check_batch(items_in, "releases", workflow)

    def write() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        space = workspace(store, workflow)
        node, jobs = _open_batch(store, workflow, node_key, keys)
        run_id = space.status.get("run_id")
        for key, item in zip(keys, items_in):
            attempt = item["attempt_id"]
            job = jobs.get(key)
            fenced = _fence(store, workflow, job, key, node["_key"], attempt, run_id, run_id,
                            release=True)
            if fenced is not None:
                out.append(fenced)
                continue
            cause = item.get("cause") or "interrupted"
            decision = retries.decide(space.config, job, JobStatus.READY.value, cause, -1)
            ex = leases.execution(job)
            elapsed = (now_ms() - ex["claimed_at"]) / 60000 if ex["claimed_at"] else 0.0
            result = {"return_code": -1, "exec_time_minutes": max(elapsed, 0.0)}
            jobs[key] = retries.requeue(store, workflow, job, decision, run_id=run_id,
                                        result=result, node=node)
            out.append(_item(key, attempt, "released", JobStatus.READY.value, 200,
                             decision.reason))
        return out

    return {"items": store.transact(workflow, write)}


# --------------------------------------------------------------------------------------------
# heartbeat
# --------------------------------------------------------------------------------------------


def heartbeat(store: GraphStore, workflow: str, key: str,
              body: Mapping[str, Any] | None) -> dict[str, Any]:
    """``POST /workflows/{wf}/compute_nodes/{key}/heartbeat``: renew the node's lease with ONE
    write (the node document), whatever its job count. ``lost_jobs`` lists the keys of
    ``job_keys`` (the jobs the worker believes it runs) that it no longer holds.

    Raises NotFound (workflow, node), InvalidInput (bad ``lease_seconds``), Conflict (409: the
    node's lease already expired or it is inactive; it must register a new node).
    """
    body = body or {}
    seconds = body.get("lease_seconds")
    if seconds is not None and not 1 <= seconds <= 7 * 86400:
        raise InvalidInput(f"lease_seconds must be an integer from 1 to 604800: {seconds}")
    job_keys = [to_key(k, JOBS, workflow) for k in body.get("job_keys") or ()]
    leases.expire(store, workflow)

    def write() -> tuple[Any, Document]:
        space = workspace(store, workflow)
        node = _node(store, workflow, key)
        now = now_ms()
        leases.require_live_node(node, now)
        return space, leases.renew(store, workflow, node, space.config, now, seconds)

    space, node = store.transact(workflow, write)
    lost: list[str] = []
    if job_keys:
        held = {d["_key"] for d in store.find(JOBS, workflow, {
            "_key": In(job_keys), "status": In(leases.HELD_STATUSES),
            "execution.compute_node": node["_key"]})}
        lost = [k for k in job_keys if k not in held]
    return {
        "lease_expires": node["lease"]["expires"],
        "heartbeat_seconds": leases.heartbeat_seconds(space.config),
        "lease_seconds": node["lease"]["seconds"],
        "is_canceled": bool(space.status.get("is_canceled")),
        "is_complete": _is_complete(store, workflow),
        "lost_jobs": lost,
    }
