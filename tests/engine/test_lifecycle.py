"""start_job, complete_job (downstream processing), manage_status_change, resets, cancel and
is_complete (behavior doc §3, §4.7–§4.10), on a real SQLite store."""

from __future__ import annotations

import pytest

from torc_graph.engine import claims, initialize, jobs, lifecycle, workflows
from torc_graph.errors import BadRequest, NotFound, RevisionConflict
from torc_graph.testing import CountingStore


@pytest.fixture
def node(store, wf):
    return store.insert("compute_nodes", wf, {
        "hostname": "host1", "pid": 1, "start_time": "t", "is_active": True,
        "resources": {"num_cpus": 4, "memory_gb": 8.0, "num_gpus": 0, "num_nodes": 1}})


def chain(store, wf, names, **extra):
    """Jobs with explicit blocked_by edges: each name blocked by the listed names."""
    out = {}
    for name, blockers in names:
        body = {"name": name, "command": f"run {name}",
                "blocked_by": [out[b]["_id"] for b in blockers], **extra.get(name, {})}
        out[name] = jobs.add_job(store, wf, body)
    return out


def statuses(store, wf):
    return {j["name"]: j["status"] for j in store.find("jobs", wf)}


def result(job, rc=0, run_id=1, status="done"):
    return {"job_key": job["_key"], "run_id": run_id, "return_code": rc,
            "exec_time_minutes": 0.5, "completion_time": "2024-05-01T12:00:00", "status": status}


def claim_all(store, wf):
    return {j["name"]: j for j in
            claims.prepare_next_jobs_for_submission(store, wf, limit=1000)["jobs"]}


def run(store, wf, node, job_name, rc=0):
    """Start and complete one ready job the way a worker does (the claim of just this job is
    simulated; claims are tested in test_claims.py)."""
    job = store.find("jobs", wf, {"name": job_name})[0]
    assert job["status"] == "ready", job
    job = store.update("jobs", wf, job["_key"], {"status": "submitted_pending"})
    started = lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_id"])
    return lifecycle.complete_job(store, wf, started["_id"], "done", started["_rev"], 1,
                                  node["_key"], result(started, rc))


def events(store, wf):
    return store.find("events", wf)


def test_start_job(store, wf, node):
    j = chain(store, wf, [("a", [])])["a"]
    initialize.initialize_jobs(store, wf)
    job = claim_all(store, wf)["a"]
    started = lifecycle.start_job(store, wf, job["_id"], job["_rev"], 1, node["_id"])
    assert started["status"] == "submitted" and started["_rev"] != job["_rev"]
    executed = store.find("executed", wf)
    assert [(e["_from"], e["_to"], e["data"]) for e in executed] == [
        (node["_id"], j["_id"], {"run_id": 1})]
    (event,) = events(store, wf)
    assert {k: event[k] for k in ("category", "type", "job_key", "job_name", "node_name",
                                  "message")} == {
        "category": "job", "type": "start", "job_key": j["_key"], "job_name": "a",
        "node_name": "host1", "message": f"Started job {j['_key']}"}
    assert isinstance(event["timestamp"], int)


def test_start_job_errors_change_nothing(store, wf, node):
    chain(store, wf, [("a", [])])
    initialize.initialize_jobs(store, wf)
    ready = store.find("jobs", wf)[0]
    with pytest.raises(BadRequest, match="^job status must be submitted_pending: ready$"):
        lifecycle.start_job(store, wf, ready["_key"], ready["_rev"], 1, node["_key"])
    job = claim_all(store, wf)["a"]
    with pytest.raises(RevisionConflict) as exc:
        lifecycle.start_job(store, wf, job["_key"], "stale", 1, node["_key"])
    assert exc.value.status == 409
    with pytest.raises(BadRequest, match="run_id"):
        lifecycle.start_job(store, wf, job["_key"], job["_rev"], 2, node["_key"])
    with pytest.raises(NotFound) as exc:
        lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, "999999")
    assert exc.value.status == 404
    with pytest.raises(NotFound):
        lifecycle.start_job(store, wf, "999999", job["_rev"], 1, node["_key"])
    assert store.get("jobs", wf, job["_key"]) == job
    assert events(store, wf) == [] and store.count("executed", wf) == 0


