"""Fault tolerance and batched execution of the local runner, end to end: real processes,
real SQLite files, real gunicorn (torc_graph.testing.LiveServer) where a server is involved.

Covers docs/execution-model.md from the runner's side: retries and recovery scripts, causes
(``oom``, ``walltime``), interrupts that release jobs, heartbeats and lost jobs, long polls,
kill -9 of a runner, server outages and kill -9 of the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil
import pytest

from torc_graph.client import Client
from torc_graph.runner import execution as execution_module
from torc_graph.runner.local import LocalRunner, RunnerOptions
from torc_graph.runner.workflow import create_workflow, start_workflow
from torc_graph.testing import LiveServer, alive, clean_env, cli_argv, wait_for


def attempts(client: Client, wf: str) -> dict[str, list[dict[str, Any]]]:
    """Every result row per job key, in attempt order."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in client.iter_items(f"/workflows/{wf}/results"):
        rows[row["job_key"]].append(row)
    for key in rows:
        rows[key].sort(key=lambda r: r.get("attempt_id", 1))
    return rows


def new_workflow(client: Client, jobs: list[dict[str, Any]], handlers: dict[str, str] | None = None,
                 **extra: Any) -> str:
    """Create and start a workflow; ``handlers`` maps job names to their failure handler."""
    wf = create_workflow(client, {"name": "ft", "user": "tester", "jobs": jobs, **extra})
    for job in client.list_jobs(wf):
        if handlers and job["name"] in handlers:
            client.update_document(wf, "jobs", {**job, "failure_handler": handlers[job["name"]]})
    start_workflow(client, wf)
    return wf


# ---------------------------------------------------------------------- retries and causes

RETRY_CONFIG = {"failure_handlers": [{"name": "h", "rules": [
    {"exit_codes": [12], "max_retries": 3,
     "recovery_script": 'echo "$TORC_RETURN_CODE:$TORC_ATTEMPT_ID" >> recovery.log'},
    {"exit_codes": [137], "max_retries": 2, "memory_factor": 2, "max_memory": "4m"},
]}]}


def test_exit_12_twice_then_success_oom_retried_with_more_memory(client, workdir, run_workflow):
    wf = new_workflow(client, [
        {"name": "flaky", "command": "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); "
                                     "echo $n > count; [ $n -ge 3 ] || exit 12"},
        {"name": "oom", "resource_requirements": "small",
         "command": "if [ -e oomed ]; then exit 0; fi; touch oomed; kill -9 $$"},
        {"name": "plain", "command": "sh -c 'exit 1'"},
    ], handlers={"flaky": "h", "oom": "h", "plain": "h"}, config=RETRY_CONFIG,
        resource_requirements=[{"name": "small", "memory": "1m", "runtime": "PT1M"}])
    summary = run_workflow(wf, num_cpus=2)
    assert summary.reason == "the workflow is complete"
    jobs = {j["name"]: j for j in client.list_jobs(wf)}
    rows = attempts(client, wf)
    flaky = rows[jobs["flaky"]["_key"]]
    assert [(r["attempt_id"], r["return_code"], r["cause"]) for r in flaky] == [
        (1, 12, "exit"), (2, 12, "exit"), (3, 0, "exit")]
    assert jobs["flaky"]["status"] == "done" and jobs["flaky"]["execution"]["attempt_id"] == 3
    # The recovery script ran after each retried attempt, with torc's variables.
    assert (workdir / "recovery.log").read_text().split() == ["12:1", "12:2"]
    # Killed by SIGKILL: cause oom, retried with twice the memory.
    oom = rows[jobs["oom"]["_key"]]
    assert [(r["attempt_id"], r["cause"]) for r in oom] == [(1, "oom"), (2, "exit")]
    assert jobs["oom"]["internal"]["memory_bytes"] == 2 * 1024 * 1024
    # Exit 1 matches no rule: not retried.
    assert [r["return_code"] for r in rows[jobs["plain"]["_key"]]] == [1]
    assert (summary.succeeded, summary.failed, summary.retried) == (2, 1, 3)


