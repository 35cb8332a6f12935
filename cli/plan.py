"""What ``torc-graph run`` does with a spec file: read and create it (errors are usage errors,
exit 2), find the workflow it already created (to resume it), and plan a run without changing
anything (``--dry-run``).

**Resume.** ``run SPEC`` records the spec's digest (SHA-256 of its canonical JSON) in a
``workflow/created_from_spec`` event of the workflow it creates; a later ``run`` of a spec with
the same name and the same digest resumes that workflow instead of creating another.

**Plan.** The dependency graph is computed by the server's own code: the spec (read from the file,
or read back from an existing workflow) is created and initialized in a throwaway embedded store
in a temporary directory, so implicit dependencies (files, user data) are exactly those a real
run gets. Then, job by job in dependency order: a job runs if it is not disabled, not already done
with unchanged inputs (resume), has its input files and user data, and every job it waits for
runs or is already done; otherwise the reason is given.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torc_graph.cli.errors import EXIT_USAGE, CliError, bare_message
from torc_graph.cli.outcomes import display_status, latest_results
from torc_graph.client import ApiError, Client, seg
from torc_graph.runner.workflow import SpecError, create_workflow, load_spec

SPEC_EVENT_TYPE = "created_from_spec"


def spec_digest(spec: Mapping[str, Any]) -> str:
    """SHA-256 of the spec's canonical JSON (key order and formatting do not matter), encoded
    piece by piece (a 10^6-job spec is not copied into one text)."""
    digest = hashlib.sha256()
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for piece in encoder.iterencode(spec):
        digest.update(piece.encode("utf-8"))
    return digest.hexdigest()


def record_spec(client: Client, wf: str, path: Path, digest: str) -> None:
    """Note on the workflow which spec file (and content) it was created from."""
    client.add_event(wf, {"category": "workflow", "type": SPEC_EVENT_TYPE,
                          "spec_digest": digest, "spec_path": str(path.absolute()),
                          "message": f"Created from {path}"})


def read_spec(path: Path) -> dict[str, Any]:
    """The spec in ``path``. Raises a usage error (exit 2) naming the problem."""
    try:
        return load_spec(path)
    except SpecError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def create_from_spec(client: Client, spec: dict[str, Any], path: Path, digest: str) -> str:
    """Create the workflow and note the spec it came from. An invalid spec is a usage error
    (exit 2) with the server's message, without the HTTP status when no server is involved."""
    try:
        wf = create_workflow(client, spec)
    except ApiError as exc:
        if exc.status != 400:
            raise
        suffix = "" if client.is_embedded else f" (HTTP {exc.status})"
        raise CliError(f"invalid specification {path}: {bare_message(exc.message)}{suffix}",
                       EXIT_USAGE) from None
    record_spec(client, wf, path, digest)
    return wf


def find_resumable(client: Client, spec: Mapping[str, Any], digest: str) -> str | None:
    """The newest non-archived workflow with the spec's name created from the same content,
    or None. An unnamed spec never matches (nothing tells its workflows apart)."""
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        return None
    candidates = [w["_key"] for w in client.iter_items("/workflows", name=name)
                  if not w.get("is_archived")]
    for wf in reversed(candidates):
        # The events list filters by category only: match the type and digest here.
        for event in client.iter_items(f"/workflows/{seg(wf)}/events", category="workflow"):
            if event.get("type") == SPEC_EVENT_TYPE and event.get("spec_digest") == digest:
                return wf
    return None


# ------------------------------------------------------------------------------------------
# Resume: which done jobs run again
# ------------------------------------------------------------------------------------------


def unfinished_business(client: Client, wf: str) -> dict[str, str]:
    """job key → why it runs again on a resume although it finished: failed (with its return
    code), canceled or terminated (the runner puts interrupted jobs back to ready itself).
    Reads only."""
    results = latest_results(client, wf)
    out = {}
    for status in ("done", "canceled", "terminated"):
        for job in client.iter_items(f"/workflows/{seg(wf)}/jobs", status=status):
            result = results.get(job["_key"])
            shown = display_status(job, result)
            if shown == "failed":
                out[job["_key"]] = f"failed (return code {result['return_code']})"
            elif shown != "done":
                out[job["_key"]] = shown
    return out


