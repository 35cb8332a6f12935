"""Acceptance: workflows created from a spec and run by the published torc client's own job
runner (``torc jobs run``) against a live gunicorn-served torc_graph on SQLite.

* a diamond with file and user-data dependencies runs to completion, with results, process
  stats and the events torc's server writes;
* a failing job cancels everything downstream (two levels), the workflow completes and the
  runner exits normally; ``reset-status --failed-only --restart`` then reruns exactly those;
* ``torc workflows restart`` after an input file changed, or an output file disappeared,
  re-runs exactly the affected jobs;
* ``torc workflows cancel`` while a job runs stops torc's runner cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from torc.workflow_manager import WorkflowManager

pytestmark = pytest.mark.slow

PY = sys.executable

#: The diamond's job script: every step really reads its input files and user data and writes
#: its outputs; user data goes through the published client (TORC_DATABASE_URL is set by the
#: test environment, TORC_WORKFLOW_KEY and TORC_JOB_KEY by torc's job runner).
STEP_SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    from torc.api import make_api

    def load(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def dump(path, data):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)

    def user_data(api, wf, key, kind):
        if kind == "stores":
            return {u.name: u for u in api.list_job_user_data_stores(wf, key).items}
        return {u.name: u for u in api.list_job_user_data_consumes(wf, key).items}

    step, seconds, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    api = make_api(os.environ["TORC_DATABASE_URL"])
    wf, key = os.environ["TORC_WORKFLOW_KEY"], os.environ["TORC_JOB_KEY"]
    time.sleep(seconds)  # long enough for the resource monitor to sample the process
    if step == "preprocess":
        inputs, out1, out2 = args
        values = load(inputs)["values"]
        half = len(values) // 2
        dump(out1, {"values": values[:half]})
        dump(out2, {"values": values[half:]})
        meta = user_data(api, wf, key, "stores")["meta"]
        meta.data = {"num_values": len(values)}
        api.modify_user_data(wf, meta.key, meta)
    elif step == "work1":
        inp, params, out = args
        dump(out, {"sum": sum(load(inp)["values"]) * load(params)["factor"]})
    elif step == "work2":
        inp, out = args
        scale = user_data(api, wf, key, "consumes")["settings"].data["scale"]
        dump(out, {"sum": sum(load(inp)["values"]) * scale})
    elif step == "postprocess":
        in1, in2, out = args
        meta = user_data(api, wf, key, "consumes")["meta"].data
        dump(out, {"total": load(in1)["sum"] + load(in2)["sum"],
                   "num_values": meta["num_values"]})
    else:
        sys.exit(f"unknown step {step}")
''')

VALUES = list(range(1, 11))
FACTOR = 2
SCALE = 3
EXPECTED_TOTAL = sum(VALUES[:5]) * FACTOR + sum(VALUES[5:]) * SCALE

#: Process and system stats sampled every second (the runner posts job_process_stats).
MONITOR = {"cpu": True, "memory": True, "process": True, "interval": 1, "make_plots": False}
#: No resource monitor at all: the runner then exits without waiting for the monitor.
NO_MONITOR = {"cpu": False, "memory": False, "process": False}


def diamond_spec(root: Path, *, seconds: float, process_stats: bool) -> dict:
    """preprocess → (work1, work2) → postprocess through files; ``meta`` user data from
    preprocess to postprocess; user inputs: ``inputs`` (preprocess), ``params1`` (work1 only)
    and the ``settings`` user data (work2 only)."""
    data = root / "data"
    data.mkdir()
    script = root / "step.py"
    script.write_text(STEP_SCRIPT)
    (data / "inputs.json").write_text(json.dumps({"values": VALUES}))
    (data / "params1.json").write_text(json.dumps({"factor": FACTOR}))
    names = ("inputs", "params1", "f1", "f2", "f3", "f4", "result")
    path = {n: str(data / f"{n}.json") for n in names}

    def cmd(step, *files):
        return " ".join([PY, str(script), step, str(seconds), *(path[f] for f in files)])

    spec = {
        "name": "diamond",
        "description": "e2e diamond with file and user-data dependencies",
        "files": [{"name": n, "path": path[n]} for n in names],
        "user_data": [
            {"name": "meta", "is_ephemeral": False},
            {"name": "settings", "is_ephemeral": False, "data": {"scale": SCALE}},
        ],
        "jobs": [
            {"name": "preprocess", "command": cmd("preprocess", "inputs", "f1", "f2"),
             "input_files": ["inputs"], "output_files": ["f1", "f2"],
             "output_user_data": ["meta"]},
            {"name": "work1", "command": cmd("work1", "f1", "params1", "f3"),
             "input_files": ["f1", "params1"], "output_files": ["f3"]},
            {"name": "work2", "command": cmd("work2", "f2", "f4"),
             "input_files": ["f2"], "output_files": ["f4"], "input_user_data": ["settings"]},
            {"name": "postprocess", "command": cmd("postprocess", "f3", "f4", "result"),
             "input_files": ["f3", "f4"], "output_files": ["result"],
             "input_user_data": ["meta"]},
        ],
    }
    spec["config"] = {"compute_node_resource_stats": MONITOR if process_stats else NO_MONITOR}
    return spec


def assert_result_file(root: Path) -> None:
    result = json.loads((root / "data" / "result.json").read_text())
    assert result == {"total": EXPECTED_TOTAL, "num_values": len(VALUES)}


def test_diamond_with_files_and_user_data_runs_to_completion(torc, api, read, tmp_path):
    """``torc jobs run`` runs the diamond to completion: correct outputs, one result and one
    process-stats document per job, the server's start/complete events and executed edges."""
    spec = diamond_spec(tmp_path, seconds=2.5, process_stats=True)
    wf = torc.create_from_spec(spec)
    assert read.statuses(wf) == dict.fromkeys(
        ("preprocess", "work1", "work2", "postprocess"), "uninitialized")

    torc.run_jobs(wf, tmp_path / "out", timeout=150)

    jobs = read.jobs(wf)
    assert {n: j.status for n, j in jobs.items()} == dict.fromkeys(jobs, "done")
    assert api.is_workflow_complete(wf).is_complete is True
    assert_result_file(tmp_path)
    meta = {u.name: u for u in api.list_user_data(wf).items}["meta"]
    assert meta.data == {"num_values": len(VALUES)}

    # One result per job, return code 0, in run 1.
    results = read.results(wf)
    assert sorted(r.job_key for r in results) == sorted(j.key for j in jobs.values())
    assert {(r.return_code, r.run_id, r.status) for r in results} == {(0, 1, "done")}

    # Process stats posted by the runner and linked by process_used edges (§4.11, §6.3).
    for name, job in jobs.items():
        stats = api.get_process_stats_for_job(wf, job.key)
        assert len(stats) == 1, (name, stats)
        assert stats[0].job_key == job.key and stats[0].run_id == 1
        assert stats[0].num_samples >= 1 and stats[0].max_rss > 0
    used = read.edges(wf, "process_used")
    assert sorted(e["_from"] for e in used) == sorted(j.id for j in jobs.values())

    # The server's own events: one start and one complete per job (§0 item 8).
    counts = read.job_event_counts(wf)
    assert counts == {(t, j.key): 1 for j in jobs.values() for t in ("start", "complete")}
    executed = read.edges(wf, "executed")
    assert sorted(e["_to"] for e in executed) == sorted(j.id for j in jobs.values())
    assert {e["data"]["run_id"] for e in executed} == {1}

    # The runner recorded each produced file's mtime; the worker's compute node is inactive.
    for f in api.list_files(wf).items:
        assert f.st_mtime == os.stat(f.path).st_mtime, f.name
    nodes = api.list_compute_nodes(wf).items
    assert len(nodes) == 1 and nodes[0].is_active is False


