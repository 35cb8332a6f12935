"""The lifecycle endpoints over HTTP (falcon testing client on a SQLite file): paths, methods,
query parameters, status codes, and responses parsed by the real torc client's models."""

from __future__ import annotations

import pytest
from torc.openapi_client import models

ENC = "%2F"


def ok(resp):
    assert resp.status_code == 200, resp.text
    return resp.json


@pytest.fixture
def wf(client):
    key = ok(client.simulate_post("/workflows", json={"user": "u", "name": "api"}))["_key"]
    status = ok(client.simulate_get(f"/workflows/{key}/status"))
    status["run_id"] = 1
    ok(client.simulate_put(f"/workflows/{key}/status", json=status))
    return key


def post(client, path, **kw):
    return client.simulate_post(path, **kw)


def diamond(client, wf):
    base = f"/workflows/{wf}"
    f = {n: ok(post(client, f"{base}/files", json={"name": n, "path": n}))["_id"]
         for n in ("in", "f1", "f2", "f3", "f4")}
    rr = ok(post(client, f"{base}/resource_requirements",
                 json={"name": "r", "num_cpus": 2, "memory": "2g", "runtime": "P0DT1H"}))["_id"]
    jobs = ok(post(client, f"{base}/bulk_jobs", json={"jobs": [
        {"name": "pre", "command": "c", "input_files": [f["in"]],
         "output_files": [f["f1"], f["f2"]], "resource_requirements": rr},
        {"name": "w1", "command": "c", "input_files": [f["f1"]], "output_files": [f["f3"]]},
        {"name": "w2", "command": "c", "input_files": [f["f2"]], "output_files": [f["f4"]]},
        {"name": "post", "command": "c", "input_files": [f["f3"], f["f4"]]},
    ]}))["items"]
    return jobs, f


def node(client, wf):
    return ok(post(client, f"/workflows/{wf}/compute_nodes", json={
        "hostname": "h1", "pid": 5, "start_time": "2024-05-01 12:00:00.1", "is_active": True,
        "resources": {"num_cpus": 8, "memory_gb": 16.0}}))


RESOURCES = {"num_cpus": 8, "memory_gb": 16.0, "num_gpus": 0, "num_nodes": 1,
             "time_limit": "PT4H", "scheduler_config_id": ""}


def result(key, rc=0, run_id=1):
    return {"job_key": key, "run_id": run_id, "return_code": rc, "exec_time_minutes": 0.1,
            "completion_time": "2024-05-01T12:00:00", "status": "done"}


def test_worker_flow_over_http(client, wf):
    base = f"/workflows/{wf}"
    jobs, files = diamond(client, wf)
    assert ok(client.simulate_get(f"{base}/missing_user_data")) == {"user_data": []}
    required = ok(client.simulate_get(f"{base}/required_existing_files"))
    models.ListRequiredExistingFilesResponse.from_dict(required)
    assert required == {"files": [files["in"]]}
    assert ok(post(client, f"{base}/initialize_jobs",
                   params={"only_uninitialized": "false"})) == {"message": "Initialized job status"}
    reqs = ok(client.simulate_get(f"{base}/ready_job_requirements",
                                  params={"scheduler_config_id": ""}))
    models.GetReadyJobRequirementsResponse.from_dict(reqs)
    assert reqs["num_jobs"] == 1 and reqs["num_cpus"] == 2 and reqs["max_runtime"] == "P0DT1H"

    cn = node(client, wf)
    completed = 0
    while True:
        status = ok(client.simulate_get(f"{base}/is_complete"))
        models.IsCompleteResponse.from_dict(status)
        if status["is_complete"]:
            break
        claimed = ok(post(client, f"{base}/prepare_jobs_for_submission", json=RESOURCES,
                          params={"sort_method": "gpus_runtime_memory", "limit": "4.0"}))
        parsed = models.PrepareJobsForSubmissionResponse.from_dict(claimed)
        assert parsed.jobs and claimed["reason"] == ""
        for job in claimed["jobs"]:
            # The worker sends the compute node's id, and the job's id to complete_job.
            started = ok(client.simulate_put(
                f"{base}/jobs/{job['_key']}/start_job/{job['_rev']}/1/"
                + cn["_id"].replace("/", ENC)))
            models.JobModel.from_dict(started)
            assert started["status"] == "submitted"
            done = ok(post(client,
                           f"{base}/jobs/{started['_id'].replace('/', ENC)}/complete_job/done/"
                           f"{started['_rev']}/1/{cn['_key']}", json=result(job["_key"])))
            models.JobModel.from_dict(done)
            assert done["status"] == "done" and isinstance(done["internal"]["hash"], int)
            completed += 1
    assert completed == 4
    assert status == {"is_canceled": False, "is_complete": True,
                      "needs_to_run_completion_script": False}
    events = ok(client.simulate_get(f"{base}/events"))["items"]
    assert sorted(e["type"] for e in events) == ["complete"] * 4 + ["start"] * 4

    # Restart-style traffic: a changed input resets its consumers.
    f1 = ok(client.simulate_get(f"{base}/files/{files['f1'].replace('/', ENC)}"))
    ok(client.simulate_put(f"{base}/files/{f1['_key']}", json={**f1, "st_mtime": 3.5}))
    changed = ok(post(client, f"{base}/process_changed_job_inputs", params={"dry_run": "true"}))
    models.ProcessChangedJobInputsResponse.from_dict(changed)
    assert changed == {"reinitialized_jobs": [jobs[1]["_key"], jobs[3]["_key"]]}
    assert ok(post(client, f"{base}/process_changed_job_inputs")) == changed
    listed = {j["name"]: j["status"] for j in ok(client.simulate_get(f"{base}/jobs"))["items"]}
    assert listed == {"pre": "done", "w1": "uninitialized", "w2": "done",
                      "post": "uninitialized"}


