"""The graph-query, events, DOT and auto-tune endpoints over HTTP (falcon.testing): paths,
methods, query parameters, key-or-id path segments, errors, and responses parsed by the real
torc client's models."""

from __future__ import annotations

import pytest
from torc.openapi_client.models import (
    EdgeModel,
    GetDotGraphResponse,
    JobProcessStatsModel,
    JoinByOutboundEdgeCollectionEdgeResponse,
    ListEventsResponse,
    ListFilesProducedByJob,
    ListJobsByNeedsFileResponse,
    ListJobsByStatusResponse,
    ListJobsResponse,
    ListJobUserDataStoresResponse,
    ResourceRequirementsModel,
    ResultModel,
    UserDataModel,
)

SPEC = {
    "user": "me",
    "files": [{"name": n, "path": n} for n in ("in", "f1", "f2", "out")],
    "user_data": [{"name": "params", "data": {"a": 1}}, {"name": "res"}],
    "resource_requirements": [{"name": "small"}, {"name": "big", "num_cpus": 4}],
    "jobs": [
        {"name": "pre", "command": "pre", "input_files": ["in"], "output_files": ["f1", "f2"],
         "input_user_data": ["params"], "output_user_data": ["res"],
         "resource_requirements": "small"},
        {"name": "work", "command": "w", "input_files": ["f1"], "output_files": ["out"],
         "blocked_by": ["pre"], "resource_requirements": "big"},
        {"name": "post", "command": "p", "input_files": ["f2", "out"], "blocked_by": ["work"]},
    ],
    "config": {"compute_node_resource_stats": {"process": True}},
}


@pytest.fixture
def wf(client):
    resp = client.simulate_post("/workflow_specifications", json=SPEC)
    assert resp.status_code == 200, resp.json
    return resp.json["_key"]


def docs(client, wf, collection):
    items = client.simulate_get(f"/workflows/{wf}/{collection}").json["items"]
    return {d.get("name", d["_key"]): d for d in items}


def test_downstream_jobs(client, wf):
    jobs = docs(client, wf, "jobs")
    resp = client.simulate_get(f"/workflows/{wf}/downstream_jobs/{jobs['pre']['_key']}")
    assert resp.status_code == 200
    env = ListJobsResponse.from_dict(resp.json)
    assert [j.name for j in env.items] == ["work", "post"] and env.has_more is False
    by_id = client.simulate_get(f"/workflows/{wf}/downstream_jobs/jobs__{wf}%2F"
                                f"{jobs['pre']['_key']}", params={"skip": "1", "limit": "10.0"})
    assert [j["name"] for j in by_id.json["items"]] == ["post"]
    assert client.simulate_get(f"/workflows/{wf}/downstream_jobs/999999").status_code == 404
    assert client.simulate_get(f"/workflows/{wf}/downstream_jobs/{jobs['pre']['_key']}",
                               params={"limit": "ten"}).status_code == 400


def test_find_by_status_needs_file_produced_by_job(client, wf):
    jobs, files = docs(client, wf, "jobs"), docs(client, wf, "files")
    resp = client.simulate_get(f"/workflows/{wf}/jobs/find_by_status/uninitialized",
                               params={"skip": "1"})
    env = ListJobsByStatusResponse.from_dict(resp.json)
    assert [j.name for j in env.items] == ["work", "post"] and env.total_count == 3
    resp = client.simulate_get(f"/workflows/{wf}/jobs/find_by_needs_file/files__{wf}%2F"
                               f"{files['f2']['_key']}")
    assert [j.name for j in ListJobsByNeedsFileResponse.from_dict(resp.json).items] == ["post"]
    missing = client.simulate_get(f"/workflows/{wf}/jobs/find_by_needs_file/999999")
    assert missing.status_code == 404
    assert missing.json["errorMessage"] == "File 999999 is not stored"
    resp = client.simulate_get(f"/workflows/{wf}/files/produced_by_job/{jobs['pre']['_key']}",
                               params={"skip": "1"})
    env = ListFilesProducedByJob.from_dict(resp.json)
    assert [f.name for f in env.items] == ["f2"]
    assert (env.skip, env.count, env.total_count, env.has_more) == (1, 1, 2, False)


