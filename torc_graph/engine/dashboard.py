"""What the web dashboard shows: workflow list, per-workflow summary, stage drill-down.

The answers are specified in docs/dashboard.md §3. Everything is read with a constant number
of set-based store calls per request, whatever the workflow's size: job keys, names and
statuses, the latest result of each job and the ``blocks`` edges come as projections
(:meth:`~torc_graph.store.base.GraphStore.values`, no document decoded), and only the few
documents shown in full (failures, running jobs, allocations, one page of a stage) are read
whole. The stage structure and the latest results are cached per process between refreshes
(:mod:`.stage_index`), so a refresh of a 10^5-job workflow reads only its job statuses and
the new results.

Large workflows (more than :data:`~.stage_index.STAGE_THRESHOLD` jobs) are aggregated by
**stage**: a job's name with its numeric/parameter suffix collapsed
(:func:`~.stage_index.stage_of`).
"""

from __future__ import annotations

import itertools
import os
import stat
from collections import Counter
from collections.abc import Mapping
from typing import Any

from torc_graph import model
from torc_graph.engine import stage_index
from torc_graph.engine.common import require_workflow
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import In
from torc_graph.store.records import Document

JOBS = model.Collection.JOBS.value
RESULTS = model.Collection.RESULTS.value
EVENTS = model.Collection.EVENTS.value
ALLOCATIONS = model.Collection.SCHEDULED_COMPUTE_NODES.value
NODES = model.Collection.COMPUTE_NODES.value
BLOCKS = model.Edge.BLOCKS.value
EXECUTED = model.Edge.EXECUTED.value
WORKFLOWS = model.GlobalCollection.WORKFLOWS.value
DONE = model.JobStatus.DONE.value
TERMINATED = model.JobStatus.TERMINATED.value
FAILED = "failed"
RUNNING_STATUSES = (model.JobStatus.SUBMITTED_PENDING.value, model.JobStatus.SUBMITTED.value)

MAX_PROGRESS_POINTS = 200
MAX_FAILURES = 50
MAX_RUNNING = 100
MAX_ALLOCATIONS = 100
MAX_STAGE_PAGE = 1000
#: Bytes of a failed job's stderr shown.
STDERR_TAIL_BYTES = 2048
#: Where the runner writes a job's stdio (torc_graph.runner.process.stdio_paths; the engine
#: may not import the runner, a test keeps the two in step).
JOB_STDIO_DIR = "job-stdio"

def _is_complete(counts: Mapping[str, int]) -> bool:
    return all(n == 0 for s, n in counts.items()
               if s != FAILED and s not in model.FINISHED_STATUSES)


#: A job without a result, as a :func:`_latest_results` entry.
_NO_RESULT = (None, None, None, None, None)


def _latest_results(store: GraphStore, workflow: str) -> dict[str, tuple]:
    """job key -> ``(return_code, completion_time, cause, run_id, completion epoch seconds)``
    of its latest result."""
    return stage_index.result_index(store, workflow).latest


def _has_failed(status: str, latest: tuple | None) -> bool:
    """Failed for display (docs/execution-model.md §1): done with a non-zero return code."""
    return status == DONE and latest is not None and latest[0] not in (0, None)


# ----------------------------------------------------------------------------------------------
# The workflow list
# ----------------------------------------------------------------------------------------------


def workflows(store: GraphStore) -> dict[str, Any]:
    """``GET /dashboard/workflows``: every workflow, newest first, with its job counts (one
    indexed count per status, and the failed ones from the cached latest results)."""
    items = []
    for wf in reversed(store.find(WORKFLOWS, None)):
        key = wf["_key"]
        counts = {s.value: n for s in model.JobStatus
                  if (n := store.count(JOBS, key, {"status": s.value}))}
        counts[FAILED] = 0
        if counts.get(DONE):
            latest = _latest_results(store, key)
            nonzero = [k for k, r in latest.items() if r[0] not in (0, None)]
            if nonzero:
                counts[FAILED] = store.count(JOBS, key, {"_key": In(nonzero), "status": DONE})
        items.append({"key": key, "name": wf.get("name"), "user": wf.get("user"),
                      "timestamp": wf.get("timestamp"),
                      "total": sum(n for s, n in counts.items() if s != FAILED),
                      "counts": counts, "is_complete": _is_complete(counts)})
    return {"items": items}


# ----------------------------------------------------------------------------------------------
# The summary
# ----------------------------------------------------------------------------------------------


