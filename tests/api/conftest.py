"""Fixtures for the REST API tests: an app on a SQLite file in tmp_path, a falcon test
client, a database dump for "nothing changed" checks, and a real gunicorn server."""

from __future__ import annotations

import pytest
from falcon import testing

from torc_graph import model
from torc_graph.app import create_app
from torc_graph.config import load_settings
from torc_graph.errors import error_body
from torc_graph.store import open_store
from torc_graph.testing import LiveServer


@pytest.fixture
def settings():
    return load_settings({}, max_body_bytes=64 * 1024)


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'api.db'}")
    yield s
    s.close()


@pytest.fixture
def client(store, settings):
    return testing.TestClient(create_app(store, settings))


def dump(store) -> dict:
    """Every document of every collection of every workflow (for "unchanged" assertions)."""
    out: dict = {}
    for coll in model.GlobalCollection:
        out[coll.value] = store.find(coll.value, None)
    for wf in out["workflows"]:
        key = wf["_key"]
        for name in list(model.Collection) + list(model.Edge):
            out[f"{name.value}__{key}"] = store.find(name.value, key)
    return out


@pytest.fixture
def db_dump(store):
    return lambda: dump(store)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """A real ``torc-graph serve`` (gunicorn, 2 workers) on a fresh SQLite file."""
    tmp = tmp_path_factory.mktemp("live")
    with LiveServer(f"sqlite:///{tmp / 'live.db'}", workers=2, cwd=tmp,
                    log_path=tmp / "server.log") as server:
        yield server.url  # the torc base URL form, carrying the admin token


class Seeded:
    """Two workflows: ``wf`` with a file and a job that needs it, ``wf2`` with a job."""

    def __init__(self, client):
        self.workflow = client.simulate_post("/workflows", json={"user": "u"}).json
        self.wf = self.workflow["_key"]
        self.wf2 = client.simulate_post("/workflows", json={"user": "v"}).json["_key"]
        self.file = client.simulate_post(f"/workflows/{self.wf}/files",
                                         json={"path": "/f", "name": "f"}).json
        self.job = client.simulate_post(f"/workflows/{self.wf}/jobs",
                                        json={"command": "c", "input_files": [self.file["_id"]]}).json
        self.job2 = client.simulate_post(f"/workflows/{self.wf2}/jobs", json={"command": "c"}).json


@pytest.fixture
def seeded(client):
    return Seeded(client)


@pytest.fixture
def assert_rejected(client, db_dump):
    """``assert_rejected(make, status, fragment)``: seed two workflows, send the request
    ``make(seeded) -> (method, path, simulate_request kwargs)``, and check the torc error body
    with ``status``, ``fragment`` in its message (unless None), no driver text, and an unchanged
    database."""

    def check(make, status, fragment):
        seeded = Seeded(client)
        before = db_dump()
        method, path, kwargs = make(seeded)
        resp = client.simulate_request(method, path, **kwargs)
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"].startswith("application/json")
        body = resp.json
        assert body == error_body(status, body["errorMessage"], body["errorNum"])
        assert isinstance(body["errorMessage"], str) and body["errorMessage"]
        if fragment is not None:
            assert fragment in body["errorMessage"]
        assert "sqlite" not in body["errorMessage"].lower()
        assert db_dump() == before

    return check
