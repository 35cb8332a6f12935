"""Workflows, their config and status documents, and collection names (behavior doc §4.10,
§4.19, §4.25), transport-free.

Writes run inside ``store.transaction(workflow)``; config/status PUTs check the body's ``_key``
against this workflow's document and return the stored document with its new ``_rev`` (fixes of
the original, which trusted the body's ``_key`` and echoed the old ``_rev``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torc_graph import model, validation
from torc_graph.engine import tasks
from torc_graph.engine.common import now_iso, require_workflow
from torc_graph.engine.documents import (
    Listing,
    check_body_key,
    page,
    require_rev,
    update_checked,
)
from torc_graph.errors import InvalidInput, NotFound, UniqueConstraintViolated
from torc_graph.store.base import GraphStore

WORKFLOWS = model.GlobalCollection.WORKFLOWS.value
CONFIGS = model.GlobalCollection.WORKFLOW_CONFIGS.value
STATUSES = model.GlobalCollection.WORKFLOW_STATUSES.value

#: List filters of ``GET /workflows``.
FILTERS: dict[str, type] = {"_key": str, "name": str, "user": str, "description": str,
                            "is_archived": bool}

_SYSTEM = ("_key", "_id", "_rev", "_oldRev")


def initial_status() -> dict[str, Any]:
    """The status document of a new workflow (behavior doc §1.3)."""
    return {
        "run_id": 0,
        "is_canceled": False,
        "scheduled_compute_node_ids": [],
        "auto_tune_status": {"enabled": False, "job_keys": []},
    }


def create_workflow(store: GraphStore, body: Mapping[str, Any],
                    owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``POST /workflows``: validate, fill the timestamp, create config and status.

    ``owner``: the record of the authenticated principal creating it
    (:func:`torc_graph.engine.tokens.owner_record`; None without authentication).
    A custom ``_key`` is allowed; a taken one is InvalidInput (400, as the original).
    Atomic: ``store.create_workflow`` writes the three documents, their edges and the owner
    record together, so no acknowledged (or crash-surviving) workflow lacks its owner.
    """
    doc = validation.validate("workflow", body)
    if not doc.get("timestamp"):
        doc["timestamp"] = now_iso()
    for name in ("_id", "_rev", "_oldRev"):
        doc.pop(name, None)
    config = validation.validate("workflow_config", {})
    key = doc.get("_key")
    if key is not None and store.workflow_exists(key):
        raise InvalidInput(f"a workflow with key={key} already exists")
    try:
        return store.create_workflow(doc, config, initial_status(), owner=owner).workflow
    except UniqueConstraintViolated:
        raise InvalidInput(f"a workflow with key={key} already exists") from None


def list_workflows(store: GraphStore, listing: Listing = Listing()) -> bytes:
    """``GET /workflows``: envelope with filters and paging (sort_by over the whole result)."""
    return page(store, WORKFLOWS, None, listing, schema="workflow", allowed_filters=FILTERS)


def get_workflow(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``GET /workflows/{wf}``. Raises NotFound (404)."""
    try:
        return store.get(WORKFLOWS, None, workflow)
    except (NotFound, InvalidInput):
        raise NotFound(_missing(workflow)) from None


def modify_workflow(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``PUT /workflows/{wf}``: 400 if the body's ``_key`` differs (checked first), 400 if
    ``_rev`` is missing, 409 if stale, 404 if missing; merge; returns the stored document."""
    require_workflow(store, workflow)
    doc = validation.validate("workflow", body)
    check_body_key(doc, workflow)
    rev = require_rev(doc)
    patch = {k: v for k, v in doc.items() if k not in _SYSTEM}
    with store.transaction(workflow):
        return update_checked(store, WORKFLOWS, None, workflow, patch, rev, "workflow")


def delete_workflow(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``DELETE /workflows/{wf}``: everything the workflow owns; returns the document as it
    was. Raises NotFound (404)."""
    require_workflow(store, workflow)
    try:
        deleted = store.delete_workflow(workflow)
    except NotFound:
        raise NotFound(_missing(workflow)) from None
    # Not in the same transaction (ArangoDB drops collections outside one); a task left by a
    # crash in between names a missing workflow, which reads as 404 like a deleted one.
    tasks.delete_tasks_of(store, workflow)
    return deleted


def get_config(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/config``."""
    return _space(store, workflow).config


def get_status(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/status``."""
    return _space(store, workflow).status


def modify_config(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``PUT /workflows/{wf}/config``: validate with defaults, merge, 409 on a stale ``_rev``
    (when given); 400 if the body's ``_key`` is not this workflow's config."""
    return _modify_global(store, workflow, body, "workflow_config", CONFIGS, "config")


def modify_status(store: GraphStore, workflow: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``PUT /workflows/{wf}/status``: as :func:`modify_config` for the status document."""
    return _modify_global(store, workflow, body, "workflow_status", STATUSES, "status")


def collection_names(store: GraphStore, workflow: str) -> dict[str, list[str]]:
    """``GET /workflows/{wf}/collection_names``: the 24 names, in torc's order."""
    require_workflow(store, workflow)
    return {"names": [model.collection_name(n, workflow) for n in model.COLLECTION_NAMES_ORDER]}


def _modify_global(store: GraphStore, workflow: str, body: Mapping[str, Any], schema: str,
                   collection: str, attr: str) -> dict[str, Any]:
    require_workflow(store, workflow)
    doc = validation.validate(schema, body)
    patch = {k: v for k, v in doc.items() if k not in _SYSTEM}
    with store.transaction(workflow):
        current = getattr(_space(store, workflow), attr)
        body_key = doc.get("_key")
        if body_key is not None and body_key != current["_key"]:
            raise InvalidInput(
                f"key={body_key} is not the {attr} of workflow {workflow} "
                f"(its key is {current['_key']})"
            )
        what = "workflow_" + attr
        return update_checked(store, collection, None, current["_key"], patch,
                              doc.get("_rev"), what)


def _space(store: GraphStore, workflow: str):
    try:
        return store.workflow_space(workflow)
    except (NotFound, InvalidInput):
        raise NotFound(_missing(workflow)) from None


def _missing(workflow: str) -> str:
    return f"Error: Document not found. Operation: Get workflow with key={workflow}"