def summary(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/dashboard/summary`` (docs/dashboard.md §3). Raises NotFound."""
    require_workflow(store, workflow)
    space = store.workflow_space(workflow)
    index, jobs = stage_index.snapshot(store, workflow)
    # Column lists and C-level counting: a refresh of 10^5 jobs costs tens of milliseconds
    # of Python.
    keys, statuses = (list(c) for c in zip(*jobs)) if jobs else ([], [])
    status_of = dict(jobs)
    latest = _latest_results(store, workflow)
    failed_keys = _failed(status_of, latest)
    per_stage = Counter(zip(map(index.stage_of_key.get, keys), statuses))
    counts: dict[str, int] = {}
    for (_, status), n in per_stage.items():
        if status is not None:
            counts[status] = counts.get(status, 0) + n
    counts[FAILED] = len(failed_keys)
    wf = space.workflow
    return {
        "workflow": {"key": wf["_key"], "name": wf.get("name"), "user": wf.get("user"),
                     "description": wf.get("description")},
        "total": len(jobs),
        "counts": counts,
        "is_complete": _is_complete(counts),
        "aggregated": index.aggregated,
        "stages": _stages(index, per_stage, failed_keys),
        "stage_edges": index.stage_edges,
        "progress": _progress(status_of, latest),
        "failures": _failures(store, workflow, index.names, latest, failed_keys | set(
            itertools.compress(keys, map(TERMINATED.__eq__, statuses)))),
        **_running(store, workflow),
        "allocations": _allocations(store, workflow),
        "last_event_id": _last_event_id(store, workflow),
    }


def _failed(status_of: Mapping[str, str], latest: Mapping[str, tuple]) -> set[str]:
    """Keys of the failed jobs: done with a non-zero latest return code."""
    return {k for k, r in latest.items() if r[0] not in (0, None) and status_of.get(k) == DONE}


def _stages(index: stage_index.StageIndex, per_stage: Counter, failed: set[str]
            ) -> list[dict[str, Any]]:
    """The index's stages with their counts from ``per_stage`` (``(stage index, status) ->
    jobs``; a job unknown to the index, inserted while the summary was read, has stage None
    and is left out until the next request)."""
    failed_per = Counter(map(index.stage_of_key.get, failed))
    out = [{**st, "total": 0, "counts": {}} for st in index.stages]
    for (i, status), n in per_stage.items():
        if i is not None and status is not None:
            out[i]["total"] += n
            out[i]["counts"][status] = n
    for i, entry in enumerate(out):
        entry["counts"][FAILED] = failed_per.get(i, 0)
    return out


def _progress(status_of: Mapping[str, str], latest: Mapping[str, tuple]
              ) -> list[dict[str, Any]]:
    """Cumulative finished jobs over time, at most :data:`MAX_PROGRESS_POINTS` points."""
    finished = []
    for key, res in latest.items():
        status = status_of.get(key)
        if status in model.COMPLETE_STATUSES and res[4] is not None:
            finished.append((res[4], res[0] not in (0, None) or status == TERMINATED))
    finished.sort()
    n = len(finished)
    if n == 0:
        return []
    step = max(1, -(-n // MAX_PROGRESS_POINTS))  # ceil
    points, done, failed = [], 0, 0
    for i, (t, is_failed) in enumerate(finished):
        if is_failed:
            failed += 1
        else:
            done += 1
        if (i + 1) % step == 0 or i == n - 1:
            points.append({"t": t, "done": done, "failed": failed})
    return points


def _failures(store: GraphStore, workflow: str, names: Mapping[str, Any],
              latest: Mapping[str, tuple], failed: set[str]) -> list[dict[str, Any]]:
    recent = sorted(failed, key=lambda k: ((latest.get(k) or _NO_RESULT)[4] or 0.0,
                                           int(k) if k.isdigit() else 0), reverse=True)
    recent = recent[:MAX_FAILURES]
    dirs = _output_dirs(store, workflow, recent)
    out = []
    for key in recent:
        rc, completion, cause, run_id, _ = latest.get(key) or _NO_RESULT
        out.append({"key": key, "name": names.get(key), "return_code": rc, "cause": cause,
                    "completion_time": completion,
                    "stderr_tail": _stderr_tail(dirs.get((key, run_id)), key, run_id)})
    return out


def _output_dirs(store: GraphStore, workflow: str, keys: list[str]) -> dict[tuple, str]:
    """(job key, run id) -> the output directory its compute node recorded (one call)."""
    if not keys:
        return {}
    ids = [model.make_id(JOBS, workflow, k) for k in keys]
    out: dict[tuple, str] = {}
    for hop in store.neighbors(workflow, EXECUTED, "in", ids):
        run_id = ((hop.edge.get("data") or {}).get("run_id"))
        node = hop.vertex or {}
        directory = (node.get("scheduler") or {}).get("output_dir")
        if isinstance(directory, str) and directory:
            out[(hop.start_id.rpartition("/")[2], run_id)] = directory
    return out


def _stderr_tail(directory: str | None, key: str, run_id: Any) -> str | None:
    """The last :data:`STDERR_TAIL_BYTES` of ``<directory>/job-stdio/<key>_<run_id>.e``, or
    None. Only a regular file, not a symbolic link, owned by the owner of its directory is
    read (a user who controls a compute node document cannot make the server show files
    that user could not read: links and hard links to other users' files are refused), and
    it is opened non-blocking (a FIFO cannot hang the request)."""
    if directory is None or not isinstance(run_id, int) or not model.KEY_PATTERN.match(key):
        return None
    parent = os.path.join(directory, JOB_STDIO_DIR)
    path = os.path.join(parent, f"{key}_{run_id}.e")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.stat(parent).st_uid \
                or st.st_nlink != 1:
            return None
        os.lseek(fd, max(0, st.st_size - STDERR_TAIL_BYTES), os.SEEK_SET)
        data = os.read(fd, STDERR_TAIL_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def _running(store: GraphStore, workflow: str) -> dict[str, Any]:
    where = {"status": In(RUNNING_STATUSES)}
    page = store.page(JOBS, workflow, where, limit=MAX_RUNNING,
                      order_by=[("execution.claimed_at", False)])
    node_keys = {(j.get("execution") or {}).get("compute_node") for j in page.items}
    node_keys.discard(None)
    nodes = {n["_key"]: n for n in store.find(NODES, workflow, {"_key": In(sorted(node_keys))})} \
        if node_keys else {}
    running = []
    for j in page.items:
        execution = j.get("execution") or {}
        node = nodes.get(execution.get("compute_node")) or {}
        running.append({"key": j["_key"], "name": j.get("name"), "status": j.get("status"),
                        "compute_node": execution.get("compute_node"),
                        "hostname": node.get("hostname"),
                        "start_time": execution.get("claimed_at")})
    return {"running": running, "running_total": page.total}


def _allocations(store: GraphStore, workflow: str) -> list[dict[str, Any]]:
    total = store.count(ALLOCATIONS, workflow)
    docs = store.find(ALLOCATIONS, workflow, skip=max(0, total - MAX_ALLOCATIONS))
    names: dict[str, Any] = {}
    out = []
    for d in reversed(docs):
        config = d.get("scheduler_config_id")
        kind = name = None
        if isinstance(config, str) and "/" in config:
            base = config.split("__", 1)[0]
            kind = base.removesuffix("_schedulers") or None
            if config not in names:
                names[config] = _scheduler_name(store, workflow, config)
            name = names[config]
        item = {k: v for k, v in d.items() if k not in ("_id", "_rev", "_key")}
        item.update(key=d["_key"], name=name, scheduler_type=kind,
                    status=d.get("status"), slurm_job_id=d.get("scheduler_id"))
        out.append(item)
    return out


def _scheduler_name(store: GraphStore, workflow: str, config_id: str) -> Any:
    try:
        base, wf, key = model.split_id(config_id)
    except ValueError:
        return None
    if wf != workflow or not model.is_collection(base):
        return None
    try:
        return store.get(base, workflow, key).get("name")
    except (NotFound, InvalidInput):
        return None


def _last_event_id(store: GraphStore, workflow: str) -> str | None:
    return stage_index.last_key(store, EVENTS, workflow, store.count(EVENTS, workflow))


# ----------------------------------------------------------------------------------------------
# Drill-down
# ----------------------------------------------------------------------------------------------


def stage_jobs(store: GraphStore, workflow: str, stage: str, *, skip: int = 0,
               limit: int = 100, status: str | None = None) -> dict[str, Any]:
    """``GET /workflows/{wf}/dashboard/stages/{stage}/jobs``: one page of a stage's jobs.

    Raises NotFound (workflow, or no job in that stage), InvalidInput (skip < 0, limit not in
    1..1000, unknown status)."""
    if skip < 0:
        raise InvalidInput("skip must be >= 0")
    if not 1 <= limit <= MAX_STAGE_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_STAGE_PAGE}")
    if status is not None and status != FAILED and status not in {s.value for s in
                                                                  model.JobStatus}:
        raise InvalidInput(f"unknown status {status!r}: one of "
                           f"{', '.join([s.value for s in model.JobStatus] + [FAILED])}")
    require_workflow(store, workflow)
    index, jobs = stage_index.snapshot(store, workflow)
    wanted = next((i for i, st in enumerate(index.stages) if st["stage"] == stage), None)
    if wanted is None:
        raise NotFound(f"workflow {workflow} has no stage {stage!r}")
    where = index.stage_of_key
    members = [(k, index.names.get(k), s) for k, s in jobs if where.get(k) == wanted]
    if status == FAILED:
        latest = _latest_results(store, workflow)
        members = [j for j in members if _has_failed(j[2], latest.get(j[0]))]
    elif status is not None:
        members = [j for j in members if j[2] == status]
    page = members[skip:skip + limit]
    keys = [k for k, _, _ in page]
    docs = {d["_key"]: d for d in store.find(JOBS, workflow, {"_key": In(keys)})} if keys else {}
    results: dict[str, Document] = {}
    if keys:
        for r in store.find(RESULTS, workflow, {"job_key": In(keys)}):
            results[r["job_key"]] = r  # insertion order: the last one is the latest
    items = []
    for key, name, st in page:
        doc = docs.get(key, {})
        res = results.get(key) or {}
        items.append({"key": key, "name": name, "status": st,
                      "return_code": res.get("return_code"), "cause": res.get("cause"),
                      "completion_time": res.get("completion_time"),
                      "compute_node": (doc.get("execution") or {}).get("compute_node")})
    return {"items": items, "total": len(members), "skip": skip, "limit": limit}