def test_job_relations(client, wf):
    jobs, rrs = docs(client, wf, "jobs"), docs(client, wf, "resource_requirements")
    pre, post = jobs["pre"]["_key"], jobs["post"]["_key"]
    resp = client.simulate_get(f"/workflows/{wf}/jobs/{pre}/user_data_stores")
    assert [u.name for u in ListJobUserDataStoresResponse.from_dict(resp.json).items] == ["res"]
    resp = client.simulate_get(f"/workflows/{wf}/jobs/{pre}/user_data_consumes")
    assert [u["name"] for u in resp.json["items"]] == ["params"]

    resp = client.simulate_post(f"/workflows/{wf}/jobs/{post}/user_data",
                                json={"name": "out", "data": {"x": 1}})
    assert resp.status_code == 200
    assert UserDataModel.from_dict(resp.json).is_ephemeral is False  # schema default
    stores = client.simulate_get(f"/workflows/{wf}/jobs/{post}/user_data_stores").json
    assert [u["name"] for u in stores["items"]] == ["out"]
    bad = client.simulate_post(f"/workflows/{wf}/jobs/{post}/user_data", json={"nam": "x"})
    assert bad.status_code == 400

    resp = client.simulate_get(f"/workflows/{wf}/jobs/{post}/resource_requirements")
    assert ResourceRequirementsModel.from_dict(resp.json).name == "default"
    resp = client.simulate_put(
        f"/workflows/{wf}/jobs/{post}/resource_requirements/{rrs['big']['_key']}")
    assert resp.status_code == 200
    edge = EdgeModel.from_dict(resp.json)
    assert (edge.var_from, edge.to) == (jobs["post"]["_id"], rrs["big"]["_id"])
    resp = client.simulate_get(f"/workflows/{wf}/jobs/jobs__{wf}%2F{post}/resource_requirements")
    assert resp.json["name"] == "big"
    assert client.simulate_put(
        f"/workflows/{wf}/jobs/{post}/resource_requirements/999999").status_code == 404

    for run_id in (2, 1):
        stats = client.simulate_post(f"/workflows/{wf}/job_process_stats", json={
            "job_key": post, "run_id": run_id, "avg_cpu_percent": 1.0, "max_cpu_percent": 2.0,
            "avg_rss": 1.0, "max_rss": 2.0, "num_samples": 1, "timestamp": "t"}).json
        client.simulate_post(f"/workflows/{wf}/edges/process_used",
                             json={"_from": jobs["post"]["_id"], "_to": stats["_id"]})
    resp = client.simulate_get(f"/workflows/{wf}/jobs/{post}/process_stats")
    assert isinstance(resp.json, list)
    assert [JobProcessStatsModel.from_dict(s).run_id for s in resp.json] == [1, 2]


def test_latest_result(client, wf):
    job = docs(client, wf, "jobs")["work"]
    url = f"/workflows/{wf}/results/find_by_job/{job['_key']}"
    missing = client.simulate_get(url)
    assert missing.status_code == 404
    assert missing.json["errorMessage"] == f"No result is stored for job {job['_key']}"
    result = client.simulate_post(f"/workflows/{wf}/results", json={
        "job_key": job["_key"], "run_id": 0, "return_code": 0, "exec_time_minutes": 1.0,
        "completion_time": "t", "status": "done"}).json
    client.simulate_post(f"/workflows/{wf}/edges/returned",
                         json={"_from": job["_id"], "_to": result["_id"]})
    resp = client.simulate_get(url)
    assert resp.status_code == 200
    assert ResultModel.from_dict(resp.json).run_id == 0


def test_joins(client, wf):
    resp = client.simulate_post(f"/workflows/{wf}/join_by_outbound_edge/jobs/needs", json={},
                                params={"skip": "1", "limit": "1", "collection_key": "ignored"})
    assert resp.status_code == 200
    env = JoinByOutboundEdgeCollectionEdgeResponse.from_dict(resp.json)
    assert [(r["from"]["name"], r["to"]["name"]) for r in env.items] == [("work", "f1")]
    assert (env.skip, env.count, env.total_count, env.has_more) == (1, 1, 1, False)
    resp = client.simulate_post(f"/workflows/{wf}/join_by_inbound_edge/resource_requirements/"
                                "requires", json={"num_cpus": 4})
    assert [(r["from"]["name"], r["to"]["name"]) for r in resp.json["items"]] == [("work", "big")]
    for path, message in (("jobz/needs", "unknown collection name 'jobz'"),
                          ("jobs/needz", "unknown edge name 'needz'")):
        resp = client.simulate_post(f"/workflows/{wf}/join_by_outbound_edge/{path}", json={})
        assert resp.status_code == 400 and message in resp.json["errorMessage"]
    resp = client.simulate_post(f"/workflows/{wf}/join_by_outbound_edge/jobs/needs",
                                json={"colour": 1})
    assert resp.status_code == 400 and "'colour'" in resp.json["errorMessage"]
    assert client.simulate_get(f"/workflows/{wf}/join_by_outbound_edge/jobs/needs").status_code \
        == 405


