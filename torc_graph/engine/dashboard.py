"""What the web dashboard shows: workflow list, per-workflow summary, stage drill-down.

The answers are specified in docs/dashboard.md §3. Everything is read with a constant number
of set-based store calls per request, whatever the workflow's size: job keys, names and
statuses, the latest result of each job and the ``blocks`` edges come as projections
(:meth:`~torc_graph.store.base.GraphStore.values`, no document decoded), and only the few
documents shown in full (failures, running jobs, allocations, one page of a stage) are read
whole. A 10^5-job workflow's summary is a few hundred milliseconds on SQLite.

Large workflows (more than :data:`STAGE_THRESHOLD` jobs) are aggregated by **stage**: a job's
name with its numeric/parameter suffix collapsed (:func:`stage_of`).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from torc_graph import model
from torc_graph.engine.common import require_workflow
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store.base import Document, GraphStore, In

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

#: Workflows with at most this many jobs are drawn job by job; larger ones by stage.
STAGE_THRESHOLD = 300
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

# The first digit and the separator before it: ``sim_a1_b2`` -> ``sim_``; ``step3`` -> none.
_SUFFIX = re.compile(r"^([^\d]*[_\-.])?[^\d_\-.]*\d")


def stage_of(name: Any) -> str:
    """A job name's stage: from the first name part (split on ``_ - .``) that contains a
    digit on, everything is ``*``: ``work_17`` -> ``work_*``, ``sim_a1_b2`` -> ``sim_*``,
    ``train_0.01`` -> ``train_*``, ``step3`` -> ``step*``; a name without digits is its own
    stage."""
    name = "" if name is None else str(name)
    m = _SUFFIX.match(name)
    if m is None:
        return name
    return (m.group(1) or name[:m.end() - 1]) + "*"


def _status_counts(statuses: Iterable[str], failed: int) -> dict[str, int]:
    counts = dict(Counter(s for s in statuses if s is not None))
    counts[FAILED] = failed
    return counts


def _is_complete(counts: Mapping[str, int]) -> bool:
    return all(n == 0 for s, n in counts.items()
               if s != FAILED and s not in model.FINISHED_STATUSES)


def _latest_results(store: GraphStore, workflow: str) -> dict[str, tuple]:
    """job key -> ``(return_code, completion_time, cause, run_id)`` of its latest result."""
    rows = store.values(RESULTS, workflow, ("job_key", "return_code", "completion_time",
                                            "cause", "run_id"))
    return {r[0]: r[1:] for r in rows}


def _has_failed(status: str, latest: tuple | None) -> bool:
    """Failed for display: done with a non-zero return code, or terminated."""
    if status == TERMINATED:
        return True
    return status == DONE and latest is not None and latest[0] not in (0, None)


# ----------------------------------------------------------------------------------------------
# The workflow list
# ----------------------------------------------------------------------------------------------


def workflows(store: GraphStore) -> dict[str, Any]:
    """``GET /dashboard/workflows``: every workflow, newest first, with its job counts."""
    items = []
    for wf in reversed(store.find(WORKFLOWS, None)):
        key = wf["_key"]
        jobs = store.values(JOBS, key, ("_key", "status"))
        statuses = [s for _, s in jobs]
        failed = 0
        if DONE in statuses or TERMINATED in statuses:
            latest = _latest_results(store, key)
            failed = sum(1 for k, s in jobs if _has_failed(s, latest.get(k)))
        counts = _status_counts(statuses, failed)
        items.append({"key": key, "name": wf.get("name"), "user": wf.get("user"),
                      "timestamp": wf.get("timestamp"), "total": len(jobs), "counts": counts,
                      "is_complete": _is_complete(counts)})
    return {"items": items}


# ----------------------------------------------------------------------------------------------
# The summary
# ----------------------------------------------------------------------------------------------


def summary(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/dashboard/summary`` (docs/dashboard.md §3). Raises NotFound."""
    require_workflow(store, workflow)
    space = store.workflow_space(workflow)
    jobs = store.values(JOBS, workflow, ("_key", "name", "status"))
    latest = _latest_results(store, workflow)
    failed_keys = {k for k, _, s in jobs if _has_failed(s, latest.get(k))}
    counts = _status_counts((s for _, _, s in jobs), len(failed_keys))
    aggregated = len(jobs) > STAGE_THRESHOLD
    stage = {k: (stage_of(n) if aggregated else k) for k, n, _ in jobs}
    wf = space.workflow
    return {
        "workflow": {"key": wf["_key"], "name": wf.get("name"), "user": wf.get("user"),
                     "description": wf.get("description")},
        "total": len(jobs),
        "counts": counts,
        "is_complete": _is_complete(counts),
        "aggregated": aggregated,
        "stages": _stages(jobs, stage, failed_keys, aggregated),
        "stage_edges": _stage_edges(store, workflow, stage),
        "progress": _progress(jobs, latest),
        "failures": _failures(store, workflow, jobs, latest, failed_keys),
        **_running(store, workflow),
        "allocations": _allocations(store, workflow),
        "last_event_id": _last_event_id(store, workflow),
    }


