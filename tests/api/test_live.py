"""Through a real ``torc-graph serve`` (gunicorn, 2 workers): raw HTTP with an encoded-%2F id,
and the real torc v0.6.4 client (``torc.openapi_client``) driving the generic routes."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.slow


def test_raw_http_through_gunicorn(live_server):
    base = live_server
    assert requests.get(f"{base}/ping").json() == {"message": "torc-service is running"}
    prefixed = base  # the live server URL is already the torc base URL (token inside)
    wf = requests.post(f"{prefixed}/workflows", json={"user": "u"}).json()
    w = wf["_key"]
    f = requests.post(f"{prefixed}/workflows/{w}/files", json={"path": "/p"}).json()
    encoded = f["_id"].replace("/", "%2F")
    resp = requests.get(f"{prefixed}/workflows/{w}/files/{encoded}")
    assert resp.status_code == 200 and resp.json() == f
    # RAW_URI is used: an encoded slash stays in its segment even when the pattern fallback
    # would not collapse it (unknown base): 400 from key normalization, not 404 from routing.
    resp = requests.get(f"{base}/workflows/{w}/files/bogus__{w}%2F5")
    assert resp.status_code == 400 and "does not refer" in resp.json()["errorMessage"]
    # ids in two key slots of one path survive too (complete_job-style)
    j = requests.post(f"{prefixed}/workflows/{w}/jobs", json={"command": "c"}).json()
    e = requests.post(f"{base}/workflows/{w}/edges/needs",  # (edge ends must exist: issue 10)
                      json={"_from": j["_id"], "_to": f["_id"]}).json()
    resp = requests.get(f"{base}/workflows/{w}/edges/needs/{e['_id'].replace('/', '%2F')}")
    assert resp.json() == e
    # errors keep the torc body through gunicorn
    resp = requests.get(f"{base}/workflows/{w}/nope")
    assert resp.status_code == 404 and resp.json()["error"] is True
    resp = requests.post(f"{base}/workflows/{w}/files", data="{",
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["errorMessage"]
    # chunked body (no Content-Length)
    resp = requests.post(f"{base}/workflows/{w}/files", data=iter([b'{"path":', b'"/c"}']),
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 200 and resp.json()["path"] == "/c"
    assert requests.delete(f"{base}/workflows/{w}").status_code == 200


def test_torc_client_drives_generic_routes(live_server):
    from torc.openapi_client import ApiClient, Configuration, DefaultApi
    from torc.openapi_client.exceptions import ApiException
    from torc.openapi_client.models.edge_model import EdgeModel
    from torc.openapi_client.models.file_model import FileModel
    from torc.openapi_client.models.job_model import JobModel
    from torc.openapi_client.models.jobs_model import JobsModel
    from torc.openapi_client.models.resource_requirements_model import (
        ResourceRequirementsModel,
    )
    from torc.openapi_client.models.user_data_model import UserDataModel
    from torc.openapi_client.models.workflow_model import WorkflowModel

    api = DefaultApi(ApiClient(Configuration(host=live_server)))
    assert api.ping()  # message
    assert api.get_version()
    wf = api.add_workflow(WorkflowModel(user="tester", name="client-test"))
    w = wf.key
    assert wf.timestamp and wf.is_archived is False

    files = [api.add_file(w, FileModel(name=f"f{i}", path=f"/data/f{i}")) for i in range(5)]
    ud = api.add_user_data(w, UserDataModel(name="ud", data={"a": 1}))
    rr = api.add_resource_requirements(w, ResourceRequirementsModel(name="big", num_cpus=4))
    assert rr.num_cpus == 4 and rr.memory == "1m"
    j1 = api.add_job(w, JobModel(name="j1", command="echo 1", input_files=[files[0].id],
                                 output_user_data=[ud.id], resource_requirements=rr.id))
    assert j1.status == "uninitialized" and j1.internal.hash == 0
    added = api.add_jobs(w, JobsModel(jobs=[
        JobModel(name=f"b{i}", command=f"echo b{i}", blocked_by=[j1.id]) for i in range(3)]))
    assert [j.name for j in added.items] == ["b0", "b1", "b2"]
    edge = api.add_edge(w, "produces", EdgeModel(var_from=j1.id, to=files[1].id))
    assert edge.var_from == j1.id

    # list with filters and paging
    page = api.list_files(w, skip=1, limit=2)
    assert (page.count, page.total_count, page.has_more) == (2, 5, True)
    assert [f.name for f in page.items] == ["f1", "f2"]
    assert [f.key for f in api.list_files(w, name="f3").items] == [files[3].key]
    assert api.list_jobs(w, name="b1").items[0].command == "echo b1"
    assert api.list_jobs(w, status="uninitialized", limit=1).count == 1
    assert api.list_edges(w, "blocks").total_count == 3
    assert api.list_workflows(user="tester", is_archived=False).items[0].key == w
    job_keys = api.list_job_keys(w)
    job_keys = job_keys["items"] if isinstance(job_keys, dict) else job_keys.items
    assert job_keys == [j1.key] + [j.key for j in added.items]

    # get_file with a full id (the client percent-encodes the slash)
    got = api.get_file(w, files[2].id)
    assert got.key == files[2].key and got.path == "/data/f2"

    # modify with _rev, then 409 on the stale one
    got.name = "renamed"
    new = api.modify_file(w, got.key, got)
    assert new.name == "renamed" and new.rev != got.rev
    got.name = "again"
    with pytest.raises(ApiException) as exc:
        api.modify_file(w, got.key, got)
    assert exc.value.status == 409

    # config and status round trips
    cfg = api.get_workflow_config(w)
    assert cfg.compute_node_expiration_buffer_seconds == 120
    cfg.compute_node_wait_for_new_jobs_seconds = 5
    cfg = api.modify_workflow_config(w, cfg)
    assert cfg.compute_node_wait_for_new_jobs_seconds == 5
    st = api.get_workflow_status(w)
    st.run_id += 1
    st = api.modify_workflow_status(w, st)
    assert api.get_workflow_status(w).run_id == 1
    assert len(api.list_collection_names(w).names) == 24

    # remove with cascade: the job's edges go away
    removed = api.remove_job(w, j1.key)
    assert removed.key == j1.key
    for name in ("needs", "stores", "requires", "produces", "blocks"):
        assert api.list_edges(w, name).total_count == 0, name
    assert api.list_files(w).total_count == 5

    wf = api.get_workflow(w)
    wf.description = "done"
    assert api.modify_workflow(w, wf).description == "done"
    assert api.remove_workflow(w).key == w
    with pytest.raises(ApiException) as exc:
        api.get_workflow(w)
    assert exc.value.status == 404


SINGULAR = {
    "aws_schedulers": "aws_scheduler", "compute_nodes": "compute_node",
    "compute_node_stats": "compute_node_stats", "events": "event", "files": "file",
    "jobs": "job", "job_process_stats": "job_process_stats",
    "local_schedulers": "local_scheduler", "resource_requirements": "resource_requirements",
    "results": "result", "scheduled_compute_nodes": "scheduled_compute_node",
    "slurm_schedulers": "slurm_scheduler", "user_data": "user_data",
}


def test_torc_client_models_accept_every_collection(live_server):
    """list_/get_/modify_/remove_/delete_ of all 13 collections parse with the client's
    strict pydantic models (StrictInt etc.), and edges of all 11 collections list."""
    import importlib.util
    from pathlib import Path

    from torc.openapi_client import ApiClient, Configuration, DefaultApi

    spec = importlib.util.spec_from_file_location("live_samples",
                                                  Path(__file__).with_name("samples.py"))
    samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(samples)

    api = DefaultApi(ApiClient(Configuration(host=live_server)))
    w = requests.post(f"{live_server}/workflows", json={"user": "u"}).json()["_key"]
    for plural, singular in SINGULAR.items():
        doc = requests.post(f"{live_server}/workflows/{w}/{plural}",
                            json=samples.SAMPLES[plural]).json()
        listed = getattr(api, f"list_{plural}")(w)
        assert listed.count == 1 and listed.has_more is False
        got = getattr(api, f"get_{singular}")(w, doc["_key"])
        if plural == "events":  # free-form: a plain dict
            assert got["_key"] == doc["_key"]
            continue
        assert got.key == doc["_key"]
        modified = getattr(api, f"modify_{singular}")(w, got.key, got)
        assert modified.rev != got.rev
        assert getattr(api, f"remove_{singular}")(w, got.key).key == got.key
        getattr(api, f"delete_{plural}")(w)
    from torc_graph import model

    for edge in model.Edge:
        assert api.list_edges(w, edge.value).count == 0
    api.remove_workflow(w)


def test_concurrent_writers_through_gunicorn(live_server):
    """Parallel clients over 2 workers: every write succeeds (no 5xx, no "database is
    locked"), keys are unique."""
    from concurrent.futures import ThreadPoolExecutor

    w = requests.post(f"{live_server}/workflows", json={"user": "u"}).json()["_key"]

    def work(i):
        with requests.Session() as s:
            out = []
            for j in range(15):
                r = s.post(f"{live_server}/workflows/{w}/jobs", json={"command": f"{i}-{j}"})
                out.append((r.status_code, r.json().get("_key")))
            return out

    with ThreadPoolExecutor(8) as pool:
        results = [x for chunk in pool.map(work, range(8)) for x in chunk]
    assert {status for status, _ in results} == {200}
    assert len({key for _, key in results}) == 120
    assert requests.get(f"{live_server}/workflows/{w}/jobs").json()["total_count"] == 120
