"""The local runner against the real embedded server on a SQLite file, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from torc_graph.client import Client
from torc_graph.runner.local import LocalRunner, RunnerError, RunnerOptions
from torc_graph.runner.process import stdio_paths
from torc_graph.testing import alive, clean_env, cli_argv, wait_for

PY = sys.executable


def results(client: Client, wf: str) -> dict[str, dict]:
    return {r["job_key"]: r for r in client.iter_items(f"/workflows/{wf}/results")}


def test_runs_dependencies_in_order_and_captures_stdio(client, make_workflow, run_workflow,
                                                       by_name, workdir):
    wf = make_workflow([
        {"name": "first", "command": "echo out-first"},
        {"name": "second", "command": "sh -c 'echo out-second; echo err-second >&2'",
         "blocked_by": ["first"]},
        {"name": "third", "command": f"{PY} -c 'import sys; sys.exit(3)'",
         "blocked_by": ["second"], "cancel_on_blocking_job_failure": False},
    ])
    summary = run_workflow(wf, num_cpus=2)
    jobs = by_name(wf)
    assert {n: j["status"] for n, j in jobs.items()} == {
        "first": "done", "second": "done", "third": "done"}
    res = results(client, wf)
    assert [res[jobs[n]["_key"]]["return_code"] for n in ("first", "second", "third")] == [0, 0, 3]
    assert all(r["run_id"] == 1 and r["status"] == "done" for r in res.values())
    assert (summary.succeeded, summary.failed, summary.reason) == (2, 1, "the workflow is complete")
    out, err = stdio_paths(workdir / "output", jobs["second"]["_key"], 1)
    assert out.read_text() == "out-second\n"
    assert err.read_text() == "err-second\n"
    assert stdio_paths(workdir / "output", jobs["first"]["_key"], 1)[0].read_text() == "out-first\n"
    # Order: each job started after its blocker completed (job events carry ms timestamps).
    events = list(client.iter_items(f"/workflows/{wf}/events"))
    kinds = [(e["category"], e["type"]) for e in events]
    assert kinds[0] == ("workflow", "start")
    assert kinds[1] == ("worker", "start") and kinds[-1] == ("worker", "stop")
    order = [(e["type"], e["job_name"]) for e in events if e["category"] == "job"]
    assert order == [("start", "first"), ("complete", "first"), ("start", "second"),
                     ("complete", "second"), ("start", "third"), ("complete", "third")]
    (node,) = client.iter_items(f"/workflows/{wf}/compute_nodes")
    assert node["is_active"] is False and node["pid"] == os.getpid()
    assert node["scheduler"]["scheduler_type"] == "local"
    assert node["resources"]["num_cpus"] == 2
    executed = list(client.iter_items(f"/workflows/{wf}/edges/executed"))
    assert len(executed) == 3 and all(e["_from"] == node["_id"] for e in executed)


def _timing_jobs(n: int, seconds: float) -> list[dict]:
    code = f"import time; s = time.time(); time.sleep({seconds}); print(s, time.time())"
    return [{"name": f"j{i}", "command": f"{PY} -c '{code}' > times/j{i}"} for i in range(n)]


def _max_concurrency(workdir: Path) -> int:
    spans = [tuple(map(float, p.read_text().split())) for p in (workdir / "times").iterdir()]
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = best = 0
    for _, delta in points:
        running += delta
        best = max(best, running)
    return best


@pytest.mark.parametrize("options, expected", [
    ({"num_cpus": 2}, 2),
    ({"num_cpus": 3, "max_parallel_jobs": 1}, 1),
])
def test_parallelism_is_bounded(make_workflow, run_workflow, by_name, workdir, options,
                                expected):
    (workdir / "times").mkdir()
    wf = make_workflow(_timing_jobs(6, 0.4))
    summary = run_workflow(wf, **options)
    assert summary.succeeded == 6
    assert all(j["status"] == "done" for j in by_name(wf).values())
    assert _max_concurrency(workdir) == expected


def test_runtime_limit_terminates_the_job(client, make_workflow, run_workflow, by_name):
    wf = make_workflow(
        [{"name": "slow", "command": "sleep 30", "resource_requirements": "short"},
         {"name": "after", "command": "true", "blocked_by": ["slow"]}],
        resource_requirements=[{"name": "short", "num_cpus": 1, "memory": "1m",
                                "runtime": "PT1S"}],
    )
    t0 = time.monotonic()
    summary = run_workflow(wf, num_cpus=2, termination_grace=1.0)
    assert time.monotonic() - t0 < 10
    jobs = by_name(wf)
    assert jobs["slow"]["status"] == "terminated"
    result = results(client, wf)[jobs["slow"]["_key"]]
    assert result["status"] == "terminated" and result["return_code"] == -signal.SIGTERM
    assert 1.0 <= result["exec_time_minutes"] * 60 < 5
    assert summary.terminated == 1
    # Its non-zero return code cancels the successor (cancel_on_blocking_job_failure).
    assert jobs["after"]["status"] == "canceled"


def test_cancel_from_another_client_kills_the_job(client, db_url, make_workflow, by_name,
                                                  workdir):
    wf = make_workflow([{"name": "long", "command": "sh -c 'echo $$ > pid; exec sleep 30'"},
                        {"name": "later", "command": "true", "blocked_by": ["long"]}])
    runner = LocalRunner(Client(database=db_url), wf,
                         RunnerOptions(output_dir=workdir / "output", num_cpus=2,
                                       poll_interval=0.1))
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("summary", runner.run()))
    thread.start()
    try:
        assert wait_for(lambda: (workdir / "pid").exists() and (workdir / "pid").read_text(),
                        15)
        pid = int((workdir / "pid").read_text())
        assert alive(pid)
        with Client(database=db_url) as other:
            other.cancel_workflow(wf)
        thread.join(15)
        assert not thread.is_alive()
    finally:
        if thread.is_alive():
            runner.request_stop()
            thread.join(30)
    assert not alive(pid)
    summary = box["summary"]
    assert summary.canceled_workflow and summary.canceled == 1
    jobs = by_name(wf)
    assert jobs["long"]["status"] == "canceled"
    assert jobs["later"]["status"] == "blocked"  # torc's cancel leaves waiting jobs alone
    result = results(client, wf)[jobs["long"]["_key"]]
    assert result["status"] == "canceled" and result["return_code"] < 0


def test_process_stats_are_stored(client, make_workflow, run_workflow, by_name, workdir):
    (workdir / "busy.py").write_text(
        "import time\n"
        "block = bytearray(80 * 1024 * 1024)\n"
        "t = time.time()\n"
        "while time.time() - t < 0.8:\n"
        "    pass\n"
    )
    wf = make_workflow([{"name": "busy", "command": f"{PY} busy.py"},
                        {"name": "quick", "command": "true"}])
    run_workflow(wf, num_cpus=2, stats_interval=0.1)
    jobs = by_name(wf)
    stats = client.get(f"/workflows/{wf}/jobs/{jobs['busy']['_key']}/process_stats")
    assert len(stats) == 1
    (doc,) = stats
    assert doc["job_key"] == jobs["busy"]["_key"] and doc["run_id"] == 1
    assert doc["num_samples"] >= 3
    assert doc["max_rss"] >= 80 * 1024 * 1024
    assert doc["max_cpu_percent"] > 10  # a busy loop; the machine may be shared
    edges = list(client.iter_items(f"/workflows/{wf}/edges/process_used"))
    assert [(e["_from"], e["_to"]) for e in edges] == [(jobs["busy"]["_id"], doc["_id"])]
    # A job shorter than the first sample costs nothing and gets no document.
    assert client.get(f"/workflows/{wf}/jobs/{jobs['quick']['_key']}/process_stats") == []


def test_missing_output_file_and_unstartable_command_fail(client, make_workflow, run_workflow,
                                                          by_name, workdir):
    wf = make_workflow(
        [{"name": "liar", "command": "true", "output_files": ["promised"]},
         {"name": "made", "command": "touch made.txt", "output_files": ["made"]},
         {"name": "typo", "command": "no-such-program-xyz --flag"}],
        files=[{"name": "promised", "path": "promised.txt"},
               {"name": "made", "path": "made.txt"}],
    )
    summary = run_workflow(wf, num_cpus=3)
    jobs = by_name(wf)
    res = results(client, wf)
    assert res[jobs["liar"]["_key"]]["return_code"] == 1
    assert res[jobs["made"]["_key"]]["return_code"] == 0
    assert res[jobs["typo"]["_key"]]["return_code"] == 127
    err = stdio_paths(workdir / "output", jobs["typo"]["_key"], 1)[1].read_text()
    assert "no-such-program-xyz" in err
    liar_err = stdio_paths(workdir / "output", jobs["liar"]["_key"], 1)[1].read_text()
    assert "promised.txt" in liar_err
    made = {f["name"]: f for f in client.iter_items(f"/workflows/{wf}/files")}["made"]
    assert made["st_mtime"] == pytest.approx((workdir / "made.txt").stat().st_mtime)
    assert summary.failed == 2


def test_two_runners_share_a_workflow(db_url, make_workflow, by_name, client, workdir):
    wf = make_workflow([{"name": f"j{i}", "command": "sleep 0.05"} for i in range(30)])
    summaries = []

    def work(n: int) -> None:
        with Client(database=db_url) as c:
            summaries.append(LocalRunner(c, wf, RunnerOptions(
                output_dir=workdir / f"out{n}", num_cpus=2, poll_interval=0.1)).run())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(s.started for s in summaries) == 30
    assert all(j["status"] == "done" for j in by_name(wf).values())
    assert len(results(client, wf)) == 30  # each job ran exactly once
    assert len(list(client.iter_items(f"/workflows/{wf}/compute_nodes"))) == 2


def test_unstarted_workflow_is_refused(client):
    wf = client.add_workflow_specification(
        {"name": "x", "user": "u", "jobs": [{"name": "a", "command": "true"}]})["_key"]
    with pytest.raises(RunnerError, match="has not been started"):
        LocalRunner(client, wf).run()


def test_jobs_too_big_for_the_worker_end_the_run(make_workflow, run_workflow, by_name):
    wf = make_workflow(
        [{"name": "big", "command": "true", "resource_requirements": "big"}],
        resource_requirements=[{"name": "big", "num_cpus": 64, "memory": "1m",
                                "runtime": "PT1M"}],
    )
    summary = run_workflow(wf, num_cpus=2, poll_interval=0.05)
    assert "need more resources" in summary.reason
    assert by_name(wf)["big"]["status"] == "ready"


# ---------------------------------------------------------------------- killing the runner

KILL_JOB = ("if [ -e release ]; then exit 0; fi; sleep 60 & echo $! > pids/$TORC_JOB_KEY.child; "
            "echo $$ > pids/$TORC_JOB_KEY.sh; wait")


def _start_runner(wf: str, db_url: str, workdir: Path) -> subprocess.Popen:
    argv = cli_argv("jobs", "run", wf, "--database", db_url, "--num-cpus", "2",
                               "--poll-interval", "0.2", "--no-progress", "--output",
                               str(workdir / "output"))
    env = clean_env(PATH=os.environ["PATH"])
    return subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _job_pids(workdir: Path) -> list[int]:
    return [int(p.read_text()) for p in (workdir / "pids").iterdir() if p.read_text().strip()]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_runner_leaves_no_processes_and_restart_completes(
        sig, client, db_url, make_workflow, by_name, workdir):
    (workdir / "pids").mkdir()
    wf = make_workflow([{"name": f"j{i}", "command": KILL_JOB} for i in range(3)])
    proc = _start_runner(wf, db_url, workdir)
    try:
        assert wait_for(lambda: len(_job_pids(workdir)) == 4, 30), proc.stdout.read1()
        pids = _job_pids(workdir)
        assert all(alive(p) for p in pids)
        runner_children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(sig)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Jobs, their children and the runner's watchdog are all gone.
    assert wait_for(lambda: not any(alive(p) for p in pids), 10)
    assert wait_for(lambda: not any(alive(c.pid) for c in runner_children), 10)
    jobs = by_name(wf)
    statuses = sorted(j["status"] for j in jobs.values())
    if sig == signal.SIGTERM:
        assert proc.returncode == 1
        assert statuses == ["ready", "ready", "ready"]  # released as interrupted, no cascade
        (node,) = client.iter_items(f"/workflows/{wf}/compute_nodes")
        assert node["is_active"] is False
    else:
        assert statuses == ["ready", "submitted", "submitted"]  # nobody could report them
    # Restart: reset every job, then a new worker starts the workflow and runs it through.
    (workdir / "release").touch()
    client.reset_status(wf)
    client.reset_job_status(wf)
    proc = _start_runner(wf, db_url, workdir)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    assert all(j["status"] == "done" for j in by_name(wf).values())
    assert client.get_status(wf)["run_id"] == 2


def test_worker_startup_and_workflow_completion_scripts(make_workflow, run_workflow, workdir):
    wf = make_workflow(
        [{"name": "a", "command": "true"}],
        config={"worker_startup_script": "touch started.marker",
                "workflow_completion_script": "sh -c 'echo $TORC_WORKFLOW_KEY > completed.marker'"},
    )
    summary = run_workflow(wf, num_cpus=1)
    assert summary.reason == "the workflow is complete"
    assert (workdir / "started.marker").exists()
    assert (workdir / "completed.marker").read_text().strip() == wf