def test_complete_job_unblocks_successors(store, wf, node):
    js = chain(store, wf, [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])])
    initialize.initialize_jobs(store, wf)
    done = run(store, wf, node, "a")
    assert done["status"] == "done"
    assert done["internal"]["hash"] == initialize.job_hash(store, wf, done)
    assert statuses(store, wf) == {"a": "done", "b": "ready", "c": "ready", "d": "blocked"}
    (res,) = store.find("results", wf)
    assert res["return_code"] == 0 and res["job_key"] == js["a"]["_key"]
    assert [(e["_from"], e["_to"]) for e in store.find("returned", wf)] == [
        (js["a"]["_id"], res["_id"])]
    complete_events = [e for e in events(store, wf) if e["type"] == "complete"]
    assert [e["message"] for e in complete_events] == [
        f"Completed job {js['a']['_key']} with status=done return_code=0"]
    run(store, wf, node, "b")
    assert statuses(store, wf)["d"] == "blocked"
    run(store, wf, node, "c")
    assert statuses(store, wf)["d"] == "ready"
    run(store, wf, node, "d")
    assert lifecycle.is_complete(store, wf)["is_complete"] is True
    # Exactly one start and one complete event per job.
    assert len(events(store, wf)) == 8


def test_failure_cancels_downstream_transitively_and_workflow_completes(store, wf, node):
    """§8 item 5 fixed: the cancellation reaches every flagged blocked descendant."""
    chain(store, wf, [
        ("a", []), ("sib", []),
        ("b", ["a", "sib"]), ("c", ["b"]), ("d", ["c"]),
        ("keep", ["c"]), ("after_keep", ["keep"]),
        ("other", []), ("e", ["other", "c"]),
        ("shared", []), ("g", ["shared", "c"]), ("h", ["shared"]),
    ], keep={"cancel_on_blocking_job_failure": False})
    initialize.initialize_jobs(store, wf)
    assert statuses(store, wf)["sib"] == "ready"
    run(store, wf, node, "a", rc=1)
    st = statuses(store, wf)
    assert st == {"a": "done", "sib": "canceled", "b": "canceled", "c": "canceled",
                  "d": "canceled", "keep": "ready", "after_keep": "blocked",
                  "other": "canceled", "e": "canceled",
                  # shared also blocks h, which is not canceled: it still has work to do.
                  "shared": "ready", "g": "canceled", "h": "blocked"}
    # Canceled jobs get no result and no event.
    assert store.count("results", wf) == 1
    assert len(events(store, wf)) == 2
    run(store, wf, node, "keep")
    run(store, wf, node, "after_keep")
    run(store, wf, node, "shared")
    run(store, wf, node, "h")
    assert lifecycle.is_complete(store, wf) == {
        "is_canceled": False, "is_complete": True, "needs_to_run_completion_script": False}


def test_failure_with_unflagged_successor_makes_it_ready(store, wf, node):
    chain(store, wf, [("a", []), ("b", ["a"])], b={"cancel_on_blocking_job_failure": False})
    initialize.initialize_jobs(store, wf)
    run(store, wf, node, "a", rc=2)
    assert statuses(store, wf) == {"a": "done", "b": "ready"}


def test_complete_with_same_status_skips_downstream(store, wf, node):
    """A worker reporting a job the server canceled (§6.3): no downstream processing."""
    chain(store, wf, [("a", []), ("b", ["a"])])
    initialize.initialize_jobs(store, wf)
    job = claim_all(store, wf)["a"]
    started = lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_key"])
    lifecycle.cancel(store, wf)
    canceled = store.get("jobs", wf, started["_key"])
    assert canceled["status"] == "canceled"
    # The old rev is rejected; the worker re-reads the job first.
    with pytest.raises(RevisionConflict):
        lifecycle.complete_job(store, wf, job["_key"], "canceled", started["_rev"], 1,
                               node["_key"], result(job, -9, status="canceled"))
    out = lifecycle.complete_job(store, wf, job["_key"], "canceled", canceled["_rev"], 1,
                                 node["_key"], result(job, -9, status="canceled"))
    assert out["status"] == "canceled"
    assert statuses(store, wf) == {"a": "canceled", "b": "blocked"}
    assert store.count("results", wf) == 1
    assert [e["type"] for e in events(store, wf)] == ["start", "complete"]
    assert lifecycle.is_complete(store, wf)["is_canceled"] is True


