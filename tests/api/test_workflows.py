"""Workflows, config/status, collection names, edges, bulk jobs and job keys via the app."""

from __future__ import annotations

import pytest

from torc_graph import model


def post(client, path, body, status=200):
    resp = client.simulate_post(path, json=body)
    assert resp.status_code == status, resp.text
    return resp.json


@pytest.fixture
def wf(client):
    return post(client, "/workflows", {"user": "u", "name": "w"})["_key"]


def test_workflow_lifecycle(client):
    wf = post(client, "/workflows", {"user": "me", "name": "n", "description": "d"})
    assert wf["timestamp"].endswith("Z") and wf["is_archived"] is False
    key = wf["_key"]
    assert client.simulate_get(f"/workflows/{key}").json == wf
    upd = client.simulate_put(f"/workflows/{key}", json={**wf, "is_archived": True}).json
    assert upd["is_archived"] is True and upd["_oldRev"] == wf["_rev"]
    assert client.simulate_put(f"/workflows/{key}", json=wf).status_code == 409
    gone = client.simulate_delete(f"/workflows/{key}").json
    assert gone["_key"] == key and gone["is_archived"] is True
    assert client.simulate_get(f"/workflows/{key}").status_code == 404
    assert client.simulate_get(f"/workflows/{key}/config").status_code == 404
    assert client.simulate_delete(f"/workflows/{key}").status_code == 404


def test_workflow_custom_key_and_timestamp(client):
    wf = post(client, "/workflows", {"user": "u", "_key": "4242", "timestamp": "then"})
    assert wf["_key"] == "4242" and wf["timestamp"] == "then"
    resp = client.simulate_post("/workflows", json={"user": "u", "_key": "4242"})
    assert resp.status_code == 400 and "already exists" in resp.json["errorMessage"]
    assert post(client, "/workflows", {"user": "u", "timestamp": ""})["timestamp"].endswith("Z")


def test_list_workflows_filters(client):
    a = post(client, "/workflows", {"user": "alice", "name": "x"})
    b = post(client, "/workflows", {"user": "bob", "name": "y", "is_archived": True})
    c = post(client, "/workflows", {"user": "alice", "name": "z", "is_archived": False})
    got = client.simulate_get("/workflows", params={"user": "alice", "is_archived": "false"}).json
    assert [w["_key"] for w in got["items"]] == [a["_key"], c["_key"]]
    got = client.simulate_get("/workflows", params={"is_archived": "true"}).json
    assert [w["_key"] for w in got["items"]] == [b["_key"]]
    got = client.simulate_get("/workflows", params={"sort_by": "name", "reverse_sort": "true"}).json
    assert [w["name"] for w in got["items"]] == ["z", "y", "x"]
    got = client.simulate_get("/workflows", params={"limit": "1", "skip": "1"}).json
    assert (got["count"], got["total_count"], got["has_more"]) == (1, 3, True)


def test_delete_workflow_cascades(client, store, wf):
    f = post(client, f"/workflows/{wf}/files", {"path": "/p"})
    post(client, f"/workflows/{wf}/jobs", {"command": "c", "input_files": [f["_id"]]})
    other = post(client, "/workflows", {"user": "u"})["_key"]
    post(client, f"/workflows/{other}/files", {"path": "/q"})
    client.simulate_delete(f"/workflows/{wf}")
    assert not store.workflow_exists(wf)
    assert [w["_key"] for w in store.find("workflows", None)] == [other]
    assert len(store.find("workflow_configs", None)) == 1
    assert len(store.find("workflow_statuses", None)) == 1
    assert len(store.find("files", other)) == 1


