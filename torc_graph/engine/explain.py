""""Why is my job not running?": the reasons a job is where it is, as structured data.

:func:`explain` answers ``GET /workflows/{wf}/jobs/{key}/explain``: a list of reasons
``{"reason": code, "message": text, "details": {...}}``, most important first. Codes:

* trivial states: ``done``, ``failed`` (done, non-zero return code), ``running`` (node and
  since when), ``ready`` (waiting for a worker), ``disabled``, ``terminated``, ``uninitialized``,
  ``canceled`` (with the failed blockers that caused it, or the workflow's cancellation);
* ``blocked``: the chain of unfinished blockers (explicit ``blocks`` edges, which
  ``initialize_jobs`` also derives from files and user data), walked upward level by level up
  to the first blockers that can run (ready, running) or have failed;
* ``missing_input_file``: a needed file no job produces that was never recorded as existing
  (``required_existing_files`` semantics; the server cannot see the disk, ``workflows start``
  records each existing file's ``st_mtime``);
* ``missing_user_data``: consumed user data expected to exist but empty
  (``missing_user_data`` semantics);
* ``no_active_node`` / ``no_node_fits``: no active compute node, or none whose resources cover
  the job's ``internal`` requirements (details: the largest active node);
* ``no_allocation``: the job is bound to a scheduler that has no live allocation
  (``scheduled_compute_nodes`` in ``uninitialized``/``pending``/``active``);
* ``held_by_dead_node``: claimed by a node whose lease expired (or a claim whose own lease
  expired); the next lease sweep requeues it (docs/execution-model.md §5).

Store calls are bounded by a constant: the chain walk is one ``neighbors`` call per level, at
most :data:`MAX_DEPTH` levels and :data:`MAX_CHAIN_JOBS` jobs, whatever the workflow's size.
Reads only.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from typing import Any

from torc_graph import model
from torc_graph.engine import leases
from torc_graph.engine.common import now_ms
from torc_graph.engine.queries import get_job
from torc_graph.errors import BadRequest
from torc_graph.model import Collection, Edge, JobStatus
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import In
from torc_graph.store.records import Document
from torc_graph.units import GiB, duration_seconds

JOBS = Collection.JOBS.value
#: Levels of blockers the chain walk climbs at most.
MAX_DEPTH = 50
#: Unfinished blockers the chain walk collects at most.
MAX_CHAIN_JOBS = 1000
#: Allocation statuses that may still run a worker (torc_graph.slurm.allocations).
LIVE_ALLOCATION_STATUSES = ("uninitialized", "pending", "active")
RUNNING = (JobStatus.SUBMITTED_PENDING.value, JobStatus.SUBMITTED.value)
WAITING = model.CLAIMABLE_STATUSES
#: Statuses in which a job still waits for something (checks on inputs and resources apply).
NOT_STARTED = (JobStatus.UNINITIALIZED.value, JobStatus.BLOCKED.value) + WAITING


def reason(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"reason": code, "message": message, "details": details}


def iso(ms: Any) -> str | None:
    """Epoch milliseconds as an ISO-8601 UTC timestamp (None stays None)."""
    if not isinstance(ms, (int, float)):
        return None
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).isoformat(timespec="seconds")


def latest_results(store: GraphStore, workflow: str, keys: Iterable[str]) -> dict[str, Document]:
    """The latest result of each job (one set-based read; the last stored wins)."""
    keys = list(keys)
    if not keys:
        return {}
    out: dict[str, Document] = {}
    for r in store.find(Collection.RESULTS.value, workflow, {"job_key": In(keys)}):
        out[r["job_key"]] = r
    return out


def has_failed(job: Mapping[str, Any], latest: Mapping[str, Any] | None) -> bool:
    """Terminated, canceled, or done with a non-zero latest return code."""
    status = job.get("status")
    if status in (JobStatus.TERMINATED.value, JobStatus.CANCELED.value):
        return True
    return status == JobStatus.DONE.value and latest is not None and latest.get("return_code") != 0


def brief(job: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": job["_key"], "name": job.get("name"), "status": job.get("status")}


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def explain(store: GraphStore, workflow: str, key: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/jobs/{key}/explain``: ``{"job": {key, name, status}, "reasons":
    [...]}`` (see the module docstring). Raises NotFound for a missing workflow or job."""
    job = get_job(store, workflow, key)
    now = now_ms()
    status = job.get("status")
    reasons: list[dict[str, Any]] = []
    context = _Context(store, workflow, now)
    if status == JobStatus.DONE.value:
        reasons.append(_done(job, context.results([key]).get(key)))
    elif status in RUNNING:
        reasons.append(_running(job, context))
    elif status == JobStatus.DISABLED.value:
        reasons.append(reason("disabled", f"job {key} is disabled: it never runs"))
    elif status == JobStatus.TERMINATED.value:
        last = (job.get("execution") or {}).get("last_cause")
        reasons.append(reason("terminated", f"job {key} was terminated"
                              + (f" (last cause: {last})" if last else ""), last_cause=last))
    elif status == JobStatus.CANCELED.value:
        canceled = store.workflow_space(workflow).status.get("is_canceled")
        reasons.append(_canceled(job, context, bool(canceled)))
    else:
        if status == JobStatus.UNINITIALIZED.value:
            reasons.append(reason("uninitialized", f"job {key} is not initialized: start the "
                                  "workflow (or initialize its jobs)"))
        elif status == JobStatus.BLOCKED.value:
            reasons.append(_blocked(job, context))
        else:
            reasons.append(reason("ready", f"job {key} is {status} and waits for a worker to "
                                  "claim it"))
        reasons.extend(missing_inputs([job], context)[key])
        reasons.extend(context.placement(job))
    return {"job": brief(job), "reasons": reasons}


