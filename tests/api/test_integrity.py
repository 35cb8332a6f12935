"""Issue 10 items 3-9 (and issue 11 item 4): one regression test per defect, through the REST app
on a real SQLite file (``client``/``db_dump`` fixtures of conftest) and, for the server-level
items, through ``torc-graph serve``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from torc_graph import model
from torc_graph.testing import LiveServer, clean_env, cli_argv

EDGE_NAMES = [e.value for e in model.Edge]

_spec = importlib.util.spec_from_file_location("api_samples", Path(__file__).with_name("samples.py"))
_samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_samples)
SAMPLES = _samples.SAMPLES


@pytest.fixture
def wf(client):
    return client.simulate_post("/workflows", json={"user": "u"}).json["_key"]


def post(client, path, body):
    resp = client.simulate_post(path, json=body)
    assert resp.status_code == 200, resp.text
    return resp.json


def rejected(client, db_dump, method, path, body, *needles):
    """The request is a 400 naming ``needles`` and changes nothing."""
    before = db_dump()
    resp = client.simulate_request(method, path, json=body)
    assert resp.status_code == 400, resp.text
    for needle in needles:
        assert needle in resp.json["errorMessage"], (needle, resp.json["errorMessage"])
    assert db_dump() == before
    return resp.json["errorMessage"]


def vertices(client, wf):
    """One document of every vertex collection of ``wf`` (the sample bodies of samples.py)."""
    w = f"/workflows/{wf}"
    out = {c.value: post(client, f"{w}/{c.value}", SAMPLES[c.value])
           for c in model.VERTEX_COLLECTIONS if c.value in SAMPLES}
    out["jobs"] = post(client, f"{w}/jobs", {"name": "j", "command": "c"})
    return out


# -- item 3: edges must join existing documents of this workflow, of the right collections ----


@pytest.mark.parametrize("name", EDGE_NAMES)
def test_edge_routes_check_both_ends(client, db_dump, wf, name):
    other = client.simulate_post("/workflows", json={"user": "v"}).json["_key"]
    mine, theirs = vertices(client, wf), vertices(client, other)
    definition = model.EDGE_DEFINITIONS[model.Edge(name)]
    src = mine[definition.from_collections[0].value]["_id"]
    dst = mine[definition.to_collections[0].value]["_id"]
    wrong = next(c for c in mine if c not in {x.value for x in definition.to_collections})
    path = f"/workflows/{wf}/edges/{name}"
    base, _, key = dst.partition("/")
    rejected(client, db_dump, "POST", path, {"_from": src, "_to": f"{base}/999999"},
             "_to", "no document")
    rejected(client, db_dump, "POST", path,
             {"_from": theirs[definition.from_collections[0].value]["_id"], "_to": dst},
             "_from", f"not in workflow {wf}")
    rejected(client, db_dump, "POST", path, {"_from": src, "_to": mine[wrong]["_id"]},
             "_to", "is not an id in")
    if name != "blocks":
        assert client.simulate_post(path, json={"_from": src, "_to": dst}).status_code == 200


# -- item 4: cycles and self-blocks on every write path, named --------------------------------


def test_self_blocking_job_with_custom_key(client, db_dump, wf):
    rejected(client, db_dump, "POST", f"/workflows/{wf}/jobs",
             {"_key": "me", "name": "me", "command": "c", "blocked_by": [f"jobs__{wf}/me"]},
             "cycle: me -> me")


def test_bulk_jobs_blocking_each_other(client, db_dump, wf):
    rejected(client, db_dump, "POST", f"/workflows/{wf}/bulk_jobs", {"jobs": [
        {"_key": "p", "name": "p", "command": "c", "blocked_by": [f"jobs__{wf}/q"]},
        {"_key": "q", "name": "q", "command": "c", "blocked_by": [f"jobs__{wf}/p"]}]},
        "cycle:", "p -> q", "q -> p")


def test_edge_closing_a_cycle_and_self_block(client, db_dump, wf):
    w = f"/workflows/{wf}"
    a = post(client, f"{w}/jobs", {"name": "a", "command": "c"})
    b = post(client, f"{w}/jobs", {"name": "b", "command": "c", "blocked_by": [a["_id"]]})
    c = post(client, f"{w}/jobs", {"name": "c", "command": "c", "blocked_by": [b["_id"]]})
    msg = rejected(client, db_dump, "POST", f"{w}/edges/blocks",
                   {"_from": c["_id"], "_to": a["_id"]}, "cycle:")
    assert msg.startswith("cycle: ") and {"a", "b", "c"} <= set(msg[7:].split(" -> "))
    rejected(client, db_dump, "POST", f"{w}/edges/blocks", {"_from": a["_id"], "_to": a["_id"]},
             "cannot block itself")


def test_cycle_through_a_file_names_the_file(client, db_dump, wf):
    w = f"/workflows/{wf}"
    f = post(client, f"{w}/files", {"name": "f", "path": "/f"})
    a = post(client, f"{w}/jobs", {"name": "a", "command": "c", "output_files": [f["_id"]]})
    # b needs a's file and then blocks a: cycle a -> b -> a
    b = post(client, f"{w}/jobs", {"name": "b", "command": "c", "input_files": [f["_id"]]})
    msg = rejected(client, db_dump, "POST", f"{w}/edges/blocks",
                   {"_from": b["_id"], "_to": a["_id"]}, "b needs file f produced by a")
    assert msg.startswith("cycle: ")
    # the same cycle closed from the file side: a job that needs what it produces
    rejected(client, db_dump, "POST", f"{w}/jobs",
             {"name": "self", "command": "c", "input_files": [f["_id"]],
              "output_files": [f["_id"]]}, "cycle: self -> self", "needs file f")
    # and by adding a needs edge
    g = post(client, f"{w}/files", {"name": "g", "path": "/g"})
    post(client, f"{w}/edges/produces", {"_from": b["_id"], "_to": g["_id"]})
    rejected(client, db_dump, "POST", f"{w}/edges/needs", {"_from": a["_id"], "_to": g["_id"]},
             "a needs file g produced by b")


def test_specification_with_file_and_user_data_cycle(client, db_dump):
    spec = {"name": "loop", "files": [{"name": "f", "path": "f"}],
            "user_data": [{"name": "u"}],
            "jobs": [{"name": "gen", "command": "c", "output_files": ["f"],
                      "blocked_by": ["fanin"]},
                     {"name": "fanin", "command": "c", "input_files": ["f"]}]}
    msg = rejected(client, db_dump, "POST", "/workflow_specifications", spec,
                   "fanin needs file f produced by gen")
    assert msg.startswith("cycle: ") and "gen -> fanin" in msg
    spec2 = {"name": "ud", "user_data": [{"name": "u"}],
             "jobs": [{"name": "w", "command": "c", "output_user_data": ["u"],
                       "blocked_by": ["r"]},
                      {"name": "r", "command": "c", "input_user_data": ["u"]}]}
    rejected(client, db_dump, "POST", "/workflow_specifications", spec2,
             "r consumes user data u stored by w")


def test_initialize_refuses_a_cyclic_workflow(client, db_dump, store, wf):
    """Cycles that got in before these checks (or through the store) are caught at initialize."""
    j1 = store.insert("jobs", wf, {"name": "x", "command": "c", "status": "uninitialized"})
    j2 = store.insert("jobs", wf, {"name": "y", "command": "c", "status": "uninitialized"})
    store.insert("blocks", wf, {"_from": j1["_id"], "_to": j2["_id"]})
    store.insert("blocks", wf, {"_from": j2["_id"], "_to": j1["_id"]})
    msg = rejected(client, db_dump, "POST", f"/workflows/{wf}/initialize_jobs", None, "cycle:")
    assert "x -> y" in msg or "y -> x" in msg


def test_acyclic_diamond_is_accepted(client, wf):
    w = f"/workflows/{wf}"
    f1, f2 = (post(client, f"{w}/files", {"name": n, "path": n}) for n in ("f1", "f2"))
    a = post(client, f"{w}/jobs", {"name": "a", "command": "c",
                                   "output_files": [f1["_id"], f2["_id"]]})
    post(client, f"{w}/jobs", {"name": "b", "command": "c", "input_files": [f1["_id"]]})
    post(client, f"{w}/jobs", {"name": "c", "command": "c", "input_files": [f2["_id"]],
                               "blocked_by": [a["_id"]]})
    assert client.simulate_post(f"{w}/initialize_jobs").status_code == 200


# -- item 5: unit strings on every write path ------------------------------------------------


@pytest.mark.parametrize("collection,body,needle", [
    ("resource_requirements", {"name": "r", "memory": "lots"}, "'memory'"),
    ("resource_requirements", {"name": "r", "runtime": "P1Y"}, "'runtime'"),
    ("local_schedulers", {"name": "l", "memory": "garbage"}, "'memory'"),
])
def test_bad_unit_strings_are_400_on_post_and_put(client, db_dump, wf, collection, body, needle):
    rejected(client, db_dump, "POST", f"/workflows/{wf}/{collection}", body, needle)
    good = post(client, f"/workflows/{wf}/{collection}", {"name": body["name"]})
    rejected(client, db_dump, "PUT", f"/workflows/{wf}/{collection}/{good['_key']}",
             {**body, "_rev": good["_rev"]}, needle)
    assert client.simulate_post(f"/workflows/{wf}/initialize_jobs").status_code == 200


# -- item 6: a body shorter than its Content-Length ------------------------------------------


def test_truncated_body_is_400(client, db_dump, wf):
    before = db_dump()
    body = b'{"path": "/a"}'
    resp = client.simulate_request("POST", f"/workflows/{wf}/files", body=body,
                                   headers={"Content-Type": "application/json",
                                            "Content-Length": str(len(body) + 10)})
    assert resp.status_code == 400 and "truncated" in resp.json["errorMessage"]
    assert db_dump() == before


# -- item 7: a nameless job round-trips through the specification endpoints ------------------


def test_nameless_job_specification_is_a_postable_string(client, wf):
    w = f"/workflows/{wf}"
    a = post(client, f"{w}/jobs", {"command": "first"})
    post(client, f"{w}/jobs", {"command": "second", "blocked_by": [a["_id"]]})
    one = client.simulate_get(f"{w}/job_specifications/{a['_key']}").json
    assert one["name"] == a["_key"]
    spec = client.simulate_get(f"/workflow_specifications/{wf}").json
    names = [j["name"] for j in spec["jobs"]]
    assert all(isinstance(n, str) and n for n in names)
    assert spec["jobs"][1]["blocked_by"] == [a["_key"]]
    for field in ("_key", "_id", "_rev"):
        spec.pop(field, None)
    again = client.simulate_post("/workflow_specifications", json=spec)
    assert again.status_code == 200, again.text


# -- item 8: absurd memory_gb from torc-client 0.6.4's runner --------------------------------


@pytest.mark.parametrize("memory_gb", [17179869184, 1e300, 0])
def test_huge_memory_gb_is_accepted(client, wf, memory_gb):
    w = f"/workflows/{wf}"
    post(client, f"{w}/resource_requirements", {"name": "big", "memory": "100g"})
    post(client, f"{w}/jobs", {"name": "j", "command": "c"})
    assert client.simulate_post(f"{w}/initialize_jobs").status_code == 200
    resp = client.simulate_post(f"{w}/prepare_jobs_for_submission",
                                json={"num_cpus": 4, "memory_gb": memory_gb})
    assert resp.status_code == 200, resp.text
    assert len(resp.json["jobs"]) == (1 if memory_gb else 0)


# -- item 9: two servers of one user do not share gunicorn's control socket -------------------


@pytest.mark.slow
def test_two_servers_do_not_share_a_control_socket(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = {"XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    with LiveServer(f"sqlite:///{tmp_path / 'a.db'}", workers=1, env=env) as first:
        with LiveServer(f"sqlite:///{tmp_path / 'b.db'}", workers=1, env=env) as second:
            assert second.client().ping()
            time.sleep(0.5)  # gunicorn starts its control socket in a thread
            # no shared ``$XDG_RUNTIME_DIR/gunicorn.ctl`` that one server could unlink
            assert list(runtime.iterdir()) == []
        time.sleep(0.5)
        assert first.client().ping()  # still served after the second one stopped
        assert list(runtime.iterdir()) == []
        assert not (tmp_path / ".gunicorn").exists()


@pytest.mark.slow
def test_serve_creates_the_admin_token_once_with_mode_0600(tmp_path):
    """First start creates the token file (0600) and prints its path; a restart on the same
    database reuses it silently; the token works, and the CLI finds it in the config dir."""
    config = tmp_path / "config"
    env = {"XDG_CONFIG_HOME": str(config)}
    token_file = config / "torc_graph" / "token"
    log = tmp_path / "server.log"
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with LiveServer(db, workers=1, env=env, log_path=log, admin_token_file=token_file) as s:
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        assert str(token_file) in log.read_text()
        token = token_file.read_text().strip()
        assert requests.get(f"{s.base_url}/workflows",
                            headers={"Authorization": f"Bearer {token}"}).status_code == 200
        # the CLI reads ~/.config/torc_graph/token (XDG_CONFIG_HOME) by itself
        done = subprocess.run(cli_argv("workflows", "list", "--url", s.base_url),
                              env=clean_env(**env), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        bad = subprocess.run(cli_argv("workflows", "list", "--url", s.base_url),
                             env=clean_env(XDG_CONFIG_HOME=str(tmp_path / "none")),
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 4 and "authentication required" in bad.stderr
    first = log.read_text()
    with LiveServer(db, workers=1, env=env, log_path=log, admin_token_file=token_file):
        assert token_file.read_text().strip() == token
    assert log.read_text().count(str(token_file)) == first.count(str(token_file))


@pytest.mark.slow
def test_no_auth_warns_and_serves(tmp_path):
    log = tmp_path / "server.log"
    with LiveServer(f"sqlite:///{tmp_path / 'db'}", workers=1, auth=False, log_path=log) as s:
        assert requests.get(f"{s.base_url}/workflows").status_code == 200
    assert "authentication is OFF" in log.read_text()
    assert not os.path.exists(s.admin_token_file)


def test_serve_names_the_dashboard_url(tmp_path):
    log = tmp_path / "server.log"
    with LiveServer(f"sqlite:///{tmp_path / 'db'}", workers=1, log_path=log) as s:
        port = s.url.rsplit(":", 1)[1].split("/")[0]
        assert requests.get(f"http://localhost:{port}/dashboard").status_code == 200
    assert f"Dashboard: http://localhost:{port}/dashboard" in log.read_text()
