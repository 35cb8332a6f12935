"""Generic CRUD semantics for the per-workflow document and edge collections (behavior doc
§2.5, §4.26), transport-free.

Every public function first resolves the workflow (NotFound, 404, if it does not exist). Every
mutating call runs inside one ``store.transaction(workflow)``: it commits whole or not at all.
Key arguments accept a bare key or a full id (``files__12/34``, behavior doc §2.8).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from torc_graph import model, validation
from torc_graph.engine.common import (
    clamp_limit, count_param, envelope_fields, now_ms, require_workflow, to_key,
)
from torc_graph.errors import InvalidInput, NotFound, RevisionConflict
from torc_graph.store.base import GraphStore

#: Fields of a PUT body that are never stored (they are not part of the document).
SYSTEM_FIELDS = ("_key", "_id", "_rev", "_oldRev", "_from", "_to")

#: Job fields that are relations (ids turned into edges on POST); never stored.
JOB_RELATION_FIELDS = (
    "resource_requirements",
    "scheduler",
    "input_files",
    "output_files",
    "input_user_data",
    "output_user_data",
    "blocked_by",
)


#: Server-managed fields (docs/execution-model.md §2): read-only for clients, silently dropped
#: from POST/PUT bodies (never a 400: clients echo documents they read).
SERVER_MANAGED: dict[str, tuple[str, ...]] = {
    "jobs": ("execution",),
    "compute_nodes": ("lease",),
}


def strip_server_managed(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without the collection's server-managed fields (in place; returned)."""
    for name in SERVER_MANAGED.get(collection, ()):
        doc.pop(name, None)
    return doc


@dataclass(frozen=True)
class CollectionSpec:
    """How a collection is validated, named in messages, and filtered.

    ``singular`` is the document type in messages (``Get file with key=3``); ``filters`` are
    the exact-match list filters with their types (behavior doc §2.5); ``free_form`` allows
    sorting by any field path (events have no fixed fields); ``unstored`` fields are validated
    but stripped before a PUT is stored.
    """

    name: str
    schema: str
    singular: str
    filters: Mapping[str, type]
    free_form: bool = False
    unstored: tuple[str, ...] = ()


def _spec(name: str, schema: str, singular: str, *filters: tuple[str, type], **kw: Any):
    return CollectionSpec(name, schema, singular, {"_key": str, **dict(filters)}, **kw)


_S, _B, _I = str, bool, int

#: The 13 per-workflow document collections served by the generic CRUD routes.
COLLECTIONS: dict[str, CollectionSpec] = {
    s.name: s
    for s in (
        _spec("aws_schedulers", "aws_scheduler", "aws_scheduler", ("name", _S)),
        _spec("compute_nodes", "compute_node", "compute_node", ("hostname", _S),
              ("is_active", _B)),
        _spec("compute_node_stats", "compute_node_stats", "compute_node_stats", ("hostname", _S)),
        _spec("events", "event", "event", ("category", _S), free_form=True),
        _spec("files", "file", "file", ("name", _S), ("path", _S)),
        _spec("jobs", "job", "job", ("name", _S), ("command", _S), ("status", _S),
              ("cancel_on_blocking_job_failure", _B), ("supports_termination", _B),
              unstored=JOB_RELATION_FIELDS),
        _spec("job_process_stats", "job_process_stats", "job_process_stats", ("job_key", _S),
              ("run_id", _I)),
        _spec("local_schedulers", "local_scheduler", "local_scheduler", ("memory", _S),
              ("num_cpus", _I)),
        _spec("resource_requirements", "resource_requirements", "resource_requirements",
              ("name", _S), ("memory", _S), ("num_cpus", _I), ("num_gpus", _I),
              ("num_nodes", _I), ("runtime", _S)),
        _spec("results", "result", "result", ("job_key", _S), ("run_id", _I),
              ("return_code", _I), ("status", _S)),
        _spec("scheduled_compute_nodes", "scheduled_compute_node", "scheduled_compute_node",
              ("scheduler_id", _S), ("scheduler_config_id", _S), ("status", _S)),
        _spec("slurm_schedulers", "slurm_scheduler", "slurm_scheduler", ("name", _S),
              ("account", _S), ("gres", _S), ("mem", _S), ("nodes", _I), ("partition", _S),
              ("qos", _S), ("tmp", _S), ("walltime", _S)),
        _spec("user_data", "user_data", "user_data", ("name", _S), ("is_ephemeral", _B)),
    )
}


