"""torc_graph.client: the embedded transport, HTTP, errors, paging, id quoting."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from torc_graph.app import create_app
from torc_graph.client import (
    ApiError,
    Client,
    ServerUnreachable,
    absolute_database_url,
    seg,
)
from torc_graph.config import load_settings
from torc_graph.store import open_store

SPEC = {
    "name": "c", "user": "tester",
    "files": [{"name": "in", "path": "in.txt"}],
    "jobs": [{"name": f"j{i}", "command": "true"} for i in range(5)],
}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'client.db'}"


@pytest.fixture
def embedded(db_url: str, monkeypatch):
    monkeypatch.delenv("TORC_GRAPH_URL", raising=False)
    with Client(database=db_url) as c:
        yield c


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_url(db_url: str):
    """The same app over real HTTP (wsgiref in a thread)."""
    settings = load_settings(database=db_url)
    app = create_app(open_store(db_url), settings)
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingServer,
                         handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _exercise(client: Client) -> None:
    assert client.ping() == {"message": "torc-service is running"}
    assert client.version() == "0.6.4"
    wf = client.add_workflow_specification(SPEC)["_key"]
    # Paging: 5 jobs in pages of 2 (skip/has_more), in insertion order.
    names = [j["name"] for j in client.iter_items(f"/workflows/{wf}/jobs", limit=2)]
    assert names == [f"j{i}" for i in range(5)]
    # Query parameters: booleans become true/false, None is left out.
    assert client.get(f"/workflows/{wf}/jobs", limit=1, name=None)["total_count"] == 5
    client.initialize_jobs(wf, only_uninitialized=True)
    assert {j["status"] for j in client.list_jobs(wf)} == {"ready"}
    # A full id in a key slot is sent as jobs__WF%2FKEY and accepted.
    (file_doc,) = client.iter_items(f"/workflows/{wf}/files")
    assert "%2F" in seg(file_doc["_id"])
    assert client.get(f"/workflows/{seg(wf)}/files/{seg(file_doc['_id'])}")["path"] == "in.txt"
    # Errors carry the status and the server's errorMessage.
    with pytest.raises(ApiError) as info:
        client.get_workflow("987654321")
    assert info.value.status == 404
    assert "987654321" in info.value.message and info.value.body["code"] == 404
    with pytest.raises(ApiError) as info:
        client.post(f"/workflows/{wf}/prepare_jobs_for_submission", {"num_cpus": "x"})
    assert info.value.status == 400
    assert client.bump_run_id(wf) == 1 and client.get_status(wf)["run_id"] == 1


def test_embedded_client(embedded: Client, db_url: str):
    assert embedded.is_embedded and embedded.location.endswith("client.db")
    _exercise(embedded)
    # The environment for a child process names the same store, by absolute path.
    assert embedded.env() == {"TORC_GRAPH_DATABASE": db_url, "TORC_GRAPH_URL": ""}


def test_http_client(http_url: str):
    with Client(http_url + "/") as client:
        assert not client.is_embedded and client.url == http_url
        _exercise(client)
        assert client.env() == {"TORC_GRAPH_URL": http_url}


def test_embedded_and_http_see_the_same_store(embedded: Client, http_url: str):
    wf = embedded.add_workflow_specification(SPEC)["_key"]
    with Client(http_url) as remote:
        assert remote.get_workflow(wf)["name"] == "c"


def test_unreachable_server_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with Client(f"http://127.0.0.1:{port}", retries=2, backoff=0.01) as client:
        with pytest.raises(ServerUnreachable) as info:
            client.get("/ping")
        with pytest.raises(ServerUnreachable):
            client.post("/workflows", {"user": "x"})
    assert time.monotonic() - t0 < 5
    assert info.value.url == f"http://127.0.0.1:{port}"
    assert "refused" in info.value.reason


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("TORC_GRAPH_URL", "http://example.invalid:1")
    monkeypatch.setenv("TORC_GRAPH_DATABASE", f"sqlite:///{tmp_path / 'env.db'}")
    assert Client().url == "http://example.invalid:1"
    assert Client(database="sqlite:///x.db").is_embedded  # an explicit database wins
    assert Client("http://other:2", database="sqlite:///x.db").url == "http://other:2"
    monkeypatch.delenv("TORC_GRAPH_URL")
    assert Client().database == f"sqlite:///{tmp_path / 'env.db'}"


def test_absolute_database_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_database_url("sqlite:///rel.db") == f"sqlite:///{tmp_path / 'rel.db'}"
    assert absolute_database_url("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert absolute_database_url("arangodb://u:p@h:8529/db") == "arangodb://u:p@h:8529/db"
    assert seg("jobs__1/2") == "jobs__1%2F2" and seg(5) == "5"
