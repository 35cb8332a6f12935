"""Authentication and roles over the WHOLE route table (in-process served app, real SQLite file).

Every (method, route) of ``torc_graph.api.routes.route_table`` is requested without a token, with
a bad, a revoked and an expired token (401), and with each role that must not reach it (403).
Expectations are written out here per role, independently of ``torc_graph.api.auth``'s rules.
"""

from __future__ import annotations

import re
import time

import pytest
from falcon import testing

from torc_graph.api import auth, routes
from torc_graph.app import create_app
from torc_graph.config import load_settings
from torc_graph.engine import tokens

HOST = {"Host": "127.0.0.1:8529"}
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE")
#: Write routes an executor of the workflow may use (template suffix after /workflows/{workflow}).
EXECUTOR_WRITES = {
    ("POST", "/compute_nodes"), ("PUT", "/compute_nodes/{key}"),
    ("POST", "/compute_node_stats"), ("PUT", "/compute_node_stats/{key}"),
    ("POST", "/events"), ("PUT", "/events/{key}"),
    ("POST", "/results"), ("PUT", "/results/{key}"),
    ("POST", "/job_process_stats"), ("PUT", "/job_process_stats/{key}"),
    ("POST", "/user_data"), ("PUT", "/user_data/{key}"),
    # a Slurm worker marks its allocation active/complete and submits more just in time
    ("POST", "/scheduled_compute_nodes"), ("PUT", "/scheduled_compute_nodes/{key}"),
    ("POST", "/prepare_jobs_for_submission"), ("POST", "/prepare_next_jobs_for_submission"),
    ("POST", "/prepare_jobs_for_scheduling"),
    ("PUT", "/jobs/{key}/start_job/{rev}/{run_id}/{compute_node_key}"),
    ("POST", "/jobs/{key}/complete_job/{status}/{rev}/{run_id}/{compute_node_key}"),
    ("PUT", "/jobs/{key}/manage_status_change/{status}/{rev}/{run_id}"),
    ("POST", "/jobs/{key}/user_data"), ("PUT", "/files/{key}"),
    # the batched execution API (docs/execution-model.md §4), when its Actions are present
    ("POST", "/claim_jobs"), ("POST", "/complete_jobs"), ("POST", "/release_jobs"),
    ("POST", "/compute_nodes/{key}/heartbeat"),
}


def table() -> list[tuple[str, str, object]]:
    """(method, template, resource) for every responder of the served route table."""
    from torc_graph.store import open_store
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = open_store(f"sqlite:///{d}/t.db")
        try:
            rows = []
            for route in routes.route_table(store, load_settings({})):
                if auth.is_public(route.path):
                    continue  # the dashboard's page, assets, login (tests/api/test_dashboard*)
                for m in METHODS:
                    responder = "on_get" if m == "HEAD" else f"on_{m.lower()}"
                    if hasattr(route.resource, responder):
                        rows.append((m, route.path))
            return rows
        finally:
            store.close()


ROWS = table()


def concrete(template: str, wf: str) -> str:
    values = {"workflow": wf, "name": "blocks", "status": "done", "run_id": "1",
              "rev": "r", "timestamp": "1", "collection": "jobs", "edge": "blocks"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "1"), template)


