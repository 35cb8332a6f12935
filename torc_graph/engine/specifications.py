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

Fixes relative to torc v0.6.4: no orphan workflow on error; ``blocked_by`` may name any job of
the specification (the original resolved names against jobs inserted so far, so only earlier
ones); a job's ``key`` is honored; duplicate names are reported as such. Kept: identical files,
schedulers and resource requirements are de-duplicated (one document), user data is not.

``GET /workflow_specifications/{key}`` and the ``job_specifications`` endpoints (which always
failed with 500 in the original) rebuild job specifications from the edges, set-based.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torc_graph import model, spec as spec_formats, units, validation
from torc_graph.engine import integrity, tasks, workflows
from torc_graph.engine.common import clamp_limit, count_param, envelope, require_workflow
from torc_graph.engine.queries import get_job
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.spec import handlers
from torc_graph.store.base import GraphStore
from torc_graph.store.records import Document

_C, _E = model.Collection, model.Edge
_DB_KEYS = ("_key", "_id", "_rev", "_oldRev")
SCHEDULER_TYPES = tuple(c.value for c in model.SCHEDULER_COLLECTIONS)
_SCHEDULER_REF = re.compile(r"^(aws_schedulers|local_schedulers|slurm_schedulers)/(.+)$", re.S)
#: A job may name this resource-requirements entry without defining it: it means "no
#: ``requires`` edge" (what GET /workflow_specifications reports for such jobs).
DEFAULT_RR_NAME = "default"

#: Job specification relation fields rebuilt from edges: field -> (edge, direction from job).
_JOB_RELATIONS: tuple[tuple[str, model.Edge, str], ...] = (
    ("blocked_by", _E.BLOCKS, "in"),
    ("input_files", _E.NEEDS, "out"),
    ("output_files", _E.PRODUCES, "out"),
    ("input_user_data", _E.CONSUMES, "out"),
    ("output_user_data", _E.STORES, "out"),
    ("resource_requirements", _E.REQUIRES, "out"),
    ("scheduler", _E.SCHEDULED_BYS, "out"),
)


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
# Checking a specification (pure Python, before any write)
# ----------------------------------------------------------------------------------------------


def _label(kind: str, index: int, entry: Mapping[str, Any]) -> str:
    name = entry.get("name")
    return f'{kind}[{index}] ({json.dumps(name, ensure_ascii=False)})' if name else f"{kind}[{index}]"


def _quoted(name: Any) -> str:
    return json.dumps(name, ensure_ascii=False)


@dataclass
class _Pool:
    """De-duplicated documents of one collection, with a name index.

    ``docs`` are the documents to insert; ``slot_of_name`` maps a name to its index in
    ``docs``; identical content (ignoring db keys) shares one slot when ``dedupe`` is set.
    """

    kind: str
    dedupe: bool
    docs: list[dict[str, Any]] = field(default_factory=list)
    slot_of_name: dict[str, int] = field(default_factory=dict)
    _first_index_of_name: dict[str, int] = field(default_factory=dict)
    _slot_of_content: dict[Any, int] = field(default_factory=dict)

    def add(self, index: int, entry: Mapping[str, Any]) -> None:
        doc = {k: v for k, v in entry.items() if k not in _DB_KEYS}
        name = doc.get("name")
        slot = None
        if self.dedupe:
            content = _content_key(doc)
            slot = self._slot_of_content.get(content)
            if slot is None:
                self._slot_of_content[content] = len(self.docs)
        if name is not None and name in self.slot_of_name and self.slot_of_name[name] != slot:
            first = self._first_index_of_name[name]
            raise InvalidInput(
                f"{_label(self.kind, index, doc)}: duplicate name; {self.kind}[{first}] has the "
                f"same name {_quoted(name)} (names must be unique within {self.kind})"
            )
        if slot is None:
            slot = len(self.docs)
            self.docs.append(doc)
        if name is not None and name not in self.slot_of_name:
            self.slot_of_name[name] = slot
            self._first_index_of_name[name] = index


def _content_key(doc: Mapping[str, Any]) -> Any:
    """A hashable key equal for documents with the same content (type-strict: ``1``, ``1.0``
    and ``True`` differ). Flat documents (files, schedulers, resource requirements) use a tuple,
    which is much cheaper than JSON text."""
    key = tuple(sorted((k, type(v).__name__, v) for k, v in doc.items()))
    try:
        hash(key)
        return key
    except TypeError:  # an unhashable (nested) value
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))


@dataclass
class _JobPlan:
    doc: dict[str, Any]
    # relation field -> list of target references: (pool kind, slot) or ("jobs", job index)
    refs: dict[str, list[tuple[str, int]]]


@dataclass
class Plan:
    """A checked specification: documents to insert and edges to create, by slot."""

    workflow: dict[str, Any]
    config: dict[str, Any]
    pools: dict[str, _Pool]
    jobs: list[_JobPlan]