def test_walltime_claims_only_fitting_jobs_and_ends_with_cause_walltime(client, workdir,
                                                                       in_background):
    wf = new_workflow(client, [
        {"name": "polite", "command": "sh -c 'echo $$ > polite.pid; exec sleep 30'",
         "supports_termination": True, "resource_requirements": "minute"},
        {"name": "rude", "command": "sh -c 'trap \"\" TERM; echo $$ > rude.pid; sleep 30'",
         "resource_requirements": "minute"},
        {"name": "too_long", "command": "true", "resource_requirements": "hour"},
    ], config={"compute_node_expiration_buffer_seconds": 2},
        resource_requirements=[{"name": "minute", "runtime": "PT1M"},
                               {"name": "hour", "runtime": "PT1H"}])
    runner = LocalRunner(client, wf, RunnerOptions(
        num_cpus=3, end_time=time.time() + 600, termination_grace=30,
        output_dir=workdir / "output"))
    with in_background(runner) as box:
        assert wait_for(lambda: (workdir / "polite.pid").exists()
                        and (workdir / "rude.pid").exists(), 15)
        # The allocation turns out to end in 4 s (a Slurm job whose limit was lowered).
        end = time.time() + 4
        runner.walltime.end_time = end
        runner.slots.wake()
        polite = int((workdir / "polite.pid").read_text())
        assert wait_for(lambda: not alive(polite), 6)
        assert end - 2.5 <= time.time() < end  # SIGTERM inside the 2 s buffer
    assert time.time() >= end
    assert box["summary"].reason == "the allocation's walltime ended"
    jobs = {j["name"]: j for j in client.list_jobs(wf)}
    rows = attempts(client, wf)
    for name in ("polite", "rude"):  # completed with cause walltime, requeued (infra budget)
        assert [(r["cause"], r["status"]) for r in rows[jobs[name]["_key"]]] == [
            ("walltime", "ready")], name
        assert jobs[name]["status"] == "ready"
    assert jobs["too_long"]["status"] == "ready"  # never claimed: 1 h does not fit in 600 s
    assert jobs["too_long"]["_key"] not in rows


# ---------------------------------------------------------------------- interrupts

FAN_IN = [
    {"name": "q1", "command": "sh -c 'echo q1 >> runs.log'"},
    {"name": "q2", "command": "sh -c 'echo q2 >> runs.log'"},
    *({"name": f"s{i}", "blocked_by": ["q1", "q2"],
       "command": f"sh -c 'echo s{i} >> runs.log; [ -e release ] && exit 0; "
                  f"echo $$ > pids/s{i}; sleep 60'"} for i in (1, 2, 3)),
    {"name": "join", "blocked_by": ["s1", "s2", "s3"],
     "command": "sh -c 'echo join >> runs.log'"},
]


@pytest.mark.slow
def test_sigint_to_the_process_group_releases_jobs_and_a_second_run_resumes(
        client, db_url, workdir, spawn_runner):
    (workdir / "pids").mkdir()
    wf = new_workflow(client, FAN_IN)
    proc = spawn_runner(wf, "--database", db_url)
    assert wait_for(lambda: len(list((workdir / "pids").iterdir())) == 2, 30), \
        proc.stdout.read1()
    pids = [int(p.read_text()) for p in (workdir / "pids").iterdir()]
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    proc.wait(30)
    assert wait_for(lambda: not any(alive(p) for p in pids), 10)
    statuses = Counter(j["status"] for j in client.list_jobs(wf))
    assert statuses == {"done": 2, "ready": 3, "blocked": 1}  # 0 canceled, 0 terminated
    causes = Counter(r["cause"] for rs in attempts(client, wf).values() for r in rs)
    # The two running jobs, and any job claimed for the prefetch but not started, were
    # released: back to ready, attempt + 1, no cascade.
    assert causes["exit"] == 2 and causes["interrupted"] in (2, 3) and len(causes) == 2
    (workdir / "release").touch()
    proc = spawn_runner(wf, "--database", db_url)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()
    assert all(j["status"] == "done" for j in client.list_jobs(wf))
    runs = Counter((workdir / "runs.log").read_text().split())
    assert runs["q1"] == runs["q2"] == runs["join"] == 1  # done jobs did not run again
    assert sum(runs[f"s{i}"] for i in (1, 2, 3)) == 5  # two interrupted, then all three