@dataclass(frozen=True)
class Listing:
    """Paging and sorting arguments of a list call (already typed; checked here)."""

    skip: int = 0
    limit: int | None = None
    sort_by: str | None = None
    reverse_sort: bool = False
    filters: Mapping[str, Any] = field(default_factory=dict)


def collection_spec(collection: str) -> CollectionSpec:
    """The spec of a document collection. Raises InvalidInput naming an unknown one."""
    try:
        return COLLECTIONS[collection]
    except KeyError:
        raise InvalidInput(f"unknown collection {collection!r}") from None


def edge_name(name: str) -> str:
    """Check an edge collection name. Raises InvalidInput naming an unknown one."""
    if not model.is_edge(name):
        raise InvalidInput(
            f"unknown edge collection {name!r}; expected one of "
            + ", ".join(e.value for e in model.Edge)
        )
    return name


def page(
    store: GraphStore,
    collection: str,
    workflow: str | None,
    listing: Listing,
    *,
    schema: str | None,
    allowed_filters: Mapping[str, type],
    free_form: bool = False,
) -> bytes:
    """One page of a collection as the torc list envelope, encoded: the response body.

    ``sort_by`` sorts the whole result by the named field (ties keep insertion order) and
    ``reverse_sort`` descends; this fixes the original, which sorted only the page and always
    by ``name``. Without ``sort_by`` the order is insertion order and ``reverse_sort`` is
    ignored, as in the original. Raises InvalidInput for a negative or over-64-bit
    skip/limit, an unknown sort field or filter.

    Built without decoding documents: the stored JSON texts (:meth:`GraphStore.find_json`) are
    spliced into the envelope, because a 100,000-document page as Python dicts costs several
    times its JSON size (a gunicorn worker paging 10^6 jobs peaked at 337 MB that way).
    """
    where, order_by, limit = _page_query(listing, schema, allowed_filters, free_form)
    texts = store.find_json(
        collection, workflow, where, skip=listing.skip, limit=limit, order_by=order_by
    )
    count = len(texts)
    # The total as GraphStore.page computes it: a short first page is the whole result.
    if listing.skip == 0 and count < limit:
        total = count
    else:
        total = store.count(collection, workflow, where)
    tail = "]," + json.dumps(envelope_fields(count, listing.skip, total), separators=(",", ":"))[1:]
    body = "".join(_splice(texts, '{"items":[', tail))
    texts.clear()  # free the per-document strings before the encoded copy is made
    data = body.encode("utf-8")
    del body
    return data


def _splice(texts: list[str], head: str, tail: str) -> Iterator[str]:
    """``head``, the texts separated by commas, ``tail``: the pieces for one ``str.join``
    (no intermediate joined copy of the items)."""
    yield head
    for i, text in enumerate(texts):
        if i:
            yield ","
        yield text
    yield tail


def _page_query(
    listing: Listing, schema: str | None, allowed_filters: Mapping[str, type], free_form: bool
) -> tuple[dict[str, Any] | None, list[tuple[str, bool]] | None, int]:
    """Check a listing; return the store's ``where``, ``order_by`` and clamped ``limit``."""
    count_param("skip", listing.skip)
    count_param("limit", listing.limit)
    for name in listing.filters:
        if name not in allowed_filters:
            raise InvalidInput(f"unknown filter {name!r}")
    order_by = None
    if listing.sort_by is not None:
        order_by = [(_sort_field(listing.sort_by, schema, free_form), listing.reverse_sort)]
    return dict(listing.filters) or None, order_by, clamp_limit(listing.limit)