@pytest.fixture
def started(client, wf):
    """A workflow with one started job: (job, compute node)."""
    base = f"/workflows/{wf}"
    ok(post(client, f"{base}/bulk_jobs", json={"jobs": [{"name": "a", "command": "c"},
                                                        {"name": "b", "command": "c"}]}))
    ok(post(client, f"{base}/initialize_jobs"))
    cn = node(client, wf)
    job = ok(post(client, f"{base}/prepare_next_jobs_for_submission"))["jobs"][0]
    models.PrepareNextJobsForSubmissionResponse.from_dict({"jobs": [job]})
    job = ok(client.simulate_put(
        f"{base}/jobs/{job['_key']}/start_job/{job['_rev']}/1/{cn['_key']}"))
    return job, cn


def test_error_statuses_change_nothing(client, wf, started, db_dump):
    job, cn = started
    base = f"/workflows/{wf}"
    before = db_dump()
    jk = job["_key"]
    cases = [
        # start_job: wrong status 400, stale rev 409 (status first, as torc), bad run_id path 404
        ("PUT", f"{base}/jobs/{jk}/start_job/{job['_rev']}/1/{cn['_key']}", None, 400,
         "job status must be submitted_pending: submitted"),
        ("PUT", f"{base}/jobs/{jk}/start_job/{job['_rev']}/x/{cn['_key']}", None, 404, None),
        # complete_job: stale rev 409, run_id 400, missing node 404, not a completion 400
        ("POST", f"{base}/jobs/{jk}/complete_job/done/stale/1/{cn['_key']}", result(jk), 409,
         "Revision conflict"),
        ("POST", f"{base}/jobs/{jk}/complete_job/done/{job['_rev']}/2/{cn['_key']}", result(jk),
         400, "run_id"),
        ("POST", f"{base}/jobs/{jk}/complete_job/done/{job['_rev']}/1/999999", result(jk), 404,
         None),
        ("POST", f"{base}/jobs/{jk}/complete_job/ready/{job['_rev']}/1/{cn['_key']}",
         result(jk), 400, "does not indicate completion"),
        ("POST", f"{base}/jobs/{jk}/complete_job/done/{job['_rev']}/1/{cn['_key']}",
         {"job_key": jk}, 400, None),
        # manage_status_change: stale rev is 400 (client-visible), complete status 400
        ("PUT", f"{base}/jobs/{jk}/manage_status_change/uninitialized/stale/1", None, 400,
         "Revision conflict"),
        ("PUT", f"{base}/jobs/{jk}/manage_status_change/done/{job['_rev']}/1", None, 400, None),
        ("PUT", f"{base}/jobs/{jk}/manage_status_change/ready/{job['_rev']}/5", None, 400,
         "run_id"),
        # claims: bad sort method / limit 400
        ("POST", f"{base}/prepare_jobs_for_submission?sort_method=bogus", RESOURCES, 400,
         "sort_method"),
        ("POST", f"{base}/prepare_jobs_for_submission?limit=many", RESOURCES, 400, "limit"),
        ("POST", f"{base}/prepare_jobs_for_submission", {"num_cpus": 1}, 400, None),
        # unknown workflow 404
        ("POST", "/workflows/987654/initialize_jobs", None, 404, None),
        ("GET", "/workflows/987654/is_complete", None, 404, None),
    ]
    for method, path, body, code, message in cases:
        resp = client.simulate_request(method, path, json=body)
        assert resp.status_code == code, (path, resp.text)
        assert resp.json["error"] is True and resp.json["code"] == code
        if message:
            assert message in resp.json["errorMessage"], resp.json
    assert db_dump() == before


