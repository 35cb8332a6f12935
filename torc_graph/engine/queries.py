"""Graph queries over one workflow: downstream jobs, joins and the per-job relation helpers.

Every query here is a graph-native store call (``descendants``, ``join``, ``neighbors``, or a
``find`` with a :class:`~torc_graph.store.filters.HasEdge` predicate): no per-document round trips.
Envelopes follow the torc v0.6.4 semantics of each endpoint (behavior doc §4.11, §4.12, §4.16,
§4.20), including the quirks clients rely on (joins and downstream jobs report
``has_more=false``); the ``files/produced_by_job`` skip bug is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torc_graph import model, validation
from torc_graph.model import DEFAULT_RESOURCE_REQUIREMENTS
from torc_graph.engine.common import clamp_limit, count_param, envelope, require_workflow
from torc_graph.errors import BadRequest, InvalidInput, NotFound
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import HasEdge
from torc_graph.store.records import Document

JOBS = model.Collection.JOBS.value


#: Collections whose schema name is not the collection name minus its trailing "s".
_SCHEMA_OF = {
    "compute_node_stats": "compute_node_stats",
    "job_process_stats": "job_process_stats",
    "resource_requirements": "resource_requirements",
    "user_data": "user_data",
}

_SYSTEM_FIELDS = frozenset({"_key", "_id", "_rev"})


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------




def get_document(store: GraphStore, workflow: str, collection: str, key: str, label: str) -> Document:
    """The document, or NotFound with torc's message (``... Operation: Get job with key=K``)."""
    try:
        return store.get(collection, workflow, key)
    except NotFound:
        raise NotFound(
            f"Error: Document not found. Operation: Get {label} with key={key}"
        ) from None


def get_job(store: GraphStore, workflow: str, key: str) -> Document:
    """The job document; NotFound (404) if the workflow or the job is missing."""
    require_workflow(store, workflow)
    return get_document(store, workflow, JOBS, key, "job")


def _job_id(workflow: str, key: str) -> str:
    return model.make_id(JOBS, workflow, key)


def _check_max(items: list, what: str) -> None:
    if len(items) > model.MAX_TRANSFER_RECORDS:
        raise BadRequest(
            f"{what} has {len(items)} items, more than the maximum of "
            f"{model.MAX_TRANSFER_RECORDS} per response"
        )


# ----------------------------------------------------------------------------------------------
# Jobs
# ----------------------------------------------------------------------------------------------


def list_downstream_jobs(
    store: GraphStore, workflow: str, key: str, skip: Any = 0, limit: Any = None
) -> dict[str, Any]:
    """Every job reachable from the job over ``blocks`` (transitively, breadth-first, each job
    once); skip/limit applied in the traversal. ``total_count`` is the number returned and
    ``has_more`` is false, as in torc v0.6.4. Raises NotFound for a missing job."""
    skip = count_param("skip", skip, 0)
    limit = count_param("limit", limit)
    get_job(store, workflow, key)
    items = store.descendants(
        workflow, model.Edge.BLOCKS.value, [_job_id(workflow, key)], skip=skip, limit=limit
    )
    return _flat_envelope(items, skip)


def list_jobs_by_status(
    store: GraphStore, workflow: str, status: str, skip: Any = 0, limit: Any = None
) -> dict[str, Any]:
    """Jobs with this status (storage order), as a proper envelope (total = all matches)."""
    skip = count_param("skip", skip, 0)
    limit = clamp_limit(count_param("limit", limit))
    require_workflow(store, workflow)
    page = store.page(JOBS, workflow, {"status": status}, skip=skip, limit=limit)
    return envelope(page.items, skip, page.total)


def list_jobs_by_needs_file(
    store: GraphStore, workflow: str, key: str, skip: Any = 0, limit: Any = None
) -> dict[str, Any]:
    """Jobs with a ``needs`` edge to the file; skip/limit in the query; ``total_count`` is the
    number returned (torc v0.6.4). Raises NotFound ``File <key> is not stored``."""
    skip = count_param("skip", skip, 0)
    limit = clamp_limit(count_param("limit", limit))
    require_workflow(store, workflow)
    file_coll = model.Collection.FILES.value
    try:
        store.get(file_coll, workflow, key)
    except NotFound:
        raise NotFound(f"File {key} is not stored") from None
    file_id = model.make_id(file_coll, workflow, key)
    items = store.find(
        JOBS,
        workflow,
        edges=[HasEdge(model.Edge.NEEDS.value, "out", {"_id": file_id})],
        skip=skip,
        limit=limit,
    )
    return _flat_envelope(items, skip)


