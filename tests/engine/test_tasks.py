"""Background tasks on a real SQLite file: outcome, error body, and a task whose process died
ends failed and retryable instead of running forever."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from torc_graph.engine import initialize, jobs, tasks, workflows
from torc_graph.errors import NotFound
from torc_graph.store.sqlite import SQLiteStore
from torc_graph.testing import wait_for


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "t.db"))
    yield s
    s.close()


@pytest.fixture
def wf(store):
    return workflows.create_workflow(store, {"name": "w", "user": "u"})["_key"]


def finished(store, wf, key):
    holder = {}

    def done():
        holder["task"] = tasks.get_task(store, wf, key)
        return holder["task"]["state"] != "running"
    assert wait_for(done, 30)
    return holder["task"]


def test_async_initialize_succeeds_with_the_operation_result(store, wf):
    a = jobs.add_job(store, wf, {"name": "a", "command": "x"})
    jobs.add_job(store, wf, {"name": "b", "command": "x", "blocked_by": [a["_id"]]})
    accepted = initialize.initialize_jobs_action(store, wf, **{"async": True})
    assert isinstance(accepted, tasks.Accepted)
    assert accepted.body["state"] == "running" and "process" not in accepted.body
    task = finished(store, wf, accepted.body["_key"])
    assert task["state"] == "succeeded" and task["error"] is None
    assert task["result"] == {"message": "Initialized job status"}
    assert task["done"] == task["total"] == 4
    assert {j["name"]: j["status"] for j in store.find("jobs", wf)} == {"a": "ready", "b": "blocked"}
    assert tasks.list_tasks(store, wf)["items"] == [task]


def test_failed_operation_records_the_torc_error_body_and_changes_nothing(store, wf):
    store.insert("resource_requirements", wf, {"name": "bad", "memory": "lots"})
    jobs.add_job(store, wf, {"name": "a", "command": "x"})
    accepted = initialize.initialize_jobs_action(store, wf, **{"async": True})
    task = finished(store, wf, accepted.body["_key"])
    assert task["state"] == "failed" and task["retryable"] is False
    assert task["error"]["code"] == 400 and task["error"]["error"] is True
    assert "bad" in task["error"]["errorMessage"]
    assert [j["status"] for j in store.find("jobs", wf)] == ["uninitialized"]


def test_task_of_a_killed_process_ends_failed_and_retryable(store, wf):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    import psutil
    started = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait()
    doc = store.insert("tasks", None, {
        "workflow": wf, "operation": "initialize_jobs", "state": "running", "phase": "x",
        "done": 0, "total": 4, "created": 0, "updated": 0, "heartbeat": 0, "result": None,
        "error": None, "retryable": False,
        "process": {"host": socket.gethostname(), "pid": proc.pid, "started": started}})
    task = tasks.get_task(store, wf, doc["_key"])
    assert task["state"] == "failed" and task["retryable"] is True
    assert task["error"]["code"] == 500 and "run the operation again" in task["error"]["errorMessage"]
    assert store.get("tasks", None, doc["_key"])["state"] == "failed"  # stored, not just shown


def test_running_task_of_a_live_process_stays_running(store, wf):
    doc = store.insert("tasks", None, {
        "workflow": wf, "operation": "x", "state": "running", "heartbeat": 0,
        "process": {"host": socket.gethostname(), "pid": os.getpid(),
                    "started": tasks._process_started()}})
    assert tasks.get_task(store, wf, doc["_key"])["state"] == "running"


def test_task_of_another_workflow_is_not_found(store, wf):
    other = workflows.create_workflow(store, {"name": "o", "user": "u"})["_key"]
    accepted = initialize.initialize_jobs_action(store, wf, **{"async": True})
    finished(store, wf, accepted.body["_key"])
    with pytest.raises(NotFound):
        tasks.get_task(store, other, accepted.body["_key"])


SPEC = {"name": "s", "user": "u", "jobs": [{"name": "a", "command": "true"},
                                            {"name": "b", "command": "true", "blocked_by": ["a"]}]}


def test_async_specification_creates_the_workflow(store):
    from torc_graph.engine import specifications
    accepted = specifications.create_action(store, SPEC, **{"async": True})
    assert accepted.body["workflow"] is None
    holder = {}

    def done():
        holder["t"] = tasks.get_any_task(store, accepted.body["_key"])
        return holder["t"]["state"] != "running"
    assert wait_for(done, 30)
    task = holder["t"]
    assert task["state"] == "succeeded" and task["result"]["name"] == "s"
    assert task["workflow"] == task["result"]["_key"]
    assert sorted(j["name"] for j in store.find("jobs", task["workflow"])) == ["a", "b"]


def test_dead_creation_deletes_its_staged_workflow(store):
    """A creation whose process died before publishing: its staged (invisible) workflow and
    what was written to it are removed when the task is read; the task failed, retryable."""
    with store.staged_creation():
        shell = workflows.create_workflow(store, {"name": "half", "user": "u"})["_key"]
        store.insert("jobs", shell, {"name": "a", "command": "x"})
        # Simulate the death: leave the block without publishing (as kill -9 would).
        store._staging().clear()
    assert store.is_staged(shell) and not store.workflow_exists(shell)
    doc = store.insert("tasks", None, {
        "workflow": shell, "operation": "create_workflow_from_specification",
        "state": "running", "heartbeat": 0,
        "process": {"host": socket.gethostname(), "pid": 2**22 + 12345, "started": 1.0}})
    task = tasks.get_any_task(store, doc["_key"])
    assert task["state"] == "failed" and task["retryable"] is True
    assert not store.workflow_exists(shell) and not store.is_staged(shell)
    assert store.count("jobs", shell) == 0


def test_async_specification_with_a_cycle_fails_and_leaves_nothing(store):
    from torc_graph.engine import specifications
    bad = {**SPEC, "jobs": [{"name": "a", "command": "x", "blocked_by": ["b"]},
                            {"name": "b", "command": "x", "blocked_by": ["a"]}]}
    before = {w["_key"] for w in store.find("workflows", None)}
    accepted = specifications.create_action(store, bad, **{"async": True})
    assert wait_for(lambda: tasks.get_any_task(store, accepted.body["_key"])["state"] != "running", 30)
    task = tasks.get_any_task(store, accepted.body["_key"])
    assert task["state"] == "failed" and task["error"]["code"] == 400
    assert "cycle" in task["error"]["errorMessage"]
    assert {w["_key"] for w in store.find("workflows", None)} == before


def test_tasks_do_not_take_workflow_keys(tmp_path):
    """A fresh store's first workflow is 1 even when it is created through a task (the task
    document has a random key of its own, not one from the counter that numbers workflows)."""
    from torc_graph.client import Client

    with Client(database=f"sqlite:///{tmp_path / 'fresh.db'}") as client:
        first = client.add_workflow_specification({"name": "first", "jobs": [
            {"name": "a", "command": "true"}]})
        listed = client.get(f"/workflows/{first['_key']}/tasks")
    assert first["_key"] == "1"
    [task] = listed["items"]
    assert task["_key"].startswith("t") and len(task["_key"]) == 17


KILLED_AFTER_INITIALIZE = """
import os, signal, sys, time
from torc_graph.engine import initialize, tasks
from torc_graph.store.sqlite import SQLiteStore
store, wf = SQLiteStore(sys.argv[1]), sys.argv[2]

