"""Specifications read back: the example, the template, and a stored workflow or its jobs as
specifications (behavior doc §4.23-§4.24).

``GET /workflow_specifications/{key}`` and the ``job_specifications`` endpoints (which always
failed with 500 in the original) rebuild job specifications from the edges, set-based.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from torc_graph import model, validation
from torc_graph.engine.common import clamp_limit, count_param, envelope, require_workflow
from torc_graph.engine.queries import get_job
from torc_graph.engine.specification_plan import _JOB_RELATIONS, DEFAULT_RR_NAME, SCHEDULER_TYPES
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store.base import GraphStore
from torc_graph.store.records import Document

_C = model.Collection


# ----------------------------------------------------------------------------------------------
# Static specifications
# ----------------------------------------------------------------------------------------------


def get_workflow_specification_example(store: GraphStore | None = None) -> dict[str, Any]:
    """The fixed example specification (behavior doc §4.24); not stored anywhere."""
    return {
        "files": [
            {"name": "work_script", "path": "my_script.sh"},
            {"name": "postprocess_script", "path": "postprocess.sh"},
            {"name": "f1", "path": "dir/f1.json"},
            {"name": "f2", "path": "dir/f2.json"},
            {"name": "f3", "path": "dir/f3.json"},
        ],
        "resource_requirements": [
            {"name": "small", "num_cpus": 1, "memory": "10g", "runtime": "P0DT1H"},
            {"name": "medium", "num_cpus": 8, "memory": "30g", "runtime": "P0DT4H"},
        ],
        "jobs": [
            {
                "name": "work",
                "command": "bash my_script.sh -i f1.json -o f2.json",
                "input_files": ["work_script", "f1"],
                "output_files": ["f2"],
                "resource_requirements": "medium",
            },
            {
                "name": "postprocess",
                "command": "bash postprocess.sh -i f2.json -o f3.json",
                "input_files": ["postprocess_script", "f2"],
                "output_files": ["f3"],
                "resource_requirements": "small",
            },
        ],
    }


def get_workflow_specification_template(store: GraphStore | None = None) -> dict[str, Any]:
    """The empty specification with the default config (behavior doc §4.24)."""
    return {
        "name": "",
        "description": "",
        "user": "",
        "files": [],
        "jobs": [],
        "resource_requirements": [],
        "schedulers": {name: [] for name in SCHEDULER_TYPES},
        "config": validation.validate("workflow_config", {}),
    }


# ----------------------------------------------------------------------------------------------
# Reading specifications back
# ----------------------------------------------------------------------------------------------


def _name(doc: Document) -> str:
    name = doc.get("name")
    return name if isinstance(name, str) and name != "" else doc["_key"]


def job_specifications(store: GraphStore, wf: str, jobs: Sequence[Document], *,
                       all_jobs: bool = False) -> list[dict[str, Any]]:
    """Job specifications (references as names) for ``jobs``, built from one ``neighbors``
    call per edge type (over every edge when ``all_jobs``, else from these jobs)."""
    start_ids = None if all_jobs else [j["_id"] for j in jobs]
    related: dict[str, dict[str, list[Document]]] = {}
    for fname, edge, direction in _JOB_RELATIONS:
        by_job: dict[str, list[Document]] = defaultdict(list)
        if jobs:
            for hop in store.neighbors(wf, edge.value, direction, start_ids):
                if hop.vertex is None:
                    continue
                job_id = hop.edge["_from"] if direction == "out" else hop.edge["_to"]
                by_job[job_id].append(hop.vertex)
        related[fname] = by_job
    out = []
    for job in jobs:
        jid = job["_id"]
        spec: dict[str, Any] = {
            # A job posted without a name is named by its key, as references to it are (the
            # spec must be a valid string and postable again; issue 10 item 7).
            "name": _name(job),
            "command": job.get("command"),
        }
        for fname in ("invocation_script", "failure_handler"):
            if job.get(fname) is not None:
                spec[fname] = job[fname]
        spec["cancel_on_blocking_job_failure"] = job.get("cancel_on_blocking_job_failure", True)
        spec["supports_termination"] = job.get("supports_termination", False)
        for fname in ("blocked_by", "input_files", "output_files", "input_user_data",
                      "output_user_data"):
            spec[fname] = [_name(v) for v in related[fname].get(jid, ())]
        if job.get("schedule_compute_nodes") is not None:
            spec["schedule_compute_nodes"] = job["schedule_compute_nodes"]
        rr = related["resource_requirements"].get(jid)
        spec["resource_requirements"] = _name(rr[0]) if rr else DEFAULT_RR_NAME
        sched = related["scheduler"].get(jid)
        if sched:
            base = model.split_id(sched[0]["_id"])[0]
            spec["scheduler"] = f"{base}/{_name(sched[0])}"
        else:
            spec["scheduler"] = ""
        out.append(spec)
    return out


def get_workflow_specification(store: GraphStore, key: str) -> dict[str, Any]:
    """``GET /workflow_specifications/{key}``: the workflow as a specification (behavior doc
    §4.23): the workflow fields, the full config, every file, resource requirements, scheduler
    and user-data document, and one job specification per job. Raises NotFound."""
    try:
        space = store.workflow_space(key)
    except (NotFound, InvalidInput):
        raise NotFound(f"Error: Document not found. Operation: Get workflow with key={key}") from None
    wf = space.workflow
    jobs = list(store.iter_find(_C.JOBS.value, key))
    return {
        "name": wf.get("name"),
        "description": wf.get("description"),
        "user": wf.get("user"),
        "is_archived": wf.get("is_archived"),
        "config": space.config,
        "files": list(store.iter_find(_C.FILES.value, key)),
        "jobs": job_specifications(store, key, jobs, all_jobs=True),
        "resource_requirements": list(store.iter_find(_C.RESOURCE_REQUIREMENTS.value, key)),
        "schedulers": {kind: list(store.iter_find(kind, key)) for kind in SCHEDULER_TYPES},
        "user_data": list(store.iter_find(_C.USER_DATA.value, key)),
    }


def list_job_specifications(store: GraphStore, workflow: str, skip: Any = 0,
                            limit: Any = None) -> dict[str, Any]:
    """``GET /workflows/{wf}/job_specifications``: job specifications in storage order, as an
    envelope with working skip/limit. Raises NotFound for a missing workflow."""
    skip = count_param("skip", skip, 0)
    limit = clamp_limit(count_param("limit", limit))
    require_workflow(store, workflow)
    page = store.page(_C.JOBS.value, workflow, skip=skip, limit=limit)
    every = skip == 0 and len(page.items) == page.total
    return envelope(job_specifications(store, workflow, page.items, all_jobs=every), skip, page.total)


def get_job_specification(store: GraphStore, workflow: str, key: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/job_specifications/{key}``. Raises NotFound (404) for a missing
    workflow or job."""
    job = get_job(store, workflow, key)
    return job_specifications(store, workflow, [job])[0]
