"""Streamed creation of a workflow specification: bounded memory, short transactions, invisible
until complete.

``POST /workflow_specifications`` spools its body to a file (:class:`SpooledSpec`); this module
reads it with an incremental JSON parser (``ijson``), never holding the list of jobs:

1. **skeleton**: everything but ``jobs`` (files, user data, resource requirements, schedulers,
   config, names) is parsed, validated and planned (:func:`.specifications.plan_pools`);
2. **names**: one pass over the jobs records their names and custom keys (references may point
   forward: a job's ``blocked_by`` may name a job defined later);
3. **write**: a second pass validates and plans each job (the same checks and messages as
   :func:`.specifications.plan_specification`) and writes chunks of :data:`CHUNK` jobs with
   their edges, each chunk in its own transaction through ``store.insert_encoded`` (each
   document encoded once, before the transaction), inside ``store.staged_creation()``: the
   workflow is invisible (404, absent from listings) until the block publishes it, and removed
   if anything fails (a bad job found late, a cycle, a storage error). ``blocked_by`` edges
   to later jobs are kept as index pairs and written at the end; the cycle check runs on
   compact arrays of job indexes.

Memory: the skeleton, one chunk of jobs, a name → index map and a few integers per job and
per ``blocked_by`` edge. A body this reader cannot stream exactly like the in-memory path (not
an object, the current-torc dialect, non-finite numbers, lone surrogates, nesting deeper than
:data:`~torc_graph.json_limits.MAX_DEPTH`, malformed JSON) is handed to the in-memory path
(:func:`.specifications.create_from_specification`), which gives the same result or the same
error message as before.
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ijson

from torc_graph import collector, json_codec, json_limits, model, validation
from torc_graph import spec as spec_formats
from torc_graph.engine import integrity, specifications as specs, tasks, workflows
from torc_graph.errors import InvalidInput
from torc_graph.store.base import GraphStore
from torc_graph.store.records import Document

_C = model.Collection
#: Jobs per chunk: one transaction writes this many jobs and their edges, holding the write
#: lock meanwhile (other workflows' claims wait). Measured (scripts/spec_lock.py, 4*10^4 jobs,
#: three rounds, load 4-5): 1,000 hold it 0.14 s (median; max 0.24-0.32 s), 1,500 0.19-0.23 s,
#: 2,500 0.39-0.45 s, for the same CPU time within noise (4.2-4.8, 4.1-4.7, 3.9-4.7 s).
CHUNK = 1_000
_JOBS = object()  # the skeleton's placeholder for the streamed ``jobs`` array
#: Fields of a v0.6.4 job specification (a job with others may be of the current dialect).
_V064_JOB = validation.fields("job_specification")


class _NotStreamable(Exception):
    """The body must take the in-memory path (which reports its exact error, if any)."""


@dataclass
class SpooledSpec:
    """A request body spooled to a file: ``path`` is read by the streamed path, ``load()``
    parses the whole body with the API's parser (exact error messages) for the in-memory
    path."""

    path: str
    load: Callable[[], Any]

    def discard(self) -> None:
        """Delete the file (idempotent)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def create(store: GraphStore, body: SpooledSpec, owner: Mapping[str, Any] | None = None,
           progress: tasks.Progress | None = None) -> Document:
    """Create the workflow of a spooled specification (see the module docstring).

    Returns the workflow document. Raises InvalidInput (400) naming the problem; nothing stays
    visible or stored after any error. Python's cyclic garbage collector is paused meanwhile
    (nothing here builds cycles; its collections walk every live container: 10^5 jobs took
    17 % more CPU with it on, measured side by side at load 4)."""
    with collector.paused():
        return _create(store, body, owner, progress)


