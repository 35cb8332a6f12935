"""Job insertion (single and bulk) and job keys (behavior doc §4.20), transport-free.

Relation fields of a job body are ids; they are removed from the stored document and become
edges: ``requires`` (resource_requirements), ``scheduled_bys`` (scheduler), ``needs``
(input_files), ``produces`` (output_files), ``consumes`` (input_user_data), ``stores``
(output_user_data), and ``blocks`` from each ``blocked_by`` job to the new job.

Fixes of the original (noted in the README): relation ids must be well-formed, name a document
of the right collection of this workflow, and exist (400 otherwise; the original silently
stored dangling edges); a job may not close a dependency cycle (explicit, file- or
user-data-derived, :mod:`.integrity`); bulk insert is atomic and set-based (one insert per
collection, never one per job), and a bad job rejects the whole batch naming its index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torc_graph import model, validation
from torc_graph.engine import integrity
from torc_graph.engine.common import require_workflow
from torc_graph.engine.documents import JOB_RELATION_FIELDS, SERVER_MANAGED
from torc_graph.errors import InvalidInput
from torc_graph.store.base import GraphStore, In

JOBS = model.Collection.JOBS.value
_C = model.Collection
#: Chunk size of existence checks (keeps SQL parameter lists short).
_CHUNK = 5000


@dataclass(frozen=True)
class Relation:
    field: str
    edge: str
    targets: tuple[str, ...]
    many: bool
    inbound: bool = False  # the edge points at the new job (blocked_by)


RELATIONS: tuple[Relation, ...] = (
    Relation("resource_requirements", "requires", (_C.RESOURCE_REQUIREMENTS.value,), False),
    Relation("scheduler", "scheduled_bys", tuple(c.value for c in model.SCHEDULER_COLLECTIONS),
             False),
    Relation("input_files", "needs", (_C.FILES.value,), True),
    Relation("output_files", "produces", (_C.FILES.value,), True),
    Relation("input_user_data", "consumes", (_C.USER_DATA.value,), True),
    Relation("output_user_data", "stores", (_C.USER_DATA.value,), True),
    Relation("blocked_by", "blocks", (_C.JOBS.value,), True, inbound=True),
)


def add_job(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/jobs``: insert one job and its relation edges atomically.

    Returns the stored job (no relation fields). Raises InvalidInput (400) for a bad body or
    relation id, NotFound (404) for a missing workflow, UniqueConstraintViolated (409) for a
    taken custom ``_key``.
    """
    require_workflow(store, workflow)
    job = validation.validate("job", body)
    return _insert(store, workflow, [job], bulk=False)[0]


