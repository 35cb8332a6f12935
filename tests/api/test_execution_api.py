"""The batched execution endpoints over HTTP (falcon test client on a real SQLite file): the
wire format of docs/execution-model.md §4, bad input (400 naming the problem, nothing changed),
404s, 409s, and server-managed fields."""

from __future__ import annotations

import pytest

RES = {"num_cpus": 2, "memory_gb": 1.0}


@pytest.fixture
def setup(client):
    """A workflow (run_id 1) with jobs a → b, initialized, and a compute node."""
    spec = {"name": "s", "user": "u", "jobs": [
        {"name": "a", "command": "true"}, {"name": "b", "command": "true", "blocked_by": ["a"]}]}
    wf = client.simulate_post("/workflow_specifications", json=spec).json["_key"]
    assert client.simulate_post(f"/workflows/{wf}/initialize_jobs").status_code == 200
    status = client.simulate_get(f"/workflows/{wf}/status").json
    status["run_id"] = 1
    assert client.simulate_put(f"/workflows/{wf}/status", json=status).status_code == 200
    node = client.simulate_post(f"/workflows/{wf}/compute_nodes", json={
        "hostname": "h", "pid": 1, "start_time": "t", "is_active": True,
        "resources": {"num_cpus": 2, "memory_gb": 1.0}}).json
    return wf, node["_key"]


def completion(job, rc=0):
    return {"job_key": job["_key"], "attempt_id": job["execution"]["attempt_id"],
            "status": "done", "cause": "exit",
            "result": {"return_code": rc, "exec_time_minutes": 0.1, "completion_time": "t"}}