def changed_inputs(client: Client, wf: str, cwd: Path) -> dict[str, str]:
    """job key → why a done job would rerun on a resume by torc's change detection (the
    checks of :func:`torc_graph.runner.workflow.restart_workflow`, without writing): an
    input file changed on disk, an output file is missing, or its inputs changed in the
    database (``process_changed_job_inputs?dry_run=true``). Downstream jobs are not listed."""
    w = f"/workflows/{seg(wf)}"
    out: dict[str, str] = {}
    for doc in client.iter_items(f"{w}/files"):
        path = cwd / doc["path"]
        on_disk = path.stat().st_mtime if path.exists() else None
        if on_disk is not None and on_disk != doc.get("st_mtime"):
            for job in client.iter_items(f"{w}/jobs/find_by_needs_file/{seg(doc['_key'])}"):
                out.setdefault(job["_key"], f"input file {doc['path']} changed")
    for job in client.iter_items(f"{w}/jobs/find_by_status/done"):
        for f in client.iter_items(f"{w}/files/produced_by_job/{seg(job['_key'])}"):
            if not (cwd / f["path"]).exists():
                out.setdefault(job["_key"], f"output file {f['path']} is missing")
    changed = client.post(f"{w}/process_changed_job_inputs", dry_run=True)
    for key in changed.get("reinitialized_jobs", []):
        out.setdefault(str(key).rsplit("/", 1)[-1], "its inputs changed")
    return out


def reset_unfinished(client: Client, wf: str) -> list[str]:
    """Reset failed, canceled and terminated jobs (and, by the server's cascade, what follows
    them) to uninitialized so that a resume runs them again; return their keys."""
    keys = list(unfinished_business(client, wf))
    run_id = int(client.get_status(wf)["run_id"])
    for key in keys:
        job = client.get_job(wf, key)  # fresh revision: an earlier reset may have cascaded
        if job.get("status") in ("done", "canceled", "terminated"):
            client.put(f"/workflows/{seg(wf)}/jobs/{seg(key)}/manage_status_change/"
                       f"uninitialized/{seg(job['_rev'])}/{run_id}")
    return keys


# ------------------------------------------------------------------------------------------
# Dry run
# ------------------------------------------------------------------------------------------


@dataclass
class ResumeState:
    """For a resume, by job position: ``skipped`` (done, inputs unchanged) and ``rerun`` (why
    a finished job runs again)."""

    skipped: dict[int, str] = field(default_factory=dict)
    rerun: dict[int, str] = field(default_factory=dict)


@dataclass
class Plan:
    """``runs``: (step, job name, why) in run order (jobs of one step can run at once);
    ``skipped``: (job name, reason) for the jobs that would not run."""

    runs: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _graph(spec: Mapping[str, Any], cwd: Path, source: str) -> dict[str, Any]:
    """Jobs, blockers and missing inputs of ``spec``, from a throwaway embedded store.
    Raises CliError (exit 2) naming ``source`` for an invalid spec."""
    with tempfile.TemporaryDirectory(prefix="torc-graph-plan-") as tmp, \
            Client(database=f"sqlite:///{Path(tmp) / 'plan.db'}") as sim:
        try:
            wf = sim.add_workflow_specification(spec)["_key"]
        except ApiError as exc:
            if exc.status != 400:
                raise
            raise CliError(f"invalid specification {source}: {bare_message(exc.message)}",
                           EXIT_USAGE) from None
        sim.bump_run_id(wf)
        sim.initialize_jobs(wf)
        w = f"/workflows/{seg(wf)}"
        jobs = sim.list_jobs(wf)
        ids = {j["_id"]: j for j in jobs}

        def edges(name: str) -> list[dict[str, Any]]:
            return list(sim.iter_items(f"{w}/edges/{name}"))

        blockers: dict[str, list[str]] = defaultdict(list)
        for e in edges("blocks"):
            blockers[e["_to"]].append(e["_from"])
        produced = {e["_to"] for e in edges("produces")} | {e["_to"] for e in edges("stores")}
        files = {f["_id"]: f for f in sim.iter_items(f"{w}/files")}
        data = {d["_id"]: d for d in sim.iter_items(f"{w}/user_data")}
        missing: dict[str, list[str]] = defaultdict(list)
        for e in edges("needs"):
            f = files[e["_to"]]
            if e["_to"] not in produced and not (cwd / f["path"]).exists():
                missing[e["_from"]].append(f"missing input file {f['path']} (no job "
                                           "produces it)")
        for e in edges("consumes"):
            d = data[e["_to"]]
            if e["_to"] not in produced and d.get("data") in (None, {}):
                missing[e["_from"]].append(f"missing user data {d.get('name')!r} (empty, no "
                                           "job stores it)")
    return {"jobs": jobs, "ids": ids, "blockers": blockers, "missing": missing}