def test_complete_job_errors_change_nothing(store, wf, node):
    chain(store, wf, [("a", []), ("b", ["a"])])
    initialize.initialize_jobs(store, wf)
    job = claim_all(store, wf)["a"]
    job = lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_key"])
    events_before = len(events(store, wf))
    cases = [
        (BadRequest, dict(status="running"), "does not indicate completion"),
        (RevisionConflict, dict(rev="stale"), "Revision conflict"),
        (BadRequest, dict(run_id=7), "run_id"),
        (NotFound, dict(compute_node_key="424242"), "compute_node"),
        (NotFound, dict(key="424242"), "job"),
    ]
    for error, override, match in cases:
        args = dict(key=job["_id"], status="done", rev=job["_rev"], run_id=1,
                    compute_node_key=node["_key"]) | override
        with pytest.raises(error, match=match):
            lifecycle.complete_job(store, wf, args["key"], args["status"], args["rev"],
                                   args["run_id"], args["compute_node_key"], result(job))
    # A result for another run while the job has none for this run: 400.
    with pytest.raises(BadRequest, match="no result"):
        lifecycle.complete_job(store, wf, job["_key"], "done", job["_rev"], 1, node["_key"],
                               result(job, run_id=5))
    job.pop("_oldRev")
    assert store.get("jobs", wf, job["_key"]) == job
    assert store.count("results", wf) == 0 and store.count("returned", wf) == 0
    assert len(events(store, wf)) == events_before


def test_manage_status_change(store, wf, node):
    chain(store, wf, [("a", []), ("b", ["a"]), ("c", ["b"])])
    initialize.initialize_jobs(store, wf)
    run(store, wf, node, "a")
    run(store, wf, node, "b")
    run(store, wf, node, "c")
    a = store.find("jobs", wf, {"name": "a"})[0]
    with pytest.raises(BadRequest, match="complete_job"):
        lifecycle.manage_status_change(store, wf, a["_key"], "done", a["_rev"], 1)
    with pytest.raises(BadRequest) as exc:
        lifecycle.manage_status_change(store, wf, a["_key"], "uninitialized", "stale", 1)
    assert exc.value.status == 400 and "Revision conflict" in exc.value.message
    with pytest.raises(BadRequest, match="run_id"):
        lifecycle.manage_status_change(store, wf, a["_key"], "uninitialized", a["_rev"], 3)
    with pytest.raises(BadRequest):
        lifecycle.manage_status_change(store, wf, a["_key"], "bogus", a["_rev"], 1)
    assert store.get("jobs", wf, a["_key"]) == a
    # done → ready: no side effects; done → uninitialized resets downstream.
    assert lifecycle.manage_status_change(store, wf, a["_key"], "ready", a["_rev"], 1)[
        "status"] == "ready"
    assert statuses(store, wf) == {"a": "ready", "b": "done", "c": "done"}
    b = store.find("jobs", wf, {"name": "b"})[0]
    out = lifecycle.manage_status_change(store, wf, b["_key"], "uninitialized", b["_rev"], 1)
    assert out["status"] == "uninitialized"
    assert statuses(store, wf) == {"a": "ready", "b": "uninitialized", "c": "uninitialized"}
    # Same status: no-op (no rev change), even with another run_id.
    again = lifecycle.manage_status_change(store, wf, b["_key"], "uninitialized", out["_rev"], 9)
    assert again["_rev"] == out["_rev"]


def test_reset_job_status(store, wf, node):
    chain(store, wf, [("a", []), ("b", ["a"]), ("x", []), ("y", ["x"]), ("z", [])],
          b={"cancel_on_blocking_job_failure": False})
    initialize.initialize_jobs(store, wf)
    run(store, wf, node, "a", rc=1)
    run(store, wf, node, "b")
    run(store, wf, node, "x")
    run(store, wf, node, "y")
    store.update("jobs", wf, store.find("jobs", wf, {"name": "z"})[0]["_key"],
                 {"status": "disabled"})
    msg = lifecycle.reset_job_status(store, wf, failed_only=True)
    assert msg == {"message": "Reset job status to uninitialized failed_only=true"}
    assert statuses(store, wf) == {"a": "uninitialized", "b": "uninitialized", "x": "done",
                                   "y": "done", "z": "disabled"}
    # Failures of an earlier run are ignored.
    space = store.workflow_space(wf)
    store.update("workflow_statuses", None, space.status["_key"], {"run_id": 2})
    lifecycle.reset_job_status(store, wf, failed_only=True)
    assert statuses(store, wf)["x"] == "done"
    assert lifecycle.reset_job_status(store, wf) == {
        "message": "Reset job status to uninitialized failed_only=false"}
    assert set(statuses(store, wf).values()) == {"uninitialized"}