def _create(store: GraphStore, body: SpooledSpec, owner: Mapping[str, Any] | None,
            progress: tasks.Progress | None) -> Document:
    report = progress or (lambda phase, done, total: None)
    report("reading the specification", 0, None)
    try:
        skeleton = _skeleton(body.path)
        if skeleton.get("jobs", _JOBS) is not _JOBS:
            raise _NotStreamable
        top = {k: v for k, v in skeleton.items() if k != "jobs"}
        if spec_formats.dialect(top) != spec_formats.V064:
            raise _NotStreamable
    except (_NotStreamable, InvalidInput, ijson.JSONError):
        return _in_memory(store, body, owner, progress)
    valid = validation.validate("workflow_specification", {**top, "jobs": []})
    pools = specs.plan_pools(valid)
    try:
        names, count = _names(body.path)
    except (_NotStreamable, ijson.JSONError):
        return _in_memory(store, body, owner, progress)
    config = specs.spec_config(valid)
    planner = specs.JobPlanner(pools, names, config)
    wf_doc = specs.workflow_document(valid)
    key = wf_doc.get("_key")
    if key is not None and store.workflow_exists(key):
        raise InvalidInput(f"a workflow with key={key} already exists")
    with store.staged_creation():
        created = workflows.create_workflow(store, wf_doc, owner=owner)
        wf = created["_key"]
        if progress is not None:
            progress.record(workflow=wf)
        _Writer(store, wf, pools, planner, count, report).run(body.path)
        if config:
            store.update(model.GlobalCollection.WORKFLOW_CONFIGS.value, None,
                         store.workflow_space(wf).config["_key"], config)
    if progress is not None:  # after publishing (a task read after a crash here: .tasks)
        progress.succeed(created)
    return created


def _in_memory(store: GraphStore, body: SpooledSpec, owner: Mapping[str, Any] | None,
               progress: tasks.Progress | None) -> Document:
    valid = validation.validate("workflow_specification", spec_formats.normalize(body.load()))
    return specs.add_workflow_specification(store, valid, owner=owner, progress=progress)


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _surrogate_escapes(path: str) -> bool:
    """Whether the text holds a ``\\uD800``-``\\uDFFF`` escape (the incremental parser turns a
    lone one into ``?``; the API's parser refuses it with its message)."""
    tail = b""
    with open(path, "rb") as f:
        while piece := f.read(1 << 22):
            if json_limits.SURROGATE_ESCAPE.search(tail + piece):
                return True
            tail = piece[-5:]
    return False


def _skeleton(path: str) -> dict[str, Any]:
    """The top-level object with ``jobs`` replaced by :data:`_JOBS` when it is an array."""
    if _surrogate_escapes(path):
        raise _NotStreamable
    with open(path, "rb") as f:
        events = ijson.basic_parse(f, use_float=True)
        event, value = next(events, (None, None))
        if event != "start_map":
            raise _NotStreamable
        top: dict[str, Any] = {}
        for event, value in events:
            if event == "end_map":  # the top level's (each value is read to its end)
                break
            if event != "map_key":
                raise _NotStreamable
            name = value
            if name in top or "." in name:  # a repeated key (the last one counts), or one
                raise _NotStreamable        # the jobs' item prefix could mistake
            event, value = next(events)
            if name == "jobs" and event == "start_array":
                _value(event, value, events, keep=False)  # skipped: streamed later
                top[name] = _JOBS
            else:
                top[name] = _value(event, value, events)
        if next(events, None) is not None:
            raise _NotStreamable
    _check(top)
    return top


def _value(event: str, value: Any, events: Iterator[tuple[str, Any]],
           keep: bool = True) -> Any:
    """The JSON value whose first event is ``(event, value)``, read from ``events`` to its end
    (built when ``keep``, else skipped: None)."""
    if event not in ("start_map", "start_array"):
        return value
    builder = ijson.ObjectBuilder() if keep else None
    depth = 0
    while True:
        if builder is not None:
            builder.event(event, value)
        if event in ("start_map", "start_array"):
            depth += 1
        elif event in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                return None if builder is None else builder.value
        event, value = next(events)


