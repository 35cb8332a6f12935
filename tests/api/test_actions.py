"""The generic ActionResource: path types (404), key normalization, typed query params (400),
body validation, optional bodies, several methods on one path."""

from __future__ import annotations

import falcon
import pytest
from falcon import testing

from torc_graph.api.errors import register_error_handlers
from torc_graph.api.middleware import RequestMiddleware
from torc_graph.api.resources import ActionResource
from torc_graph.api.route import REQUIRED, Action, Param

calls: list[dict] = []


def record(store, **kwargs):
    calls.append(kwargs)
    return {"got": {k: v for k, v in kwargs.items()}}


@pytest.fixture
def action_client(store):
    calls.clear()
    rows_a = [
        Action("PUT", "/workflows/{workflow}/jobs/{key}/act/{run_id}/{node}", record, "act",
               path_types={"run_id": int}, keys={"key": "jobs", "node": "compute_nodes"},
               query=(Param("flag", bool, False), Param("n", int, REQUIRED))),
        Action("POST", "/workflows/{workflow}/jobs/{key}/act/{run_id}/{node}", record, "act2",
               path_types={"run_id": int}, body="file", body_required=False),
    ]
    rows_b = [Action("POST", "/things", record, "things", body="file")]
    app = falcon.App(middleware=[RequestMiddleware(10_000)])
    register_error_handlers(app)
    app.add_route(rows_a[0].path, ActionResource(store, 10_000, rows_a))
    app.add_route("/things", ActionResource(store, 10_000, rows_b))
    wf = store.create_workflow({"user": "u"}, {}, {"run_id": 0}).workflow["_key"]
    return testing.TestClient(app), wf


def test_conversions_and_key_normalization(action_client):
    client, wf = action_client
    path = f"/workflows/{wf}/jobs/jobs__{wf}%2F12/act/3/compute_nodes__{wf}%2F7"
    resp = client.simulate_put(path, params={"flag": "true", "n": "5", "extra": "ignored"})
    assert resp.status_code == 200, resp.text
    assert calls[-1] == {"workflow": wf, "key": "12", "run_id": 3, "node": "7", "flag": True,
                         "n": 5}


def test_bad_path_type_is_404(action_client):
    client, wf = action_client
    resp = client.simulate_put(f"/workflows/{wf}/jobs/1/act/x/2", params={"n": "1"})
    assert resp.status_code == 404 and "run_id" in resp.json["errorMessage"]
    assert calls == []


def test_bad_and_missing_query_params_are_400(action_client):
    client, wf = action_client
    resp = client.simulate_put(f"/workflows/{wf}/jobs/1/act/1/2", params={"n": "x"})
    assert resp.status_code == 400 and "'n'" in resp.json["errorMessage"]
    resp = client.simulate_put(f"/workflows/{wf}/jobs/1/act/1/2")
    assert resp.status_code == 400 and "'n' is required" in resp.json["errorMessage"]
    resp = client.simulate_put(f"/workflows/{wf}/jobs/1/act/1/2", params={"n": "1", "flag": "2"})
    assert resp.status_code == 400 and "'flag'" in resp.json["errorMessage"]
    assert calls == []


def test_missing_workflow_is_404_before_bad_key(action_client):
    client, _ = action_client
    resp = client.simulate_put("/workflows/999/jobs/bad%20key/act/1/2", params={"n": "1"})
    assert resp.status_code == 404


def test_wrong_collection_id_is_400(action_client):
    client, wf = action_client
    resp = client.simulate_put(f"/workflows/{wf}/jobs/files__{wf}%2F1/act/1/2",
                               params={"n": "1"})
    assert resp.status_code == 400


def test_optional_body(action_client):
    client, wf = action_client
    path = f"/workflows/{wf}/jobs/1/act/1/2"
    assert client.simulate_post(path).status_code == 200
    assert calls[-1]["body"] is None
    client.simulate_post(path, json={"path": "/p"})
    assert calls[-1]["body"] == {"path": "/p"}
    resp = client.simulate_post(path, json={"nope": 1})
    assert resp.status_code == 400


def test_required_body(action_client):
    client, _ = action_client
    assert client.simulate_post("/things").status_code == 400
    assert client.simulate_post("/things", body="{").status_code == 400
    resp = client.simulate_post("/things", json={"path": "/p"})
    assert resp.json == {"got": {"body": {"path": "/p"}}}


def test_unregistered_method_is_405(action_client):
    client, wf = action_client
    assert client.simulate_delete(f"/workflows/{wf}/jobs/1/act/1/2").status_code == 405


def test_duplicate_method_on_a_path_is_rejected(store):
    rows = [Action("GET", "/x", record, "a"), Action("GET", "/x", record, "b")]
    with pytest.raises(ValueError, match="two actions"):
        ActionResource(store, 1, rows)