def initialize_then_die(progress):
    initialize.initialize_jobs(store, wf, progress=progress)
    os.kill(os.getpid(), signal.SIGKILL)  # before the task thread records the outcome

print(tasks.start(store, wf, "initialize_jobs", initialize_then_die).body["_key"], flush=True)
time.sleep(60)
"""


def test_initialize_task_killed_after_its_commit_is_succeeded_not_retryable(store, wf):
    """The task's success commits with the jobs: a process killed right after the commit
    leaves a succeeded task (its result), not a failed one inviting a rerun."""
    a = jobs.add_job(store, wf, {"name": "a", "command": "x"})
    jobs.add_job(store, wf, {"name": "b", "command": "x", "blocked_by": [a["_id"]]})
    proc = subprocess.run([sys.executable, "-c", KILLED_AFTER_INITIALIZE, store.path, wf],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    task = tasks.get_task(store, wf, proc.stdout.split()[0])
    assert task["state"] == "succeeded" and task["retryable"] is False
    assert task["result"] == {"message": "Initialized job status"}
    assert task["done"] == task["total"] == 4
    assert {j["name"]: j["status"] for j in store.find("jobs", wf)} == {"a": "ready", "b": "blocked"}


def _join_task_threads(key: str) -> None:
    for t in threading.enumerate():
        if t.name.startswith(f"task-{key}"):
            t.join(10)
            assert not t.is_alive()


def test_a_task_marked_succeeded_by_its_operation_is_not_written_again(store, wf, monkeypatch):
    """The operation records success in its own transaction; a reader polling the task may see
    that record as final, so neither the task thread nor its heartbeat may rewrite it after
    (CI saw a finished task's ``updated`` change under a reader)."""
    monkeypatch.setattr(tasks, "HEARTBEAT_SECONDS", 0.01)
    beats, seen = threading.Event(), {}

    def operation(progress):
        progress("working", 0, 1)
        beats.wait(0.2)  # several heartbeats while running
        progress.succeed({"ok": True})
        seen["at_success"] = store.get("tasks", None, progress.key)
        beats.wait(0.1)  # and heartbeats due after the operation's record
        return {"ok": True}

    key = tasks.start(store, wf, "op", operation).body["_key"]
    _join_task_threads(key)
    final = store.get("tasks", None, key)
    assert final["state"] == "succeeded" and final["result"] == {"ok": True}
    assert final["done"] == final["total"] == 1
    assert final == seen["at_success"]