def plan_pools(spec: Mapping[str, Any]) -> dict[str, _Pool]:
    """The de-duplicated files, schedulers, resource requirements and user data of a validated
    specification, by collection. Raises InvalidInput for a duplicate name or a bad memory or
    runtime string."""
    pools: dict[str, _Pool] = {}

    def pool(kind: str, entries: Iterable[Mapping[str, Any]], dedupe: bool) -> _Pool:
        p = _Pool(kind, dedupe)
        for i, entry in enumerate(entries):
            p.add(i, entry)
        pools[kind] = p
        return p

    pool(_C.FILES.value, spec.get("files") or (), True)
    schedulers = spec.get("schedulers") or {}
    for kind in SCHEDULER_TYPES:
        pool(kind, schedulers.get(kind) or (), True)
    pool(_C.RESOURCE_REQUIREMENTS.value, spec.get("resource_requirements") or (), True)
    for i, rr in enumerate(spec.get("resource_requirements") or ()):
        for fname, parse in (("memory", units.memory_bytes), ("runtime", units.duration_seconds)):
            if fname in rr:
                try:
                    parse(rr[fname])
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"{_label('resource_requirements', i, rr)}: {exc.message}"
                    ) from None
    pool(_C.USER_DATA.value, spec.get("user_data") or (), False)
    return pools


@dataclass
class JobNames:
    """Job names and custom keys of a specification, by job index (duplicates refused)."""

    index: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)

    def add(self, i: int, job: Mapping[str, Any]) -> None:
        """Record job ``i``. Raises InvalidInput for a duplicate name, an invalid or a
        duplicate key."""
        name = job.get("name")
        if name is not None:
            if name in self.index:
                raise InvalidInput(
                    f"{_label('jobs', i, job)}: duplicate name; jobs[{self.index[name]}] has the "
                    f"same name {_quoted(name)} (job names must be unique)"
                )
            self.index[name] = i
        key = job.get("key", job.get("_key"))
        if key is not None:
            if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
                raise InvalidInput(f"{_label('jobs', i, job)}: invalid key {_quoted(key)}")
            if key in self.keys:
                raise InvalidInput(
                    f"{_label('jobs', i, job)}: duplicate key {_quoted(key)}; "
                    f"jobs[{self.keys[key]}] has the same key"
                )
            self.keys[key] = i


class JobPlanner:
    """Plans one job at a time against the pools and the job names (:func:`plan_job`)."""

    def __init__(self, pools: dict[str, _Pool], names: JobNames, config: Mapping[str, Any]):
        self.pools, self.names = pools, names
        handlers.check_references(config, list(names.index), pools["slurm_schedulers"].slot_of_name)
        self.handler_names = handlers.handler_names(config)
        self.internal = validation.validate("job", {"command": ""})["internal"]
        files, user_data = pools[_C.FILES.value], pools[_C.USER_DATA.value]
        self.named = {
            "input_files": (files, "file"),
            "output_files": (files, "file"),
            "input_user_data": (user_data, "user data"),
            "output_user_data": (user_data, "user data"),
        }

    def plan(self, i: int, job: Mapping[str, Any]) -> _JobPlan:
        """The document and references of validated job ``i``. Raises InvalidInput naming the
        job for a reference to an unknown file, user data, resource requirements, scheduler,
        failure handler or job, or a job blocked by itself."""
        pools, job_index = self.pools, self.names.index
        rrs = pools[_C.RESOURCE_REQUIREMENTS.value]
        label = _label("jobs", i, job)
        refs: dict[str, list[tuple[str, int]]] = {}
        for fname, (p, what) in self.named.items():
            targets = []
            for ref in _unique(job.get(fname) or ()):
                slot = p.slot_of_name.get(ref)
                if slot is None:
                    raise InvalidInput(f"{label}: {fname} references unknown {what} {_quoted(ref)}")
                targets.append((p.kind, slot))
            refs[fname] = targets
        blockers = []
        for ref in _unique(job.get("blocked_by") or ()):
            j = job_index.get(ref)
            if j is None:
                raise InvalidInput(f"{label}: blocked_by references unknown job {_quoted(ref)}")
            if j == i:
                raise InvalidInput(f"{label}: blocked_by names the job itself")
            blockers.append(("jobs", j))
        refs["blocked_by"] = blockers
        rr_name = job.get("resource_requirements")
        refs["resource_requirements"] = []
        if rr_name is not None:
            slot = rrs.slot_of_name.get(rr_name)
            if slot is not None:
                refs["resource_requirements"] = [(rrs.kind, slot)]
            elif rr_name != DEFAULT_RR_NAME:
                raise InvalidInput(
                    f"{label}: resource_requirements references unknown resource requirements "
                    f"{_quoted(rr_name)}"
                )
        refs["scheduler"] = []
        scheduler = job.get("scheduler")
        if scheduler:
            refs["scheduler"] = [_scheduler_ref(pools, scheduler, label, "scheduler")]
        doc: dict[str, Any] = {}
        for fname in ("name", "command", "invocation_script", "failure_handler"):
            if job.get(fname) is not None:
                doc[fname] = job[fname]
        if job.get("failure_handler") is not None and job["failure_handler"] not in self.handler_names:
            raise InvalidInput(f"{label}: failure_handler references unknown failure handler "
                               f"{_quoted(job['failure_handler'])}")
        doc["cancel_on_blocking_job_failure"] = job.get("cancel_on_blocking_job_failure", True)
        doc["supports_termination"] = job.get("supports_termination", False)
        params = job.get("schedule_compute_nodes")
        if params is not None:
            doc["schedule_compute_nodes"] = dict(params)
            sched = params.get("scheduler_id")
            if isinstance(sched, str):
                m = _SCHEDULER_REF.match(sched)
                if m and m.group(2) in pools[m.group(1)].slot_of_name:
                    # Resolved to the scheduler's _id after insertion (see _write).
                    refs["schedule_compute_nodes"] = [(m.group(1), pools[m.group(1)].slot_of_name[m.group(2)])]
        doc["status"] = model.JobStatus.UNINITIALIZED.value
        doc["internal"] = dict(self.internal)
        key = job.get("key", job.get("_key"))
        if key is not None:
            doc["_key"] = key
        return _JobPlan(doc, refs)