class World:
    def __init__(self, tmp_path):
        from torc_graph.store import open_store

        self.store = open_store(f"sqlite:///{tmp_path / 'auth.db'}")
        self.client = testing.TestClient(
            create_app(self.store, load_settings({}, stream_max_seconds=0.05), served=True),
            headers=HOST)  # event streams end at once
        self.tok = {}
        for role in ("admin", "reader", "editor"):
            self.tok[role], _ = tokens.create(self.store, name=role, role=role)
        self.tok["other_editor"], _ = tokens.create(self.store, name="e2", role="editor")
        # A is created (and so owned) by the editor through the API; B by the admin.
        self.a = self.call("POST", "/workflows", "editor", json={"user": "a"}).json["_key"]
        self.b = self.call("POST", "/workflows", "admin", json={"user": "b"}).json["_key"]
        self.tok["executor"], _ = tokens.create(self.store, name="x", role="executor",
                                                workflow=self.a, expires_in=3600)

    def call(self, method: str, path: str, who: str | None = None, token: str | None = None,
             **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        token = token or (self.tok[who] if who else None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.simulate_request(method, path, headers=headers, **kwargs)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.store.close()


def test_the_table_is_complete():
    templates = {t for _, t in ROWS}
    assert len(ROWS) > 100
    for needed in ("/workflows", "/workflows/{workflow}", "/workflows/{workflow}/jobs",
                   "/workflows/{workflow}/edges/{name}", "/workflow_specifications",
                   "/tokens", "/ping", "/version"):
        assert needed in templates


def test_no_or_bad_credential_is_401_on_every_route(world):
    revoked, doc = tokens.create(world.store, name="r", role="admin")
    tokens.revoke(world.store, doc["_key"])
    expired, _ = tokens.create(world.store, name="old", role="admin", expires_in=0.01)
    time.sleep(0.05)
    forged = world.tok["admin"][:-4] + "AAAA"
    for method, template in ROWS:
        path = concrete(template, world.a)
        for token in (None, "nonsense", forged, revoked, expired, "tg_x_y"):
            resp = world.call(method, path, token=token, json={} if method in ("POST", "PUT")
                              else None)
            assert resp.status_code == 401, (method, template, token, resp.text)
            assert resp.headers["www-authenticate"].startswith("Bearer")
    assert world.store.count("workflows", None) == 2  # nothing was created


def _forbidden(role: str, method: str, template: str, w: World, wf: str) -> bool:
    """Independent expectation: must ``role`` get 403 for this request on workflow ``wf``?"""
    write = method not in ("GET", "HEAD")
    if template.startswith("/tokens"):
        return role != "admin"
    if role == "admin":
        return False
    if role == "reader":
        return write
    suffix = template[len("/workflows/{workflow}"):] \
        if template.startswith("/workflows/{workflow}") else None
    if role == "executor":
        if template in ("/ping", "/version"):
            return False
        if template.startswith("/workflow_specifications/{key}") and not write:
            return wf != w.a
        if suffix is None:
            return True
        if wf != w.a:
            return True
        return write and (method, suffix) not in EXECUTOR_WRITES
    if role in ("editor", "other_editor"):
        if not write:
            return False
        if template in ("/workflows", "/workflow_specifications") and method == "POST":
            return False
        owns = role == "editor" and wf == w.a
        return not (owns and suffix is not None)
    raise AssertionError(role)


@pytest.mark.parametrize("role", ["reader", "editor", "other_editor", "executor"])
def test_wrong_role_is_403_on_every_route(world, role):
    """Each role on each route of workflows A (executor's, editor-owned) and B: a request the
    role may not make is 403 and changes nothing; a permitted read is not 401/403."""
    checked = 0
    for wf in (world.a, world.b):
        for method, template in ROWS:
            path = concrete(template, wf)
            if template.startswith("/workflow_specifications/{key}"):
                path = f"/workflow_specifications/{wf}"
            forbidden = _forbidden(role, method, template, world, wf)
            if not forbidden and method not in ("GET", "HEAD"):
                continue  # permitted writes are exercised elsewhere (they would change data)
            before = world.store.count("workflows", None), world.store.count("jobs", wf)
            resp = world.call(method, path, role,
                              json={} if method in ("POST", "PUT") else None)
            if forbidden:
                assert resp.status_code == 403, (role, method, template, wf, resp.text)
                if method != "HEAD":  # (HEAD answers have no body)
                    assert "may not" in resp.json["errorMessage"]
                after = world.store.count("workflows", None), world.store.count("jobs", wf)
                assert after == before
            else:
                assert resp.status_code not in (401, 403), (role, method, template, resp.text)
            checked += 1
    assert checked > 150


def test_permitted_writes(world):
    a = f"/workflows/{world.a}"
    # editor: creates and changes its own workflow, not the admin's
    job = world.call("POST", f"{a}/jobs", "editor", json={"name": "j", "command": "c"})
    assert job.status_code == 200
    assert world.call("POST", f"/workflows/{world.b}/jobs", "editor",
                      json={"command": "c"}).status_code == 403
    spec = world.call("POST", "/workflow_specifications", "other_editor",
                      json={"name": "s", "jobs": [{"name": "x", "command": "c"}]})
    assert spec.status_code == 200
    owned = spec.json["_key"]
    assert tokens.owner(world.store, owned)["name"] == "e2"
    assert world.call("DELETE", f"/workflows/{owned}", "editor").status_code == 403
    assert world.call("DELETE", f"/workflows/{owned}", "other_editor").status_code == 200
    # executor of A: runner writes on A only
    node = world.call("POST", f"{a}/compute_nodes", "executor", json={
        "hostname": "h", "pid": 1, "start_time": "t", "is_active": True,
        "resources": {"num_cpus": 1, "memory_gb": 1.0}})
    assert node.status_code == 200, node.text
    assert world.call("POST", f"{a}/events", "executor",
                      json={"category": "x", "message": "m"}).status_code == 200
    claim = world.call("POST", f"{a}/prepare_jobs_for_submission", "executor",
                       json={"num_cpus": 1, "memory_gb": 1.0})
    assert claim.status_code == 200
    stats = world.call("POST", f"{a}/edges/process_used", "executor",
                       json={"_from": f"jobs__{world.a}/{job.json['_key']}",
                             "_to": f"job_process_stats__{world.a}/1"})
    assert stats.status_code == 400 and "no document" in stats.json["errorMessage"]
    for method, path in (("POST", f"{a}/initialize_jobs"), ("DELETE", f"{a}/jobs"),
                         ("POST", f"{a}/edges/blocks"),
                         ("PUT", f"{a}/cancel"), ("DELETE", a),
                         ("POST", f"/workflows/{world.b}/events")):
        assert world.call(method, path, "executor",
                          json={} if method != "DELETE" else None).status_code == 403, path
    # admin: tokens
    made = world.call("POST", "/tokens", "admin", json={"name": "n", "role": "reader"})
    assert made.status_code == 200 and made.json["token"].startswith("tg_")
    listed = world.call("GET", "/tokens", "admin").json["items"]
    assert all("secret_sha256" not in t for t in listed)


def test_executor_token_of_a_cannot_touch_b(world):
    b = f"/workflows/{world.b}"
    job = world.call("POST", f"{b}/jobs", "admin", json={"name": "jb", "command": "c"}).json
    for method, path, body in (
        ("GET", f"{b}/jobs", None),
        ("GET", f"{b}/jobs/{job['_key']}", None),
        ("POST", f"{b}/prepare_jobs_for_submission", {"num_cpus": 1, "memory_gb": 1.0}),
        ("PUT", f"{b}/jobs/{job['_key']}/start_job/{job['_rev']}/1/1", None),
        ("POST", f"{b}/compute_nodes", {"hostname": "h"}),
        ("GET", "/workflows", None),
        ("GET", f"/workflow_specifications/{world.b}", None),
        ("DELETE", b, None),
    ):
        resp = world.call(method, path, "executor", json=body)
        assert resp.status_code == 403, (method, path, resp.text)
    assert world.store.get("jobs", world.b, job["_key"])["_rev"] == job["_rev"]


def test_owner_mints_and_revokes_executor_tokens_of_its_workflow(world):
    """``POST /workflows/{wf}/executor_tokens`` (what `slurm schedule-nodes` asks for): the
    workflow's owner or an admin gets an expiring executor token of that workflow only; other
    editors, readers and executors get 403; a body without a positive expiry is a 400."""
    a, b = f"/workflows/{world.a}", f"/workflows/{world.b}"
    made = world.call("POST", f"{a}/executor_tokens", "editor",
                      json={"expires_in": 600, "name": "slurm"})
    assert made.status_code == 200, made.text
    doc = made.json["document"]
    assert doc["role"] == "executor" and doc["workflow"] == world.a
    assert time.time() + 590 < doc["expires"] <= time.time() + 600
    minted = made.json["token"]
    assert world.call("GET", f"{a}/jobs", token=minted).status_code == 200
    assert world.call("GET", f"{b}/jobs", token=minted).status_code == 403
    assert world.call("POST", f"{a}/executor_tokens", token=minted,
                      json={"expires_in": 60}).status_code == 403
    for who, path in (("editor", b), ("other_editor", a), ("reader", a), ("executor", a)):
        resp = world.call("POST", f"{path}/executor_tokens", who, json={"expires_in": 60})
        assert resp.status_code == 403, (who, path, resp.text)
    assert world.call("POST", f"{b}/executor_tokens", "admin",
                      json={"expires_in": 60}).status_code == 200
    for body in ({}, {"expires_in": 0}, {"expires_in": -5}, {"expires_in": 60, "role": "admin"}):
        resp = world.call("POST", f"{a}/executor_tokens", "editor", json=body)
        assert resp.status_code == 400, (body, resp.text)
    before = len(tokens.list_tokens(world.store))
    # revocation: only executor tokens of that workflow, by its owner
    assert world.call("DELETE", f"{b}/executor_tokens/{doc['_key']}",
                      "admin").status_code == 404
    admin_key = tokens.verify(world.store, world.tok["admin"])["_key"]
    assert world.call("DELETE", f"{a}/executor_tokens/{admin_key}",
                      "editor").status_code == 404
    assert world.call("DELETE", f"{a}/executor_tokens/{doc['_key']}",
                      "other_editor").status_code == 403
    assert world.call("DELETE", f"{a}/executor_tokens/{doc['_key']}",
                      "editor").status_code == 200
    assert world.call("GET", f"{a}/jobs", token=minted).status_code == 401
    assert tokens.verify(world.store, world.tok["admin"]) is not None
    assert len(tokens.list_tokens(world.store)) == before


def test_credential_forms(world):
    import base64

    token = world.tok["reader"]
    basic = base64.b64encode(f":{token}".encode()).decode()
    assert world.call("GET", "/ping", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    basic_user = base64.b64encode(f"{token}:".encode()).decode()
    assert world.call("GET", "/ping",
                      headers={"Authorization": f"Basic {basic_user}"}).status_code == 200
    assert world.call("GET", f"/_db/{token}/torc-service/workflows").status_code == 200
    assert world.call("GET", "/_db/workflows/torc-service/workflows").status_code == 401
    assert world.call("GET", "/ping", headers={"Authorization": "Basic !!!"}).status_code == 401


def test_new_actions_default_to_the_strictest_sensible_role():
    wf = "/workflows/{workflow}"
    assert auth.permission("POST", wf + "/some_new_action") == "edit"
    assert auth.permission("PUT", wf + "/jobs/{key}/new_thing/{x}") == "edit"
    assert auth.permission("DELETE", wf + "/events") == "edit"
    assert auth.permission("GET", wf + "/some_new_report") == "read"
    assert auth.permission("POST", wf + "/claim_jobs") == "execute"
    assert auth.permission("POST", "/tokens") == "admin"
    assert auth.permission("GET", "/tokens") == "admin"


def test_tokens_are_hashed_at_rest(world):
    for doc in world.store.find("auth_tokens", None):
        assert set(doc) >= {"secret_sha256", "role", "name"}
        for token in world.tok.values():
            assert token.split("_", 2)[2] not in str(doc)


def test_audit_log_names_who_and_what(world, caplog):
    caplog.set_level("INFO", logger="torc_graph.audit")
    world.call("POST", f"/workflows/{world.a}/files", "editor", json={"path": "/p"})
    world.call("GET", f"/workflows/{world.a}/files", "editor")
    lines = [r.getMessage() for r in caplog.records if r.name == "torc_graph.audit"]
    assert len(lines) == 1
    assert "name=editor" in lines[0] and f"POST /workflows/{world.a}/files -> 200" in lines[0]


def test_client_token_sources_in_order(tmp_path, monkeypatch):
    """docs/execution-model.md §6: TORC_GRAPH_TOKEN, else TORC_GRAPH_TOKEN_FILE, else the config
    dir; sent as a Bearer header and handed to child processes through the environment."""
    from torc_graph.client import Client

    for name in ("TORC_GRAPH_TOKEN", "TORC_GRAPH_TOKEN_FILE", "TORC_GRAPH_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert Client("http://127.0.0.1:1").token is None
    (tmp_path / "cfg" / "torc_graph").mkdir(parents=True)
    (tmp_path / "cfg" / "torc_graph" / "token").write_text("tg_1_fromconfig\n")
    assert Client("http://127.0.0.1:1").token == "tg_1_fromconfig"
    (tmp_path / "file").write_text("tg_2_fromfile")
    monkeypatch.setenv("TORC_GRAPH_TOKEN_FILE", str(tmp_path / "file"))
    assert Client("http://127.0.0.1:1").token == "tg_2_fromfile"
    monkeypatch.setenv("TORC_GRAPH_TOKEN", "tg_3_fromenv")
    client = Client("http://127.0.0.1:1")
    assert client.session.headers["Authorization"] == "Bearer tg_3_fromenv"
    assert client.env() == {"TORC_GRAPH_URL": "http://127.0.0.1:1",
                            "TORC_GRAPH_TOKEN": "tg_3_fromenv"}
    embedded = Client(database=f"sqlite:///{tmp_path / 'e.db'}")
    assert "Authorization" not in embedded.session.headers
    assert embedded.get("/ping")  # the embedded store needs no token
    embedded.close()


def test_migration_0004_adds_the_token_tables_to_an_older_database(tmp_path):
    """A database from before 0004 (no token tables, migration not recorded) gets them."""
    import sqlite3

    from torc_graph.store import open_store

    path = tmp_path / "old.db"
    store = open_store(f"sqlite:///{path}")
    store.info()
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE doc_auth_tokens")
    conn.execute("DROP TABLE doc_workflow_owners")
    conn.execute("DELETE FROM schema_migrations WHERE name = '0004_auth_tokens'")
    conn.commit()
    conn.close()
    store = open_store(f"sqlite:///{path}")
    try:
        token, doc = tokens.create(store, name="n", role="admin")
        assert tokens.verify(store, token)["_key"] == doc["_key"]
    finally:
        store.close()
    conn = sqlite3.connect(path)
    names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]
    conn.close()
    assert names[-1] == "0004_auth_tokens"
