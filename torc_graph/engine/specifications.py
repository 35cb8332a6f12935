"""Workflow specifications: a whole workflow as one JSON document (behavior doc §4.21-§4.24).

``POST /workflow_specifications`` turns a specification, whose references are *names*, into a
workflow: documents and edges. The whole specification is checked in Python first (every
reference, duplicate name, unit string and ``blocked_by`` cycle, with a message naming the
entry, e.g. ``jobs[3] ("postprocess"): input_files references unknown file "f9"``), then written
set-based (one ``insert_many`` per collection and per edge type, whatever the number of jobs)
in one transaction of a staged (invisible) workflow; a bad specification creates nothing, not
even the workflow, and a failed write deletes the new workflow again. The API streams large
bodies instead (:mod:`.staging`: the same checks, in chunks); this in-memory path serves the
bodies it cannot stream (e.g. the current-torc dialect) and direct engine callers.

The checks and the plan live in :mod:`.specification_plan`, the read-back endpoints in
:mod:`.specification_reads` (both re-exported here).

Fixes relative to torc v0.6.4: no orphan workflow on error; ``blocked_by`` may name any job of
the specification (the original resolved names against jobs inserted so far, so only earlier
ones); a job's ``key`` is honored; duplicate names are reported as such. Kept: identical files,
schedulers and resource requirements are de-duplicated (one document), user data is not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from torc_graph import model, spec as spec_formats, validation
from torc_graph.engine import integrity, tasks, workflows
from torc_graph.engine.specification_plan import (  # noqa: F401 (re-exported)
    _JOB_RELATIONS,
    DEFAULT_RR_NAME,
    SCHEDULER_TYPES,
    JobNames,
    JobPlanner,
    Plan,
    _JobPlan,
    _label,
    plan_pools,
    plan_specification,
    spec_config,
    workflow_document,
)
from torc_graph.engine.specification_reads import (  # noqa: F401 (re-exported)
    get_job_specification,
    get_workflow_specification,
    get_workflow_specification_example,
    get_workflow_specification_template,
    job_specifications,
    list_job_specifications,
)
from torc_graph.errors import InvalidInput
from torc_graph.store.base import GraphStore
from torc_graph.store.records import Document

_C = model.Collection


# ----------------------------------------------------------------------------------------------
# Writing a specification
# ----------------------------------------------------------------------------------------------


def add_workflow_specification(store: GraphStore, body: Mapping[str, Any],
                               owner: Mapping[str, Any] | None = None,
                               progress: tasks.Progress | None = None) -> Document:
    """``POST /workflow_specifications``: create the workflow described by ``body``.

    ``body`` has been validated against the ``workflow_specification`` schema (defaults filled;
    :func:`create_from_specification` validates a raw one). Everything is checked before the
    first write (:func:`plan_specification`), so a bad specification writes nothing. Then the
    workflow is created together with its ``owner`` record (one atomic store operation; see
    :func:`.workflows.create_workflow`) and every document, edge and the config
    are written in one ``transaction(workflow)`` with a constant number of store calls. If that
    transaction fails (e.g. a storage error), the new workflow is deleted again, so a failed
    POST leaves the database unchanged.

    Why two steps and not one transaction around both: the store protocol requires a
    transaction to name its workflow up front, and ArangoDB cannot create collections inside a
    stream transaction; creating first and compensating works on every backend.

    With ``progress`` (a background task, :mod:`.tasks`), the phases are reported, the new
    workflow's key is recorded in the task before the content is written, and the task is
    marked succeeded inside the content's transaction.

    Returns the workflow document. Raises InvalidInput (400), also for a dependency cycle
    (explicit, file- or user-data-derived; :mod:`.integrity`).
    """
    report = progress or (lambda phase, done, total: None)
    report("checking the specification", 1, 3)
    plan = plan_specification(body)
    key = plan.workflow.get("_key")
    if key is not None and store.workflow_exists(key):
        raise InvalidInput(f"a workflow with key={key} already exists")
    with store.staged_creation():  # invisible until published; removed on an exception
        created = workflows.create_workflow(store, plan.workflow, owner=owner)
        if progress is not None:
            progress.record(workflow=created["_key"])
        report(f"writing {len(plan.jobs):,} jobs", 2, 3)
        with store.transaction(created["_key"]):
            _write(store, created["_key"], plan)
            integrity.check_no_cycle(store, created["_key"])
    if progress is not None:  # after publishing (a task read after a crash here: .tasks)
        progress.succeed(created)
    return created


def create_from_specification(store: GraphStore, body: Any,
                              owner: Mapping[str, Any] | None = None) -> Document:
    """``POST /workflow_specifications``: create the workflow of a raw specification in either
    dialect (torc v0.6.4, or current torc: expanded and converted by
    :func:`torc_graph.spec.normalize`), validated with defaults filled; see
    :func:`add_workflow_specification`. Raises InvalidInput (400) naming the entry and field."""
    valid = validation.validate("workflow_specification", spec_formats.normalize(body))
    return add_workflow_specification(store, valid, owner=owner)


def create_action(store: GraphStore, body: Any, owner: Mapping[str, Any] | None = None,
                  **flags: bool) -> Any:
    """The ``POST /workflow_specifications`` route: with ``?async=true`` a background task
    (202; its ``result`` is the workflow document), else the workflow document.

    ``body`` is the spooled request body (:class:`.staging.SpooledSpec`, created in chunks,
    invisible until complete; the file is deleted when done) or a parsed specification
    (:func:`create_from_specification`)."""
    from torc_graph.engine import staging

    if not isinstance(body, staging.SpooledSpec):
        if not flags.get("async"):
            return create_from_specification(store, body, owner=owner)
        parsed = body
        body = None

    def run(progress: tasks.Progress | None = None) -> Document:
        try:
            if body is None:
                if progress is not None:
                    progress("reading the specification", 0, 3)
                valid = validation.validate("workflow_specification",
                                            spec_formats.normalize(parsed))
                return add_workflow_specification(store, valid, owner=owner, progress=progress)
            return staging.create(store, body, owner=owner, progress=progress)
        finally:
            if body is not None:
                body.discard()
    if not flags.get("async"):
        return run()
    try:
        return tasks.start(store, None, "create_workflow_from_specification", run)
    except BaseException:
        if body is not None:
            body.discard()
        raise


def _write(store: GraphStore, wf: str, plan: Plan) -> None:
    ids: dict[str, list[str]] = {}
    for kind, p in plan.pools.items():
        ids[kind] = [d["_id"] for d in store.insert_many(kind, wf, p.docs)] if p.docs else []

    # schedule_compute_nodes.scheduler_id written as "<type>_schedulers/<name>" becomes the _id.
    for job in plan.jobs:
        for kind, slot in job.refs.get("schedule_compute_nodes", ()):
            job.doc["schedule_compute_nodes"]["scheduler_id"] = ids[kind][slot]
    job_ids = (
        [d["_id"] for d in store.insert_many(_C.JOBS.value, wf, [j.doc for j in plan.jobs])]
        if plan.jobs
        else []
    )
    ids["jobs"] = job_ids

    edges: dict[str, list[dict[str, str]]] = defaultdict(list)
    for fname, edge, direction in _JOB_RELATIONS:
        for job_id, job in zip(job_ids, plan.jobs):
            for kind, slot in job.refs[fname]:
                other = ids[kind][slot]
                ends = (job_id, other) if direction == "out" else (other, job_id)
                edges[edge.value].append({"_from": ends[0], "_to": ends[1]})
    for edge, docs in edges.items():
        store.insert_many(edge, wf, docs)

    if plan.config:
        config = store.workflow_space(wf).config
        store.update(model.GlobalCollection.WORKFLOW_CONFIGS.value, None, config["_key"], plan.config)