@pytest.mark.slow
def test_ctrl_c_of_torc_graph_run_then_run_again_resumes_the_same_workflow(
        client, db_url, workdir):
    """Issue 8 acceptance: Ctrl-C (SIGINT to the process group) during `torc-graph run SPEC`
    of a fan-in cancels nothing, and running the same command again resumes that workflow
    without rerunning done jobs."""
    import json

    (workdir / "pids").mkdir()
    spec = workdir / "fan_in.json"
    spec.write_text(json.dumps({"name": "fan_in", "jobs": FAN_IN}))
    argv = cli_argv("run", str(spec), "--database", db_url, "--num-cpus", "2",
                    "--no-progress", "--output", str(workdir / "output"))
    env = clean_env(PATH=os.environ["PATH"])
    proc = subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_for(lambda: len(list((workdir / "pids").iterdir())) == 2, 60), \
            proc.stdout.read1()
        pids = [int(p.read_text()) for p in (workdir / "pids").iterdir()]
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_for(lambda: not any(alive(p) for p in pids), 10)
    (wf,) = [w["_key"] for w in client.get("/workflows")["items"]]
    statuses = Counter(j["status"] for j in client.list_jobs(wf))
    assert statuses == {"done": 2, "ready": 3, "blocked": 1}  # 0 canceled, 0 terminated
    (workdir / "release").touch()
    again = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Resuming workflow" in again.stderr
    assert [w["_key"] for w in client.get("/workflows")["items"]] == [wf]  # no new workflow
    assert all(j["status"] == "done" for j in client.list_jobs(wf))
    runs = Counter((workdir / "runs.log").read_text().split())
    assert runs["q1"] == runs["q2"] == runs["join"] == 1  # done jobs did not run again
    assert sum(runs[f"s{i}"] for i in (1, 2, 3)) == 5  # two interrupted, then all three


# ---------------------------------------------------------------------- heartbeats and polls

def test_heartbeat_is_one_request_for_all_jobs_and_lost_jobs_are_killed(
        client, workdir, monkeypatch, in_background):
    beats: list[list[str]] = []
    real = execution_module.Execution.heartbeat

    def counting(self, job_keys):
        beats.append(list(job_keys))
        return real(self, job_keys)

    monkeypatch.setattr(execution_module.Execution, "heartbeat", counting)
    (workdir / "pids").mkdir()
    job = ("sh -c 'echo $$ >> pids/$TORC_JOB_KEY; [ $(wc -l < pids/$TORC_JOB_KEY) -gt 1 ] "
           "&& exit 0; sleep 3'")
    wf = new_workflow(client, [{"name": f"j{i}", "command": job} for i in range(4)],
                      config={"heartbeat_seconds": 1})
    runner = LocalRunner(client, wf, RunnerOptions(num_cpus=4, output_dir=workdir / "output"))
    with in_background(runner) as box:
        assert wait_for(lambda: len(list((workdir / "pids").iterdir())) == 4, 15)
        # Another client takes j0 away from this worker (as a lease expiry would).
        j0 = next(j for j in client.list_jobs(wf) if j["name"] == "j0")
        first_pid = int((workdir / "pids" / j0["_key"]).read_text())
        client.put(f"/workflows/{wf}/jobs/{j0['_key']}/manage_status_change/ready/"
                   f"{j0['_rev']}/1")
        assert wait_for(lambda: not alive(first_pid), 2.5)  # killed at the next heartbeat
    summary = box["summary"]
    assert summary.reason == "the workflow is complete" and summary.lost == 1
    # One request per interval, naming every held job (4 at first), never one per job.
    assert 2 <= len(beats) <= 5, beats
    assert len(beats[0]) == 4
    rows = attempts(client, wf)
    assert [r["return_code"] for r in rows[j0["_key"]]][-1] == 0  # j0 ran again, not reported
    assert all(j["status"] == "done" for j in client.list_jobs(wf))


# ---------------------------------------------------------------------- through a live server