class _Context:
    """Reads shared by the checks, each done at most once (compute nodes, allocations)."""

    def __init__(self, store: GraphStore, workflow: str, now: int):
        self.store, self.workflow, self.now = store, workflow, now
        self._nodes: list[Document] | None = None
        self._allocations: list[Document] | None = None

    def results(self, keys: Iterable[str]) -> dict[str, Document]:
        return latest_results(self.store, self.workflow, keys)

    def active_nodes(self) -> list[Document]:
        if self._nodes is None:
            nodes = self.store.find(Collection.COMPUTE_NODES.value, self.workflow,
                                    {"is_active": True})
            self._nodes = [n for n in nodes if leases.is_live(n, self.now)]
        return self._nodes

    def live_allocations(self) -> list[Document]:
        if self._allocations is None:
            self._allocations = self.store.find(
                Collection.SCHEDULED_COMPUTE_NODES.value, self.workflow,
                {"status": In(LIVE_ALLOCATION_STATUSES)})
        return self._allocations

    def placement(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``no_allocation``, ``no_active_node`` or ``no_node_fits`` for a job not started."""
        internal = job.get("internal") or {}
        scheduler = internal.get("scheduler_config_id") or ""
        out = []
        if scheduler and not any(a.get("scheduler_config_id") == scheduler
                                 for a in self.live_allocations()):
            out.append(reason(
                "no_allocation",
                f"job {job['_key']} is bound to scheduler {scheduler}, which has no pending or "
                "active allocation: submit one (e.g. torc-graph slurm schedule-nodes)",
                scheduler_config_id=scheduler))
        if "num_cpus" not in internal:
            return out  # not initialized: no requirements to compare yet
        nodes = self.active_nodes()
        if not nodes:
            out.append(reason("no_active_node", "no compute node of this workflow is active: "
                              "start a worker (torc-graph run, jobs run or an allocation)"))
            return out
        if not any(fits(internal, n.get("resources") or {}) for n in nodes):
            largest = max(nodes, key=lambda n: _size(n.get("resources") or {}))
            required = {f: internal.get(f) for f in
                        ("num_cpus", "memory_bytes", "num_gpus", "num_nodes", "runtime_seconds")}
            res = largest.get("resources") or {}
            out.append(reason(
                "no_node_fits",
                f"no active compute node can run job {job['_key']}: it needs "
                f"{_describe(required)}; the largest active node ({largest.get('hostname')}) "
                f"has {res.get('num_cpus')} CPUs, {res.get('memory_gb')} GB, "
                f"{res.get('num_gpus', 0)} GPUs, {res.get('num_nodes', 1)} node(s), "
                f"time limit {res.get('time_limit') or 'none'}",
                required=required, active_nodes=len(nodes),
                largest_node={"key": largest["_key"], "hostname": largest.get("hostname"),
                              "resources": res}))
        return out


def fits(internal: Mapping[str, Any], res: Mapping[str, Any]) -> bool:
    """Whether a node with resources ``res`` could ever run a job with these requirements:
    the resource comparisons of ``prepare_jobs_for_submission`` (the scheduler binding is
    ``no_allocation``'s concern). A time limit that does not parse does not exclude the node."""
    limit = res.get("time_limit")
    try:
        runtime_ok = limit is None or internal.get("runtime_seconds", 0) <= duration_seconds(limit)
    except BadRequest:
        runtime_ok = True
    return (runtime_ok
            and internal.get("num_cpus", 1) <= (res.get("num_cpus") or 0)
            and internal.get("memory_bytes", 0) <= (res.get("memory_gb") or 0) * GiB
            and internal.get("num_gpus", 0) <= (res.get("num_gpus") or 0)
            and internal.get("num_nodes", 1) <= (res.get("num_nodes") or 1))


def _size(res: Mapping[str, Any]) -> tuple:
    return (res.get("num_nodes") or 1, res.get("num_cpus") or 0, res.get("memory_gb") or 0,
            res.get("num_gpus") or 0)


def _describe(required: Mapping[str, Any]) -> str:
    mem = required.get("memory_bytes") or 0
    return (f"{required.get('num_cpus')} CPUs, {round(mem / GiB, 3)} GB, "
            f"{required.get('num_gpus')} GPUs, {required.get('num_nodes')} node(s), "
            f"runtime {required.get('runtime_seconds')} s")


# --------------------------------------------------------------------------------------------
# Trivial states
# --------------------------------------------------------------------------------------------


def _done(job: Mapping[str, Any], latest: Mapping[str, Any] | None) -> dict[str, Any]:
    rc = None if latest is None else latest.get("return_code")
    if has_failed(job, latest):
        return reason("failed", f"job {job['_key']} finished and failed with return code {rc}",
                      return_code=rc, cause=(latest or {}).get("cause"))
    return reason("done", f"job {job['_key']} is done" + ("" if rc is None else
                  f" (return code {rc})"), return_code=rc)


def _running(job: Mapping[str, Any], ctx: _Context) -> dict[str, Any]:
    ex = leases.execution(job)
    node_key, since = ex["compute_node"], ex["claimed_at"]
    node = None
    if node_key is not None:
        found = ctx.store.find(Collection.COMPUTE_NODES.value, ctx.workflow, {"_key": node_key})
        node = found[0] if found else None
    own = ex["lease_expires"]
    details = {"compute_node": node_key, "hostname": (node or {}).get("hostname"),
               "since": since, "since_iso": iso(since), "attempt_id": ex["attempt_id"]}
    if node is not None and not leases.is_live(node, ctx.now):
        expired = (node.get("lease") or {}).get("expires")
        why = (f"whose lease expired at {iso(expired)}: the next lease sweep requeues the job"
               if expired is not None and expired < ctx.now else
               "which is inactive (its worker stopped): the job is requeued when its own "
               "lease expires, or by `workflows sync` / `jobs reset`")
        return reason(
            "held_by_dead_node",
            f"job {job['_key']} is held by compute node {node_key} ({node.get('hostname')}), "
            + why, lease_expires=expired, **details)
    if own is not None and own < ctx.now:
        return reason(
            "held_by_dead_node",
            f"job {job['_key']} was claimed at {iso(since)} and its lease expired at "
            f"{iso(own)} without a completion: the next lease sweep requeues it",
            lease_expires=own, **details)
    where = f"on compute node {node_key} ({details['hostname']})" if node_key else \
        "by a worker that has not started it yet"
    return reason("running", f"job {job['_key']} is {job['status']} {where} since "
                  f"{iso(since)}", **details)


def _canceled(job: Mapping[str, Any], ctx: _Context, workflow_canceled: bool) -> dict[str, Any]:
    blockers = [h.vertex for h in ctx.store.neighbors(ctx.workflow, Edge.BLOCKS.value, "in",
                                                      [job["_id"]]) if h.vertex is not None]
    latest = ctx.results(b["_key"] for b in blockers)
    failed = [{**brief(b), "return_code": (latest.get(b["_key"]) or {}).get("return_code")}
              for b in blockers if has_failed(b, latest.get(b["_key"]))]
    if failed:
        names = ", ".join(f"{f['key']} ({f['name']}, {f['status']}, return code "
                          f"{f['return_code']})" for f in failed)
        return reason("canceled", f"job {job['_key']} was canceled because blocker(s) failed: "
                      f"{names}", failed_blockers=failed, workflow_canceled=workflow_canceled)
    why = "the workflow was canceled" if workflow_canceled else "it was canceled"
    return reason("canceled", f"job {job['_key']} is canceled: {why}", failed_blockers=[],
                  workflow_canceled=workflow_canceled)


# --------------------------------------------------------------------------------------------
# Blockers
# --------------------------------------------------------------------------------------------


def _blocked(job: Mapping[str, Any], ctx: _Context) -> dict[str, Any]:
    """The chain of unfinished blockers, breadth-first upward, one ``neighbors`` call per
    level (at most :data:`MAX_DEPTH` levels, :data:`MAX_CHAIN_JOBS` jobs); it climbs only
    through blockers that are themselves ``blocked``. The ends are the blockers that can run,
    run, have failed, are disabled or wait for initialization."""
    chain: dict[str, dict[str, Any]] = {}
    ends: dict[str, Document] = {}
    done: dict[str, tuple[Document, list[str], int]] = {}
    frontier, truncated = [job["_id"]], False
    for depth in range(1, MAX_DEPTH + 1):
        hops = ctx.store.neighbors(ctx.workflow, Edge.BLOCKS.value, "in", frontier)
        frontier = []
        for hop in hops:
            b, child = hop.vertex, model.split_id(hop.start_id)[2]
            if b is None:
                continue
            key = b["_key"]
            if key in chain:
                chain[key]["blocks"].append(child)
            elif b.get("status") == JobStatus.DONE.value:
                done.setdefault(key, (b, [], depth))[1].append(child)
            elif len(chain) >= MAX_CHAIN_JOBS:
                truncated = True
            else:
                chain[key] = {**brief(b), "depth": depth, "blocks": [child]}
                if b.get("status") == JobStatus.BLOCKED.value:
                    frontier.append(b["_id"])
                else:
                    ends[key] = b
        if not frontier:
            break
    truncated = truncated or bool(frontier)
    # A done blocker is finished unless it failed: only failed ones join the chain.
    latest = ctx.results(done)
    for key, (b, children, depth) in done.items():
        if has_failed(b, latest.get(key)):
            chain[key] = {**brief(b), "depth": depth, "blocks": children}
            ends[key] = b
    out_ends = [{**brief(b), "state": _state(b, latest.get(k))} for k, b in ends.items()]
    waiting = [ends[e["key"]] for e in out_ends if e["state"] in ("waiting", "uninitialized")]
    inputs = missing_inputs(waiting, ctx)
    for end in out_ends:
        if end["key"] in inputs:
            end["reasons"] = inputs[end["key"]] + ctx.placement(ends[end["key"]])
    shown = "; ".join(f"{e['key']} ({e['name']}) {_STATE_TEXT[e['state']]}"
                      for e in out_ends[:10])
    more = f" and {len(out_ends) - 10} more" if len(out_ends) > 10 else ""
    message = (f"job {job['_key']} is blocked by {len(chain)} unfinished job(s)"
               + (f"; the chain ends at {shown}{more}" if out_ends else "")
               + (" (chain truncated)" if truncated else ""))
    return reason("blocked", message, chain=list(chain.values()), ends=out_ends,
                  truncated=truncated)


_STATE_TEXT = {"failed": "has failed", "running": "is running",
               "waiting": "can run: waiting for a worker", "disabled": "is disabled",
               "uninitialized": "is not initialized"}


def _state(job: Mapping[str, Any], latest: Mapping[str, Any] | None) -> str:
    status = job.get("status")
    if has_failed(job, latest):
        return "failed"
    if status in RUNNING:
        return "running"
    if status in (JobStatus.DISABLED.value, JobStatus.UNINITIALIZED.value):
        return status
    return "waiting"


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def missing_inputs(jobs: list[Mapping[str, Any]], ctx: _Context) -> dict[str, list[dict]]:
    """``missing_input_file`` and ``missing_user_data`` reasons of each job, by job key: four
    set-based neighbor reads for all the jobs together."""
    store, wf = ctx.store, ctx.workflow
    out: dict[str, list[dict[str, Any]]] = {j["_key"]: [] for j in jobs}
    ids = [j["_id"] for j in jobs]
    if not ids:
        return out
    needs = [h for h in store.neighbors(wf, Edge.NEEDS.value, "out", ids) if h.vertex]
    if needs:
        produced = {h.start_id for h in store.neighbors(
            wf, Edge.PRODUCES.value, "in", list({h.vertex["_id"] for h in needs}))}
        for hop in needs:
            f, key = hop.vertex, model.split_id(hop.start_id)[2]
            if f["_id"] not in produced and f.get("st_mtime") is None:
                out[key].append(reason(
                    "missing_input_file",
                    f"job {key} needs file {f['_key']} ({f.get('path')}), which no job "
                    "produces and which was not recorded as existing (workflows start records "
                    "each existing input file)",
                    file={"key": f["_key"], "name": f.get("name"), "path": f.get("path")}))
    consumes = [h for h in store.neighbors(wf, Edge.CONSUMES.value, "out", ids) if h.vertex]
    if consumes:
        producers = {h.start_id: h.vertex for h in store.neighbors(
            wf, Edge.STORES.value, "in", list({h.vertex["_id"] for h in consumes}))}
        for hop in consumes:
            d, key = hop.vertex, model.split_id(hop.start_id)[2]
            producer = producers.get(d["_id"], False)
            expected = producer is False or (producer is not None and producer.get("status")
                                             == JobStatus.DONE.value)
            if expected and d.get("data") == {}:
                out[key].append(reason(
                    "missing_user_data",
                    f"job {key} consumes user data {d['_key']} ({d.get('name')}), which is "
                    "empty" + ("" if producer is False else
                               f" although its producer {producer['_key']} is done"),
                    user_data={"key": d["_key"], "name": d.get("name")}))
    return out
