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
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

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


def start_cli_runner(wf: str, workdir: Path, *store: str, num_cpus: int = 2,
                     new_session: bool = True) -> subprocess.Popen:
    """``torc-graph jobs run WF`` as a subprocess (its own process group)."""
    argv = cli_argv("jobs", "run", wf, *store, "--num-cpus", str(num_cpus), "--no-progress",
                    "--poll-interval", "0.2", "--output", str(workdir / "output"))
    return subprocess.Popen(argv, cwd=workdir, env=clean_env(PATH=os.environ["PATH"]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=new_session)


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


def test_walltime_claims_only_fitting_jobs_and_ends_with_cause_walltime(client, workdir):
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
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(summary=runner.run()))
    thread.start()
    try:
        assert wait_for(lambda: (workdir / "polite.pid").exists()
                        and (workdir / "rude.pid").exists(), 15)
        # The allocation turns out to end in 4 s (a Slurm job whose limit was lowered).
        end = time.time() + 4
        runner.walltime.end_time = end
        runner.slots.wake()
        polite = int((workdir / "polite.pid").read_text())
        assert wait_for(lambda: not alive(polite), 6)
        assert end - 2.5 <= time.time() < end  # SIGTERM inside the 2 s buffer
        thread.join(15)
        assert not thread.is_alive()
    finally:
        if thread.is_alive():
            runner.request_stop()
            thread.join(30)
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
