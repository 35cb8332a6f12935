"""Browser safety of a served app: cross-site simple POSTs, foreign Host (DNS rebinding), CORS
allow-list, JSON-only bodies, HEAD — in-process on a real SQLite file, and one end-to-end run
through gunicorn (``torc-graph serve``) with a runner that must not execute the forged job."""

from __future__ import annotations

import pytest
import requests
from falcon import testing

from torc_graph.app import create_app
from torc_graph.config import load_settings
from torc_graph.engine import tokens
from torc_graph.store import open_store
from torc_graph.testing import LiveServer

HOST = "127.0.0.1:8529"


@pytest.fixture
def served(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    token, _ = tokens.create(store, name="t", role="admin")

    def make(**settings):
        app = create_app(store, load_settings({}, **settings), served=True)
        return testing.TestClient(app, headers={"Host": HOST,
                                                "Authorization": f"Bearer {token}"})

    yield store, make
    store.close()


def test_text_plain_cross_origin_post_is_rejected_and_creates_nothing(served):
    store, make = served
    client = make()
    wf = client.simulate_post("/workflows", json={"user": "u"}).json["_key"]
    before = store.count("jobs", wf)
    # what a web page's <form enctype="text/plain"> or fetch(no-cors) sends
    resp = client.simulate_post(f"/workflows/{wf}/jobs", body='{"command": "touch /tmp/pwned"}',
                                headers={"Content-Type": "text/plain",
                                         "Origin": "https://evil.example"})
    assert resp.status_code == 403 and "cross-origin" in resp.json["errorMessage"]
    # same without Origin (e.g. a non-browser client): still not JSON -> 415
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
        headers = {"Content-Type": ctype} if ctype else {}
        resp = client.simulate_post(f"/workflows/{wf}/jobs", body='{"command": "x"}',
                                    headers=headers)
        assert resp.status_code == 415, (ctype, resp.text)
        assert resp.json["errorNum"] == 415
    assert store.count("jobs", wf) == before
    ok = client.simulate_post(f"/workflows/{wf}/jobs", body='{"command": "x"}',
                              headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_foreign_host_is_rejected(served):
    _, make = served
    client = make()
    for host in ("evil.example", "evil.example:8529", "127.0.0.1.evil.example", "10.0.0.1"):
        resp = client.simulate_get("/ping", headers={"Host": host})
        assert resp.status_code == 403 and "Host" in resp.json["errorMessage"], host
    for host in ("127.0.0.1:8529", "localhost", "localhost:1", "[::1]:8529"):
        assert client.simulate_get("/ping", headers={"Host": host}).status_code == 200, host
    widened = make(allowed_hosts="torc.example.org")
    assert widened.simulate_get("/ping", headers={"Host": "torc.example.org:8529"}).status_code == 200
    assert make(allowed_hosts="*").simulate_get("/ping", headers={"Host": "x"}).status_code == 200


def test_cors_allow_list(served):
    store, make = served
    client = make(allowed_origins="https://dash.example.org")
    resp = client.simulate_get("/workflows", headers={"Origin": "https://dash.example.org"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == "https://dash.example.org"
    pre = client.simulate_options("/workflows", headers={
        "Origin": "https://dash.example.org", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    other = client.simulate_options("/workflows", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    # off by default
    assert make().simulate_get("/workflows", headers={
        "Origin": "https://dash.example.org"}).status_code == 403


def test_head_on_get_routes(served):
    _, make = served
    client = make()
    wf = client.simulate_post("/workflows", json={"user": "u"}).json["_key"]
    for path in ("/ping", "/version", "/workflows", f"/workflows/{wf}", f"/workflows/{wf}/jobs",
                 f"/workflows/{wf}/status"):
        get = client.simulate_get(path)
        head = client.simulate_head(path)
        assert head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-length"] == str(len(get.content))
    assert client.simulate_head("/workflows/999999").status_code == 404


def test_embedded_app_has_no_guard(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        client = testing.TestClient(create_app(store, load_settings({})))
        assert client.simulate_get("/ping", headers={"Host": "anything"}).status_code == 200
    finally:
        store.close()


@pytest.mark.slow
def test_forged_browser_post_through_gunicorn_runs_nothing(tmp_path):
    """The issue's exploit, end to end: a cross-site text/plain POST to a live server (with and
    without the token in the URL) creates no job, and a foreign Host is refused."""
    with LiveServer(f"sqlite:///{tmp_path / 'live.db'}", workers=1, cwd=tmp_path,
                    log_path=tmp_path / "server.log") as server:
        client = server.client()
        wf = client.post("/workflows", {"user": "u"})["_key"]
        for url in (server.base_url, server.url):
            resp = requests.post(f"{url}/workflows/{wf}/jobs", data='{"command": "touch pwned"}',
                                 headers={"Content-Type": "text/plain",
                                          "Origin": "http://evil.example"})
            assert resp.status_code in (401, 403), resp.text
        resp = requests.get(f"{server.url}/workflows", headers={"Host": "evil.example"})
        assert resp.status_code == 403
        assert client.get(f"/workflows/{wf}/jobs")["total_count"] == 0