@pytest.fixture
def live(workdir: Path):
    """A real gunicorn-served torc_graph on a SQLite file in the test's directory."""
    with LiveServer(f"sqlite:///{workdir / 'server.db'}", workers=2,
                    log_path=workdir / "server.log") as server:
        yield server


@pytest.fixture
def remote(live: LiveServer):
    with Client(live.url) as c:
        yield c


SECOND_TIME_OK = ("sh -c 'echo $$ >> pids/$TORC_JOB_KEY; "
                  "[ $(wc -l < pids/$TORC_JOB_KEY) -gt 1 ] && exit 0; sleep 60'")


def _runs(workdir: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().split()) for p in (workdir / "pids").iterdir()}


@pytest.mark.slow
def test_kill9_of_a_runner_its_jobs_run_again_within_lease_plus_heartbeat(
        live, remote, workdir, spawn_runner):
    (workdir / "pids").mkdir()
    lease, beat = 3, 1
    wf = new_workflow(remote, [{"name": f"j{i}", "command": SECOND_TIME_OK} for i in range(4)],
                      config={"heartbeat_seconds": beat, "lease_seconds": lease})
    first = spawn_runner(wf, "--url", live.url, num_cpus=4)
    assert wait_for(lambda: len(_runs(workdir)) == 4, 30), first.stdout.read1()
    first.kill()  # kill -9: no report, no release
    first.wait()
    killed_at = time.monotonic()
    (dead_node,) = [n for n in remote.iter_items(f"/workflows/{wf}/compute_nodes")
                    if n["pid"] == first.pid]
    second = spawn_runner(wf, "--url", live.url, num_cpus=4)
    assert wait_for(lambda: sorted(_runs(workdir).values()) == [2, 2, 2, 2], 30)
    rerun_after = time.monotonic() - killed_at
    out, _ = second.communicate(timeout=60)
    assert second.returncode == 0, out.decode()
    # lease + one heartbeat, plus 2 s for starting the second runner's interpreter.
    assert rerun_after <= lease + beat + 2, rerun_after
    rows = attempts(remote, wf)
    for job in remote.list_jobs(wf):
        assert job["status"] == "done"
        assert [(r["attempt_id"], r["cause"]) for r in rows[job["_key"]]] == [
            (1, "lost"), (2, "exit")]
    # A late completion from the dead runner is fenced off and changes nothing.
    late = remote.complete_jobs(wf, dead_node["_key"], 1, [{
        "job_key": job["_key"], "attempt_id": 1, "status": "done", "cause": "exit",
        "result": {"return_code": 0, "exec_time_minutes": 0.1, "completion_time": "now"},
    } for job in remote.list_jobs(wf)])
    assert {(i["outcome"], i["code"]) for i in late["items"]} == {("stale", 409)}
    assert attempts(remote, wf) == rows


def test_an_idle_runner_long_polls_instead_of_polling(live, remote, workdir, monkeypatch,
                                                     in_background, spawn_runner):
    claims: list[float] = []
    real = execution_module.Execution.claim

    def counting(self, claim):
        claims.append(claim.get("wait_seconds", 0))
        return real(self, claim)

    monkeypatch.setattr(execution_module.Execution, "claim", counting)
    wf = new_workflow(remote, [{"name": "gate", "command": "sh -c 'sleep 3; touch gate.done'"},
                               {"name": "after", "command": "touch after.done",
                                "blocked_by": ["gate"]}])
    busy = spawn_runner(wf, "--url", live.url, num_cpus=1)
    with Client(live.url) as own:
        assert wait_for(lambda: any(j["status"] == "submitted"
                                    for j in remote.list_jobs(wf)), 20)
        idle = LocalRunner(own, wf, RunnerOptions(num_cpus=1, output_dir=workdir / "o2"))
        with in_background(idle):
            pass
    busy.communicate(timeout=30)
    # The idle runner waited in long polls (no request per poll interval) ...
    assert claims and claims[0] > 0
    assert len(claims) <= 4, claims
    assert (workdir / "after.done").exists()
    assert all(j["status"] == "done" for j in remote.list_jobs(wf))


