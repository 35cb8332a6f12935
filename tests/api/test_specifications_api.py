"""Workflow and job specification endpoints over HTTP (falcon.testing), with responses parsed
by the real torc client's models."""

from __future__ import annotations

import pytest
from torc.openapi_client.models import (
    JobSpecificationModel,
    ListJobSpecificationsResponse,
    WorkflowModel,
    WorkflowSpecificationModel,
)

DIAMOND = {
    "name": "diamond",
    "user": "me",
    "files": [{"name": n, "path": n} for n in ("in", "f1", "f2", "out")],
    "user_data": [{"name": "params", "data": {"a": 1}}],
    "resource_requirements": [{"name": "small", "memory": "2g", "runtime": "PT30M"}],
    "schedulers": {"slurm_schedulers": [{"name": "short", "account": "a", "nodes": 1}]},
    "jobs": [
        {"name": "post", "command": "post", "input_files": ["f1", "f2"], "output_files": ["out"],
         "blocked_by": ["w1", "w2"]},
        {"name": "w1", "command": "w1", "input_files": ["in"], "output_files": ["f1"],
         "input_user_data": ["params"], "resource_requirements": "small"},
        {"name": "w2", "command": "w2", "input_files": ["in"], "output_files": ["f2"],
         "scheduler": "slurm_schedulers/short", "key": "w2key"},
    ],
    "config": {"compute_node_resource_stats": {"process": True}},
}


def post_spec(client, spec):
    return client.simulate_post("/workflow_specifications", json=spec)


def test_example_and_template_are_static_routes(client):
    example = client.simulate_get("/workflow_specifications/example")
    assert example.status_code == 200
    WorkflowSpecificationModel.from_dict(example.json)
    assert [j["name"] for j in example.json["jobs"]] == ["work", "postprocess"]
    template = client.simulate_get("/workflow_specifications/template")
    assert template.status_code == 200
    WorkflowSpecificationModel.from_dict(template.json)
    assert template.json["jobs"] == [] and template.json["config"]["prepare_jobs_sort_method"]


def test_create_from_the_example(client):
    example = client.simulate_get("/workflow_specifications/example").json
    resp = post_spec(client, example)
    assert resp.status_code == 200
    wf = WorkflowModel.from_dict(resp.json)
    assert wf.key and wf.id == f"workflows/{wf.key}"
    jobs = client.simulate_get(f"/workflows/{wf.key}/jobs").json["items"]
    assert [j["name"] for j in jobs] == ["work", "postprocess"]


def test_post_get_round_trip(client):
    resp = post_spec(client, DIAMOND)
    assert resp.status_code == 200, resp.json
    key = resp.json["_key"]
    assert resp.json["name"] == "diamond" and resp.json["user"] == "me"
    got = client.simulate_get(f"/workflow_specifications/{key}")
    assert got.status_code == 200
    spec = WorkflowSpecificationModel.from_dict(got.json)
    assert [j.name for j in spec.jobs] == ["post", "w1", "w2"]
    assert spec.jobs[0].blocked_by == ["w1", "w2"]
    assert spec.jobs[1].input_user_data == ["params"]
    assert spec.jobs[1].resource_requirements == "small"
    assert spec.jobs[2].scheduler == "slurm_schedulers/short"
    assert spec.jobs[0].resource_requirements == "default"
    assert spec.config.compute_node_resource_stats.process is True
    # The workflow id is accepted in the key slot, as everywhere.
    by_id = client.simulate_get(f"/workflow_specifications/workflows%2F{key}")
    assert by_id.status_code == 200 and by_id.json == got.json
    assert client.simulate_get(f"/workflows/{key}/jobs/w2key").json["name"] == "w2"