def _sort_field(name: str, schema: str | None, free_form: bool) -> str:
    if name in ("_key", "_id"):
        return name
    if free_form and model.FIELD_PATH_PATTERN.match(name):
        return name
    if schema is not None and name in validation.fields(schema):
        return name
    raise InvalidInput(f"cannot sort by {name!r}: not a field of {schema or 'this collection'}")


# -- documents ------------------------------------------------------------------------------


def list_documents(store: GraphStore, workflow: str, collection: str,
                   listing: Listing = Listing()) -> bytes:
    """``GET /workflows/{wf}/C``: filtered, sorted, paged envelope (the encoded body)."""
    spec = collection_spec(collection)
    require_workflow(store, workflow)
    return page(store, collection, workflow, listing, schema=spec.schema,
                     allowed_filters=spec.filters, free_form=spec.free_form)


def add_document(store: GraphStore, workflow: str, collection: str,
                 body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/C``: validate (defaults filled), insert, return the stored doc.

    A custom ``_key`` is kept (UniqueConstraintViolated, 409, if taken). Events get
    ``timestamp = now_ms`` (overwritten, as the original did). No reference checks.
    """
    spec = collection_spec(collection)
    require_workflow(store, workflow)
    doc = strip_server_managed(collection, validation.validate(spec.schema, body))
    if collection == model.Collection.EVENTS:
        doc["timestamp"] = now_ms()
    with store.transaction(workflow):
        require_workflow(store, workflow)
        return store.insert(collection, workflow, doc)


def get_document(store: GraphStore, workflow: str, collection: str, key: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/C/{key}``: the document. Raises NotFound (404)."""
    spec = collection_spec(collection)
    require_workflow(store, workflow)
    key = to_key(key, collection, workflow)
    try:
        return store.get(collection, workflow, key)
    except NotFound:
        raise NotFound(_not_found("Get", spec.singular, key)) from None


def modify_document(store: GraphStore, workflow: str, collection: str, key: str,
                    body: Mapping[str, Any]) -> dict[str, Any]:
    """``PUT /workflows/{wf}/C/{key}``: validate with defaults, then merge into the stored doc.

    Raises InvalidInput (400) if ``_rev`` is missing or the body's ``_key`` differs from the
    path key, NotFound (404), RevisionConflict (409) if ``_rev`` is stale. Returns the stored
    document with its new ``_rev`` and ``_oldRev``. Job relation fields are not stored.
    """
    spec = collection_spec(collection)
    require_workflow(store, workflow)
    key = to_key(key, collection, workflow)
    doc = validation.validate(spec.schema, body)
    rev = require_rev(doc)
    check_body_key(doc, key)
    patch = {k: v for k, v in strip_server_managed(collection, doc).items()
             if k not in SYSTEM_FIELDS and k not in spec.unstored}
    with store.transaction(workflow):
        require_workflow(store, workflow)
        return update_checked(store, collection, workflow, key, patch, rev, spec.singular)


def remove_document(store: GraphStore, workflow: str, collection: str,
                    key: str) -> dict[str, Any]:
    """``DELETE /workflows/{wf}/C/{key}``: delete (vertex: with every incident edge) and return
    the document as it was. Raises NotFound (404)."""
    spec = collection_spec(collection)
    require_workflow(store, workflow)
    key = to_key(key, collection, workflow)
    with store.transaction(workflow):
        require_workflow(store, workflow)
        try:
            return store.delete(collection, workflow, key)
        except NotFound:
            raise NotFound(_not_found("Delete", spec.singular, key)) from None


def delete_documents(store: GraphStore, workflow: str, collection: str) -> dict[str, str]:
    """``DELETE /workflows/{wf}/C``: delete every document (vertex: with their edges)."""
    collection_spec(collection)
    with store.transaction(workflow):
        require_workflow(store, workflow)
        store.delete_many(collection, workflow)
    return {
        "message": f'Deleted all documents in the "{collection}" collection for workflow {workflow}'
    }


# -- edges ----------------------------------------------------------------------------------


def list_edges(store: GraphStore, workflow: str, name: str,
               listing: Listing = Listing()) -> bytes:
    """``GET /workflows/{wf}/edges/{name}``: paged envelope; ``total_count`` = all edges
    (the encoded body)."""
    edge_name(name)
    require_workflow(store, workflow)
    return page(store, name, workflow, listing, schema="edge", allowed_filters={"_key": str})


def add_edge(store: GraphStore, workflow: str, name: str,
             body: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /workflows/{wf}/edges/{name}``: insert ``{_from, _to, data?, _key?}``.

    ``_from``/``_to`` must be well-formed document ids (InvalidInput, 400); vertex existence is
    not checked (as in the original: clients add edges to documents they just created).
    """
    edge_name(name)
    require_workflow(store, workflow)
    doc = validation.validate("edge", body)
    for end in ("_from", "_to"):
        check_id(doc[end], end)
    with store.transaction(workflow):
        require_workflow(store, workflow)
        return store.insert(name, workflow, doc)


def get_edge(store: GraphStore, workflow: str, name: str, key: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/edges/{name}/{key}``. Raises NotFound (404)."""
    edge_name(name)
    require_workflow(store, workflow)
    key = to_key(key, name, workflow)
    try:
        return store.get(name, workflow, key)
    except NotFound:
        raise NotFound(_not_found("Get", f"{name} edge", key)) from None


def remove_edge(store: GraphStore, workflow: str, name: str, key: str) -> dict[str, Any]:
    """``DELETE /workflows/{wf}/edges/{name}/{key}``: the edge as it was. Raises NotFound."""
    edge_name(name)
    require_workflow(store, workflow)
    key = to_key(key, name, workflow)
    with store.transaction(workflow):
        require_workflow(store, workflow)
        try:
            return store.delete(name, workflow, key)
        except NotFound:
            raise NotFound(_not_found("Delete", f"{name} edge", key)) from None


def delete_edges(store: GraphStore, workflow: str, name: str) -> dict[str, str]:
    """``DELETE /workflows/{wf}/edges/{name}``: delete every edge of the collection."""
    edge_name(name)
    with store.transaction(workflow):
        require_workflow(store, workflow)
        store.delete_many(name, workflow)
    return {"message": f'Deleted all edges in the "{name}__{workflow}" collection'}


# -- shared helpers -------------------------------------------------------------------------


def require_rev(doc: Mapping[str, Any]) -> str:
    """The body's ``_rev``; InvalidInput (400) if missing."""
    rev = doc.get("_rev")
    if not rev:
        raise InvalidInput("Updating a document requires the existing revision")
    return rev


def check_body_key(doc: Mapping[str, Any], key: str) -> None:
    """InvalidInput (400) if the body names another document than the path."""
    body_key = doc.get("_key")
    if body_key is not None and body_key != key:
        raise InvalidInput(f"key={key} does not match {body_key}")


def check_id(value: Any, what: str) -> tuple[str, str | None, str]:
    """Split a document id; InvalidInput (400) naming ``what`` if it is malformed."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a document id string")
    try:
        return model.split_id(value)
    except ValueError:
        raise InvalidInput(f"{what}: {value!r} is not a document id (<collection>/<key>)") from None


def update_checked(store: GraphStore, collection: str, workflow: str | None, key: str,
                   patch: Mapping[str, Any], rev: str | None, what: str) -> dict[str, Any]:
    """``store.update`` with torc's messages for NotFound (404) and a stale rev (409)."""
    try:
        return store.update(collection, workflow, key, patch, rev=rev)
    except NotFound:
        raise NotFound(_not_found("Update", what, key)) from None
    except RevisionConflict:
        raise RevisionConflict(
            f"Error: Conflicting revision. Operation: Update {what} with key={key} _rev={rev}"
        ) from None


def _not_found(operation: str, what: str, key: str) -> str:
    return f"Error: Document not found. Operation: {operation} {what} with key={key}"