def make_plan(spec: Mapping[str, Any], cwd: Path, resumed: ResumeState | None = None,
              source: str = "") -> Plan:
    """The plan of a run of ``spec`` (read from ``source``, named in errors); ``resumed`` says
    which jobs of the existing workflow are skipped or run again. Raises CliError (exit 2) for
    an invalid spec."""
    g = _graph(spec, cwd, source)
    jobs, blockers, missing = g["jobs"], g["blockers"], g["missing"]
    position = {j["_id"]: i for i, j in enumerate(jobs)}
    resumed = resumed or ResumeState()
    finished, again = resumed.skipped, resumed.rerun
    name = {j["_id"]: j.get("name") or j["_key"] for j in jobs}
    step: dict[str, int] = {}        # runs, at this step
    satisfied: set[str] = set()      # runs or is already done
    reason: dict[str, str] = {}      # does not run, because
    pending = {j["_id"]: len(set(blockers[j["_id"]])) for j in jobs}
    waiting: dict[str, list[str]] = defaultdict(list)
    for to, froms in blockers.items():
        for f in set(froms):
            waiting[f].append(to)
    queue = [j["_id"] for j in jobs if pending[j["_id"]] == 0]
    order = []
    while queue:
        jid = queue.pop(0)
        order.append(jid)
        for nxt in sorted(waiting[jid], key=position.get):
            pending[nxt] -= 1
            if pending[nxt] == 0:
                queue.append(nxt)
    for jid in order:
        job = g["ids"][jid]
        bad = sorted({b for b in blockers[jid] if b not in satisfied}, key=position.get)
        if position[jid] in finished:
            reason[jid] = finished[position[jid]]
            satisfied.add(jid)
        elif job.get("status") == "disabled":
            reason[jid] = "disabled"
        elif missing[jid]:
            reason[jid] = "; ".join(missing[jid])
        elif bad:
            reason[jid] = "blocked by " + ", ".join(name[b] for b in bad)
        else:
            running = [b for b in blockers[jid] if b in step]
            step[jid] = 1 + max((step[b] for b in running), default=0)
            satisfied.add(jid)
            after = sorted({name[b] for b in running}, key=lambda n: n)
            why = ("after " + ", ".join(after)) if after else "ready"
            reason[jid] = f"{again[position[jid]]}: runs again, {why}" \
                if position[jid] in again else why
    in_cycle = [j["_id"] for j in jobs if j["_id"] not in reason]
    for jid in in_cycle:
        reason[jid] = "waits on a dependency cycle through " + ", ".join(
            name[b] for b in sorted(set(blockers[jid]), key=position.get) if b in in_cycle)
    plan = Plan()
    for jid in sorted(step, key=lambda j: (step[j], position[j])):
        plan.runs.append((step[jid], name[jid], reason[jid]))
    plan.skipped = [(name[j["_id"]], reason[j["_id"]]) for j in jobs if j["_id"] not in step]
    return plan


def resume_state(client: Client, wf: str, cwd: Path) -> ResumeState:
    """Which jobs a resume of ``wf`` skips and which finished ones it runs again: a done job
    that succeeded is skipped unless it, or a job upstream of it, failed or changed. Reads
    only."""
    jobs = client.list_jobs(wf)
    rerun = {**changed_inputs(client, wf, cwd), **unfinished_business(client, wf)}
    downstream = _downstream(client, wf, set(rerun))
    results = latest_results(client, wf)
    state = ResumeState()
    for i, job in enumerate(jobs):
        key = job["_key"]
        if key in rerun:
            state.rerun[i] = rerun[key]
        elif display_status(job, results.get(key)) == "done":
            if key in downstream:
                state.rerun[i] = "done, but a job it depends on runs again"
            else:
                state.skipped[i] = "done, inputs unchanged (skipped)"
    return state


def _downstream(client: Client, wf: str, keys: set[str]) -> set[str]:
    found: set[str] = set()
    for key in keys:
        for job in client.iter_items(f"/workflows/{seg(wf)}/downstream_jobs/{seg(key)}"):
            found.add(job["_key"])
    return found