def test_config_get_put(client, wf):
    cfg = client.simulate_get(f"/workflows/{wf}/config").json
    assert cfg["compute_node_expiration_buffer_seconds"] == 120
    assert cfg["prepare_jobs_sort_method"] == "gpus_runtime_memory"
    assert cfg["compute_node_resource_stats"]["interval"] == 10
    body = {**cfg, "compute_node_wait_for_new_jobs_seconds": 30,
            "workflow_completion_script": "done.sh"}
    upd = client.simulate_put(f"/workflows/{wf}/config", json=body).json
    assert upd["_rev"] != cfg["_rev"] and upd["compute_node_wait_for_new_jobs_seconds"] == 30
    assert client.simulate_get(f"/workflows/{wf}/config").json["_rev"] == upd["_rev"]
    # stale rev -> 409; no rev -> allowed (merge)
    assert client.simulate_put(f"/workflows/{wf}/config", json=body).status_code == 409
    no_rev = {k: v for k, v in body.items() if k != "_rev"}
    assert client.simulate_put(f"/workflows/{wf}/config", json=no_rev).status_code == 200


def test_config_and_status_of_another_workflow_are_rejected(client, wf):
    other = post(client, "/workflows", {"user": "u"})["_key"]
    other_status = client.simulate_get(f"/workflows/{other}/status").json
    resp = client.simulate_put(f"/workflows/{wf}/status", json={**other_status, "run_id": 9})
    assert resp.status_code == 400
    assert client.simulate_get(f"/workflows/{other}/status").json["run_id"] == 0
    other_cfg = client.simulate_get(f"/workflows/{other}/config").json
    assert client.simulate_put(f"/workflows/{wf}/config", json=other_cfg).status_code == 400


def test_status_get_put(client, wf):
    st = client.simulate_get(f"/workflows/{wf}/status").json
    assert st["run_id"] == 0 and st["is_canceled"] is False
    assert st["auto_tune_status"] == {"enabled": False, "job_keys": []}
    upd = client.simulate_put(f"/workflows/{wf}/status", json={**st, "run_id": 1}).json
    assert upd["run_id"] == 1 and upd["_rev"] != st["_rev"]
    assert client.simulate_put(f"/workflows/{wf}/status", json={**st, "run_id": 2}).status_code == 409


def test_collection_names(client, wf):
    names = client.simulate_get(f"/workflows/{wf}/collection_names").json["names"]
    assert names == [f"{n}__{wf}" for n in model.COLLECTION_NAMES_ORDER]
    assert names[:3] == [f"events__{wf}", f"scheduled_compute_nodes__{wf}",
                         f"aws_schedulers__{wf}"]
    assert len(names) == 24


# -- edges -----------------------------------------------------------------------------------


def test_edge_routes(client, wf):
    j1 = post(client, f"/workflows/{wf}/jobs", {"command": "a"})
    j2 = post(client, f"/workflows/{wf}/jobs", {"command": "b"})
    e = post(client, f"/workflows/{wf}/edges/blocks",
             {"_from": j1["_id"], "_to": j2["_id"], "data": {"x": 1}})
    assert e["_id"].startswith(f"blocks__{wf}/") and e["data"] == {"x": 1}
    base = f"/workflows/{wf}/edges/blocks"
    assert client.simulate_get(f"{base}/{e['_key']}").json == e
    assert client.simulate_get(f"{base}/{e['_id'].replace('/', '%2F')}").json == e
    page = client.simulate_get(base).json
    assert page["items"] == [e] and page["total_count"] == 1
    assert client.simulate_delete(f"{base}/{e['_key']}").json == e
    assert client.simulate_get(f"{base}/{e['_key']}").status_code == 404
    post(client, base, {"_from": j1["_id"], "_to": j2["_id"]})
    assert client.simulate_delete(base).json == {
        "message": f'Deleted all edges in the "blocks__{wf}" collection'}
    assert client.simulate_get(base).json["count"] == 0
    # deleting edges never touches vertices
    assert client.simulate_get(f"/workflows/{wf}/jobs").json["count"] == 2


@pytest.mark.parametrize("edge", [e.value for e in model.Edge])
def test_every_edge_collection_is_listable(client, wf, edge):
    assert client.simulate_get(f"/workflows/{wf}/edges/{edge}").json["count"] == 0


