"""torc_graph.client_transport: requests bypass requests.Session (urllib3 pool / WSGI app) and
keep the client's behavior: retries, errors, headers, proxies, the embedded store."""

from __future__ import annotations

import json
import socketserver
import threading
from pathlib import Path

import pytest

from torc_graph.client import ApiError, Client, ServerUnreachable
from torc_graph.testing import LiveServer


def _forbid_session(client: Client) -> None:
    """Fail any request that goes through the client's requests.Session, except a streamed
    file body (which the session still sends, in pieces)."""
    real = client.session.request

    def request(method, url, *args, data=None, **kwargs):
        assert hasattr(data, "read"), f"{method} {url} went through requests.Session"
        return real(method, url, *args, data=data, **kwargs)

    client.session.request = request


class _Fake(socketserver.ThreadingTCPServer):
    """A scripted HTTP server: records each request (line, headers, body); ``drops`` first
    requests are answered by closing the connection, the others with ``{"message": ...}``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, drops: int = 0, message: str = "fake"):
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.drops = drops
        self.message = message
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FakeHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            line = self.rfile.readline().decode("latin-1").rstrip("\r\n")
            if not line:
                return
            headers = {}
            while (h := self.rfile.readline().decode("latin-1").rstrip("\r\n")):
                name, _, value = h.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", 0)))
            self.server.seen.append((line, headers, body))
            if len(self.server.seen) <= self.server.drops:
                return  # the connection closes: no answer to this request
            out = json.dumps({"message": self.server.message}).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(out), out))


@pytest.fixture
def fake():
    servers: list[_Fake] = []

    def make(**kwargs) -> _Fake:
        servers.append(_Fake(**kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def test_a_served_client_sends_through_the_pool_with_its_headers_and_errors(tmp_path: Path):
    with LiveServer(f"sqlite:///{tmp_path / 'lean.db'}", workers=1) as server, \
            server.client() as client:
        _forbid_session(client)
        wf = client.add_workflow_specification({  # the file body: by the session, streamed
            "name": "lean", "user": "u", "jobs": [{"name": "a b/c", "command": "true"}]})["_key"]
        client.initialize_jobs(wf)
        # Query values: booleans as true/false, None left out, unsafe characters quoted.
        (job,) = client.list_jobs(wf, name="a b/c", skip=None)
        assert job["status"] == "ready"
        with pytest.raises(ApiError) as info:
            client.post(f"/workflows/{wf}/claim_jobs", {"compute_node_key": "x", "limit": 0,
                                                        "resources": {"num_cpus": "many"}})
        assert info.value.status == 400 and info.value.body["code"] == 400
        # Without the admin token the server refuses: the token travels in the headers.
        client.session.headers.pop("Authorization")
        with pytest.raises(ApiError) as info:
            client.get_workflow(wf)
        assert info.value.status == 401
        # An embedded client of another store goes through the WSGI app, not the session.
    with Client(database=f"sqlite:///{tmp_path / 'embedded.db'}") as embedded:
        _forbid_session(embedded)
        assert embedded.ping() == {"message": "torc-service is running"}
        other = embedded.another()
        assert other.transport is embedded.transport
        _forbid_session(other)
        with pytest.raises(ApiError) as info:
            other.get_workflow("987654321")
        assert info.value.status == 404


def test_retries_repeat_a_get_but_not_a_post_whose_answer_was_lost(fake):
    server = fake(drops=1)
    with Client(server.url, retries=2, backoff=0.01) as client:
        _forbid_session(client)
        assert client.get("/ping", a=True) == {"message": "fake"}
        assert [s[0] for s in server.seen] == ["GET /ping?a=true HTTP/1.1"] * 2
    server = fake(drops=1)
    with Client(server.url, retries=2, backoff=0.01) as client:
        _forbid_session(client)
        with pytest.raises(ServerUnreachable) as info:
            client.post("/workflows/1/complete_jobs", {"x": float("nan")})
        assert info.value.url == server.url
        (line, headers, body) = server.seen[0]
        assert len(server.seen) == 1 and line.startswith("POST /workflows/1/complete_jobs ")
        # NaN is sent as the standard library writes it (the server answers 400, as before).
        assert body == b'{"x":NaN}' and headers["content-type"] == "application/json"


def test_a_proxy_from_the_environment_is_used(fake, monkeypatch):
    proxy = fake(message="via proxy")
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with Client("http://torc.invalid:8080/prefix", retries=0) as client:
        assert client.transport is None  # the session sends (it knows proxies)
        assert client.get("/ping") == {"message": "via proxy"}
    assert proxy.seen[0][0] == "GET http://torc.invalid:8080/prefix/ping HTTP/1.1"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = fake(message="direct")
    with Client(direct.url) as client:
        _forbid_session(client)
        assert client.get("/ping") == {"message": "direct"}