def test_reset_status_and_archived(store, wf):
    space = store.workflow_space(wf)
    store.update("workflow_statuses", None, space.status["_key"], {
        "is_canceled": True, "has_detected_need_to_run_completion_script": True,
        "auto_tune_status": {"enabled": True, "job_keys": ["1"]}})
    assert lifecycle.reset_status(store, wf) == {"message": "Reset workflow status"}
    status = store.workflow_space(wf).status
    assert status["is_canceled"] is False and status["run_id"] == 1
    assert status["auto_tune_status"] == {"enabled": False, "job_keys": []}
    assert status["has_detected_need_to_run_completion_script"] is False
    store.update("workflows", None, wf, {"is_archived": True})
    for call in (lifecycle.reset_status, lifecycle.reset_job_status):
        with pytest.raises(BadRequest, match="archived"):
            call(store, wf)


def test_cancel(store, wf, node):
    chain(store, wf, [("a", []), ("b", []), ("c", []), ("d", ["c"])])
    initialize.initialize_jobs(store, wf)
    claimed = claims.prepare_next_jobs_for_submission(store, wf, limit=2)["jobs"]
    lifecycle.start_job(store, wf, claimed[0]["_key"], claimed[0]["_rev"], 1, node["_key"])
    assert lifecycle.cancel(store, wf) == {"message": "Canceled workflow"}
    assert statuses(store, wf) == {"a": "canceled", "b": "canceled", "c": "ready",
                                   "d": "blocked"}
    assert store.workflow_space(wf).status["is_canceled"] is True
    assert claims.prepare_jobs_for_submission(
        store, wf, {"num_cpus": 4, "memory_gb": 4.0}) == {
        "jobs": [], "reason": "The workflow was canceled."}
    assert claims.prepare_next_jobs_for_submission(store, wf) == {"jobs": []}
    assert claims.prepare_jobs_for_scheduling(store, wf) == {"schedulers": []}


def test_is_complete_and_completion_script_flag(store, wf, node):
    assert lifecycle.is_complete(store, wf) == {
        "is_canceled": False, "is_complete": True, "needs_to_run_completion_script": False}
    chain(store, wf, [("a", []), ("b", [])])
    cfg = store.workflow_space(wf).config
    store.update("workflow_configs", None, cfg["_key"], {"workflow_completion_script": "echo"})
    initialize.initialize_jobs(store, wf)
    run(store, wf, node, "a")
    assert lifecycle.is_complete(store, wf)["is_complete"] is False
    store.update("jobs", wf, store.find("jobs", wf, {"name": "b"})[0]["_key"],
                 {"status": "disabled"})
    first = lifecycle.is_complete(store, wf)
    assert first == {"is_canceled": False, "is_complete": True,
                     "needs_to_run_completion_script": True}
    assert lifecycle.is_complete(store, wf)["needs_to_run_completion_script"] is False
    assert store.workflow_space(wf).status["has_detected_need_to_run_completion_script"] is True
    with pytest.raises(NotFound):
        lifecycle.is_complete(store, "987654")


@pytest.mark.parametrize("rc", [0, 1])
def test_complete_job_store_calls_do_not_depend_on_workflow_size(store, rc):
    """A binary tree of blocked jobs under j0, and j1 a ready co-blocker of j0's first child:
    completing j0 (successfully, or failing and canceling the whole tree and j1) costs the same
    store calls whatever the size of the tree."""
    counts = []
    for n in (50, 2000):
        wf = workflows.create_workflow(store, {"user": "test"})["_key"]
        store.update("workflow_statuses", None, store.workflow_space(wf).status["_key"],
                     {"run_id": 1})
        cn = store.insert("compute_nodes", wf, {"hostname": "h", "pid": 1, "start_time": "t",
                                                "resources": {"num_cpus": 1, "memory_gb": 1.0}})
        docs = jobs.add_jobs(store, wf, {"jobs": [{"name": f"j{i}", "command": "c"}
                                                  for i in range(n)]})["items"]
        parent = [None, None] + [0 if i < 4 else i // 2 for i in range(2, n)]
        store.insert_many("blocks", wf, [{"_from": docs[parent[i]]["_id"], "_to": docs[i]["_id"]}
                                         for i in range(2, n)]
                          + [{"_from": docs[1]["_id"], "_to": docs[2]["_id"]}])
        initialize.initialize_jobs(store, wf)
        root = store.update("jobs", wf, docs[0]["_key"], {"status": "submitted"})
        counting = CountingStore(store)
        lifecycle.complete_job(counting, wf, root["_key"], "done", root["_rev"], 1, cn["_key"],
                               result(root, rc))
        counts.append(counting.total)
        st = statuses(store, wf)
        if rc:
            assert st["j0"] == "done" and sum(s == "canceled" for s in st.values()) == n - 1
        else:
            assert (st["j1"], st["j2"], st["j3"]) == ("ready", "blocked", "ready")
            assert sum(s == "blocked" for s in st.values()) == n - 3
    assert counts[0] == counts[1], counts