def _stages(jobs: list[tuple], stage: Mapping[str, str], failed: set[str],
            aggregated: bool) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, name, status in jobs:
        s = stage[key]
        entry = out.get(s)
        if entry is None:
            entry = out[s] = {"stage": s, "total": 0, "counts": Counter()}
            if not aggregated:
                entry.update(key=key, name=name)
        entry["total"] += 1
        entry["counts"][status] += 1
        if key in failed:
            entry["counts"][FAILED] += 1
    for entry in out.values():
        counts = dict(entry["counts"])
        counts.setdefault(FAILED, 0)
        entry["counts"] = counts
    return list(out.values())


def _stage_edges(store: GraphStore, workflow: str, stage: Mapping[str, str]
                 ) -> list[dict[str, Any]]:
    counter: Counter[tuple[str, str]] = Counter()
    for frm, to in store.values(BLOCKS, workflow, ("_from", "_to")):
        a = stage.get(frm.rpartition("/")[2])
        b = stage.get(to.rpartition("/")[2])
        if a is not None and b is not None:
            counter[(a, b)] += 1
    return [{"from": a, "to": b, "count": n} for (a, b), n in counter.items()]


def _epoch(value: Any) -> float | None:
    """An ISO 8601 time (naive = this machine's local time) or epoch number as epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    if isinstance(value, str) and value:
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _progress(jobs: list[tuple], latest: Mapping[str, tuple]) -> list[dict[str, Any]]:
    """Cumulative finished jobs over time, at most :data:`MAX_PROGRESS_POINTS` points."""
    finished = []
    for key, _, status in jobs:
        res = latest.get(key)
        if status in model.COMPLETE_STATUSES and res is not None:
            t = _epoch(res[1])
            if t is not None:
                finished.append((t, res[0] not in (0, None) or status == TERMINATED))
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


def _failures(store: GraphStore, workflow: str, jobs: list[tuple],
              latest: Mapping[str, tuple], failed: set[str]) -> list[dict[str, Any]]:
    names = {k: n for k, n, _ in jobs if k in failed}
    recent = sorted(names, key=lambda k: (_epoch((latest.get(k) or (None, None))[1]) or 0.0,
                                          int(k) if k.isdigit() else 0), reverse=True)
    recent = recent[:MAX_FAILURES]
    dirs = _output_dirs(store, workflow, recent)
    out = []
    for key in recent:
        rc, completion, cause, run_id = latest.get(key) or (None, None, None, None)
        out.append({"key": key, "name": names[key], "return_code": rc, "cause": cause,
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
    total = store.count(EVENTS, workflow)
    if total == 0:
        return None
    last = store.values(EVENTS, workflow, ("_key",), None)[-1:] if total <= 1000 else \
        [(d["_key"],) for d in store.find(EVENTS, workflow, skip=total - 1, limit=1)]
    return last[0][0] if last else None


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
    jobs = store.values(JOBS, workflow, ("_key", "name", "status"))
    aggregated = len(jobs) > STAGE_THRESHOLD
    members = [j for j in jobs if (stage_of(j[1]) if aggregated else j[0]) == stage]
    if not members:
        raise NotFound(f"workflow {workflow} has no stage {stage!r}")
    latest: dict[str, tuple] = {}
    if status in (FAILED, DONE, TERMINATED):
        latest = _latest_results(store, workflow)
        if status == FAILED:
            members = [j for j in members if _has_failed(j[2], latest.get(j[0]))]
    if status is not None and status != FAILED:
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
