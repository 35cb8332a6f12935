"""The batched execution API (docs/execution-model.md §4) on the contract backends: claim and
start, complete (set-based downstream, duplicates, stale items, piggy-backed claim), release,
heartbeat, long poll; and that it has exactly the effects of the single-job endpoints."""

from __future__ import annotations

import threading
import time

import pytest

from torc_graph.engine import claims, execution, lifecycle, workflows
from torc_graph.errors import Conflict, InvalidInput, NotFound
from torc_graph.testing import CountingStore, sibling_module

helpers = sibling_module(__file__, "execution_helpers")
RES, add_node, claim, complete, item, make_jobs, statuses = (
    helpers.RES, helpers.add_node, helpers.claim, helpers.complete, helpers.item,
    helpers.make_jobs, helpers.statuses)


@pytest.fixture
def node(store, wf):
    return add_node(store, wf)


def test_claim_jobs_claims_and_starts_in_one_call(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": [], "c": ["a"]})
    resp = claim(store, wf, node)
    assert sorted(j["name"] for j in resp["jobs"]) == ["a", "b"]
    for job in resp["jobs"]:
        assert job["status"] == "submitted"
        assert job["execution"]["attempt_id"] == 1
        assert job["execution"]["compute_node"] == node["_key"]
        assert job["execution"]["lease_expires"] is None
    assert resp["run_id"] == 1 and resp["heartbeat_seconds"] == 30
    assert resp["lease_seconds"] == 120 and not resp["is_complete"]
    executed = store.find("executed", wf)
    assert len(executed) == 2 and all(e["_from"] == node["_id"] for e in executed)
    assert [e["type"] for e in store.find("events", wf)] == ["start", "start"]
    lease = store.get("compute_nodes", wf, node["_key"])["lease"]
    assert lease["seconds"] == 120 and lease["expires"] > lease["heartbeat"]


def test_complete_jobs_unblocks_set_based_and_claims_in_the_same_call(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": [], "c": ["a", "b"], "d": ["c"]})
    got = claim(store, wf, node)["jobs"]
    resp = complete(store, wf, node, [item(j) for j in got],
                    claim={"resources": RES, "limit": 5})
    assert [i["outcome"] for i in resp["items"]] == ["completed", "completed"]
    assert [j["name"] for j in resp["claimed"]["jobs"]] == ["c"]
    assert statuses(store, wf) == {"a": "done", "b": "done", "c": "submitted", "d": "blocked"}
    rows = store.find("results", wf)
    assert [(r["attempt_id"], r["cause"], r["status"]) for r in rows] == [(1, "exit", "done")] * 2


def test_completion_batch_store_calls_do_not_grow_with_the_fan_out(store, wf, node):
    def calls(n):
        w = workflows.create_workflow(store, {"user": "t"})["_key"]
        st = store.workflow_space(w).status
        store.update("workflow_statuses", None, st["_key"], {"run_id": 1})
        make_jobs(store, w, {"root": [], **{f"x{i}": ["root"] for i in range(n)}})
        nd = add_node(store, w)
        got = claim(store, w, nd)["jobs"]
        counting = CountingStore(store)
        complete(counting, w, nd, [item(j) for j in got])
        assert all(j["status"] == "ready" for j in store.find("jobs", w, {"name": "x0"}))
        return counting.total

    assert calls(3) == calls(60)


def test_duplicate_completion_is_recorded_once(store, wf, node):
    make_jobs(store, wf, {"a": []})
    job = claim(store, wf, node)["jobs"][0]
    first = complete(store, wf, node, [item(job)])
    again = complete(store, wf, node, [item(job)])
    assert first["items"][0]["outcome"] == "completed"
    assert again["items"][0]["outcome"] == "duplicate" and again["items"][0]["code"] == 200
    assert len(store.find("results", wf)) == 1
    assert [e["type"] for e in store.find("events", wf)] == ["start", "complete"]


def test_stale_items_change_nothing(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": []})
    other = add_node(store, wf, "host2")
    a, b = claim(store, wf, node, limit=2)["jobs"]
    before = {j["_key"]: j["_rev"] for j in store.find("jobs", wf)}
    resp = complete(store, wf, other, [item(a)])  # another node's attempt
    resp2 = complete(store, wf, node, [item(b, attempt=7)])  # wrong attempt
    resp3 = complete(store, wf, node, [item(a)], run_id=2)  # wrong run
    for r in (resp, resp2, resp3):
        assert r["items"][0]["outcome"] == "stale" and r["items"][0]["code"] == 409
    assert {j["_key"]: j["_rev"] for j in store.find("jobs", wf)} == before
    assert store.find("results", wf) == []


def test_bad_body_writes_nothing(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": []})
    a, b = claim(store, wf, node, limit=2)["jobs"]
    bad = item(b)
    with pytest.raises(InvalidInput, match=r"completions\[1\].process_stats"):
        complete(store, wf, node, [item(a), {**bad, "process_stats": {"avg_rss": "x"}}])
    assert store.find("results", wf) == []
    with pytest.raises(NotFound):
        complete(store, wf, {"_key": "999999"}, [item(a)])
    with pytest.raises(InvalidInput, match="wait_seconds"):
        claim(store, wf, node, wait_seconds=61)


def test_release_requeues_without_cascade(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": ["a"]})
    a = claim(store, wf, node)["jobs"][0]
    resp = execution.release_jobs(store, wf, {"compute_node_key": node["_key"], "releases": [
        {"job_key": a["_key"], "attempt_id": 1, "cause": "interrupted"}]})
    assert resp["items"][0]["outcome"] == "released"
    assert statuses(store, wf) == {"a": "ready", "b": "blocked"}
    job = store.get("jobs", wf, a["_key"])
    assert job["execution"]["attempt_id"] == 2 and job["execution"]["last_cause"] == "interrupted"
    row = store.find("results", wf)[0]
    assert (row["attempt_id"], row["cause"], row["status"]) == (1, "interrupted", "ready")
    # The late completion of the released attempt is stale.
    assert complete(store, wf, node, [item(a)])["items"][0]["outcome"] == "stale"
    again = claim(store, wf, node)["jobs"][0]
    assert again["execution"]["attempt_id"] == 2


def test_heartbeat_is_one_write_and_reports_lost_jobs(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": []})
    a, b = claim(store, wf, node, limit=2)["jobs"]
    execution.release_jobs(store, wf, {"compute_node_key": node["_key"], "releases": [
        {"job_key": b["_key"], "attempt_id": 1}]})
    counting = CountingStore(store)
    resp = execution.heartbeat(counting, wf, node["_key"],
                               {"lease_seconds": 60, "job_keys": [a["_key"], b["_key"]]})
    writes = {k: v for k, v in counting.calls.items()
              if k in ("update", "update_many", "insert", "insert_many")}
    assert writes == {"update": 1}
    assert resp["lost_jobs"] == [b["_key"]] and resp["lease_seconds"] == 60
    assert store.get("compute_nodes", wf, node["_key"])["lease"]["expires"] == resp["lease_expires"]


def test_node_whose_lease_expired_gets_409(store, wf, node):
    make_jobs(store, wf, {"a": []})
    claim(store, wf, node)
    store.update("compute_nodes", wf, node["_key"],
                 {"lease": {"seconds": 1, "expires": 1, "heartbeat": 0}})
    with pytest.raises(Conflict, match="lost its lease"):
        execution.heartbeat(store, wf, node["_key"], {})
    with pytest.raises(Conflict):
        claim(store, wf, node)


def test_long_poll_wakes_when_a_job_becomes_ready(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": ["a"]})
    other = add_node(store, wf, "host2")
    a = claim(store, wf, other)["jobs"][0]
    out = {}

    def poll():
        t = time.monotonic()
        out["resp"] = claim(store, wf, node, wait_seconds=20)
        out["waited"] = time.monotonic() - t

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.4)
    complete(store, wf, other, [item(a)])
    thread.join(25)
    assert [j["name"] for j in out["resp"]["jobs"]] == ["b"]
    assert 0.3 < out["waited"] < 5


def test_long_poll_returns_when_the_workflow_completes(store, wf, node):
    make_jobs(store, wf, {"a": []})
    a = claim(store, wf, node)["jobs"][0]
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault(
        "resp", claim(store, wf, node, wait_seconds=20)))
    thread.start()
    time.sleep(0.3)
    complete(store, wf, node, [item(a)])
    thread.join(25)
    assert out["resp"]["jobs"] == [] and out["resp"]["is_complete"] is True


def _single_path(store, wf, node, fail):
    """prepare_jobs_for_submission + start_job + complete_job, one job at a time."""
    while True:
        got = claims.prepare_jobs_for_submission(store, wf, RES, limit=1)["jobs"]
        if not got:
            return
        job = got[0]
        job = lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_key"])
        rc = 3 if job["name"] in fail else 0
        lifecycle.complete_job(store, wf, job["_key"], "done", job["_rev"], 1, node["_key"], {
            "job_key": job["_key"], "run_id": 1, "return_code": rc, "exec_time_minutes": 0.1,
            "completion_time": "2026-01-01T00:00:00", "status": "done"})


def _batched_path(store, wf, node, fail):
    """claim_jobs + complete_jobs, one job at a time (same order as the single path)."""
    got = claim(store, wf, node, limit=1)["jobs"]
    while got:
        job = got[0]
        rc = 3 if job["name"] in fail else 0
        resp = complete(store, wf, node, [item(job, rc)],
                        claim={"resources": RES, "limit": 1})
        got = resp["claimed"]["jobs"]


def _effects(store, wf):
    keys = {j["_key"]: j["name"] for j in store.find("jobs", wf)}
    name = lambda doc_id: keys[doc_id.rsplit("/", 1)[1]]  # noqa: E731
    return {
        "jobs": sorted((j["name"], j["status"], j["internal"]["hash"] != 0)
                       for j in store.find("jobs", wf)),
        "results": sorted((keys[r["job_key"]], r["return_code"], r["status"], r["run_id"],
                           r["attempt_id"], r["cause"]) for r in store.find("results", wf)),
        "events": [(e["type"], keys[e["job_key"]], e["message"].replace(e["job_key"], "K"))
                   for e in store.find("events", wf)],
        "executed": sorted(name(e["_to"]) for e in store.find("executed", wf)),
        "returned": sorted(name(e["_from"]) for e in store.find("returned", wf)),
    }


def test_batched_and_single_job_endpoints_have_identical_effects(store):
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": [], "f": ["e"],
             "g": ["f"], "h": ["d", "g"]}
    effects = []
    for path in (_single_path, _batched_path):
        w = workflows.create_workflow(store, {"user": "t"})["_key"]
        st = store.workflow_space(w).status
        store.update("workflow_statuses", None, st["_key"], {"run_id": 1})
        make_jobs(store, w, graph)
        nd = add_node(store, w)
        path(store, w, nd, fail={"f"})
        effects.append(_effects(store, w))
    single, batched = effects
    assert single == batched
    assert dict((n, s) for n, s, _ in single["jobs"])["h"] == "canceled"
    assert len(single["events"]) == 2 * len(single["results"])


def test_completion_of_a_job_canceled_while_running_is_recorded_like_complete_job(store, wf,
                                                                                  node):
    make_jobs(store, wf, {"a": [], "b": ["a"]})
    a = claim(store, wf, node)["jobs"][0]
    lifecycle.cancel(store, wf)
    resp = complete(store, wf, node, [item(a, rc=1, status="canceled")])
    assert resp["items"][0]["outcome"] == "completed"
    assert statuses(store, wf) == {"a": "canceled", "b": "blocked"}
    (row,) = store.find("results", wf)
    assert (row["status"], row["attempt_id"], row["return_code"]) == ("canceled", 1, 1)
    again = complete(store, wf, node, [item(a, rc=1, status="canceled")])
    assert again["items"][0]["outcome"] == "duplicate"


def test_a_job_reported_twice_in_one_batch_is_recorded_once(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": ["a"]})
    a = claim(store, wf, node)["jobs"][0]
    resp = complete(store, wf, node, [item(a), item(a), item(a, attempt=5)])
    assert [i["outcome"] for i in resp["items"]] == ["completed", "duplicate", "stale"]
    assert len(store.find("results", wf)) == 1
    assert statuses(store, wf) == {"a": "done", "b": "ready"}


def test_threads_of_one_process_complete_every_job_exactly_once(store, wf):
    """Eight threads claim and complete concurrently (SQLite: their transactions are
    group-committed); one thread's batches carry bad process stats and fail alone."""
    make_jobs(store, wf, {f"j{i}": [] for i in range(60)} | {"last": ["j0", "j1"]})
    done: list[str] = []
    rejected: list[str] = []
    errors: list[BaseException] = []

    def work(i):
        try:
            node = add_node(store, wf, f"host{i}")
            got = claim(store, wf, node, limit=3)
            while got["jobs"] or not got["is_complete"]:
                if not got["jobs"]:
                    got = claim(store, wf, node, limit=3)
                    continue
                items = [item(j) for j in got["jobs"]]
                if i == 0 and not rejected:
                    bad = [{**items[0], "process_stats": {"max_rss": "lots"}}] + items[1:]
                    with pytest.raises(InvalidInput):
                        complete(store, wf, node, bad, claim={"resources": RES, "limit": 3})
                    rejected.extend(j["_key"] for j in got["jobs"])
                out = complete(store, wf, node, items, claim={"resources": RES, "limit": 3})
                assert {x["outcome"] for x in out["items"]} == {"completed"}
                done.extend(x["job_key"] for x in out["items"])
                got = out["claimed"]
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(done) == sorted(j["_key"] for j in store.find("jobs", wf))
    assert set(statuses(store, wf).values()) == {"done"}
    # One result and one complete event per job: the rejected batch wrote nothing.
    assert store.count("results", wf) == len(done) == 61
    assert store.count("events", wf, {"type": "complete"}) == 61
    assert rejected
