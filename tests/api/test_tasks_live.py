"""Background tasks through a real gunicorn server (torc_graph.testing.LiveServer, auth on):
``initialize_jobs?async=true`` answers 202 with a task that another worker can read, and the
client waits for it; a failing task carries the one torc error body."""

from __future__ import annotations

import pytest

from torc_graph.client import ApiError
from torc_graph.testing import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("tasks") / "t.db"
    with LiveServer(f"sqlite:///{path}", workers=2) as s:
        yield s


def test_async_initialize_through_gunicorn(server):
    c = server.client()
    wf = c.post("/workflows", {"name": "w", "user": "u"})["_key"]
    items = c.post(f"/workflows/{wf}/bulk_jobs",
                   {"jobs": [{"name": f"j{i}", "command": "true"} for i in range(200)]})["items"]
    c.post(f"/workflows/{wf}/bulk_jobs", {"jobs": [
        {"name": f"k{i}", "command": "true", "blocked_by": [items[i]["_id"]]} for i in range(200)]})
    resp = c.session.post(f"{server.base_url}/workflows/{wf}/initialize_jobs",
                          params={"async": "true"})
    assert resp.status_code == 202
    task = resp.json()
    assert task["state"] == "running" and task["operation"] == "initialize_jobs"
    assert resp.headers["Location"].endswith(f"/workflows/{wf}/tasks/{task['_key']}")
    seen = []
    done = c.wait_task(wf, task, seen.append)
    assert done["state"] == "succeeded" and done["result"] == {"message": "Initialized job status"}
    assert seen[-1] == done and done["done"] == done["total"]
    statuses = [j["status"] for j in c.list_jobs(wf)]
    assert statuses.count("ready") == 200 and statuses.count("blocked") == 200
    assert c.get(f"/workflows/{wf}/tasks")["items"][-1] == done


def test_failed_task_raises_the_operation_error(server):
    c = server.client()
    doc = c.post("/workflows", {"name": "w", "user": "u"})
    wf = doc["_key"]
    c.post(f"/workflows/{wf}/jobs", {"name": "a", "command": "true"})
    c.put(f"/workflows/{wf}", {**doc, "is_archived": True})
    with pytest.raises(ApiError) as err:
        c.initialize_jobs(wf)
    assert err.value.status == 400 and "archived" in str(err.value)
    task = c.get(f"/workflows/{wf}/tasks")["items"][0]
    assert task["state"] == "failed" and set(task["error"]) == {"error", "errorNum",
                                                                 "errorMessage", "code"}
    with pytest.raises(ApiError) as err:
        c.get(f"/workflows/{wf}/tasks/999999999")
    assert err.value.status == 404


def test_async_specification_through_gunicorn(server):
    c = server.client()
    spec = {"name": "spec", "user": "u", "jobs": [
        {"name": f"j{i}", "command": "true", **({"blocked_by": [f"j{i - 1}"]} if i else {})}
        for i in range(300)]}
    resp = c.session.post(f"{server.base_url}/workflow_specifications", json=spec,
                          params={"async": "true"})
    assert resp.status_code == 202 and resp.headers["Location"].endswith(
        f"/tasks/{resp.json()['_key']}")
    done = c.wait_task(None, resp.json())
    wf = done["result"]["_key"]
    assert done["workflow"] == wf and len(c.list_jobs(wf)) == 300
    assert c.add_workflow_specification({**spec, "name": "again"})["name"] == "again"


def test_kill_9_of_the_worker_mid_creation_fails_the_task_and_leaves_nothing(tmp_path):
    """A 30,000-job specification takes seconds to check and write; the worker running it is
    killed with SIGKILL while the task is running. gunicorn starts a new worker; reading the task
    there marks it failed and retryable, and no workflow of that name is left."""
    import json
    import os
    import signal
    import sqlite3

    from torc_graph.testing import wait_for

    db = tmp_path / "k.db"
    with LiveServer(f"sqlite:///{db}", workers=1) as server:
        c = server.client()
        spec = {"name": "killed", "user": "u", "jobs": [
            {"name": f"j{i}", "command": "true", **({"blocked_by": [f"j{i - 1}"]} if i else {})}
            for i in range(30_000)]}
        resp = c.session.post(f"{server.base_url}/workflow_specifications", json=spec,
                              params={"async": "true"})
        assert resp.status_code == 202
        key = resp.json()["_key"]
        with sqlite3.connect(db) as con:
            doc = json.loads(con.execute("SELECT doc FROM doc_tasks WHERE key = ?",
                                         (key,)).fetchone()[0])
        assert doc["state"] == "running"
        os.kill(doc["process"]["pid"], signal.SIGKILL)
        assert wait_for(lambda: doc["process"]["pid"] not in server.worker_pids()
                        and server.worker_pids(), 30)
        task = c.get(f"/tasks/{key}")
        assert task["state"] == "failed" and task["retryable"] is True
        assert task["error"]["code"] == 500 and "run the operation again" in task["error"]["errorMessage"]
        assert [w for w in c.get("/workflows")["items"] if w["name"] == "killed"] == []