def test_failing_job_cancels_everything_downstream_and_workflow_completes(
        torc, api, read, tmp_path):
    """A failing job cancels its descendants two levels deep, the workflow completes and torc's
    runner exits 0. Once the failure is fixed, ``torc workflows reset-status --failed-only
    --restart`` reruns exactly the failed job and the jobs it had canceled."""
    fixed = tmp_path / "fixed"  # the failing job succeeds once this file exists
    completions = tmp_path / "completions"  # one "x" per run of the completion script
    ok = f"{PY} -c pass"
    fail = f"{PY} -c 'import os; raise SystemExit(0 if os.path.exists(\"{fixed}\") else 3)'"
    completion_script = f"{PY} -c 'open(\"{completions}\", \"a\").write(\"x\")'"
    spec = {
        "name": "failure",
        "jobs": [
            {"name": "bad", "command": fail},
            {"name": "good", "command": ok},
            {"name": "child", "command": ok, "blocked_by": ["bad"]},
            {"name": "grandchild", "command": ok, "blocked_by": ["child"]},
            {"name": "after_good", "command": ok, "blocked_by": ["good"]},
        ],
        "config": {"compute_node_resource_stats": NO_MONITOR,
                   "workflow_completion_script": completion_script},
    }
    wf = torc.create_from_spec(spec)

    torc.run_jobs(wf, tmp_path / "out", timeout=90)  # exits 0, does not hang

    assert read.statuses(wf) == {
        "bad": "done", "good": "done", "after_good": "done",
        "child": "canceled", "grandchild": "canceled",
    }
    complete = api.is_workflow_complete(wf)
    assert complete.is_complete is True and complete.is_canceled is False
    # The runner was the first to see the workflow complete, so it ran the script, once.
    assert complete.needs_to_run_completion_script is False
    assert completions.read_text() == "x"
    jobs = read.jobs(wf)
    codes = {r.job_key: r.return_code for r in read.results(wf)}
    assert codes == {jobs["bad"].key: 3, jobs["good"].key: 0, jobs["after_good"].key: 0}
    # Canceled jobs never ran: no start event for them.
    started = {k for (t, k) in read.job_event_counts(wf) if t == "start"}
    assert started == {jobs[n].key for n in ("bad", "good", "after_good")}

    fixed.touch()
    torc.run("workflows", "reset-status", wf, "--failed-only", "--restart")
    assert api.get_workflow_status(wf).run_id == 2
    assert read.statuses(wf) == {
        "bad": "ready", "good": "done", "after_good": "done",
        "child": "blocked", "grandchild": "blocked",
    }
    torc.run_jobs(wf, tmp_path / "out", timeout=90)
    assert set(read.statuses(wf).values()) == {"done"}
    assert read.result_runs(wf) == {
        "bad": [1, 2], "good": [1], "after_good": [1],
        "child": [2], "grandchild": [2],
    }
    assert {r.return_code for r in read.results(wf) if r.run_id == 2} == {0}
    assert completions.read_text() == "xx"  # reset-status re-armed the completion script