def add_jobs(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/bulk_jobs``: ``{"jobs": [...]}`` → ``{"items": [stored jobs]}``.

    Atomic and set-based: all jobs or none; one ``insert_many`` for the jobs and one per edge
    type. A bad job raises InvalidInput naming its index.
    """
    require_workflow(store, workflow)
    if not isinstance(body, Mapping) or "jobs" not in body:
        validation.validate("bulk_jobs", body)  # raises the schema's own message
    # The envelope is checked without its jobs, which validate_many checks once, naming the
    # index of a bad job (validating them through bulk_jobs too would double the cost).
    validation.validate("bulk_jobs", {**body, "jobs": []})
    jobs = validation.validate_many("job", body["jobs"], label="jobs")
    return {"items": _insert(store, workflow, jobs, bulk=True)}


def job_keys(store: GraphStore, workflow: str) -> dict[str, list[str]]:
    """``GET /workflows/{wf}/job_keys``: ``{"items": [every job key, insertion order]}``."""
    require_workflow(store, workflow)
    return {"items": [doc["_key"] for doc in store.iter_find(JOBS, workflow)]}


def _insert(store: GraphStore, workflow: str, jobs: Sequence[dict[str, Any]],
            *, bulk: bool) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    links: list[dict[str, list[str]]] = []  # per job: relation field -> target ids
    for index, job in enumerate(jobs):
        where = f"jobs[{index}]" if bulk else "job"
        doc = {k: v for k, v in job.items() if k not in JOB_RELATION_FIELDS
               and k not in ("_id", "_rev", "_oldRev") and k not in SERVER_MANAGED["jobs"]}
        if not doc.get("status"):
            doc["status"] = model.JobStatus.UNINITIALIZED.value
        docs.append(doc)
        links.append(_relation_ids(job, workflow, where))
    batch_keys = {d["_key"] for d in docs if d.get("_key") is not None}
    with store.transaction(workflow):
        require_workflow(store, workflow)
        _check_exist(store, workflow, links, batch_keys, bulk)
        stored = store.insert_many(JOBS, workflow, docs)
        edges: dict[str, list[dict[str, str]]] = defaultdict(list)
        for job, targets in zip(stored, links):
            for rel in RELATIONS:
                for target in targets.get(rel.field, ()):
                    if rel.inbound:
                        edges[rel.edge].append({"_from": target, "_to": job["_id"]})
                    else:
                        edges[rel.edge].append({"_from": job["_id"], "_to": target})
        for edge, rows in edges.items():
            store.insert_many(edge, workflow, rows)
        if bulk:
            integrity.check_new_jobs(store, workflow, (d["_id"] for d in stored), edges,
                                     generated_keys=not batch_keys)
        elif _may_close_cycle(store, workflow, stored[0], edges):
            integrity.check_no_cycle(store, workflow)
    return stored


def _may_close_cycle(store: GraphStore, workflow: str, job: Mapping[str, Any],
                     edges: Mapping[str, list[dict[str, str]]]) -> bool:
    """Whether one new job can be on a dependency cycle: only if it blocks itself or some job
    (possibly itself) needs a file or consumes user data that it produces or stores (its only
    outgoing dependencies), so the common insert costs one indexed count, not a graph search."""
    if any(e["_from"] == job["_id"] for e in edges.get("blocks", ())):
        return True
    for out_edge, in_edge in (("produces", "needs"), ("stores", "consumes")):
        targets = [e["_to"] for e in edges.get(out_edge, ())]
        if targets and store.count(in_edge, workflow, {"_to": In(targets)}):
            return True
    return False


def _relation_ids(job: Mapping[str, Any], workflow: str, where: str) -> dict[str, list[str]]:
    """The relation ids of one job, checked for form, collection and workflow."""
    out: dict[str, list[str]] = {}
    for rel in RELATIONS:
        value = job.get(rel.field)
        if value is None or value == []:
            continue
        ids = value if rel.many else [value]
        for doc_id in ids:
            try:
                base, wf, _key = model.split_id(doc_id)
            except (ValueError, TypeError):
                raise InvalidInput(
                    f"{where}.{rel.field}: {doc_id!r} is not a document id"
                ) from None
            if base not in rel.targets or wf != workflow:
                expected = " or ".join(model.collection_name(t, workflow) for t in rel.targets)
                raise InvalidInput(
                    f"{where}.{rel.field}: {doc_id!r} is not an id in {expected}"
                )
        out[rel.field] = list(ids)
    return out


def _check_exist(store: GraphStore, workflow: str, links: Sequence[Mapping[str, list[str]]],
                 batch_keys: set[str], bulk: bool) -> None:
    """InvalidInput naming the first job whose relation id names no document.

    One query per referenced collection (chunked), however many jobs reference it. A
    ``blocked_by`` id may name a job with a custom ``_key`` earlier in the same batch.
    """
    wanted: dict[str, set[str]] = defaultdict(set)
    for targets in links:
        for ids in targets.values():
            for doc_id in ids:
                base, _wf, key = model.split_id(doc_id)
                wanted[base].add(key)
    missing = False
    for base, keys in wanted.items():
        pending = sorted(keys - batch_keys) if base == JOBS else sorted(keys)
        for i in range(0, len(pending), _CHUNK):
            chunk = pending[i:i + _CHUNK]
            # Keys are unique per collection and workflow, so a full count proves existence
            # without reading (and decoding) the documents; only a shortfall needs the keys.
            if store.count(base, workflow, {"_key": In(chunk)}) != len(chunk):
                missing = True
    if not missing:
        return
    existing: dict[str, set[str]] = {}
    for base, keys in wanted.items():
        found: set[str] = set(batch_keys) if base == JOBS else set()
        pending = sorted(keys - found)
        for i in range(0, len(pending), _CHUNK):
            chunk = pending[i:i + _CHUNK]
            found.update(d["_key"] for d in store.find(base, workflow, {"_key": In(chunk)}))
        existing[base] = found
    for index, targets in enumerate(links):
        for field, ids in targets.items():
            for doc_id in ids:
                base, _wf, key = model.split_id(doc_id)
                if key not in existing[base]:
                    where = f"jobs[{index}]" if bulk else "job"
                    raise InvalidInput(f"{where}.{field}: no document {doc_id} exists")