def _jobs(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index, job)`` for each element of ``jobs`` (objects only)."""
    with open(path, "rb") as f:
        for i, job in enumerate(ijson.items(f, "jobs.item", use_float=True)):
            if not isinstance(job, dict):
                raise _NotStreamable
            yield i, job


def _names(path: str) -> tuple[specs.JobNames, int]:
    """The first pass over the jobs: their names and custom keys (duplicates refused, as the
    in-memory path does before any write), and their number. Raises _NotStreamable for a job
    of the current-torc dialect."""
    names, count = specs.JobNames(), 0
    for i, job in _jobs(path):
        _check(job)  # once: the write pass reads the same bytes
        if not job.keys() <= _V064_JOB or "${" in str(job.get("command", "")):
            try:  # the full test only for jobs that may be of the other dialect
                if spec_formats.dialect({"jobs": [job]}) != spec_formats.V064:
                    raise _NotStreamable
            except InvalidInput:
                raise _NotStreamable from None
        if not isinstance(job.get("name"), (str, type(None))) or not isinstance(
                job.get("key", job.get("_key")), (str, type(None))):
            _validate_job(i, job)
        names.add(i, job)
        count += 1
    return names, count


def _check(value: Any) -> None:
    """_NotStreamable for what the API's parser refuses: nesting deeper than
    :data:`~torc_graph.json_limits.MAX_DEPTH` (its message comes from the in-memory path). The
    incremental parser itself refuses non-finite numbers (JSONError); lone surrogates:
    :func:`_surrogate_escapes`."""
    try:
        json_limits.check_depth(value, surrogates=False)
    except InvalidInput:
        raise _NotStreamable from None


def _validate_job(i: int, job: Any) -> dict[str, Any]:
    """``job`` validated with defaults, the message naming ``jobs[i]`` as validating the whole
    specification does."""
    try:
        return validation.validate("job_specification", job)
    except InvalidInput:  # the message of the whole specification's validation
        try:
            validation.validate("workflow_specification", {"jobs": [job]})
        except InvalidInput as exc:
            raise InvalidInput(exc.message.replace("'jobs[0]", f"'jobs[{i}]", 1)) from None
        raise


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


class _Keys:
    """Job keys by index: 8 bytes per generated (numeric) key, a dict entry for the others."""

    def __init__(self) -> None:
        self.numbers = array("q")
        self.other: dict[int, str] = {}

    def append(self, key: str) -> None:
        if key.isdigit() and key.isascii() and key[0] != "0" and len(key) < 19:
            self.numbers.append(int(key))
        else:
            self.other[len(self.numbers)] = key
            self.numbers.append(-1)

    def extend(self, ids: list[str], prefix: int) -> None:
        """Append the keys of ``ids`` (each id's text after its first ``prefix`` characters)."""
        for job_id in ids:
            self.append(job_id[prefix:])

    def __getitem__(self, i: int) -> str:
        n = self.numbers[i]
        return self.other[i] if n < 0 else str(n)

    def __len__(self) -> int:
        return len(self.numbers)


class _Writer:
    """The write pass of :func:`create`: chunks of jobs with their edges."""

    def __init__(self, store: GraphStore, wf: str, pools: dict[str, Any],
                 planner: specs.JobPlanner, count: int, report: Callable[..., None]) -> None:
        self.store, self.wf, self.pools, self.planner = store, wf, pools, planner
        self.count, self.report = count, report
        self.ids: dict[str, list[str]] = {}
        self.keys = _Keys()
        self.blockers = array("l")  # pairs (blocker index, blocked index), every blocked_by
        self.later = array("l")  # the pairs whose blocker comes in a later chunk
        self.jobs_prefix = model.make_id(_C.JOBS.value, wf, "")
        self.planned = 0  # jobs validated and planned so far
        self.fast = _FastPlanner(planner)

    def run(self, path: str) -> None:
        with self.store.transaction(self.wf):
            for kind, p in self.pools.items():
                self.ids[kind] = ([d["_id"] for d in self.store.insert_many(kind, self.wf, p.docs)]
                                  if p.docs else [])
        raw: list[dict[str, Any]] = []
        for _i, job in _jobs(path):
            raw.append(job)
            if len(raw) >= CHUNK:
                self._write_chunk(self._plan(raw))
                raw = []
        if raw:
            self._write_chunk(self._plan(raw))
        self._check_cycles()
        self.report("writing dependencies on later jobs", self.count, self.count)
        for start in range(0, len(self.later), 2 * CHUNK):
            pairs = self.later[start:start + 2 * CHUNK]
            docs = [{"_from": self._job_id(pairs[k]), "_to": self._job_id(pairs[k + 1])}
                    for k in range(0, len(pairs), 2)]
            with self.store.transaction(self.wf):
                self.store.insert_encoded(model.Edge.BLOCKS.value, self.wf, docs,
                                          ["{}"] * len(docs))
                self.store.touch_staged(self.wf)
        # A read: no write lock (the workflow is invisible, nothing else writes to it).
        integrity.check_no_cycle(self.store, self.wf)

    def _plan(self, raw: list[dict[str, Any]]) -> list[tuple[int, specs._JobPlan]]:
        """The next jobs, validated (all of them first, as the in-memory path does) and
        planned, with their indexes in the specification: in one pass per job
        (:class:`_FastPlanner`) when every job of the chunk allows it, else by the exact path
        (which raises the first invalid job's message)."""
        start = self.planned
        fast = self.fast.plan
        planned = []
        for k, job in enumerate(raw):
            plan = fast(start + k, job)
            if plan is None:
                break
            planned.append((start + k, plan))
        else:
            self.planned += len(raw)
            return planned
        try:
            valid = validation.validate_many("job_specification", raw)
        except InvalidInput:  # the exact message of the first invalid job
            for k, job in enumerate(raw):
                _validate_job(start + k, job)
            raise
        self.planned += len(raw)
        return [(start + k, self.planner.plan(start + k, job)) for k, job in enumerate(valid)]

    def _job_id(self, i: int) -> str:
        return self.jobs_prefix + self.keys[i]

    def _write_chunk(self, chunk: list[tuple[int, specs._JobPlan]]) -> None:
        """Write one chunk's jobs and their edges in one transaction. Everything that does not
        need the chunk's job ids (reserved by the store inside the transaction) is done before
        it: each job document encoded once (:func:`~torc_graph.json_codec.dumps_each`, written
        through ``store.insert_encoded``) and each edge's ends (a known id, or the position of
        a job of this chunk). Raises InvalidInput or StoreError; atomic per chunk."""
        for _i, plan in chunk:
            for kind, slot in plan.refs.get("schedule_compute_nodes", ()):
                plan.doc["schedule_compute_nodes"]["scheduler_id"] = self.ids[kind][slot]
        docs = [p.doc for _i, p in chunk]
        texts = json_codec.dumps_each(docs)
        edges = self._chunk_edges(chunk)
        with self.store.transaction(self.wf):
            ids, _texts = self.store.insert_encoded(_C.JOBS.value, self.wf, docs, texts)
            for edge, (froms, tos) in edges.items():
                self.store.insert_encoded(edge, self.wf, [
                    {"_from": ids[f] if f.__class__ is int else f,
                     "_to": ids[t] if t.__class__ is int else t} for f, t in zip(froms, tos)],
                    ["{}"] * len(froms))
            self.store.touch_staged(self.wf)  # in the chunk's transaction: no commit of its own
        self.keys.extend(ids, len(self.jobs_prefix))
        self.report(f"writing {self.count:,} jobs", len(self.keys), self.count)

    def _chunk_edges(self, chunk: list[tuple[int, specs._JobPlan]]
                     ) -> dict[str, tuple[list[str | int], list[str | int]]]:
        """The edges of a chunk by edge collection, as the lists of their ``_from`` and ``_to``
        ends: an id, or (int) the position in the chunk of a job whose id is not known yet.
        Records every ``blocked_by`` pair (:attr:`blockers`) and holds back those whose blocker
        comes in a later chunk (:attr:`later`)."""
        first, end = chunk[0][0], chunk[-1][0] + 1  # the chunk's jobs: indexes first..end-1
        edges: dict[str, tuple[list[str | int], list[str | int]]] = {}
        for fname, edge, direction in specs._JOB_RELATIONS:
            froms: list[str | int] = []
            tos: list[str | int] = []
            for i, plan in chunk:
                for kind, slot in plan.refs[fname]:
                    if kind == "jobs":
                        self.blockers.extend((slot, i))
                        if slot >= end:
                            self.later.extend((slot, i))
                            continue
                        other = slot - first if slot >= first else self._job_id(slot)
                    else:
                        other = self.ids[kind][slot]
                    ends = (i - first, other) if direction == "out" else (other, i - first)
                    froms.append(ends[0])
                    tos.append(ends[1])
            if froms:
                edges[edge.value] = (froms, tos)
        return edges

    def _check_cycles(self) -> None:
        """Kahn's algorithm over the ``blocked_by`` pairs (compact arrays); raises InvalidInput
        with the in-memory path's message."""
        n, pairs = len(self.keys), self.blockers
        indegree = array("l", bytes(8 * n)) if n else array("l")
        outdegree = array("l", bytes(8 * (n + 1)))
        for k in range(0, len(pairs), 2):
            indegree[pairs[k + 1]] += 1
            outdegree[pairs[k] + 1] += 1
        start = outdegree  # prefix sums: the successors of j are targets[start[j]:start[j+1]]
        for j in range(n):
            start[j + 1] += start[j]
        fill = array("l", start)
        targets = array("l", bytes(8 * (len(pairs) // 2)))
        for k in range(0, len(pairs), 2):
            j = pairs[k]
            targets[fill[j]] = pairs[k + 1]
            fill[j] += 1
        del fill
        ready = [i for i in range(n) if indegree[i] == 0]
        while ready:
            j = ready.pop()
            for t in range(start[j], start[j + 1]):
                i = targets[t]
                indegree[i] -= 1
                if indegree[i] == 0:
                    ready.append(i)
        bad = next((i for i in range(n) if indegree[i] > 0), None)
        if bad is not None:
            name = next((nm for nm, j in self.planner.names.index.items() if j == bad), None)
            raise InvalidInput(
                f"{specs._label('jobs', bad, {'name': name})}: blocked_by forms a cycle; "
                "jobs in a cycle could never run"
            )


class _FastPlanner:
    """Validation of one job without the copies and defaults of a full validation, then
    :meth:`.specifications.JobPlanner.plan` of the job as it is (the plan reads the same values
    with or without the defaults filled; only ``schedule_compute_nodes`` has nested defaults,
    so such jobs take the exact path).

    :meth:`plan` gives exactly the plan of the validated job, or None when the job is of
    another form, fails a check or names something unknown: the caller then takes the exact
    path for the chunk (all of its jobs validated first), which raises the message. Each field
    is checked by the schema's compiled check, as :func:`.job_rows.build_jobs` does for
    ``bulk_jobs``."""

    #: Fields this pass takes; any other (or an unknown one) goes to the exact path.
    FIELDS = validation.fields("job_specification") - {"schedule_compute_nodes"}

    def __init__(self, planner: specs.JobPlanner) -> None:
        shape = validation.object_shape("job_specification")
        self.checks, self.required, self.planner = shape.properties, shape.required, planner

    def plan(self, i: int, job: Any) -> specs._JobPlan | None:
        """The plan of job ``i``, or None (see the class docstring)."""
        if type(job) is not dict or not job.keys() <= self.FIELDS:
            return None
        checks = self.checks
        try:
            for name in self.required:
                if name not in job:
                    return None
            for k, x in job.items():
                checks[k](x)
            return self.planner.plan(i, job)
        except (validation.Invalid, InvalidInput):
            return None
