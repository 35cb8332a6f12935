"""Generic CRUD routes for the 13 per-workflow collections, through the Falcon app."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from torc_graph import model

_spec = importlib.util.spec_from_file_location("api_samples", Path(__file__).with_name("samples.py"))
samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(samples)

COLLECTIONS = [c.value for c in model.Collection]
SYSTEM = {"_key", "_id", "_rev"}


@pytest.fixture
def wf(client):
    return client.simulate_post("/workflows", json={"user": "u"}).json["_key"]


def post(client, wf, coll, body):
    resp = client.simulate_post(f"/workflows/{wf}/{coll}", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json


@pytest.mark.parametrize("coll", COLLECTIONS)
def test_crud_cycle(client, wf, coll):
    base = f"/workflows/{wf}/{coll}"
    sample = samples.SAMPLES[coll]
    doc = post(client, wf, coll, sample)
    assert doc["_id"] == f"{coll}__{wf}/{doc['_key']}" and doc["_rev"]
    for k, v in sample.items():
        if isinstance(v, dict):  # nested defaults are filled in
            assert doc[k] | v == doc[k]
        else:
            assert doc[k] == v
    # get by key and by full id (encoded slash)
    assert client.simulate_get(f"{base}/{doc['_key']}").json == doc
    assert client.simulate_get(f"{base}/{doc['_id'].replace('/', '%2F')}").json == doc
    # list
    listing = client.simulate_get(base).json
    assert listing == {"items": [doc], "skip": 0, "max_limit": 100000, "count": 1,
                       "total_count": 1, "has_more": False}
    # put (merge): add a field that exists in every schema? use the filter field
    param, raw, field, value = samples.FILTERS[coll]
    other = samples.OTHER[coll]
    updated = client.simulate_put(f"{base}/{doc['_key']}", json={**doc, field: other}).json
    assert updated[field] == other and updated["_rev"] != doc["_rev"]
    assert updated["_oldRev"] == doc["_rev"]
    stored = client.simulate_get(f"{base}/{doc['_key']}").json
    assert stored[field] == other and stored["_rev"] == updated["_rev"]
    # stale rev
    resp = client.simulate_put(f"{base}/{doc['_key']}", json={**doc, field: value})
    assert resp.status_code == 409
    # filter: a second doc with the sample value
    second = post(client, wf, coll, sample)
    match = client.simulate_get(base, params={param: raw}).json
    assert [d["_key"] for d in match["items"]] == [second["_key"]]
    assert match["total_count"] == 1
    # remove returns the document as it was
    removed = client.simulate_delete(f"{base}/{second['_key']}").json
    assert removed == second
    assert removed["_key"] == second["_key"] and "_oldRev" not in removed
    assert client.simulate_get(f"{base}/{second['_key']}").status_code == 404
    # delete all
    resp = client.simulate_delete(base).json
    assert resp == {"message": f'Deleted all documents in the "{coll}" collection for workflow {wf}'}
    assert client.simulate_get(base).json["count"] == 0


def test_events_timestamp_is_set_by_server(client, wf):
    ev = post(client, wf, "events", {"category": "job", "timestamp": 5})
    assert isinstance(ev["timestamp"], int) and ev["timestamp"] > 1_600_000_000_000


def test_custom_key_and_duplicate(client, wf):
    doc = post(client, wf, "files", {"path": "/x", "_key": "my-file"})
    assert doc["_key"] == "my-file" and doc["_id"] == f"files__{wf}/my-file"
    resp = client.simulate_post(f"/workflows/{wf}/files", json={"path": "/y", "_key": "my-file"})
    assert resp.status_code == 409


def test_paging_and_sorting(client, wf):
    names = ["c", "a", "b", "a", "d"]
    docs = [post(client, wf, "files", {"name": n, "path": f"/{i}"}) for i, n in enumerate(names)]
    base = f"/workflows/{wf}/files"
    page = client.simulate_get(base, params={"skip": "1", "limit": "2"}).json
    assert [d["path"] for d in page["items"]] == ["/1", "/2"]
    assert (page["skip"], page["count"], page["total_count"], page["has_more"]) == (1, 2, 5, True)
    last = client.simulate_get(base, params={"skip": "4", "limit": "2"}).json
    assert (last["count"], last["has_more"]) == (1, False)
    # sort_by sorts the whole result by the named field; ties keep insertion order
    s = client.simulate_get(base, params={"sort_by": "name", "limit": "3"}).json
    assert [d["path"] for d in s["items"]] == ["/1", "/3", "/2"]
    r = client.simulate_get(base, params={"sort_by": "path", "reverse_sort": "true"}).json
    assert [d["path"] for d in r["items"]] == ["/4", "/3", "/2", "/1", "/0"]
    k = client.simulate_get(base, params={"sort_by": "_key", "reverse_sort": "true"}).json
    # _key is a string: sorted as strings (like ArangoDB's SORT doc._key)
    assert [d["_key"] for d in k["items"]] == sorted((d["_key"] for d in docs), reverse=True)
    # reverse_sort without sort_by is ignored (as in torc)
    n = client.simulate_get(base, params={"reverse_sort": "true"}).json
    assert [d["_key"] for d in n["items"]] == [d["_key"] for d in docs]
    # limit is clamped to 100000; limit=0 returns nothing
    assert client.simulate_get(base, params={"limit": "999999"}).json["count"] == 5
    assert client.simulate_get(base, params={"limit": "0"}).json["count"] == 0
    # undeclared query parameters are ignored
    assert client.simulate_get(base, params={"bogus": "1"}).json["count"] == 5


def test_events_sort_by_free_form_field(client, wf):
    for n in (3, 1, 2):
        post(client, wf, "events", {"category": "x", "n": n})
    got = client.simulate_get(f"/workflows/{wf}/events", params={"sort_by": "n"}).json
    assert [e["n"] for e in got["items"]] == [1, 2, 3]


def test_put_merges_and_keeps_missing_fields(client, wf):
    f = post(client, wf, "files", {"name": "n", "path": "/p", "st_mtime": 1.5})
    upd = client.simulate_put(f"/workflows/{wf}/files/{f['_key']}",
                              json={"path": "/q", "_rev": f["_rev"]}).json
    assert (upd["name"], upd["path"], upd["st_mtime"]) == ("n", "/q", 1.5)


def test_put_by_full_id(client, wf):
    f = post(client, wf, "files", {"path": "/p"})
    resp = client.simulate_put(f"/workflows/{wf}/files/{f['_id'].replace('/', '%2F')}",
                               json={**f, "name": "x"})
    assert resp.status_code == 200 and resp.json["name"] == "x"


def test_remove_vertex_cascades_edges(client, wf):
    f = post(client, wf, "files", {"path": "/p"})
    j = post(client, wf, "jobs", {"command": "c", "input_files": [f["_id"]]})
    # (one job needing the file it produces would block itself: refused since issue 10)
    post(client, wf, "jobs", {"command": "p", "output_files": [f["_id"]]})
    assert client.simulate_get(f"/workflows/{wf}/edges/needs").json["count"] == 1
    client.simulate_delete(f"/workflows/{wf}/files/{f['_key']}")
    for edge in ("needs", "produces"):
        assert client.simulate_get(f"/workflows/{wf}/edges/{edge}").json["count"] == 0
    assert client.simulate_get(f"/workflows/{wf}/jobs/{j['_key']}").status_code == 200


def test_delete_all_vertices_cascades_edges(client, wf):
    f = post(client, wf, "files", {"path": "/p"})
    post(client, wf, "jobs", {"command": "c", "input_files": [f["_id"]]})
    client.simulate_delete(f"/workflows/{wf}/jobs")
    assert client.simulate_get(f"/workflows/{wf}/edges/needs").json["count"] == 0
    assert client.simulate_get(f"/workflows/{wf}/files").json["count"] == 1


def test_job_put_does_not_store_relation_fields(client, wf):
    j = post(client, wf, "jobs", {"command": "c"})
    upd = client.simulate_put(f"/workflows/{wf}/jobs/{j['_key']}",
                              json={**j, "status": "ready", "input_files": []}).json
    assert upd["status"] == "ready"
    stored = client.simulate_get(f"/workflows/{wf}/jobs/{j['_key']}").json
    assert not set(stored) & {"input_files", "output_files", "blocked_by", "input_user_data",
                              "output_user_data", "resource_requirements", "scheduler"}


def test_unknown_workflow_is_404_everywhere(client):
    for coll in COLLECTIONS:
        for method, path in (("GET", f"/workflows/999/{coll}"),
                             ("POST", f"/workflows/999/{coll}"),
                             ("DELETE", f"/workflows/999/{coll}"),
                             ("GET", f"/workflows/999/{coll}/1"),
                             ("PUT", f"/workflows/999/{coll}/1"),
                             ("DELETE", f"/workflows/999/{coll}/1")):
            resp = client.simulate_request(method, path, json=samples.SAMPLES[coll])
            assert resp.status_code == 404, (method, path, resp.text)
            assert resp.json["errorMessage"] == (
                "Error: Document not found. Operation: Get workflow with key=999")


def test_missing_document_message(client, wf):
    resp = client.simulate_get(f"/workflows/{wf}/files/12345")
    assert resp.status_code == 404
    assert resp.json["errorMessage"] == "Error: Document not found. Operation: Get file with key=12345"
    assert resp.json["errorNum"] == 1202