# -- jobs: relation fields, bulk, keys ------------------------------------------------------


def test_add_job_creates_relation_edges(client, wf):
    base = f"/workflows/{wf}"
    f_in = post(client, f"{base}/files", {"path": "/in"})
    f_out = post(client, f"{base}/files", {"path": "/out"})
    ud_in = post(client, f"{base}/user_data", {"name": "a"})
    ud_out = post(client, f"{base}/user_data", {"name": "b"})
    rr = post(client, f"{base}/resource_requirements", {"name": "r"})
    sch = post(client, f"{base}/slurm_schedulers", {"account": "a", "nodes": 1})
    blocker = post(client, f"{base}/jobs", {"command": "first"})
    job = post(client, f"{base}/jobs", {
        "command": "c", "input_files": [f_in["_id"]], "output_files": [f_out["_id"]],
        "input_user_data": [ud_in["_id"]], "output_user_data": [ud_out["_id"]],
        "resource_requirements": rr["_id"], "scheduler": sch["_id"],
        "blocked_by": [blocker["_id"]], "_key": "custom-job"})
    assert job["_key"] == "custom-job" and job["status"] == "uninitialized"
    assert not set(job) & {"input_files", "scheduler", "blocked_by", "resource_requirements"}
    expect = {"needs": (job, f_in), "produces": (job, f_out), "consumes": (job, ud_in),
              "stores": (job, ud_out), "requires": (job, rr), "scheduled_bys": (job, sch),
              "blocks": (blocker, job)}
    for edge, (a, b) in expect.items():
        items = client.simulate_get(f"{base}/edges/{edge}").json["items"]
        assert [(e["_from"], e["_to"]) for e in items] == [(a["_id"], b["_id"])], edge


def test_bulk_jobs_and_job_keys(client, wf):
    base = f"/workflows/{wf}"
    f = post(client, f"{base}/files", {"path": "/x"})
    jobs = [{"command": f"c{i}", "input_files": [f["_id"]]} for i in range(50)]
    jobs.append({"command": "last", "_key": "last", "status": "disabled"})
    jobs.append({"command": "after", "blocked_by": [f"jobs__{wf}/last"]})
    items = post(client, f"{base}/bulk_jobs", {"jobs": jobs})["items"]
    assert [j["command"] for j in items] == [j["command"] for j in jobs]
    assert items[50]["status"] == "disabled" and items[0]["status"] == "uninitialized"
    keys = client.simulate_get(f"{base}/job_keys").json
    assert keys == {"items": [j["_key"] for j in items]}
    assert [int(k) for k in keys["items"][:50]] == sorted(int(k) for k in keys["items"][:50])
    assert client.simulate_get(f"{base}/edges/needs").json["count"] == 50
    blocks = client.simulate_get(f"{base}/edges/blocks").json["items"]
    assert [(e["_from"], e["_to"]) for e in blocks] == [(f"jobs__{wf}/last", items[51]["_id"])]
    # list order = insertion order
    listed = client.simulate_get(f"{base}/jobs").json["items"]
    assert [j["_key"] for j in listed] == keys["items"]


def test_bulk_jobs_is_atomic(client, wf, db_dump):
    before = db_dump()
    jobs = [{"command": "ok"}] * 5 + [{"command": "bad", "input_files": ["files__1/nope"]}]
    resp = client.simulate_post(f"/workflows/{wf}/bulk_jobs", json={"jobs": jobs})
    assert resp.status_code == 400 and "jobs[5]" in resp.json["errorMessage"]
    resp = client.simulate_post(f"/workflows/{wf}/bulk_jobs",
                                json={"jobs": [{"command": "ok"}, {"cmd": "x"}]})
    assert resp.status_code == 400 and "jobs[1]" in resp.json["errorMessage"]
    assert db_dump() == before


def test_ping_version_need_no_workflow(client):
    assert client.simulate_get("/ping").status_code == 200
    assert client.simulate_get("/version").status_code == 200
