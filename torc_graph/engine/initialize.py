"""Job initialization, change detection and the pre-start checks (behavior doc §4.1, §4.2,
§4.13, §4.14), plus the job input hash (§4.8).

Everything here is set-based: the number of store calls depends on the number of resource
requirements and schedulers (a handful), never on the number of jobs. A 100,000-job workflow
initializes with the same calls as a 100-job one; the backends do the per-row work natively.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torc_graph import model
from torc_graph.engine import integrity, tasks
from torc_graph.engine.common import require_workflow
from torc_graph.errors import BadRequest, NotFound
from torc_graph.model import DEFAULT_RESOURCE_REQUIREMENTS, Collection, Edge, JobStatus
from torc_graph.store.base import GraphStore
from torc_graph.store.bulk import bulk_operation
from torc_graph.store.filters import In, Ne
from torc_graph.store.records import InitialJobState
from torc_graph.units import duration_seconds, memory_bytes

JOBS = Collection.JOBS.value
UNINITIALIZED = JobStatus.UNINITIALIZED.value


#: Blocker statuses that do not block a job during initialization. torc v0.6.4 blocked on any
#: blocker that is not ``done`` (§8 item 11), but ``initialize_jobs`` never revives a
#: ``canceled`` job, so a job blocked by one stayed ``blocked`` forever and the workflow never
#: completed (e.g. a done job downstream of a canceled one, after a restart). ``terminated``
#: blockers still block: the ready pass re-queues them and their dependents rerun after them.
NON_BLOCKING_AT_INIT = (JobStatus.DONE.value, JobStatus.CANCELED.value)
#: Every status but ``uninitialized`` (job statuses are validated against the enum).
INITIALIZED = tuple(s.value for s in JobStatus if s is not JobStatus.UNINITIALIZED)


def endpoint(doc_id: str) -> dict[str, In]:
    """A HasEdge ``where`` naming one endpoint id.

    Written as ``In`` rather than equality on purpose: with ``to_id = <constant>`` SQLite's
    planner picks the edge table's ``to_id`` index and scans every edge into that document for
    each job (quadratic: 35 s for 10,000 jobs on 3 resource requirements); with ``IN`` it probes
    the ``from_id`` index once per job (0.01 s).
    """
    return {"_id": In([doc_id])}


def workspace(store: GraphStore, workflow: str):
    """The workflow's three global documents; NotFound with torc's message."""
    try:
        return store.workflow_space(workflow)
    except NotFound:
        raise NotFound(
            f"Error: Document not found. Operation: Get workflow with key={workflow}"
        ) from None


def require_not_archived(space, operation: str) -> None:
    """400 for operations torc refuses on archived workflows."""
    if space.workflow.get("is_archived"):
        raise BadRequest(f"{operation} is not supported on an archived workflow.")


# --------------------------------------------------------------------------------------------
# Input hash
# --------------------------------------------------------------------------------------------


def _key_revs(docs: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    # Numeric keys sort numerically (torc's order); custom non-numeric keys after them.
    items = [{"key": d["_key"], "rev": d["_rev"]} for d in docs]
    items.sort(key=lambda i: (0, int(i["key"]), "") if i["key"].isdigit() else (1, 0, i["key"]))
    return items


def input_hash(
    job: Mapping[str, Any],
    consumed: Iterable[Mapping[str, Any]],
    stored: Iterable[Mapping[str, Any]],
    needed: Iterable[Mapping[str, Any]],
) -> int:
    """The job's input hash: a stable digest of the command, the invocation script and the
    keys and revisions of its consumed user data, stored user data and needed files.

    Only self-consistency matters (the server stores and compares it), so instead of torc's
    32-bit Java string hash this is the first 53 bits of a SHA-256: a JSON integer every client
    (and JavaScript) reads exactly, with a negligible collision rate.
    """
    payload: dict[str, Any] = {"command": job.get("command")}
    if job.get("invocation_script") is not None:
        payload["invocation_script"] = job["invocation_script"]
    payload["input_user_data_keys"] = _key_revs(consumed)
    payload["output_user_data_keys"] = _key_revs(stored)
    payload["needs_file_keys"] = _key_revs(needed)
    text = json.dumps(payload, separators=(",", ":"), sort_keys=False)
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:7], "big") >> 3


_HASH_EDGES = (Edge.CONSUMES.value, Edge.STORES.value, Edge.NEEDS.value)


def hash_inputs(store: GraphStore, workflow: str, job_ids: list[str] | None) -> dict[str, tuple]:
    """The documents each job's hash covers, by job id: ``{id: (consumed, stored, needed)}``.

    Three set-based neighbor queries (all edges when ``job_ids`` is None). Dangling edges are
    ignored.
    """
    per_job: dict[str, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
    for slot, edge in enumerate(_HASH_EDGES):
        for n in store.neighbors(workflow, edge, "out", job_ids):
            if n.vertex is not None:
                per_job[n.start_id][slot].append(n.vertex)
    return per_job


def job_hash(store: GraphStore, workflow: str, job: Mapping[str, Any]) -> int:
    """The current input hash of one job (three neighbor queries)."""
    consumed, stored, needed = hash_inputs(store, workflow, [job["_id"]])[job["_id"]]
    return input_hash(job, consumed, stored, needed)


# --------------------------------------------------------------------------------------------
# initialize_jobs
# --------------------------------------------------------------------------------------------


def clear_ephemeral_data(store: GraphStore, workflow: str) -> int:
    """Set ``data = {}`` on every ephemeral user_data whose ``data`` is a non-empty object
    (§4.1 step 1); returns how many changed. One read of the ephemeral documents, one update.

    Only documents that held data are written, so empty ones keep their ``_rev`` (and the jobs
    that use them keep their hash), as in torc.
    """
    keys = [
        d["_key"]
        for d in store.iter_find(Collection.USER_DATA.value, workflow, {"is_ephemeral": True})
        if isinstance(d.get("data"), dict) and d["data"]
    ]
    if not keys:
        return 0
    return store.update_many(Collection.USER_DATA.value, workflow, {"_key": In(keys)}, {"data": {}})


def resource_internal(rr: Mapping[str, Any]) -> dict[str, Any]:
    """``jobs.internal`` resource fields for a resource-requirements document.

    Raises InvalidInput (400) for a bad memory or runtime string, naming the rr.
    """
    try:
        mem = memory_bytes(rr.get("memory", DEFAULT_RESOURCE_REQUIREMENTS["memory"]))
        runtime = duration_seconds(rr.get("runtime", DEFAULT_RESOURCE_REQUIREMENTS["runtime"]))
    except BadRequest as exc:
        name = rr.get("name") or rr.get("_key", "default")
        raise type(exc)(f"resource_requirements {name!r}: {exc.message}") from None
    return {
        "internal.num_cpus": rr.get("num_cpus", 1),
        "internal.num_gpus": rr.get("num_gpus", 0),
        "internal.num_nodes": rr.get("num_nodes", 1),
        "internal.memory_bytes": mem,
        "internal.runtime_seconds": runtime,
    }


def _initial_state(store: GraphStore, workflow: str, only_uninitialized: bool) -> InitialJobState:
    """§4.1 steps 4, 5 and the status passes as one :class:`InitialJobState`: each job's rr
    copied into ``internal`` (the default without one, or for an rr asking for 0 CPUs), its
    scheduler's id, then ``blocked`` or ``ready``. Every rr is parsed before anything is written
    (InvalidInput naming a bad one)."""
    rrs = store.find(Collection.RESOURCE_REQUIREMENTS.value, workflow)
    schedulers = [s["_id"] for coll in model.SCHEDULER_COLLECTIONS
                  for s in store.find(coll.value, workflow)]
    return InitialJobState(
        resources=[(rr["_id"], resource_internal(rr)) for rr in rrs],
        default=resource_internal(DEFAULT_RESOURCE_REQUIREMENTS),
        num_cpus_path="internal.num_cpus",
        schedulers=schedulers,
        scheduler_path="internal.scheduler_config_id",
        blockable=({"status": UNINITIALIZED} if only_uninitialized
                   else {"status": Ne(JobStatus.DISABLED.value)}),
        non_blocking=NON_BLOCKING_AT_INIT,
        keep=(JobStatus.DISABLED.value, JobStatus.DONE.value, JobStatus.CANCELED.value),
        blocked=JobStatus.BLOCKED.value,
        ready=JobStatus.READY.value,
    )


@bulk_operation("initialize_jobs")
def initialize_jobs(
    store: GraphStore,
    workflow: str,
    *,
    only_uninitialized: bool = False,
    clear_ephemeral_user_data: bool = True,
    progress: Callable[[str, int, int | None], None] = lambda phase, done, total: None,
) -> dict[str, str]:
    """``POST /workflows/{wf}/initialize_jobs`` (§4.1), in one transaction.

    ``progress(phase, done, total)`` is told each step; a :class:`.tasks.Progress` is also
    marked succeeded inside the transaction. Raises
    NotFound (workflow), BadRequest (archived workflow; bad memory/runtime string; a dependency
    cycle, :mod:`.integrity` — in which case nothing is changed).
    """
    steps = 4
    with store.bulk_transaction(  # ArangoDB: may chunk; idempotent when rerun
            workflow, "initialize_jobs", only_uninitialized=only_uninitialized,
            clear_ephemeral_user_data=clear_ephemeral_user_data):
        space = workspace(store, workflow)
        require_not_archived(space, "initialize_jobs")
        progress("checking dependencies", 0, steps)
        integrity.check_no_cycle(store, workflow)
        if clear_ephemeral_user_data:
            clear_ephemeral_data(store, workflow)
        progress("deriving file and user data dependencies", 1, steps)
        store.derive_edges(workflow, Edge.BLOCKS.value, Edge.PRODUCES.value, Edge.NEEDS.value)
        store.derive_edges(workflow, Edge.BLOCKS.value, Edge.STORES.value, Edge.CONSUMES.value)
        state = _initial_state(store, workflow, only_uninitialized)
        # Safety net: everything downstream of an uninitialized job is uninitialized too.
        # The traversal visits every edge below the uninitialized jobs (all of them on a first
        # initialization: ~7 us per edge) and can change something only if some jobs are
        # uninitialized and some are not; two index counts decide that first. (Counting the
        # other statuses: on a first initialization there are none, so nothing is read, where
        # counting ``uninitialized`` read every job row: 0.8 s at 10^6 jobs.)
        initialized = store.count(JOBS, workflow, {"status": In(INITIALIZED)})
        if 0 < initialized < store.count(JOBS, workflow):
            store.update_descendants(
                workflow,
                Edge.BLOCKS.value,
                {"status": UNINITIALIZED},
                start_where={"status": UNINITIALIZED},
                where={"status": Ne(UNINITIALIZED)},
            )
        # Resources, scheduler and status in one set-based write per job (the backend's).
        progress("setting job resources and status", 2, steps)
        store.set_initial_job_state(workflow, state)
        progress("committing", 3, steps)
        result = {"message": "Initialized job status"}
        if isinstance(progress, tasks.Progress) and _one_transaction(store):
            # Succeeded in the jobs' own transaction: visible the moment they commit (not
            # after the WAL checkpoint that follows a huge commit), and never "failed" for a
            # process that died after committing.
            progress.succeed(result)
    return result


def _one_transaction(store: GraphStore) -> bool:
    """Whether the store's bulk transaction is one transaction (the default; ArangoDB may
    chunk it, and its last chunk clears its guard after this point: there the task thread
    records the outcome after the commit, as for other operations)."""
    return type(store).bulk_transaction is GraphStore.bulk_transaction


def initialize_jobs_action(store: GraphStore, workflow: str, *, only_uninitialized: bool = False,
                           clear_ephemeral_user_data: bool = True, **flags: bool) -> Any:
    """The ``initialize_jobs`` route: with ``?async=true`` a background task
    (:func:`.tasks.start`, answered 202 with the task), else :func:`initialize_jobs`."""
    kwargs = {"only_uninitialized": only_uninitialized,
              "clear_ephemeral_user_data": clear_ephemeral_user_data}
    if flags.get("async"):
        workspace(store, workflow)  # 404 now, not in the task
        return tasks.start(store, workflow, "initialize_jobs",
                           lambda progress: initialize_jobs(store, workflow, progress=progress,
                                                            **kwargs))
    return initialize_jobs(store, workflow, **kwargs)


# --------------------------------------------------------------------------------------------
# process_changed_job_inputs
# --------------------------------------------------------------------------------------------


@bulk_operation("process_changed_job_inputs")
def process_changed_job_inputs(
    store: GraphStore, workflow: str, *, dry_run: bool = False
) -> dict[str, list[str]]:
    """``POST /workflows/{wf}/process_changed_job_inputs`` (§4.2), in one transaction.

    Jobs that are ``done`` and whose input hash changed since completion are reset to
    ``uninitialized`` with everything downstream of them. The response lists, in storage
    order, the ``done`` jobs that were (or, with ``dry_run``, would be) reset: the changed jobs
    and the done jobs downstream of them. (torc's dry run listed only the downstream jobs and
    not the changed job itself, §4.2 [BUG]; here both modes report the same set.)

    ArangoDB may commit it in chunks (:meth:`GraphStore.bulk_transaction`); a rerun over an
    interrupted run's partial state completes it (the changed jobs are reset last, so they are
    still ``done`` and selected again) and lists only the jobs still ``done``.
    """
    bulk = store.transaction(workflow) if dry_run else store.bulk_transaction(
        workflow, "process_changed_job_inputs")
    with bulk:
        require_workflow(store, workflow)
        if not dry_run:
            clear_ephemeral_data(store, workflow)
        done = store.find(JOBS, workflow, {"status": JobStatus.DONE.value})
        if not done:
            return {"reinitialized_jobs": []}
        inputs = hash_inputs(store, workflow, None)
        empty: tuple = ((), (), ())
        changed = [
            j
            for j in done
            if input_hash(j, *inputs.get(j["_id"], empty)) != (j.get("internal") or {}).get("hash")
        ]
        if not changed:
            return {"reinitialized_jobs": []}
        changed_ids = [j["_id"] for j in changed]
        if dry_run:
            downstream = {
                d["_key"] for d in store.descendants(workflow, Edge.BLOCKS.value, changed_ids)
            }
        else:
            downstream = set(
                store.update_descendants(
                    workflow,
                    Edge.BLOCKS.value,
                    {"status": UNINITIALIZED},
                    start_ids=changed_ids,
                    where={"status": Ne(UNINITIALIZED)},
                )
            )
            keys = [j["_key"] for j in changed]  # last: see the docstring
            store.update_many(JOBS, workflow, {"_key": In(keys)}, {"status": UNINITIALIZED})
        reset = downstream | {j["_key"] for j in changed}
        return {"reinitialized_jobs": [j["_key"] for j in done if j["_key"] in reset]}


# --------------------------------------------------------------------------------------------
# Pre-start checks
# --------------------------------------------------------------------------------------------


def _single_producers(store: GraphStore, workflow: str, edge: str, what: str) -> dict[str, Any]:
    """``{vertex id: producer job or None}`` for vertices with a producer over ``edge``;
    more than one producer of the same vertex is a 400 (as torc)."""
    producers: dict[str, Any] = {}
    for n in store.neighbors(workflow, edge, "in"):
        if n.start_id in producers:
            raise BadRequest(f"{what} {n.start_id} has more than one producer")
        producers[n.start_id] = n.vertex
    return producers


def missing_user_data(store: GraphStore, workflow: str) -> dict[str, list[str]]:
    """``GET /workflows/{wf}/missing_user_data`` (§4.13).

    One entry per ``consumes`` edge whose user data is expected to exist (no producer, or a
    ``done`` producer) and whose ``data`` is ``{}``. Absent or null ``data`` is not reported,
    as in torc: a stricter rule would make ``workflows start`` reject workflows that torc
    accepted. Raises BadRequest if a user data has several producers.
    """
    require_workflow(store, workflow)
    producers = _single_producers(store, workflow, Edge.STORES.value, "user_data")
    missing = []
    for n in store.neighbors(workflow, Edge.CONSUMES.value, "out"):
        ud = n.vertex
        if ud is None:
            continue
        producer = producers.get(ud["_id"], False)
        expected = producer is False or (
            producer is not None and producer.get("status") == JobStatus.DONE.value
        )
        if expected and ud.get("data") == {}:
            missing.append(ud["_key"])
    return {"user_data": missing}


def required_existing_files(store: GraphStore, workflow: str) -> dict[str, list[str]]:
    """``GET /workflows/{wf}/required_existing_files`` (§4.14): the ``_id`` of every file a job
    needs that no job produces (one entry per ``needs`` edge).

    torc meant to add files of successfully completed producers too but never did (§8 item 3).
    That is kept: ``workflows restart`` calls this *before* it resets jobs whose outputs are
    missing, so listing produced files would turn "rerun the job whose output I deleted" into
    an InvalidWorkflow error. Raises BadRequest if a file has several producers.
    """
    require_workflow(store, workflow)
    producers = _single_producers(store, workflow, Edge.PRODUCES.value, "file")
    files = []
    for n in store.neighbors(workflow, Edge.NEEDS.value, "out"):
        if n.vertex is not None and n.vertex["_id"] not in producers:
            files.append(n.vertex["_id"])
    return {"files": files}
