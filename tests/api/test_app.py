"""The app's transport rules: one error body everywhere, middleware (prefix, ids with an
encoded slash, body limit, JSON parsing), JSON output, and the route table."""

from __future__ import annotations

import json

import falcon
import pytest
from falcon import testing

from torc_graph import model
from torc_graph.api import routes
from torc_graph.api.errors import INTERNAL_ERROR_MESSAGE
from torc_graph.api.middleware import ID_SEPARATOR, rewrite_path
from torc_graph.app import create_app
from torc_graph.errors import error_body

ERROR_KEYS = {"error", "errorNum", "errorMessage", "code"}


def assert_error(resp, status: int, contains: str | None = None) -> dict:
    """The response is torc's one error body with this status."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json
    assert set(body) == ERROR_KEYS
    assert body["error"] is True and body["code"] == status
    assert body == error_body(status, body["errorMessage"], body["errorNum"])
    if contains is not None:
        assert contains in body["errorMessage"]
    return body


def workflow(client) -> str:
    return client.simulate_post("/workflows", json={"user": "u"}).json["_key"]


def test_ping_and_version(client):
    assert client.simulate_get("/ping").json == {"message": "torc-service is running"}
    assert client.simulate_get("/version").json == {"version": model.SERVICE_VERSION}


def test_service_prefix_is_stripped(client):
    resp = client.simulate_get("/_db/test-workflows/torc-service/ping")
    assert resp.json == {"message": "torc-service is running"}
    wf = client.simulate_post("/_db/x/torc-service/workflows", json={"user": "u"}).json
    assert client.simulate_get(f"/_db/x/torc-service/workflows/{wf['_key']}").json == wf


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nope", 404),
    ("GET", "/workflows/1/nope/2/3", 404),
    ("PATCH", "/ping", 405),
    ("PUT", "/workflows", 405),
    ("PUT", "/workflows/1/edges/blocks", 405),
])
def test_router_errors_use_the_torc_body(client, method, path, status):
    assert_error(client.simulate_request(method, path), status)


def test_405_keeps_the_allow_header(client):
    resp = client.simulate_request("PATCH", "/ping")
    assert "GET" in resp.headers["allow"]


def test_unexpected_errors_are_500_without_details(store, settings, monkeypatch, caplog):
    from torc_graph.engine import documents

    def boom(*a, **k):
        raise RuntimeError("secret /etc/passwd detail")

    monkeypatch.setattr(documents, "list_documents", boom)
    client = testing.TestClient(create_app(store, settings))
    wf = workflow(client)
    body = assert_error(client.simulate_get(f"/workflows/{wf}/files"), 500)
    assert body["errorMessage"] == INTERNAL_ERROR_MESSAGE
    assert "secret" not in json.dumps(body)
    assert "secret /etc/passwd detail" in caplog.text  # the traceback is logged


def test_every_error_path_uses_error_body(client, monkeypatch):
    """Pin datasette-style: all three handlers build their body with errors.error_body."""
    import torc_graph.api.errors as api_errors

    calls = []

    def spy(status, message, error_num=None):
        calls.append(status)
        return error_body(status, message, error_num)

    monkeypatch.setattr(api_errors, "error_body", spy)
    monkeypatch.setattr("torc_graph.errors.error_body", spy)
    assert client.simulate_get("/nope").status_code == 404            # falcon.HTTPError
    assert client.simulate_get("/workflows/999").status_code == 404    # TorcGraphError
    assert calls == [404, 404]


def test_body_limit_413(client, settings, db_dump):
    wf = workflow(client)
    before = db_dump()
    big = json.dumps({"path": "x" * (settings["max_body_bytes"] + 10)})
    assert_error(client.simulate_post(f"/workflows/{wf}/files", body=big), 413)
    # Without a Content-Length (chunked): the bounded reader enforces the limit too.
    resp = client.simulate_post(f"/workflows/{wf}/files", body=big,
                                extras={"CONTENT_LENGTH": "",
                                        "wsgi.input_terminated": True})
    assert_error(resp, 413)
    assert db_dump() == before


@pytest.mark.parametrize("body, message", [
    ("{", "request body is not valid JSON"),
    ('{"path": NaN}', "request body is not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"text"', "must be a JSON object"),
    (b"\xff\xfe", "request body is not valid JSON"),
    ("", "request body is required"),
])
def test_malformed_bodies_are_400(client, body, message):
    wf = workflow(client)
    assert_error(client.simulate_post(f"/workflows/{wf}/files", body=body), 400, message)


def test_integers_stay_integers(client):
    wf = workflow(client)
    client.simulate_post(f"/workflows/{wf}/resource_requirements", json={"name": "r"})
    text = client.simulate_get(f"/workflows/{wf}/resource_requirements").text
    assert '"num_cpus":1,' in text and '"max_limit":100000' in text


# -- ids in key segments ---------------------------------------------------------------------


def test_encoded_slash_with_raw_uri(client):
    wf = workflow(client)
    f = client.simulate_post(f"/workflows/{wf}/files", json={"path": "/a"}).json
    encoded = f["_id"].replace("/", "%2F")
    # falcon.testing passes the undecoded path as RAW_URI, like gunicorn.
    resp = client.simulate_get(f"/workflows/{wf}/files/{encoded}")
    assert resp.status_code == 200 and resp.json == f
    # Prefixed base URL, as real clients use.
    resp = client.simulate_get(f"/_db/db/torc-service/workflows/{wf}/files/{encoded}")
    assert resp.json == f


def test_hand_set_raw_uri_as_gunicorn_sends_it(client):
    """gunicorn: PATH_INFO decoded (the slash splits the segment), RAW_URI still encoded.
    An id with an unknown base is not collapsed by the fallback, so only the RAW_URI rebuild
    keeps it in its segment: key normalization answers 400, not the router's 404."""
    wf = workflow(client)
    f = client.simulate_post(f"/workflows/{wf}/files", json={"path": "/a"}).json
    raw = f"/workflows/{wf}/files/files__{wf}%2F{f['_key']}"
    resp = client.simulate_get(f"/workflows/{wf}/files/{f['_id']}", extras={"RAW_URI": raw})
    assert resp.status_code == 200 and resp.json == f
    raw = f"/_db/d/torc-service/workflows/{wf}/files/bogus__{wf}%2F5?x=1"
    resp = client.simulate_get(f"/_db/d/torc-service/workflows/{wf}/files/bogus__{wf}/5",
                               extras={"RAW_URI": raw})
    assert_error(resp, 400, "does not refer")
    resp = client.simulate_get(f"/workflows/{wf}/files/bogus__{wf}/5", extras={"RAW_URI": ""})
    assert_error(resp, 404)