def test_cancel_reset_and_completion_script(client, wf, started):
    job, cn = started
    base = f"/workflows/{wf}"
    config = ok(client.simulate_get(f"{base}/config"))
    ok(client.simulate_put(f"{base}/config", json={**config,
                                                   "workflow_completion_script": "echo hi"}))
    assert ok(client.simulate_put(f"{base}/cancel")) == {"message": "Canceled workflow"}
    job = ok(client.simulate_get(f"{base}/jobs/{job['_key']}"))
    assert job["status"] == "canceled"
    assert ok(post(client, f"{base}/prepare_jobs_for_submission", json=RESOURCES)) == {
        "jobs": [], "reason": "The workflow was canceled."}
    assert ok(post(client, f"{base}/prepare_jobs_for_scheduling")) == {"schedulers": []}
    # The worker reports the canceled job with its new rev: same status, no downstream work.
    done = ok(post(client, f"{base}/jobs/{job['_key']}/complete_job/canceled/{job['_rev']}/1/"
                           f"{cn['_key']}", json={**result(job["_key"], -9), "status": "canceled"}))
    assert done["status"] == "canceled"
    state = ok(client.simulate_get(f"{base}/is_complete"))
    assert state["is_canceled"] is True and state["needs_to_run_completion_script"] is False

    assert ok(post(client, f"{base}/reset_status")) == {"message": "Reset workflow status"}
    assert ok(post(client, f"{base}/reset_job_status", params={"failed_only": "false"})) == {
        "message": "Reset job status to uninitialized failed_only=false"}
    ok(post(client, f"{base}/initialize_jobs"))
    claimed = ok(post(client, f"{base}/prepare_next_jobs_for_submission",
                      params={"limit": "5"}))["jobs"]
    assert [j["name"] for j in claimed] == ["a", "b"]
    for j in claimed:
        s = ok(client.simulate_put(f"{base}/jobs/{j['_key']}/start_job/{j['_rev']}/1/{cn['_key']}"))
        ok(post(client, f"{base}/jobs/{s['_key']}/complete_job/done/{s['_rev']}/1/{cn['_key']}",
                json=result(s["_key"])))
    first = ok(client.simulate_get(f"{base}/is_complete"))
    assert first == {"is_canceled": False, "is_complete": True,
                     "needs_to_run_completion_script": True}
    assert ok(client.simulate_get(f"{base}/is_complete"))[
        "needs_to_run_completion_script"] is False


def test_manage_status_change_and_failed_reset(client, wf, started):
    job, cn = started
    base = f"/workflows/{wf}"
    failed = ok(post(client, f"{base}/jobs/{job['_key']}/complete_job/done/{job['_rev']}/1/"
                             f"{cn['_key']}", json=result(job["_key"], rc=3)))
    assert failed["status"] == "done"
    msg = ok(post(client, f"{base}/reset_job_status", params={"failed_only": "true"}))
    assert msg == {"message": "Reset job status to uninitialized failed_only=true"}
    job = ok(client.simulate_get(f"{base}/jobs/{job['_key']}"))
    assert job["status"] == "uninitialized"
    changed = ok(client.simulate_put(
        f"{base}/jobs/{job['_key']}/manage_status_change/ready/{job['_rev']}/1"))
    models.JobModel.from_dict(changed)
    assert changed["status"] == "ready" and changed["_rev"] != job["_rev"]


def test_scheduling_over_http(client, wf):
    base = f"/workflows/{wf}"
    sched = ok(post(client, f"{base}/slurm_schedulers",
                    json={"name": "s", "account": "a", "nodes": 1}))["_id"]
    params = {"num_jobs": 1, "scheduler_id": sched, "start_one_worker_per_node": False}
    ok(post(client, f"{base}/bulk_jobs", json={"jobs": [
        {"name": "a", "command": "c", "schedule_compute_nodes": params, "scheduler": sched}]}))
    ok(post(client, f"{base}/initialize_jobs"))
    out = ok(post(client, f"{base}/prepare_jobs_for_scheduling"))
    parsed = models.PrepareJobsForSchedulingResponse.from_dict(out)
    assert parsed.schedulers[0].scheduler_id == sched
    claim = ok(post(client, f"{base}/prepare_jobs_for_submission",
                    json={**RESOURCES, "scheduler_config_id": sched}))
    assert [j["name"] for j in claim["jobs"]] == ["a"]
