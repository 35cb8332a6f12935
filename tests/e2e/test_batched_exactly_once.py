"""Exactly once through a real gunicorn with the batched execution API: 16 worker processes
(torc_graph.client: claim_jobs with long poll, complete_jobs with the piggy-backed claim) run a
1,000-job workflow with dependencies, while one more worker holding 4 jobs is killed with
SIGKILL. Its jobs must run again elsewhere once its lease expires (no manual step), its late
completion must be rejected as stale, every job must complete exactly once, and no request may
fail.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import traceback
from collections import Counter

import pytest

from torc_graph.client import Client
from torc_graph.testing import LiveServer, run_processes

pytestmark = pytest.mark.slow

NUM_WORKERS = 16
STAGES = 4
STAGE_SIZE = 250
LEASE_SECONDS = 6
DEADLINE_S = 150
RES = {"num_cpus": 4, "memory_gb": 8.0}


def _node(client: Client, wf: str, name: str) -> str:
    return client.add_document(wf, "compute_nodes", {
        "hostname": name, "pid": os.getpid(), "start_time": "t", "is_active": True,
        "resources": {**RES, "num_gpus": 0, "num_nodes": 1}})["_key"]


def _completion(job: dict, rc: int = 0) -> dict:
    return {"job_key": job["_key"], "attempt_id": job["execution"]["attempt_id"],
            "status": "done", "cause": "exit",
            "result": {"return_code": rc, "exec_time_minutes": 0.0,
                       "completion_time": "2026-01-01T00:00:00"}}


def worker(url: str, wf: str, index: int, queue) -> None:
    """One batched worker; reports ``(index, completed (key, attempt) pairs, error)``."""
    done: list[tuple[str, int]] = []
    try:
        with Client(url) as client:
            node = _node(client, wf, f"w{index}")
            claim = {"resources": RES, "limit": 8, "wait_seconds": 1}
            resp = client.claim_jobs(wf, node, RES, limit=8, wait_seconds=1)
            deadline = time.monotonic() + DEADLINE_S
            while not resp["is_complete"]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {index}: not complete in {DEADLINE_S} s")
                if not resp["jobs"]:
                    resp = client.claim_jobs(wf, node, RES, limit=8, wait_seconds=1)
                    continue
                out = client.complete_jobs(wf, node, resp["run_id"],
                                           [_completion(j) for j in resp["jobs"]], claim=claim)
                bad = [i for i in out["items"] if i["outcome"] != "completed"]
                assert not bad, bad
                done += [(i["job_key"], i["attempt_id"]) for i in out["items"]]
                resp = out["claimed"] or {"jobs": [], "is_complete": out["is_complete"]}
        queue.put((index, done, None))
    except BaseException:  # noqa: BLE001 (report everything)
        queue.put((index, done, traceback.format_exc()))


def victim(url: str, wf: str, queue) -> None:
    """Claims 4 jobs, reports them, then hangs until it is killed."""
    with Client(url) as client:
        node = _node(client, wf, "victim")
        resp = client.claim_jobs(wf, node, RES, limit=4)
        queue.put((node, resp["run_id"], resp["jobs"]))
        time.sleep(600)


def build(client: Client) -> str:
    jobs = []
    for stage in range(STAGES):
        for i in range(STAGE_SIZE):
            blocked = []
            if stage:
                blocked = [f"s{stage - 1}-{i}", f"s{stage - 1}-{(i + 1) % STAGE_SIZE}"]
            jobs.append({"name": f"s{stage}-{i}", "command": "true", "blocked_by": blocked})
    wf = client.add_workflow_specification({"name": "x1", "user": "e2e", "jobs": jobs})["_key"]
    config = client.get_config(wf)
    config.update(lease_seconds=LEASE_SECONDS, heartbeat_seconds=2)
    client.put(f"/workflows/{wf}/config", config)
    client.initialize_jobs(wf)
    client.bump_run_id(wf)
    return wf


def test_sixteen_batched_workers_and_a_killed_one_run_every_job_exactly_once(tmp_path):
    log = tmp_path / "server.log"
    with LiveServer(f"sqlite:///{tmp_path / 'db.sqlite'}", workers=4, log_path=log) as server, \
            Client(server.url) as client:
        wf = build(client)
        ctx = multiprocessing.get_context("fork")
        vq = ctx.Queue()
        doomed = ctx.Process(target=victim, args=(server.url, wf, vq))
        doomed.start()
        vnode, run_id, held = vq.get(timeout=60)
        assert len(held) == 4
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.join(10)

        start = time.monotonic()
        reports = run_processes(worker, [(server.url, wf, i) for i in range(NUM_WORKERS)],
                                DEADLINE_S + 30)
        elapsed = time.monotonic() - start
        errors = [(i, err) for i, _, err in reports if err]
        assert not errors, "\n".join(f"worker {i}:\n{err}" for i, err in errors)
        print(f"\n{STAGES * STAGE_SIZE} jobs, {NUM_WORKERS} batched workers: {elapsed:.1f} s")

        # Every job completed exactly once; the killed worker's 4 jobs as attempt 2.
        completed = Counter(key for _, pairs, _ in reports for key, _ in pairs)
        jobs = client.list_jobs(wf)
        assert set(completed) == {j["_key"] for j in jobs}
        assert set(completed.values()) == {1}
        attempts = {key: a for _, pairs, _ in reports for key, a in pairs}
        assert {attempts[j["_key"]] for j in held} == {2}
        assert {j["status"] for j in jobs} == {"done"}
        results = list(client.iter_items(f"/workflows/{wf}/results"))
        assert Counter(r["cause"] for r in results) == {"exit": len(jobs), "lost": 4}
        assert client.is_complete(wf)["is_complete"] is True

        # The dead worker's late completion is fenced off and changes nothing.
        late = client.complete_jobs(wf, vnode, run_id, [_completion(j) for j in held])
        assert {i["outcome"] for i in late["items"]} == {"stale"}
        assert {i["code"] for i in late["items"]} == {409}
        assert len(list(client.iter_items(f"/workflows/{wf}/results"))) == len(results)
        node = client.get(f"/workflows/{wf}/compute_nodes/{vnode}")
        assert node["is_active"] is False
        events = list(client.iter_items(f"/workflows/{wf}/events"))
        assert [e for e in events if e.get("type") == "lease_expired"]
    text = log.read_text(errors="replace")
    assert "database is locked" not in text and "Traceback" not in text


def test_waiting_long_polls_do_not_pin_server_workers(tmp_path):
    """12 long polls wait on 2 gunicorn worker processes; other requests still answer at once
    (a sync worker per poll would queue them behind the polls)."""
    import threading

    with LiveServer(f"sqlite:///{tmp_path / 'db.sqlite'}", workers=2) as server, \
            Client(server.url) as client:
        wf = client.add_workflow_specification(
            {"name": "lp", "user": "e2e", "jobs": [{"name": "a", "command": "true"}]})["_key"]
        client.initialize_jobs(wf)
        client.bump_run_id(wf)
        waited: list[float] = []

        def poll(i: int) -> None:
            with Client(server.url) as c:
                node = _node(c, wf, f"p{i}")
                t = time.monotonic()
                resp = c.claim_jobs(wf, node, {"num_cpus": 0, "memory_gb": 1.0}, wait_seconds=8)
                assert resp["jobs"] == []
                waited.append(time.monotonic() - t)

        threads = [threading.Thread(target=poll, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        time.sleep(2)
        t0 = time.monotonic()
        assert client.ping()
        node = _node(client, wf, "busy")
        got = client.claim_jobs(wf, node, RES)["jobs"]
        answered = time.monotonic() - t0
        for t in threads:
            t.join(30)
        assert [j["name"] for j in got] == ["a"]
        assert answered < 4, answered  # the polls still had ≥ 6 s to wait
        assert len(waited) == 12 and all(w >= 7.5 for w in waited), waited