def test_claim_complete_heartbeat_release_round_trip(client, setup):
    wf, node = setup
    resp = client.simulate_post(f"/workflows/{wf}/claim_jobs", json={
        "compute_node_key": node, "resources": RES, "limit": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json
    assert set(body) == {"jobs", "run_id", "heartbeat_seconds", "lease_seconds", "is_complete",
                         "is_canceled", "reason"}
    (a,) = body["jobs"]
    hb = client.simulate_post(f"/workflows/{wf}/compute_nodes/{node}/heartbeat",
                              json={"job_keys": [a["_key"]]})
    assert hb.status_code == 200 and hb.json["lost_jobs"] == []
    hb = client.simulate_post(f"/workflows/{wf}/compute_nodes/compute_nodes__{wf}%2F{node}/"
                              "heartbeat")  # no body, full id
    assert hb.status_code == 200, hb.text
    done = client.simulate_post(f"/workflows/{wf}/complete_jobs", json={
        "compute_node_key": node, "run_id": 1, "completions": [completion(a)],
        "claim": {"resources": RES, "limit": 5}})
    assert done.status_code == 200, done.text
    assert done.json["items"][0]["outcome"] == "completed"
    (b,) = done.json["claimed"]["jobs"]
    rel = client.simulate_post(f"/workflows/{wf}/release_jobs", json={
        "compute_node_key": node, "releases": [{"job_key": b["_id"], "attempt_id": 1}]})
    assert rel.status_code == 200 and rel.json["items"][0]["outcome"] == "released"
    stale = client.simulate_post(f"/workflows/{wf}/complete_jobs", json={
        "compute_node_key": node, "run_id": 1, "completions": [completion(b)]})
    assert stale.status_code == 200
    assert stale.json["items"][0]["outcome"] == "stale" and stale.json["items"][0]["code"] == 409
    result = client.simulate_get(f"/workflows/{wf}/results/find_by_job/{b['_key']}").json
    assert result["cause"] == "interrupted" and result["attempt_id"] == 1


@pytest.mark.parametrize("path, body, fragment", [
    ("claim_jobs", {"resources": RES}, "compute_node_key"),
    ("claim_jobs", {"compute_node_key": "N", "resources": {"num_cpus": "2", "memory_gb": 1}},
     "num_cpus"),
    ("claim_jobs", {"compute_node_key": "N", "resources": RES, "wait_seconds": 99},
     "wait_seconds"),
    ("claim_jobs", {"compute_node_key": "N", "resources": RES, "limit": -1}, "limit"),
    ("claim_jobs", {"compute_node_key": "N", "resources": RES, "sort_method": "x"},
     "sort_method"),
    ("complete_jobs", {"compute_node_key": "N", "run_id": 1, "completions": [
        {"job_key": "1", "attempt_id": 1, "status": "running",
         "result": {"return_code": 0, "exec_time_minutes": 0, "completion_time": "t"}}]},
     "status"),
    ("complete_jobs", {"compute_node_key": "N", "run_id": 1, "completions": [
        {"job_key": "a/b/c", "attempt_id": 1, "status": "done",
         "result": {"return_code": 0, "exec_time_minutes": 0, "completion_time": "t"}}]},
     "completions[0].job_key"),
    ("complete_jobs", {"compute_node_key": "N", "run_id": 1, "completions": [
        {"job_key": "1", "attempt_id": 1, "status": "done", "cause": "meteor",
         "result": {"return_code": 0, "exec_time_minutes": 0, "completion_time": "t"}}]},
     "cause"),
    ("release_jobs", {"compute_node_key": "N", "releases": [{"job_key": "1"}]}, "attempt_id"),
    ("release_jobs", {"compute_node_key": "N", "releases": [
        {"job_key": "1", "attempt_id": 1, "cause": "exit"}]}, "cause"),
    ("compute_nodes/N/heartbeat", {"lease_seconds": 0}, "lease_seconds"),
    ("compute_nodes/N/heartbeat", {"lease_seconds": 1.5}, "lease_seconds"),
])
def test_bad_input_is_400_naming_the_problem_and_changes_nothing(
        client, setup, db_dump, path, body, fragment):
    wf, node = setup
    body = {k: (node if v == "N" else v) for k, v in body.items()}
    before = db_dump()
    resp = client.simulate_post(f"/workflows/{wf}/{path.replace('N', node)}", json=body)
    assert resp.status_code == 400, resp.text
    assert fragment in resp.json["errorMessage"]
    assert db_dump() == before


def test_missing_node_or_workflow_is_404(client, setup, db_dump):
    wf, node = setup
    before = db_dump()
    for path, body in [
        (f"/workflows/{wf}/claim_jobs", {"compute_node_key": "999999", "resources": RES}),
        (f"/workflows/{wf}/compute_nodes/999999/heartbeat", {}),
        (f"/workflows/{wf}/complete_jobs", {"compute_node_key": "999999", "run_id": 1,
                                            "completions": []}),
        ("/workflows/999999/claim_jobs", {"compute_node_key": node, "resources": RES}),
    ]:
        resp = client.simulate_post(path, json=body)
        assert resp.status_code == 404, (path, resp.text)
    assert db_dump() == before


def test_node_with_an_expired_lease_gets_409(client, setup, store):
    wf, node = setup
    store.update("compute_nodes", wf, node, {"lease": {"seconds": 1, "expires": 5,
                                                       "heartbeat": 1}})
    resp = client.simulate_post(f"/workflows/{wf}/compute_nodes/{node}/heartbeat", json={})
    assert resp.status_code == 409 and "lost its lease" in resp.json["errorMessage"]
    resp = client.simulate_post(f"/workflows/{wf}/claim_jobs", json={
        "compute_node_key": node, "resources": RES})
    assert resp.status_code == 409


def test_server_managed_fields_are_read_only_over_http(client, setup):
    wf, node = setup
    job = client.simulate_post(f"/workflows/{wf}/jobs", json={
        "command": "x", "execution": {"attempt_id": 5}, "failure_handler": "h"})
    assert job.status_code == 200, job.text
    assert "execution" not in job.json and job.json["failure_handler"] == "h"
    doc = client.simulate_get(f"/workflows/{wf}/compute_nodes/{node}").json
    doc["lease"] = {"seconds": 1, "expires": 1, "heartbeat": 1}
    put = client.simulate_put(f"/workflows/{wf}/compute_nodes/{node}", json=doc)
    assert put.status_code == 200 and "lease" not in put.json
    config = client.simulate_get(f"/workflows/{wf}/config").json
    assert config["lease_seconds"] == 120 and config["failure_handlers"] == []