def test_events(client, wf):
    assert client.simulate_get(f"/workflows/{wf}/latest_event_timestamp").json == {
        "timestamp": None}
    posted = [client.simulate_post(f"/workflows/{wf}/events",
                                   json={"category": c, "type": "t"}).json
              for c in ("job", "worker", "job")]
    latest = client.simulate_get(f"/workflows/{wf}/latest_event_timestamp").json["timestamp"]
    assert latest == max(e["timestamp"] for e in posted)
    first = posted[0]["timestamp"] - 1
    resp = client.simulate_get(f"/workflows/{wf}/events_after_timestamp/{first}.0",
                               params={"category": "job"})
    assert resp.status_code == 200
    env = ListEventsResponse.from_dict(resp.json)
    assert [e["_key"] for e in env.items] == [posted[0]["_key"], posted[2]["_key"]]
    limited = client.simulate_get(f"/workflows/{wf}/events_after_timestamp/{first}",
                                  params={"limit": "1", "skip": "5"}).json
    assert limited["count"] == 1 and limited["skip"] == 0 and limited["has_more"] is False
    bad = client.simulate_get(f"/workflows/{wf}/events_after_timestamp/yesterday")
    assert bad.status_code == 404  # a path parameter that does not convert: unmatched route


def test_dot_graph(client, wf):
    for name in ("job_job_dependencies", "job_file_dependencies", "job_user_data_dependencies"):
        resp = client.simulate_get(f"/workflows/{wf}/dot_graph/{name}")
        assert resp.status_code == 200
        graph = GetDotGraphResponse.from_dict(resp.json).graph
        assert graph.startswith(f'strict digraph "{name}" {{')
    resp = client.simulate_get(f"/workflows/{wf}/dot_graph/everything")
    assert resp.status_code == 400 and "everything" in resp.json["errorMessage"]
    assert client.simulate_get("/workflows/424242/dot_graph/job_job_dependencies").status_code \
        == 404


def test_auto_tune(client, wf):
    resp = client.simulate_post(f"/workflows/{wf}/auto_tune_resource_requirements")
    assert resp.status_code == 200
    assert resp.json == {"message": "Enabled jobs for auto-tune mode."}
    status = client.simulate_get(f"/workflows/{wf}/status").json
    assert status["auto_tune_status"]["enabled"] is True
    assert len(status["auto_tune_status"]["job_keys"]) == 3
    resp = client.simulate_post(
        f"/workflows/{wf}/process_auto_tune_resource_requirements_results")
    assert resp.status_code == 400 and "process stats" in resp.json["errorMessage"]
    assert client.simulate_post(
        "/workflows/424242/auto_tune_resource_requirements").status_code == 404


@pytest.mark.slow
def test_torc_client_queries(live_server):
    """The real torc v0.6.4 client's calls of these endpoints, through gunicorn."""
    from torc.api import iter_documents
    from torc.openapi_client import ApiClient, Configuration, DefaultApi
    from torc.openapi_client.models.workflow_specification_model import (
        WorkflowSpecificationModel,
    )

    api = DefaultApi(ApiClient(Configuration(host=live_server)))
    wf = api.add_workflow_specification(WorkflowSpecificationModel(**SPEC)).key
    jobs = {j.name: j for j in api.list_jobs(wf).items}
    pre = jobs["pre"]
    assert [j.name for j in iter_documents(api.list_downstream_jobs, wf, pre.key)] == [
        "work", "post"]
    assert [f.name for f in iter_documents(api.list_files_produced_by_job, wf, pre.key)] == [
        "f1", "f2"]
    assert [j.name for j in iter_documents(api.list_jobs_by_status, wf, "uninitialized")] == [
        "pre", "work", "post"]
    rows = list(iter_documents(api.join_collections_by_outbound_edge, wf, "jobs", "needs", {}))
    assert len(rows) == 4
    assert api.get_job_resource_requirements(wf, pre.key).name == "small"
    assert [u.name for u in api.list_job_user_data_stores(wf, pre.key).items] == ["res"]
    assert api.get_process_stats_for_job(wf, pre.key) == []
    graph = api.get_dot_graph(wf, "job_job_dependencies").graph
    assert graph.count("->") == 2
    api.add_event(wf, {"category": "job", "type": "x"})
    latest = api.get_latest_event_timestamp(wf)["timestamp"]
    assert isinstance(latest, int)
    # The CLI computes timestamps as floats (datetime.timestamp() * 1000).
    assert list(iter_documents(api.get_events_after_timestamp, wf, latest - 1.0)) != []
    assert list(iter_documents(api.get_events_after_timestamp, wf, float(latest))) == []
    assert api.auto_tune_resource_requirements(wf) == {
        "message": "Enabled jobs for auto-tune mode."}
