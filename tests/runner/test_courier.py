"""The runner's round trips in the background (torc_graph.runner.courier): completions are
batched, acknowledged only by the server's answer, and never held back longer than the flush
interval; real SQLite files, real job processes, a real runner subprocess for kill -9."""

from __future__ import annotations

import threading
import time

import pytest

from torc_graph.client import Client
from torc_graph.runner import conversation as conversation_module
from torc_graph.runner import execution as execution_module
from torc_graph.runner import local as local_module
from torc_graph.runner.courier import Courier
from torc_graph.runner.local import LocalRunner, RunnerOptions
from torc_graph.runner.workflow import create_workflow, start_workflow
from torc_graph.testing import wait_for


def _workflow(client: Client, jobs: list[dict], **extra) -> str:
    wf = create_workflow(client, {"name": "courier", "user": "tester", "jobs": jobs, **extra})
    start_workflow(client, wf)
    return wf


def _results(client: Client, wf: str) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for row in client.iter_items(f"/workflows/{wf}/results"):
        rows.setdefault(row["job_key"], []).append(row)
    return rows


def test_courier_runs_one_call_at_a_time_and_hands_back_results_and_exceptions():
    woken = threading.Event()
    courier = Courier(woken.set)
    try:
        gate = threading.Event()
        courier.send(lambda: gate.wait(5) and 42)
        assert courier.busy and courier.take() is None
        with pytest.raises(RuntimeError):
            courier.send(lambda: 0)  # one call in flight at a time
        gate.set()
        assert courier.take(block=True) == (42, None)
        assert woken.is_set() and not courier.busy
        courier.send(lambda: 1 / 0)
        result, exc = courier.take(block=True)
        assert result is None and isinstance(exc, ZeroDivisionError)
    finally:
        courier.close()


def test_completions_of_jobs_that_finish_together_share_one_call(client, workdir, monkeypatch,
                                                                  in_background):
    calls: list[list[str]] = []
    real = execution_module.Execution.complete

    def recording(self, completions, claim=None):
        calls.append([c["job_key"] for c in completions])
        return real(self, completions, claim)

    monkeypatch.setattr(execution_module.Execution, "complete", recording)
    # Completions wait up to 0.5 s for company here (not the default 0.1 s): on a loaded
    # machine six exits may spread over more than the default.
    monkeypatch.setattr(conversation_module, "REPORT_DELAY", 0.5)
    # Six jobs wait for one file, then exit within ~10 ms of each other.
    job = "sh -c 'touch ready.$TORC_JOB_KEY; while [ ! -e go ]; do sleep 0.01; done'"
    wf = _workflow(client, [{"name": f"j{i}", "command": job} for i in range(6)])
    runner = LocalRunner(client, wf, RunnerOptions(num_cpus=6, output_dir=workdir / "out"))
    with in_background(runner) as box:
        assert wait_for(lambda: len(list(workdir.glob("ready.*"))) == 6, 20)
        (workdir / "go").touch()
    assert box["summary"].succeeded == 6
    assert sorted(k for call in calls for k in call) == sorted(
        j["_key"] for j in client.list_jobs(wf))  # each completion sent once
    assert len(calls) < 6 and max(len(c) for c in calls) >= 2, calls


def test_a_finished_job_is_reported_within_the_flush_interval_while_others_run(
        client, workdir, in_background):
    wf = _workflow(client, [
        {"name": "long", "command": "sleep 5"},
        {"name": "short", "command": "sh -c 'sleep 0.3; touch short.end'"},
    ])
    runner = LocalRunner(client, wf, RunnerOptions(num_cpus=2, output_dir=workdir / "out"))
    with Client(database=client.database) as watcher, in_background(runner):
        short = next(j for j in watcher.list_jobs(wf) if j["name"] == "short")
        assert wait_for(lambda: (workdir / "short.end").exists(), 10, 0.005)
        ended = time.monotonic()
        assert wait_for(lambda: watcher.get_job(wf, short["_key"])["status"] == "done", 4.5,
                        0.005)
        latency = time.monotonic() - ended
        long_status = next(j for j in watcher.list_jobs(wf) if j["name"] == "long")["status"]
    # Stored while the long job still ran, well within the flush interval plus a loop turn
    # (loose bound: the machine may be loaded).
    assert long_status == "submitted"
    assert latency < max(20 * local_module.REPORT_DELAY, 1.0), latency


@pytest.mark.slow
def test_a_completion_acknowledged_before_a_kill9_is_kept_and_never_run_again(
        client, db_url, workdir, spawn_runner):
    wf = _workflow(client, [
        {"name": "quick", "command": "sh -c 'echo $$ >> quick.runs'"},
        # Runs until the runner dies the first time, exits at once the second time.
        {"name": "slow", "command": "sh -c '[ -e slow.again ] && exit 0; touch slow.again; "
                                    "sleep 60'"},
    ], config={"heartbeat_seconds": 1, "lease_seconds": 3})
    keys = {j["name"]: j["_key"] for j in client.list_jobs(wf)}
    first = spawn_runner(wf, "--database", db_url)
    # The server acknowledged quick's completion (done in the store), slow still runs.
    assert wait_for(lambda: client.get_job(wf, keys["quick"])["status"] == "done"
                    and (workdir / "slow.again").exists(), 30), first.stdout.read1()
    first.kill()  # kill -9: nothing more is reported
    first.wait()
    second = LocalRunner(client, wf, RunnerOptions(num_cpus=2, output_dir=workdir / "o2",
                                                   wait_for_new_jobs_seconds=10))
    summary = second.run()
    assert summary.reason == "the workflow is complete", summary.reason
    rows = _results(client, wf)
    assert [(r["cause"], r["return_code"]) for r in rows[keys["quick"]]] == [("exit", 0)]
    assert len((workdir / "quick.runs").read_text().split()) == 1  # ran once, kept
    assert [r["cause"] for r in rows[keys["slow"]]] == ["lost", "exit"]
    assert all(j["status"] == "done" for j in client.list_jobs(wf))


def test_the_loop_sleeps_between_events_while_its_prefetch_is_full(client, workdir,
                                                                   monkeypatch):
    """With claimed jobs waiting in the prefetch no claim is due: the loop must sleep until a
    job exits or an answer comes (about one wait per job), not wake at once because the last
    claim came back full (it did so 3-15 times per job)."""
    from torc_graph.runner import slots as slots_module

    waits = [0]
    real = slots_module.JobSlots.wait

    def counting(self, until):
        waits[0] += 1
        return real(self, until)

    monkeypatch.setattr(slots_module.JobSlots, "wait", counting)
    n = 400
    wf = _workflow(client, [{"name": f"j{i}", "command": "true"} for i in range(n)])
    summary = LocalRunner(client, wf, RunnerOptions(num_cpus=2, output_dir=workdir / "out")).run()
    assert summary.succeeded == n
    assert waits[0] <= 2 * n, waits[0] / n