def test_bad_spec_is_400_and_creates_nothing(client, db_dump):
    post_spec(client, {"name": "keep", "jobs": [{"name": "x", "command": "x"}]})
    before = db_dump()
    spec = {**DIAMOND, "jobs": DIAMOND["jobs"] + [
        {"name": "postprocess", "command": "p", "input_files": ["f9"]}]}
    resp = post_spec(client, spec)
    assert resp.status_code == 400
    assert resp.json == {"error": True, "errorNum": 400, "code": 400,
                         "errorMessage": 'jobs[3] ("postprocess"): input_files references '
                                         'unknown file "f9"'}
    for bad in (
        {"jobs": [{"name": "a", "command": "a", "blocked_by": ["a"]}]},
        {"resource_requirements": [{"name": "r", "memory": "1.5.2g"}]},
        {"jobs": [{"name": "a", "command": "a"}, {"name": "a", "command": "b"}]},
        {"jobs": [{"name": "a"}]},  # schema: command is required
        {"jobz": []},
    ):
        resp = post_spec(client, bad)
        assert resp.status_code == 400, bad
        assert resp.json["errorMessage"]
    assert db_dump() == before


def test_get_specification_of_a_missing_workflow(client):
    resp = client.simulate_get("/workflow_specifications/424242")
    assert resp.status_code == 404
    assert resp.json["code"] == 404


def test_job_specifications(client):
    key = post_spec(client, DIAMOND).json["_key"]
    resp = client.simulate_get(f"/workflows/{key}/job_specifications")
    assert resp.status_code == 200
    listing = ListJobSpecificationsResponse.from_dict(resp.json)
    assert [j.name for j in listing.items] == ["post", "w1", "w2"]
    assert (listing.count, listing.total_count, listing.has_more) == (3, 3, False)
    page = client.simulate_get(f"/workflows/{key}/job_specifications",
                               params={"skip": "1", "limit": "1"}).json
    assert [j["name"] for j in page["items"]] == ["w1"]
    assert (page["skip"], page["count"], page["total_count"], page["has_more"]) == (1, 1, 3, True)
    one = client.simulate_get(f"/workflows/{key}/job_specifications/w2key")
    assert one.status_code == 200
    assert JobSpecificationModel.from_dict(one.json).output_files == ["f2"]
    by_id = client.simulate_get(f"/workflows/{key}/job_specifications/jobs__{key}%2Fw2key")
    assert by_id.json == one.json
    assert client.simulate_get(f"/workflows/{key}/job_specifications/nope").status_code == 404
    assert client.simulate_get("/workflows/424242/job_specifications").status_code == 404
    bad = client.simulate_get(f"/workflows/{key}/job_specifications", params={"skip": "x"})
    assert bad.status_code == 400


@pytest.mark.slow
def test_torc_client_specifications(live_server, tmp_path):
    """The real torc v0.6.4 client (generated API and its JSON-file helper) through gunicorn."""
    import json

    from torc.cli.workflows import create_workflow_from_json_file
    from torc.openapi_client import ApiClient, Configuration, DefaultApi

    api = DefaultApi(ApiClient(Configuration(host=live_server)))
    example = api.get_workflow_specification_example()
    assert [j.name for j in example.jobs] == ["work", "postprocess"]
    template = api.get_workflow_specification_template()
    assert template.config.compute_node_expiration_buffer_seconds == 120
    wf = api.add_workflow_specification(example)
    assert wf.key
    spec = api.get_workflow_specification(wf.key)
    assert [j.input_files for j in spec.jobs] == [["work_script", "f1"], ["postprocess_script", "f2"]]
    listing = api.list_job_specifications(wf.key, skip=1, limit=5)
    assert [j.name for j in listing.items] == ["postprocess"] and listing.total_count == 2
    job_key = api.list_jobs(wf.key).items[0].key
    assert api.get_job_specification(wf.key, job_key).name == "work"

    path = tmp_path / "diamond.json"
    path.write_text(json.dumps(DIAMOND))
    created = create_workflow_from_json_file(api, path, user="someone")
    assert created.user == "someone"
    assert [j.name for j in api.get_workflow_specification(created.key).jobs] == [
        "post", "w1", "w2"]