def test_encoded_slash_without_raw_uri(client):
    """A server without RAW_URI decodes %2F: the id pair is collapsed by pattern."""
    wf = workflow(client)
    f = client.simulate_post(f"/workflows/{wf}/files", json={"path": "/a"}).json
    for path in (f"/workflows/{wf}/files/{f['_id']}",
                 f"/workflows/{wf}/files/{f['_id'].replace('/', '%2F')}"):
        resp = client.simulate_get(path, extras={"RAW_URI": ""})
        assert resp.status_code == 200 and resp.json == f


def test_raw_uri_that_disagrees_with_path_info_is_ignored():
    # A proxy rewrote PATH_INFO: the raw URI is not trusted, the decoded path is used.
    assert rewrite_path("/a/b", None) == "/a/b"
    assert rewrite_path("/workflows/1/files/files__1/5", None) == (
        f"/workflows/1/files/files__1{ID_SEPARATOR}5")
    assert rewrite_path("/x", "/_db/d/torc-service/workflows/1/jobs/jobs__1%2F5") == (
        f"/workflows/1/jobs/jobs__1{ID_SEPARATOR}5")
    # Unknown bases and custom keys containing "__" are not collapsed.
    assert rewrite_path("/workflows/1/jobs/my__key/x", None) == "/workflows/1/jobs/my__key/x"


def test_id_of_another_collection_in_key_slot_is_400(client):
    wf = workflow(client)
    f = client.simulate_post(f"/workflows/{wf}/files", json={"path": "/a"}).json
    wrong = f"user_data__{wf}%2F{f['_key']}"
    assert_error(client.simulate_get(f"/workflows/{wf}/files/{wrong}"), 400, "does not refer")


# -- route table -----------------------------------------------------------------------------


def test_route_table_has_every_generic_route(store, settings):
    paths = {r.path for r in routes.route_table(store, settings)}
    for c in model.Collection:
        assert f"/workflows/{{workflow}}/{c.value}" in paths
        assert f"/workflows/{{workflow}}/{c.value}/{{key}}" in paths
    for p in ("/workflows", "/workflows/{workflow}", "/workflows/{workflow}/config",
              "/workflows/{workflow}/status", "/workflows/{workflow}/collection_names",
              "/workflows/{workflow}/bulk_jobs", "/workflows/{workflow}/job_keys",
              "/workflows/{workflow}/edges/{name}", "/workflows/{workflow}/edges/{name}/{key}",
              "/ping", "/version"):
        assert p in paths


def test_action_paths_do_not_clash_with_crud(store, settings):
    fixed = {r.path for r in routes._fixed_routes(store, 1)}
    for action in routes.actions():
        assert action.path not in fixed, action.operation_id
        assert action.path.startswith(("/workflows", "/workflow_specifications", "/tokens",
                                       "/dashboard/", "/tasks/")), \
            action.path


def test_app_builds_with_actions(store, settings):
    assert isinstance(create_app(store, settings), falcon.App)
