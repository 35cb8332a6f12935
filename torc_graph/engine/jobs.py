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

from collections.abc import Mapping
from typing import Any

from torc_graph import collector, json_codec, model, validation
from torc_graph.engine import integrity
from torc_graph.engine.common import require_workflow
from torc_graph.engine.job_rows import RELATIONS, JobRows, Relation, build_jobs, single_job
from torc_graph.errors import InvalidInput
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import In

__all__ = ["RELATIONS", "Relation", "add_job", "add_jobs", "add_jobs_json", "job_keys"]

JOBS = model.Collection.JOBS.value
#: Chunk size of existence checks (keeps SQL parameter lists short).
_CHUNK = 5000


def add_job(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/jobs``: insert one job and its relation edges atomically.

    Returns the stored job (no relation fields). Raises InvalidInput (400) for a bad body or
    relation id, NotFound (404) for a missing workflow, UniqueConstraintViolated (409) for a
    taken custom ``_key``.
    """
    require_workflow(store, workflow)
    job = validation.validate("job", body)
    return json_codec.loads(_insert(store, workflow, single_job(job, workflow), bulk=False)[0])


def add_jobs(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/bulk_jobs``: ``{"jobs": [...]}`` → ``{"items": [stored jobs]}``
    (:func:`add_jobs_json` decoded)."""
    return json_codec.loads(add_jobs_json(store, workflow, body))


def add_jobs_json(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> bytes:
    """``POST /workflows/{wf}/bulk_jobs`` as the response's JSON bytes, spliced from the
    stored documents' texts (no decode and re-encode of 10^4 documents per request).

    Atomic and set-based: all jobs or none; one insert for the jobs and one per edge type.
    A bad job raises InvalidInput naming its index.
    """
    require_workflow(store, workflow)
    if not isinstance(body, Mapping) or "jobs" not in body:
        validation.validate("bulk_jobs", body)  # raises the schema's own message
    # The envelope is checked without its jobs, which validate_many checks once, naming the
    # index of a bad job (validating them through bulk_jobs too would double the cost).
    validation.validate("bulk_jobs", {**body, "jobs": []})
    with collector.paused():
        rows = build_jobs(body["jobs"], workflow, label="jobs")
        texts = _insert(store, workflow, rows, bulk=True)
        return b'{"items":[' + ",".join(texts).encode("utf-8") + b"]}"


def job_keys(store: GraphStore, workflow: str) -> dict[str, list[str]]:
    """``GET /workflows/{wf}/job_keys``: ``{"items": [every job key, insertion order]}``."""
    require_workflow(store, workflow)
    return {"items": [doc["_key"] for doc in store.iter_find(JOBS, workflow)]}


def _insert(store: GraphStore, workflow: str, rows: JobRows, *, bulk: bool) -> list[str]:
    """Insert the jobs and their edges in one transaction; the stored jobs' JSON texts."""
    docs, links = rows.docs, rows.links
    batch_keys = {d["_key"] for d in docs if d.get("_key") is not None}
    with store.transaction(workflow):
        require_workflow(store, workflow)
        _check_exist(store, workflow, rows, batch_keys, bulk)
        ids, texts = store.insert_encoded(JOBS, workflow, docs, rows.texts)
        edges: dict[str, list[dict[str, str]]] = {}
        for rel in RELATIONS:
            field = rel.field
            if rel.inbound:
                out = [{"_from": target, "_to": job_id}
                       for job_id, targets in zip(ids, links) if field in targets
                       for target in targets[field]]
            else:
                out = [{"_from": job_id, "_to": target}
                       for job_id, targets in zip(ids, links) if field in targets
                       for target in targets[field]]
            if out:
                edges[rel.edge] = out
        for edge, edge_rows in edges.items():
            store.insert_encoded(edge, workflow, edge_rows, ["{}"] * len(edge_rows))
        if bulk:
            integrity.check_new_jobs(store, workflow, ids, edges,
                                     generated_keys=not batch_keys)
        elif _may_close_cycle(store, workflow, ids[0], edges):
            integrity.check_no_cycle(store, workflow)
    return texts


def _may_close_cycle(store: GraphStore, workflow: str, job_id: str,
                     edges: Mapping[str, list[dict[str, str]]]) -> bool:
    """Whether one new job can be on a dependency cycle: only if it blocks itself or some job
    (possibly itself) needs a file or consumes user data that it produces or stores (its only
    outgoing dependencies), so the common insert costs one indexed count, not a graph search."""
    if any(e["_from"] == job_id for e in edges.get("blocks", ())):
        return True
    for out_edge, in_edge in (("produces", "needs"), ("stores", "consumes")):
        targets = [e["_to"] for e in edges.get(out_edge, ())]
        if targets and store.count(in_edge, workflow, {"_to": In(targets)}):
            return True
    return False


def _check_exist(store: GraphStore, workflow: str, rows: JobRows, batch_keys: set[str],
                 bulk: bool) -> None:
    """InvalidInput naming the first job whose relation id names no document.

    One query per referenced collection (chunked), however many jobs reference it. A
    ``blocked_by`` id may name a job with a custom ``_key`` earlier in the same batch.
    """
    links, wanted = rows.links, rows.wanted
    missing = False
    for base, keys in wanted.items():
        # Any partition into chunks will do (SQLite indexes the IN list itself): no sort
        # (7 ms of a 10^4-job request, measured).
        pending = list(keys - batch_keys) if base == JOBS else list(keys)
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