def list_files_produced_by_job(
    store: GraphStore, workflow: str, key: str, skip: Any = 0, limit: Any = None
) -> dict[str, Any]:
    """Files the job produces (``produces`` edges), with working skip/limit (the original
    ignored skip) and ``total_count`` = all produced files. Raises NotFound for a missing job."""
    skip = count_param("skip", skip, 0)
    limit = clamp_limit(count_param("limit", limit))
    get_job(store, workflow, key)
    page = store.page(
        model.Collection.FILES.value,
        workflow,
        edges=[HasEdge(model.Edge.PRODUCES.value, "in", {"_id": _job_id(workflow, key)})],
        skip=skip,
        limit=limit,
    )
    return envelope(page.items, skip, page.total)


def _flat_envelope(items: list[Document], skip: int) -> dict[str, Any]:
    """Envelope whose ``total_count`` is the number returned, so ``has_more`` is false."""
    env = envelope(items, skip, len(items))
    env["has_more"] = False
    return env


# ----------------------------------------------------------------------------------------------
# Per-job relations
# ----------------------------------------------------------------------------------------------


def _linked(store: GraphStore, workflow: str, key: str, edge: model.Edge, **kwargs) -> list[Document]:
    """Existing vertices linked from the job over ``edge`` (edge insertion order)."""
    get_job(store, workflow, key)
    hops = store.neighbors(workflow, edge.value, "out", [_job_id(workflow, key)], **kwargs)
    return [h.vertex for h in hops if h.vertex is not None]


def list_job_user_data_stores(store: GraphStore, workflow: str, key: str) -> dict[str, Any]:
    """User data the job stores (``stores`` edges), all of them, as an envelope with skip 0."""
    items = _linked(store, workflow, key, model.Edge.STORES)
    _check_max(items, "user_data_stores")
    return envelope(items, 0)


def list_job_user_data_consumes(store: GraphStore, workflow: str, key: str) -> dict[str, Any]:
    """User data the job consumes (``consumes`` edges), all of them, as an envelope."""
    items = _linked(store, workflow, key, model.Edge.CONSUMES)
    _check_max(items, "user_data_consumes")
    return envelope(items, 0)


def add_job_user_data(store: GraphStore, workflow: str, key: str, body: Mapping[str, Any]) -> Document:
    """Insert a user_data document (no de-duplication) and a ``stores`` edge job→user_data.

    Atomic: both or neither. Raises NotFound for a missing workflow or job.
    Returns the stored user_data document.
    """
    doc = {k: v for k, v in body.items() if k not in ("_id", "_rev", "_oldRev")}
    with store.transaction(workflow):
        job = get_job(store, workflow, key)
        stored = store.insert(model.Collection.USER_DATA.value, workflow, doc)
        store.insert(
            model.Edge.STORES.value, workflow, {"_from": job["_id"], "_to": stored["_id"]}
        )
    return stored


def get_process_stats_for_job(store: GraphStore, workflow: str, key: str) -> list[Document]:
    """The job's ``job_process_stats`` (``process_used`` edges) as a bare array sorted by
    ``run_id`` (stable: ties keep edge order)."""
    items = _linked(store, workflow, key, model.Edge.PROCESS_USED)
    items.sort(key=lambda d: _sortable_number(d.get("run_id")))
    return items


def _sortable_number(value: Any) -> tuple[int, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, 0.0)  # documents without a numeric run_id go last


def get_job_resource_requirements(store: GraphStore, workflow: str, key: str) -> Document:
    """The resource requirements linked by ``requires``, or the default ones (no ``_key``).

    Raises NotFound for a missing job, BadRequest if the job has more than one ``requires`` edge.
    """
    items = _linked(store, workflow, key, model.Edge.REQUIRES)
    if len(items) > 1:
        raise BadRequest(f"job {key} has {len(items)} resource requirements; at most one is allowed")
    return items[0] if items else dict(DEFAULT_RESOURCE_REQUIREMENTS)


def modify_job_resource_requirements(
    store: GraphStore, workflow: str, key: str, rr_key: str
) -> Document:
    """Replace the job's ``requires`` edge with one to ``rr_key``; return the new edge.

    Atomic. Raises NotFound if the workflow, job or resource requirements are missing. The job's
    ``internal`` is not updated until the next ``initialize_jobs`` (torc v0.6.4).
    """
    rr_coll = model.Collection.RESOURCE_REQUIREMENTS.value
    requires = model.Edge.REQUIRES.value
    with store.transaction(workflow):
        job = get_job(store, workflow, key)
        rr = get_document(store, workflow, rr_coll, rr_key, "resource_requirements")
        store.delete_many(requires, workflow, {"_from": job["_id"]})
        return store.insert(requires, workflow, {"_from": job["_id"], "_to": rr["_id"]})


