"""The web dashboard's server side through a real gunicorn (torc_graph.testing.LiveServer, auth
on): session cookie login and its limits (safe methods only, revocation, expiry), the page and
its assets (types, cache headers, traversal), the data endpoints on a workflow the real
``torc-graph run`` executed (counts, failures with the stderr tail, progress)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from torc_graph.engine import sessions, tokens
from torc_graph.store import open_store
from torc_graph.testing import LiveServer, clean_env, cli_argv

pytestmark = [pytest.mark.timeout(120)]

PAGE = "<!doctype html><title>torc_graph</title><script type=module src=assets/app-Ab12Cd34.js>"


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """A placeholder build of the page (the real one is dash-ui's torc_graph/web/dist)."""
    d = tmp_path_factory.mktemp("dist")
    (d / "assets" / "sub").mkdir(parents=True)
    (d / "index.html").write_text(PAGE)
    (d / "assets" / "app-Ab12Cd34.js").write_text("console.log('hi')")
    (d / "assets" / "style-Zz9_yy-8.css").write_text("body{}")
    (d / "assets" / "third-party-licenses.txt").write_text("MIT")
    (d / "assets" / "sub" / "logo.svg").write_text("<svg/>")
    (d / "secret.txt").write_text("outside assets")
    (d / "assets" / "escape").symlink_to(d / "secret.txt")
    return d


@pytest.fixture(scope="module")
def server(tmp_path_factory, dist):
    d = tmp_path_factory.mktemp("dash")
    with LiveServer(f"sqlite:///{d / 'db.sqlite'}", workers=2, cwd=d,
                    env={"TORC_GRAPH_DASHBOARD_DIR": str(dist),
                         # a closed stream is noticed at the next keepalive: stop promptly
                         "TORC_GRAPH_STREAM_HEARTBEAT_SECONDS": "0.2",
                         "TORC_GRAPH_STREAM_POLL_SECONDS": "0.05"},
                    log_path=d / "server.log") as s:
        s.db_path = d / "db.sqlite"
        s.dir = d
        yield s


def make_token(server, role: str, workflow: str | None = None) -> tuple[str, str]:
    body = {"name": f"t-{role}", "role": role}
    if workflow:
        body.update(workflow=workflow, expires_in=3600)
    doc = server.client().post("/tokens", body)
    return doc["token"], doc["document"]["_key"]


def small_workflow(server, name: str = "small") -> str:
    client = server.client()
    wf = client.add_workflow_specification({"name": name, "user": "u", "jobs": [
        {"name": "a", "command": "true"},
        {"name": "b", "command": "true", "blocked_by": ["a"]}]})["_key"]
    client.initialize_jobs(wf)
    return wf


def test_cookie_login_reads_like_its_token_and_never_writes(server):
    wf = small_workflow(server)
    reader, _ = make_token(server, "reader")
    browser = server.browser(reader)
    cookie = browser.cookies.get("torc_graph_session")
    assert cookie and reader not in cookie and len(cookie) >= 40
    who = browser.get(server.base_url + "/dashboard/session")
    assert who.status_code == 200 and who.json()["role"] == "reader"
    summary = browser.get(f"{server.base_url}/workflows/{wf}/dashboard/summary")
    assert summary.status_code == 200, summary.text
    assert summary.json()["counts"] == {"ready": 1, "blocked": 1, "failed": 0}
    listed = browser.get(server.base_url + "/dashboard/workflows").json()["items"]
    assert wf in [w["key"] for w in listed]
    assert browser.get(server.base_url + "/workflows").status_code == 200  # torc's list too
    assert browser.head(f"{server.base_url}/workflows/{wf}/jobs").status_code == 200
    # No state change with the cookie alone, whatever the token could do (no CSRF)...
    admin_browser = server.browser()
    for method, path, body in (("POST", "/workflows", {"user": "x"}),
                               ("PUT", f"/workflows/{wf}", {"user": "x"}),
                               ("DELETE", f"/workflows/{wf}", None),
                               ("POST", f"/workflows/{wf}/initialize_jobs", {})):
        resp = admin_browser.request(method, server.base_url + path, json=body)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error"] is True and "GET and HEAD" in resp.json()["errorMessage"]
    assert server.client().get(f"/workflows/{wf}")["user"] == "u"
    # ...and a reader's cookie cannot read what the reader cannot (tokens are admin-only).
    assert browser.get(server.base_url + "/tokens").status_code == 403


def test_executor_session_reads_only_its_workflow(server):
    mine, other = small_workflow(server, "mine"), small_workflow(server, "other")
    executor, _ = make_token(server, "executor", mine)
    browser = server.browser(executor)
    assert browser.get(f"{server.base_url}/workflows/{mine}/dashboard/summary").status_code == 200
    assert browser.get(f"{server.base_url}/workflows/{other}/dashboard/summary"
                       ).status_code == 403
    assert browser.get(server.base_url + "/dashboard/workflows").status_code == 403


def test_bad_login_is_401_and_bad_bodies_400_setting_no_cookie(server):
    browser = server.browser(login=False)
    url = server.base_url + "/dashboard/session"
    for body in ({"token": "tg_1_nonsense"}, {"token": server.token[:-3] + "xyz"}):
        resp = browser.post(url, json=body)
        assert resp.status_code == 401 and resp.json()["code"] == 401
        assert "set-cookie" not in resp.headers
    for body in ({}, {"token": 5}, {"token": ""}, [server.token],
                 {"token": server.token, "extra": 1}):
        resp = browser.post(url, json=body)
        assert resp.status_code == 400, (body, resp.text)
        assert "set-cookie" not in resp.headers
    resp = browser.post(url, data="token=" + server.token,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 415  # a cross-site HTML form cannot log anyone in
    assert browser.get(url).status_code == 401
    assert browser.get(server.base_url + "/dashboard/workflows").status_code == 401


def reader_session(server):
    """A fresh reader token, a browser session logged in with it that reads, the list URL."""
    token, key = make_token(server, "reader")
    browser = server.browser(token)
    url = server.base_url + "/dashboard/workflows"
    assert browser.get(url).status_code == 200
    return token, key, browser, url


def test_revoking_the_token_kills_its_sessions(server):
    _, key, browser, url = reader_session(server)
    server.client().delete(f"/tokens/{key}")
    resp = browser.get(url)
    assert resp.status_code == 401 and "log in again" in resp.json()["errorMessage"]
    assert browser.get(server.base_url + "/dashboard/session").status_code == 401


def test_an_expired_session_is_refused(server):
    token, _, browser, url = reader_session(server)
    store = open_store(f"sqlite:///{server.db_path}")
    try:
        stored = store.find(sessions.SESSIONS, None)
        # Only hashes are stored: no session id, no token.
        cookie = browser.cookies["torc_graph_session"]
        assert all(cookie not in json.dumps(s) and token not in json.dumps(s) for s in stored)
        store.update_many(sessions.SESSIONS, None, None, {"expires": 1.0})
    finally:
        store.close()
    assert browser.get(url).status_code == 401


def test_logout_ends_the_session(server):
    browser = server.browser()
    url = server.base_url + "/dashboard/session"
    cookie = browser.cookies["torc_graph_session"]
    resp = browser.delete(url)
    assert resp.status_code == 204 and "01 Jan 1970" in resp.headers["set-cookie"]
    stale = server.browser(login=False)
    stale.cookies.set("torc_graph_session", cookie)
    assert stale.get(server.base_url + "/dashboard/workflows").status_code == 401
    assert browser.delete(url).status_code == 204  # twice is fine


def test_cookie_attributes(server):
    resp = server.browser(login=False).post(server.base_url + "/dashboard/session",
                                            json={"token": server.token})
    assert resp.status_code == 204
    attrs = {a.strip().split("=")[0].lower() for a in resp.headers["set-cookie"].split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attrs and "secure" not in attrs
    assert "samesite=strict" in resp.headers["set-cookie"].lower()


def test_page_and_assets_are_served_without_credentials(server):
    anon = server.browser(login=False)
    page = anon.get(server.base_url + "/dashboard")
    assert page.status_code == 200 and page.text == PAGE
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-cache"
    js = anon.get(server.base_url + "/dashboard/assets/app-Ab12Cd34.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "immutable" in js.headers["cache-control"]
    css = anon.get(server.base_url + "/dashboard/assets/style-Zz9_yy-8.css")
    assert css.headers["content-type"].startswith("text/css") and "immutable" in \
        css.headers["cache-control"]
    lic = anon.get(server.base_url + "/dashboard/assets/third-party-licenses.txt")
    assert lic.headers["content-type"].startswith("text/plain")
    assert lic.headers["cache-control"] == "no-cache"  # not a hashed name
    svg = anon.get(server.base_url + "/dashboard/assets/sub/logo.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    head = anon.head(server.base_url + "/dashboard/assets/app-Ab12Cd34.js")
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize("path", [
    "/dashboard/assets/%2e%2e/secret.txt", "/dashboard/assets/%2E%2E%2Fsecret.txt",
    "/dashboard/assets/sub/%2e%2e/%2e%2e/secret.txt",
    "/dashboard/assets/escape", "/dashboard/assets/sub", "/dashboard/assets/.hidden",
    "/dashboard/assets/%00x", "/dashboard/assets//etc/passwd", "/dashboard/assets/nope.js",
    "/dashboard/assets/..%2f..%2f..%2fetc%2fpasswd",
])
def test_asset_traversal_is_refused(server, path):
    resp = server.browser(login=False).get(server.base_url + path)
    assert resp.status_code == 404, resp.text
    assert "outside assets" not in resp.text and resp.json()["error"] is True


def test_foreign_origins_are_refused_own_origin_accepted(server):
    browser = server.browser()
    url = server.base_url + "/dashboard/workflows"
    assert browser.get(url).status_code == 200  # Origin = the page's own
    resp = browser.get(url, headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403
    resp = browser.post(server.base_url + "/dashboard/session", json={"token": server.token},
                        headers={"Origin": "http://127.0.0.1:1"})
    assert resp.status_code == 403


def test_summary_of_a_workflow_run_by_the_real_runner(server, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "runme", "user": "u", "jobs": [
        {"name": "prep", "command": "true"},
        {"name": "work_1", "command": "true", "blocked_by": ["prep"]},
        {"name": "work_2", "command": "sh -c 'echo boom-$((40+2)) >&2; exit 3'",
         "blocked_by": ["prep"]},
        {"name": "post", "command": "true", "blocked_by": ["work_1", "work_2"]}]}))
    proc = subprocess.run(cli_argv("run", str(spec), "--num-cpus", "2", "--output",
                                   str(tmp_path / "out")),
                          env=clean_env(**server.env()), cwd=tmp_path, capture_output=True,
                          text=True, timeout=90)
    assert proc.returncode == 1, proc.stderr  # a job failed
    client = server.client()
    wf = next(w["_key"] for w in client.iter_items("/workflows") if w["name"] == "runme")
    s = server.browser().get(f"{server.base_url}/workflows/{wf}/dashboard/summary").json()
    assert s["total"] == 4 and s["is_complete"] is True and s["aggregated"] is False
    assert s["counts"] == {"done": 3, "canceled": 1, "failed": 1}
    [failure] = s["failures"]
    assert failure["name"] == "work_2" and failure["return_code"] == 3
    assert failure["stderr_tail"] == "boom-42\n"
    assert s["progress"][-1]["done"] == 2 and s["progress"][-1]["failed"] == 1
    assert [p["t"] for p in s["progress"]] == sorted(p["t"] for p in s["progress"])
    keys = {st["name"]: st["stage"] for st in s["stages"]}
    edges = {(e["from"], e["to"]) for e in s["stage_edges"]}
    assert (keys["prep"], keys["work_2"]) in edges and (keys["work_2"], keys["post"]) in edges
    assert s["running"] == [] and s["last_event_id"] is not None
    events = [e["_key"] for e in client.iter_items(f"/workflows/{wf}/events")]
    assert s["last_event_id"] == events[-1]
    page = server.browser().get(
        f"{server.base_url}/workflows/{wf}/dashboard/stages/{keys['work_2']}/jobs").json()
    assert page["total"] == 1 and page["items"][0]["return_code"] == 3
    listed = server.browser().get(server.base_url + "/dashboard/workflows").json()["items"]
    assert next(w for w in listed if w["key"] == wf)["counts"]["failed"] == 1


def test_bad_input_is_4xx_in_the_one_error_body(server):
    wf = small_workflow(server, "bad")
    browser = server.browser()
    base = server.base_url
    cases = {
        f"{base}/workflows/999999/dashboard/summary": 404,
        f"{base}/workflows/{wf}/dashboard/stages/nope/jobs": 404,
        f"{base}/workflows/{wf}/dashboard/stages/a/jobs?limit=0": 400,
        f"{base}/workflows/{wf}/dashboard/stages/a/jobs?limit=1001": 400,
        f"{base}/workflows/{wf}/dashboard/stages/a/jobs?skip=-1": 400,
        f"{base}/workflows/{wf}/dashboard/stages/a/jobs?skip=x": 400,
        f"{base}/workflows/{wf}/dashboard/stages/a/jobs?status=weird": 400,
    }
    for url, status in cases.items():
        resp = browser.get(url)
        assert resp.status_code == status, (url, resp.text)
        body = resp.json()
        assert set(body) == {"error", "errorNum", "errorMessage", "code"}
        assert body["code"] == status


def test_the_event_stream_works_with_the_cookie(server):
    """EventSource cannot send Authorization: the session cookie opens the SSE stream."""
    wf = small_workflow(server, "streamed")
    browser = server.browser()
    server.client().add_event(wf, {"category": "job", "message": "hello"})
    events = [e["_key"] for e in server.client().iter_items(f"/workflows/{wf}/events")]
    assert events
    url = f"{server.base_url}/workflows/{wf}/events/stream"
    with browser.get(url, stream=True, timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines(decode_unicode=True)
        assert next(lines).startswith("retry:")
        assert next(line for line in lines if line.startswith("id:")) == f"id: {events[0]}"
    anon = server.browser(login=False)
    assert anon.get(url, stream=True, timeout=30).status_code == 401
