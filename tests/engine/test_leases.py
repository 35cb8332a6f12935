"""Leases with fencing (docs/execution-model.md §2, §5) on the contract backends: the execution
record of claims, lease expiry of heartbeating nodes and of torc-client claims, the infra
budget, rate limiting, and fencing of late reports."""

from __future__ import annotations

import pytest

from torc_graph.engine import claims, execution, leases, lifecycle
from torc_graph.errors import RevisionConflict
from torc_graph.store.base import In
from torc_graph.testing import CountingStore, sibling_module

helpers = sibling_module(__file__, "execution_helpers")
RES, add_node, claim, complete, item, make_jobs, statuses = (
    helpers.RES, helpers.add_node, helpers.claim, helpers.complete, helpers.item,
    helpers.make_jobs, helpers.statuses)


@pytest.fixture(autouse=True)
def _sweep_every_call(monkeypatch):
    """Every call sweeps (the rate limit has its own test)."""
    monkeypatch.setattr(leases, "SWEEP_INTERVAL_SECONDS", 0.0)
    leases.reset_sweep_clock()
    yield
    leases.reset_sweep_clock()


@pytest.fixture
def node(store, wf):
    return add_node(store, wf)


def expire_node(store, wf, node):
    store.update("compute_nodes", wf, node["_key"],
                 {"lease": {"seconds": 1, "expires": 1000, "heartbeat": 0}})


def test_torc_client_claims_get_a_runtime_based_lease(store, wf, node):
    make_jobs(store, wf, {"a": []}, config={"compute_node_expiration_buffer_seconds": 10,
                                           "lease_seconds": 20})
    job = claims.prepare_jobs_for_submission(store, wf, RES)["jobs"][0]
    ex = job["execution"]
    assert job["status"] == "submitted_pending"
    assert ex["attempt_id"] == 1 and ex["compute_node"] is None
    # default runtime P0DT1M = 60 s
    assert ex["lease_expires"] == ex["claimed_at"] + (60 + 10 + 20) * 1000
    started = lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_key"])
    assert started["execution"]["compute_node"] == node["_key"]
    assert started["execution"]["lease_expires"] == ex["lease_expires"]


