"""The replayable event stream ``GET /workflows/{wf}/events/stream`` through a real gunicorn
(torc_graph.testing.LiveServer, gthread workers): replay after a disconnect while 1,000 jobs
complete, filters, heartbeats, the per-process connection bound, auth, bad Last-Event-ID."""

from __future__ import annotations

import os
import threading
import time

import pytest
import requests

from torc_graph.client import ApiError, Client
from torc_graph.testing import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

RES = {"num_cpus": 4, "memory_gb": 8.0}
STREAM_ENV = {"TORC_GRAPH_STREAM_POLL_SECONDS": "0.05",
              "TORC_GRAPH_STREAM_HEARTBEAT_SECONDS": "0.3",
              # a lost event ends a test at the stream's end (an assertion), not a hang
              "TORC_GRAPH_STREAM_MAX_SECONDS": "20"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    with LiveServer(f"sqlite:///{d / 'db.sqlite'}", workers=1, env=STREAM_ENV,
                    log_path=d / "server.log") as s:
        yield s


def build(client: Client, n: int) -> str:
    jobs = [{"name": f"j{i}", "command": "true"} for i in range(n)]
    wf = client.add_workflow_specification({"name": "s", "user": "u", "jobs": jobs})["_key"]
    client.initialize_jobs(wf)
    client.bump_run_id(wf)
    return wf


def run_all(client: Client, wf: str, batch: int = 50) -> None:
    """Claim and complete every job through the batched execution API."""
    node = client.add_document(wf, "compute_nodes", {
        "hostname": "n", "pid": os.getpid(), "start_time": "t", "is_active": True,
        "resources": {**RES, "num_gpus": 0, "num_nodes": 1}})["_key"]
    resp = client.claim_jobs(wf, node, RES, limit=batch)
    while resp["jobs"]:
        out = client.complete_jobs(wf, node, resp["run_id"], [
            {"job_key": j["_key"], "attempt_id": j["execution"]["attempt_id"],
             "status": "done", "cause": "exit",
             "result": {"return_code": 0, "exec_time_minutes": 0.0,
                        "completion_time": "2026-01-01T00:00:00"}} for j in resp["jobs"]])
        assert {i["outcome"] for i in out["items"]} == {"completed"}
        resp = client.claim_jobs(wf, node, RES, limit=batch)


def all_event_keys(client: Client, wf: str) -> list[str]:
    return [e["_key"] for e in client.iter_items(f"/workflows/{wf}/events")]


def test_replay_after_a_disconnect_loses_and_duplicates_nothing(server):
    client = server.client()
    wf = build(client, 1000)
    worker = threading.Thread(target=run_all, args=(server.client(), wf, 20))
    received: list[str] = []
    first = client.stream_events(wf)
    worker.start()
    for event in first:
        received.append(event["_key"])
        if len(received) == 300:
            break
    first.close()  # disconnect mid-way (the generator's response is closed)
    time.sleep(0.5)  # events keep being written while the client is away
    second = client.stream_events(wf, received[-1])
    received.append(next(second)["_key"])
    written_at_reconnect = len(all_event_keys(client, wf))
    worker.join()  # the jobs finish while the second stream is open
    keys = all_event_keys(client, wf)
    assert len(keys) == 2000  # a start and a completion per job
    assert 301 < written_at_reconnect < len(keys)  # written while away, and after
    for event in second:
        received.append(event["_key"])
        if len(received) >= len(keys):
            break
    second.close()
    assert len(received) == len(set(received)), "an event was delivered twice"
    assert received == keys, "the stream lost an event or changed their order"


def test_filters_and_query_resume(server):
    client = server.client()
    wf = build(client, 5)
    run_all(client, wf)
    mine = client.post(f"/workflows/{wf}/events", {"category": "mine", "message": "m"})
    jobs = client.list_jobs(wf)
    events = list(client.iter_items(f"/workflows/{wf}/events"))

    def take(n, **kw):
        it = client.stream_events(wf, **kw)
        got = [next(it) for _ in range(n)]
        it.close()
        return got

    assert take(1, category="mine") == [mine]
    job_events = [e for e in events if e.get("job_key") == jobs[2]["_key"]]
    assert len(job_events) == 2
    assert take(2, job=jobs[2]["_key"]) == job_events
    # ?last_event_id= for clients that cannot set headers
    resp = client.session.get(f"{client.base}/workflows/{wf}/events/stream",
                              params={"last_event_id": events[-2]["_key"]}, stream=True)
    with resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines(chunk_size=None, decode_unicode=True)
        text = []
        for line in lines:
            text.append(line)
            if line.startswith("id: "):
                assert line == f"id: {events[-1]['_key']}"
                break
    # An id that is no event of the workflow: 400 naming it, before any byte is streamed.
    with pytest.raises(ApiError) as err:
        next(client.stream_events(wf, "999999999"))
    assert err.value.status == 400 and "999999999" in str(err.value)


def test_heartbeats_and_end_on_workflow_deletion(server):
    client = server.client()
    wf = build(client, 1)
    resp = client.session.get(f"{client.base}/workflows/{wf}/events/stream", stream=True,
                              timeout=10)
    with resp:
        lines = resp.iter_lines(chunk_size=None, decode_unicode=True)
        got = []
        for line in lines:
            got.append(line)
            if got.count(": keepalive") == 2:
                break
        client.delete(f"/workflows/{wf}")
        rest = list(lines)  # the server ends the stream: iteration stops
    assert got[0].startswith("retry: ")
    assert ": keepalive" in got and not any(x.startswith("id:") for x in got + rest)


def test_connection_bound_is_503_with_retry_after(tmp_path):
    with LiveServer(f"sqlite:///{tmp_path / 'db.sqlite'}", workers=1,
                    env={**STREAM_ENV, "TORC_GRAPH_STREAM_CONNECTIONS": "2"}) as server:
        _bound(server)


def _bound(server: LiveServer) -> None:
    client = server.client()
    wf = build(client, 1)
    url = f"{client.base}/workflows/{wf}/events/stream"
    held = [client.session.get(url, stream=True, timeout=10) for _ in range(2)]
    try:
        assert [r.status_code for r in held] == [200, 200]
        over = client.session.get(url, timeout=10)
        assert over.status_code == 503
        assert over.headers["retry-after"] == "5"
        assert over.json()["error"] is True and "event streams" in over.json()["errorMessage"]
        assert client.get("/ping")  # other requests still find a thread
    finally:
        for r in held:
            r.close()
    # slots come back once the server notices the closed connections (next heartbeat write)
    deadline = time.monotonic() + 10
    while True:
        r = client.session.get(url, stream=True, timeout=10)
        r.close()
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200


def test_no_token_is_401(server):
    wf = build(server.client(), 1)
    resp = requests.get(f"{server.base_url}/workflows/{wf}/events/stream", timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] is True


def test_events_follow_uses_the_stream_and_reconnects(tmp_path):
    """``torc-graph events follow`` against a server whose streams end every second: every
    event written across the reconnections is printed once, in order; Ctrl-C exits 0."""
    import json
    import signal
    import subprocess

    from torc_graph.testing import cli_argv, clean_env

    env = {**STREAM_ENV, "TORC_GRAPH_STREAM_MAX_SECONDS": "1"}
    with LiveServer(f"sqlite:///{tmp_path / 'db.sqlite'}", workers=1, env=env) as server:
        client = server.client()
        wf = build(client, 1)
        client.post(f"/workflows/{wf}/events", {"category": "note", "message": "old"})
        proc = subprocess.Popen(cli_argv("events", "follow", wf, "--json", "--interval", "0.1"),
                                env=clean_env(**server.env()), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            sent = 0
            deadline = time.monotonic() + 30
            while not lines and time.monotonic() < deadline:  # until the follower is up
                sent += 1
                client.post(f"/workflows/{wf}/events", {"category": "note", "message": str(sent)})
                time.sleep(0.3)
            for _ in range(10):  # spans several stream ends (1 s each)
                sent += 1
                client.post(f"/workflows/{wf}/events", {"category": "note", "message": str(sent)})
                time.sleep(0.35)
            time.sleep(1.5)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=20)
            reader.join(10)
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    printed = [json.loads(line)["message"] for line in lines]
    first = int(printed[0])
    assert printed == [str(i) for i in range(first, sent + 1)], err