def workflow_document(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The workflow document of a validated specification. Raises InvalidInput for an invalid
    workflow key."""
    wf_doc = {k: spec[k] for k in ("name", "user", "description", "is_archived") if k in spec}
    key = spec.get("key", spec.get("_key"))
    if key is not None:
        if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
            raise InvalidInput(f"invalid workflow key {_quoted(key)}")
        wf_doc["_key"] = key
    return wf_doc


def spec_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The config of a validated specification, without database keys."""
    return {k: v for k, v in (spec.get("config") or {}).items() if k not in _DB_KEYS}


def plan_specification(spec: Mapping[str, Any]) -> Plan:
    """Check a validated specification and plan its documents and edges.

    Raises InvalidInput naming the first wrong entry: a duplicate name or job key, a bad memory
    or runtime string, a reference to an unknown file, user data, resource requirements,
    scheduler or job, a malformed scheduler reference, or a ``blocked_by`` cycle.
    """
    pools = plan_pools(spec)
    job_specs = list(spec.get("jobs") or ())
    names = JobNames()
    for i, job in enumerate(job_specs):
        names.add(i, job)
    config = spec_config(spec)
    planner = JobPlanner(pools, names, config)
    jobs = [planner.plan(i, job) for i, job in enumerate(job_specs)]
    _check_cycles(job_specs, jobs)
    return Plan(workflow_document(spec), config, pools, jobs)


def _unique(names: Sequence[str]) -> Sequence[str]:
    """Names in first-seen order, each once (a repeated reference is one edge)."""
    return names if len(names) < 2 else list(dict.fromkeys(names))


def _scheduler_ref(pools: Mapping[str, _Pool], ref: Any, label: str, fname: str) -> tuple[str, int]:
    m = _SCHEDULER_REF.match(ref) if isinstance(ref, str) else None
    if m is None:
        raise InvalidInput(
            f"{label}: {fname} must be \"<aws|local|slurm>_schedulers/<name>\", got {_quoted(ref)}"
        )
    kind, name = m.group(1), m.group(2)
    slot = pools[kind].slot_of_name.get(name)
    if slot is None:
        raise InvalidInput(f"{label}: {fname} references unknown {kind[:-1]} {_quoted(name)}")
    return kind, slot


def _check_cycles(job_specs: Sequence[Mapping[str, Any]], jobs: Sequence[_JobPlan]) -> None:
    """Raise InvalidInput if the ``blocked_by`` relation has a cycle (its jobs could never
    run). Kahn's algorithm: O(jobs + edges)."""
    n = len(jobs)
    indegree = [0] * n
    blocks: list[list[int]] = [[] for _ in range(n)]
    for i, plan in enumerate(jobs):
        for _kind, j in plan.refs["blocked_by"]:
            blocks[j].append(i)
            indegree[i] += 1
    ready = [i for i in range(n) if indegree[i] == 0]
    done = 0
    while ready:
        j = ready.pop()
        done += 1
        for i in blocks[j]:
            indegree[i] -= 1
            if indegree[i] == 0:
                ready.append(i)
    if done < n:
        i = next(i for i in range(n) if indegree[i] > 0)
        raise InvalidInput(
            f"{_label('jobs', i, job_specs[i])}: blocked_by forms a cycle; "
            "jobs in a cycle could never run"
        )


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