def test_expired_node_lease_requeues_its_jobs_with_an_event(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": [], "c": ["a"]})
    a, b = claim(store, wf, node, limit=2)["jobs"]
    survivor = add_node(store, wf, "host2")
    claim(store, wf, survivor, limit=1)  # nothing left to claim, but it gets a lease
    expire_node(store, wf, node)
    requeued = leases.expire(store, wf)
    assert sorted(requeued) == sorted([a["_key"], b["_key"]])
    assert statuses(store, wf) == {"a": "ready", "b": "ready", "c": "blocked"}
    assert store.get("compute_nodes", wf, node["_key"])["is_active"] is False
    assert store.get("compute_nodes", wf, survivor["_key"])["is_active"] is True
    job = store.get("jobs", wf, a["_key"])
    assert job["execution"]["attempt_id"] == 2
    assert job["execution"]["infra_retries"] == 1 and job["execution"]["retries"] == 0
    assert job["execution"]["last_cause"] == "lost"
    rows = store.find("results", wf)
    assert {(r["attempt_id"], r["cause"], r["status"]) for r in rows} == {(1, "lost", "ready")}
    node_events = store.find("events", wf, {"type": "lease_expired"})
    assert len(node_events) == 1 and node["_key"] in node_events[0]["message"]
    assert sorted(node_events[0]["job_keys"]) == sorted([a["_key"], b["_key"]])
    retry_events = store.find("events", wf, {"type": "retry"})
    assert len(retry_events) == 2
    assert all("host1" in e["message"] and "lease lost" in e["message"] for e in retry_events)
    # Fencing: the dead node's late completion is stale and changes nothing.
    before = store.get("jobs", wf, a["_key"])["_rev"]
    resp = complete(store, wf, node, [item(a)])
    assert resp["items"][0]["outcome"] == "stale" and resp["items"][0]["code"] == 409
    assert store.get("jobs", wf, a["_key"])["_rev"] == before
    # Another node runs the requeued job as attempt 2.
    again = claim(store, wf, survivor, limit=1)["jobs"][0]
    assert again["execution"]["attempt_id"] == 2


def test_expired_torc_client_claim_is_requeued_and_its_late_completion_rejected(store, wf, node):
    make_jobs(store, wf, {"a": []})
    job = claims.prepare_jobs_for_submission(store, wf, RES)["jobs"][0]
    job = lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_key"])
    store.update_many("jobs", wf, {"_key": job["_key"]}, {"execution.lease_expires": 5})
    job = store.get("jobs", wf, job["_key"])
    assert leases.expire(store, wf) == [job["_key"]]
    assert statuses(store, wf) == {"a": "ready"}
    with pytest.raises(RevisionConflict):
        lifecycle.complete_job(store, wf, job["_key"], "done", job["_rev"], 1, node["_key"], {
            "job_key": job["_key"], "run_id": 1, "return_code": 0, "exec_time_minutes": 1.0,
            "completion_time": "t", "status": "done"})
    assert statuses(store, wf) == {"a": "ready"}


def test_spent_infra_budget_terminates_and_cascades(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": ["a"]}, config={"max_infra_retries": 1})
    for attempt in (1, 2):
        n = add_node(store, wf, f"h{attempt}")
        job = claim(store, wf, n)["jobs"][0]
        assert job["execution"]["attempt_id"] == attempt
        expire_node(store, wf, n)
        leases.expire(store, wf, force=True)
    assert statuses(store, wf) == {"a": "terminated", "b": "canceled"}
    rows = sorted((r["attempt_id"], r["cause"], r["status"]) for r in store.find("results", wf))
    assert rows == [(1, "lost", "ready"), (2, "lost", "terminated")]
    assert lifecycle.is_complete(store, wf)["is_complete"] is True


def test_sweep_is_rate_limited_and_skips_the_lock_when_nothing_expired(store, wf, node,
                                                                       monkeypatch):
    monkeypatch.setattr(leases, "SWEEP_INTERVAL_SECONDS", 30.0)
    make_jobs(store, wf, {"a": []})
    claim(store, wf, node)
    leases.reset_sweep_clock()
    counting = CountingStore(store)
    assert leases.expire(counting, wf) == []  # nothing expired (and the clock starts)
    assert "transaction" not in counting.calls and counting.total <= 3
    expire_node(store, wf, node)
    assert leases.expire(store, wf) == []  # within the interval: skipped
    assert statuses(store, wf) == {"a": "submitted"}
    assert len(leases.expire(store, wf, force=True)) == 1


def test_is_complete_and_claims_sweep_without_any_operator(store, wf, node):
    make_jobs(store, wf, {"a": []})
    claim(store, wf, node)
    expire_node(store, wf, node)
    assert lifecycle.is_complete(store, wf)["is_complete"] is False
    assert statuses(store, wf) == {"a": "ready"}
    fresh = add_node(store, wf, "fresh")
    job = claim(store, wf, fresh)["jobs"][0]
    complete(store, wf, fresh, [item(job)])
    assert lifecycle.is_complete(store, wf)["is_complete"] is True


def test_server_managed_fields_are_stripped_from_writes(store, wf, node):
    from torc_graph.engine import documents, jobs

    job = jobs.add_job(store, wf, {"command": "x", "execution": {"attempt_id": 9}})
    assert "execution" not in job
    job = claim(store, wf, node) and store.get("jobs", wf, job["_key"])
    put = documents.modify_document(store, wf, "jobs", job["_key"], {
        **{k: v for k, v in job.items() if k != "_id"},
        "execution": {"attempt_id": 42, "compute_node": None}})
    assert put.get("execution") == job.get("execution")
    n = documents.modify_document(store, wf, "compute_nodes", node["_key"], {
        "_rev": store.get("compute_nodes", wf, node["_key"])["_rev"], "hostname": "h",
        "pid": 1, "start_time": "t", "resources": {"num_cpus": 1, "memory_gb": 1.0},
        "lease": {"seconds": 1, "expires": 1, "heartbeat": 1}})
    assert n.get("lease") == store.get("compute_nodes", wf, node["_key"]).get("lease")
    assert (n.get("lease") or {}).get("expires") != 1
    assert not store.find("jobs", wf, {"execution.attempt_id": In([9, 42])})
    assert execution.heartbeat(store, wf, node["_key"], None)["lost_jobs"] == []


def test_late_start_of_an_expired_torc_client_claim_is_409(store, wf, node):
    make_jobs(store, wf, {"a": []})
    job = claims.prepare_jobs_for_submission(store, wf, RES)["jobs"][0]
    store.update_many("jobs", wf, {"_key": job["_key"]}, {"execution.lease_expires": 5})
    job = store.get("jobs", wf, job["_key"])
    leases.expire(store, wf)
    with pytest.raises(RevisionConflict, match="requeued"):
        lifecycle.start_job(store, wf, job["_key"], job["_rev"], 1, node["_key"])
    assert statuses(store, wf) == {"a": "ready"}