def test_kill9_amid_a_worker_replacement_and_a_long_poll_frees_the_port(live, remote, workdir,
                                                                       spawn_runner):
    """What the server-down tests rely on: after ``LiveServer.kill9`` no process of the server
    keeps its listening socket -- not a worker the master forked to replace a dead one, not a
    worker answering a runner's long poll -- so a restart on the same URL answers and the
    runner finishes the workflow."""
    wf = new_workflow(remote, [{"name": "gate", "command": "sleep 3"},
                               {"name": "after", "command": "touch after.done",
                                "blocked_by": ["gate"]}])
    runner = spawn_runner(wf, "--url", live.url)
    assert wait_for(lambda: any(j["status"] == "submitted" for j in remote.list_jobs(wf)), 20)
    time.sleep(0.5)  # the runner's free slot now waits in a long poll
    os.kill(live.worker_pids()[0], signal.SIGKILL)  # the master forks a replacement at once
    live.kill9()
    assert not any(c.laddr and c.laddr.port == live.port and c.status == "LISTEN"
                   for c in psutil.net_connections("tcp"))
    live.start()
    out, _ = runner.communicate(timeout=60)
    assert runner.returncode == 0, out.decode()[-3000:]
    assert (workdir / "after.done").exists()


def _start_all(wf: str, workdir: Path, url: str, count: int, num_cpus: int) -> list:
    procs = []
    for i in range(count):
        out = workdir / f"out{i}"
        argv = cli_argv("jobs", "run", wf, "--url", url, "--num-cpus", str(num_cpus),
                        "--no-progress", "--no-process-stats", "--output", str(out))
        procs.append(subprocess.Popen(argv, cwd=workdir, env=clean_env(PATH=os.environ["PATH"]),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    return procs


def _finish_all(procs: list, timeout: float) -> None:
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, out.decode()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_server_down_20_s_mid_run_runners_finish_nothing_lost(live, remote, workdir):
    wf = new_workflow(remote, [
        {"name": f"j{i}", "command": "sh -c 'echo $TORC_JOB_KEY >> runs.log; sleep 1'"}
        for i in range(24)])
    runners = _start_all(wf, workdir, live.url, 2, 2)
    try:
        assert wait_for(lambda: (workdir / "runs.log").exists()
                        and len((workdir / "runs.log").read_text().split()) >= 4, 30)
        live.kill9()
        time.sleep(20)
        assert all(r.poll() is None for r in runners)  # they wait for the server
        live.start()
    finally:
        _finish_all(runners, 90)
    rows = attempts(remote, wf)
    runs = Counter((workdir / "runs.log").read_text().split())
    for job in remote.list_jobs(wf):
        assert job["status"] == "done"
        assert runs[job["_key"]] == 1, job  # no job ran twice
        assert [(r["cause"], r["return_code"]) for r in rows[job["_key"]]] == [("exit", 0)]


@pytest.mark.slow
def test_four_kill9_restart_cycles_of_the_server_during_10000_jobs_with_16_workers(
        live, remote, workdir):
    n = int(os.environ.get("TORC_GRAPH_TEST_KILL_JOBS", "10000"))
    wf = create_workflow(remote, {"name": "noop", "user": "tester",
                                  "jobs": [{"name": f"j{i}", "command": "true"}
                                           for i in range(n)]})
    start_workflow(remote, wf)
    t0 = time.monotonic()
    runners = _start_all(wf, workdir, live.url, 4, 4)  # 16 job slots
    try:
        def done() -> int:
            return remote.get(f"/workflows/{wf}/jobs", status="done", limit=1)["total_count"]

        for cycle in range(4):
            assert wait_for(lambda c=cycle: done() >= n * (c + 1) // 5, 120, 0.2)
            live.kill9()
            time.sleep(0.5)
            live.start()
    finally:
        _finish_all(runners, 120)
    elapsed = time.monotonic() - t0
    assert remote.get(f"/workflows/{wf}/jobs", status="done", limit=1)["total_count"] == n
    per_job = Counter(r["job_key"] for r in remote.iter_items(f"/workflows/{wf}/results"))
    assert len(per_job) == n and set(per_job.values()) == {1}  # each job completed once
    print(f"{n} jobs, 4 server kill -9 cycles, 16 slots: {elapsed:.1f} s")