def test_restart_after_input_change_reruns_exactly_the_affected_jobs(torc, api, read, tmp_path):
    """Result run_ids per job show which jobs each run executed."""
    wf = torc.create_from_spec(diamond_spec(tmp_path, seconds=0, process_stats=False))
    torc.run_jobs(wf, tmp_path / "out", timeout=90)
    assert set(read.statuses(wf).values()) == {"done"}
    assert read.result_runs(wf) == {
        "preprocess": [1], "work1": [1], "work2": [1], "postprocess": [1]}

    # work1's own input changes (new content and a new mtime): work1 and postprocess rerun.
    params = tmp_path / "data" / "params1.json"
    params.write_text(json.dumps({"factor": FACTOR + 1}))
    st = params.stat()
    os.utime(params, (st.st_atime, st.st_mtime + 10))
    torc.run("workflows", "restart", key=wf)
    assert api.get_workflow_status(wf).run_id == 2
    statuses = read.statuses(wf)
    assert statuses["preprocess"] == "done" and statuses["work2"] == "done", statuses
    assert statuses["work1"] == "ready" and statuses["postprocess"] == "blocked", statuses

    torc.run_jobs(wf, tmp_path / "out", timeout=90)
    assert set(read.statuses(wf).values()) == {"done"}
    assert read.result_runs(wf) == {
        "preprocess": [1], "work2": [1], "work1": [1, 2], "postprocess": [1, 2]}
    result = json.loads((tmp_path / "data" / "result.json").read_text())
    assert result["total"] == sum(VALUES[:5]) * (FACTOR + 1) + sum(VALUES[5:]) * SCALE

    # Nothing changed since: a restart (through WorkflowManager this time) reruns nothing.
    WorkflowManager(api, wf).restart()
    assert api.get_workflow_status(wf).run_id == 3
    assert set(read.statuses(wf).values()) == {"done"}
    assert api.is_workflow_complete(wf).is_complete is True

    # A missing output file: its producer (work2) and everything downstream rerun.
    (tmp_path / "data" / "f4.json").unlink()
    WorkflowManager(api, wf).restart()
    assert api.get_workflow_status(wf).run_id == 4
    statuses = read.statuses(wf)
    assert statuses == {"preprocess": "done", "work1": "done", "work2": "ready",
                        "postprocess": "blocked"}, statuses
    torc.run_jobs(wf, tmp_path / "out", timeout=90)
    assert read.result_runs(wf) == {
        "preprocess": [1], "work1": [1, 2], "work2": [1, 4], "postprocess": [1, 2, 4]}
    assert (tmp_path / "data" / "f4.json").exists()


def test_cancel_while_running_stops_the_runner(torc, api, read, tmp_path):
    """``torc workflows cancel`` while torc's runner runs a long job: the server cancels the
    running job, the runner kills it, reports it ``canceled`` with the job's new revision
    (§6.3) and exits normally long before the job would have finished."""
    spec = {
        "name": "cancel",
        "jobs": [{"name": "long", "command": f"{PY} -c 'import time; time.sleep(120)'"}],
        "config": {"compute_node_resource_stats": NO_MONITOR},
    }
    wf = torc.create_from_spec(spec)
    runner = torc.start("jobs", "run", "-p", "1", "-o", str(tmp_path / "out"), key=wf)
    try:
        deadline = time.monotonic() + 60
        while read.statuses(wf)["long"] != "submitted":
            assert runner.poll() is None, "the runner exited before starting the job"
            assert time.monotonic() < deadline, "the job did not start within 60 s"
            time.sleep(0.5)
        torc.run("workflows", "cancel", wf)
        done = torc.wait(runner, timeout=60)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert done.returncode == 0
    assert read.statuses(wf) == {"long": "canceled"}
    complete = api.is_workflow_complete(wf)
    assert complete.is_canceled is True and complete.is_complete is True
    (result,) = read.results(wf)
    assert result.status == "canceled" and result.return_code < 0 and result.run_id == 1
