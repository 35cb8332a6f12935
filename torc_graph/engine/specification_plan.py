"""The plan of a workflow specification: every check, before any write (behavior doc §4.21).

A validated specification (references are *names*) is checked in pure Python (every reference,
duplicate name or key, unit string and ``blocked_by`` cycle, with a message naming the entry,
e.g. ``jobs[3] ("postprocess"): input_files references unknown file "f9"``) and turned into a
:class:`Plan`: the documents to insert and the edges to create, by slot. Identical files,
schedulers and resource requirements are de-duplicated (one document), user data is not.
Used by the in-memory write (:mod:`.specifications`) and the streamed one (:mod:`.staging`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torc_graph import model, units, validation
from torc_graph.errors import InvalidInput
from torc_graph.spec import handlers

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
# Checking a specification (pure Python, before any write)
# ----------------------------------------------------------------------------------------------


def _label(kind: str, index: int, entry: Mapping[str, Any]) -> str:
    name = entry.get("name")
    return f'{kind}[{index}] ({json.dumps(name, ensure_ascii=False)})' if name else f"{kind}[{index}]"


class _JobLabel:
    """``_label("jobs", i, job)``, built only when a message is (every job is planned, few
    fail: building each label cost ~2 % of a streamed creation)."""

    __slots__ = ("index", "job")

    def __init__(self, index: int, job: Mapping[str, Any]) -> None:
        self.index, self.job = index, job

    def __str__(self) -> str:
        return _label("jobs", self.index, self.job)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


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
        label = _JobLabel(i, job)
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


def _scheduler_ref(pools: Mapping[str, _Pool], ref: Any, label: object, fname: str) -> tuple[str, int]:
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