def get_latest_job_result(store: GraphStore, workflow: str, key: str) -> Document:
    """The job's result (``returned`` edge) for the workflow's current ``run_id``.

    If several exist for that run (the original answered 500), the last one stored wins.
    Raises NotFound ``No result is stored for job <key>``.
    """
    require_workflow(store, workflow)
    run_id = store.workflow_space(workflow).status.get("run_id")
    items = _linked(store, workflow, key, model.Edge.RETURNED, where={"run_id": run_id})
    if not items:
        raise NotFound(f"No result is stored for job {key}")
    return items[-1]


# ----------------------------------------------------------------------------------------------
# Joins
# ----------------------------------------------------------------------------------------------


def schema_of(collection: str) -> str:
    """The schema name of a per-workflow collection (``jobs`` → ``job``)."""
    return _SCHEMA_OF.get(collection, collection[:-1] if collection.endswith("s") else collection)


def check_filter_fields(collection: str, filters: Mapping[str, Any]) -> None:
    """Whitelist filter field names against the collection's schema (plus ``_key``/``_id``/
    ``_rev``); free-form collections (events) accept any dotted field path.

    Raises InvalidInput naming the first unknown field.
    """
    schema = schema_of(collection)
    if validation.is_free_form(schema):
        allowed = None
    else:
        allowed = validation.fields(schema) | _SYSTEM_FIELDS
    for name in filters:
        if not isinstance(name, str) or not (
            name in _SYSTEM_FIELDS or model.FIELD_PATH_PATTERN.match(name)
        ):
            raise InvalidInput(f"invalid filter field {name!r}")
        if allowed is not None and name not in allowed:
            raise InvalidInput(
                f"unknown filter field {name!r} for collection {collection!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )


def join_by_edge(
    store: GraphStore,
    workflow: str,
    collection: str,
    edge: str,
    direction: str,
    filters: Mapping[str, Any] | None = None,
    skip: Any = 0,
    limit: Any = None,
) -> dict[str, Any]:
    """Inner join of ``collection`` documents with their ``edge`` edges in ``direction``.

    ``filters`` are exact-match, type-strict (``5`` does not match ``"5"``) filters on the
    collection's documents; skip/limit apply to those documents before the join. One row per
    edge: ``{"from", "to", "edge"}``. Envelope: ``count == total_count`` = number of rows and
    ``has_more`` false (clients page these with ``iter_documents``, whose ``skip += count``
    would be wrong for document-level skip otherwise).

    Raises InvalidInput (400) naming an unknown collection, edge or filter field; NotFound for a
    missing workflow.
    """
    if not model.is_collection(collection):
        raise InvalidInput(f"unknown collection name {collection!r}")
    if not model.is_edge(edge):
        raise InvalidInput(f"unknown edge name {edge!r}")
    if direction not in ("out", "in"):
        raise ValueError(f"direction must be 'out' or 'in', not {direction!r}")
    filters = dict(filters or {})
    check_filter_fields(collection, filters)
    skip = count_param("skip", skip, 0)
    limit = clamp_limit(count_param("limit", limit))
    require_workflow(store, workflow)
    rows = store.join(workflow, collection, edge, direction, filters or None, skip=skip, limit=limit)
    return _flat_envelope(rows, skip)


def join_by_outbound_edge(store: GraphStore, workflow: str, collection: str, edge: str,
                          body: Mapping[str, Any] | None = None, skip: Any = 0,
                          limit: Any = None) -> dict[str, Any]:
    """``POST join_by_outbound_edge/{collection}/{edge}``: rows ``{from: doc, to: other}``."""
    return join_by_edge(store, workflow, collection, edge, "out", body, skip, limit)


def join_by_inbound_edge(store: GraphStore, workflow: str, collection: str, edge: str,
                         body: Mapping[str, Any] | None = None, skip: Any = 0,
                         limit: Any = None) -> dict[str, Any]:
    """``POST join_by_inbound_edge/{collection}/{edge}``: rows ``{from: other, to: doc}``."""
    return join_by_edge(store, workflow, collection, edge, "in", body, skip, limit)
