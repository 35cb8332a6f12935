"""Hostile input found by fuzzing (schemathesis and hand-made): each case answers a 4xx with
the torc error body and a message naming the problem, never a 500, and changes nothing.

Regression cases for the 500s that were found:

* deeply nested JSON bodies (RecursionError in the parser) → 400 (``media.MAX_DEPTH``);
* ``skip``/``limit`` beyond 64 bits, as integers or as numbers like ``1e19`` (SQLite
  "datatype mismatch") → 400 (``params.convert``, ``queries.count_param``);
* a JSON ``null`` body where a body schema applies (validation was skipped, the handler
  crashed on ``None``) → 400 (``media.read_body``);
* durations/memory strings too large for a float or a 64-bit integer (OverflowError) → 400
  (``units``);
* a lone UTF-16 surrogate escape (``"\\ud800"``) in a body string or key (UnicodeEncodeError
  when stored) → 400 (``media.read_body``);
* a number literal beyond float range (``1e400`` parsed as infinity) → 400 (``media``), and a
  finite ``memory_gb`` whose bytes overflow (``1e300``: OverflowError) → 400 (``claims``);
* a chunked body with broken framing (gunicorn's InvalidChunkSize while the app reads the
  body) → 400 (``media.read_body``).
"""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

import pytest
import requests

from torc_graph.api.media import MAX_DEPTH

BIG = 2**64 + 5
INT64_MAX = 2**63 - 1


def _deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth




_SPEC_RR = {"name": "w", "jobs": [{"name": "a", "command": "c", "resource_requirements": "r"}]}

# id, status, message fragment, ctx -> (method, path, kwargs)
CASES = [
    ("deep-array-body", 400, "nested deeper than",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"body": _deep_array(3000)})),
    ("deep-object-body", 400, "nested deeper than",
     lambda c: ("PUT", f"/workflows/{c.wf}/files/{c.file['_key']}",
                {"body": '{"a":' * 3000 + "1" + "}" * 3000})),
    ("deep-user-data", 400, f"nested deeper than {MAX_DEPTH}",
     lambda c: ("POST", f"/workflows/{c.wf}/user_data",
                {"body": '{"name": "u", "data": ' + _deep_object(MAX_DEPTH) + "}"})),
    ("deep-action-body", 400, "nested deeper than",
     lambda c: ("POST", "/workflow_specifications", {"body": _deep_array(3000)})),
    ("skip-over-int64", 400, "'skip'",
     lambda c: ("GET", f"/workflows/{c.wf}/files", {"params": {"skip": str(BIG)}})),
    ("limit-over-int64", 400, "'limit'",
     lambda c: ("GET", f"/workflows/{c.wf}/edges/needs", {"params": {"limit": str(BIG)}})),
    ("skip-under-int64", 400, "'skip'",
     lambda c: ("GET", "/workflows", {"params": {"skip": str(-BIG)}})),
    ("int-filter-over-int64", 400, "'run_id'",
     lambda c: ("GET", f"/workflows/{c.wf}/results", {"params": {"run_id": str(BIG)}})),
    ("float-skip-over-int64", 400, "skip must be an integer from 0 to",
     lambda c: ("GET", f"/workflows/{c.wf}/job_specifications", {"params": {"skip": "1e19"}})),
    ("float-limit-over-int64", 400, "limit must be an integer from 0 to",
     lambda c: ("GET", f"/workflows/{c.wf}/jobs/find_by_status/uninitialized",
                {"params": {"limit": "9.3e18"}})),
    ("float-skip-infinite", 400, "must be a finite number",
     lambda c: ("GET", f"/workflows/{c.wf}/downstream_jobs/{c.job['_key']}",
                {"params": {"skip": "1e400"}})),
    ("timestamp-infinite", 404, "must be a finite number",
     lambda c: ("GET", f"/workflows/{c.wf}/events_after_timestamp/1e400", {})),
    ("null-body-crud", 400, "not null",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"body": "null"})),
    ("null-body-put", 400, "not null",
     lambda c: ("PUT", f"/workflows/{c.wf}/config", {"body": "null"})),
    ("null-body-action", 400, "not null",
     lambda c: ("POST", f"/workflows/{c.wf}/prepare_jobs_for_submission", {"body": "null"})),
    ("null-body-job-user-data", 400, "not null",
     lambda c: ("POST", f"/workflows/{c.wf}/jobs/{c.job['_key']}/user_data", {"body": "null"})),
    ("null-body-specification", 400, "not null",
     lambda c: ("POST", "/workflow_specifications", {"body": "null"})),
    ("huge-runtime", 400, "too long",
     lambda c: ("POST", "/workflow_specifications",
                {"json": {**_SPEC_RR, "resource_requirements": [
                    {"name": "r", "runtime": "P" + "9" * 400 + "D"}]}})),
    ("runtime-over-limit", 400, "too large",
     lambda c: ("POST", "/workflow_specifications",
                {"json": {**_SPEC_RR, "resource_requirements": [
                    {"name": "r", "runtime": "P99999999999999999999W"}]}})),
    ("memory-over-int64", 400, "too large",
     lambda c: ("POST", "/workflow_specifications",
                {"json": {**_SPEC_RR, "resource_requirements": [
                    {"name": "r", "memory": "9" * 30 + "g"}]}})),
    ("surrogate-in-value", 400, "lone UTF-16 surrogate",
     lambda c: ("PUT", f"/workflows/{c.wf}/files/{c.file['_key']}",
                {"body": '{"name": "\\ud800", "path": "p", "_rev": "' + c.file["_rev"] + '"}'})),
    ("surrogate-in-key", 400, "lone UTF-16 surrogate",
     lambda c: ("PUT", f"/workflows/{c.wf}/config", {"body": '{"\\udfff": 1}'})),
    ("surrogate-in-bulk-job", 400, "lone UTF-16 surrogate",
     lambda c: ("POST", f"/workflows/{c.wf}/bulk_jobs",
                {"body": '{"jobs": [{"command": "x\\udc00y"}]}'})),
    ("surrogate-in-specification", 400, "lone UTF-16 surrogate",
     lambda c: ("POST", "/workflow_specifications",
                {"body": '{"jobs": [{"name": "\\ud800", "command": "c"}]}'})),
    ("number-beyond-float-range", 400, "number 1e400 is out of range",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"body": '{"path": "p", "st_mtime": 1e400}'})),
    ("long-number-beyond-float-range", 400, "is out of range",
     lambda c: ("POST", f"/workflows/{c.wf}/prepare_jobs_for_submission",
                {"body": '{"num_cpus": 1, "memory_gb": %s.5}' % ("9" * 400)})),
    # (memory_gb beyond 64-bit bytes is accepted as "no limit", issue 10 item 8)
    ("memory-gb-negative", 400, "memory_gb must not be negative",
     lambda c: ("POST", f"/workflows/{c.wf}/prepare_jobs_for_submission",
                {"json": {"num_cpus": 4, "memory_gb": -1}})),
    ("nan-in-body", 400, "NaN is not valid JSON",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"body": '{"path": NaN}'})),
    ("infinity-in-body", 400, "Infinity is not valid JSON",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"body": '{"path": "p", "st_mtime": -Infinity}'})),
    ("array-for-object", 400, "must be a JSON object",
     lambda c: ("PUT", f"/workflows/{c.wf}/status", {"body": "[{}]"})),
    ("key-over-int64", 404, f"key={BIG}",
     lambda c: ("GET", f"/workflows/{c.wf}/files/files__{c.wf}%2F{BIG}", {})),
    ("workflow-key-over-int64", 404, f"key={BIG}",
     lambda c: ("DELETE", f"/workflows/{BIG}", {})),
    ("id-of-other-workflow-in-path", 400, "does not refer",
     lambda c: ("GET", f"/workflows/{c.wf}/jobs/{c.job2['_id'].replace('/', '%2F')}", {})),
    ("id-of-wrong-collection-in-path", 400, None,
     lambda c: ("GET", f"/workflows/{c.wf}/jobs/{c.file['_id'].replace('/', '%2F')}", {})),
    ("job-blocked-by-other-workflow", 400, "blocked_by",
     lambda c: ("POST", f"/workflows/{c.wf}/jobs",
                {"json": {"command": "x", "blocked_by": [c.job2["_id"]]}})),
    ("sort-by-nested-unknown", 400, "cannot sort by",
     lambda c: ("GET", f"/workflows/{c.wf}/files", {"params": {"sort_by": "a.b.c"}})),
]


@pytest.mark.parametrize("status, fragment, make", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_hostile_input(assert_rejected, status, fragment, make):
    assert_rejected(make, status, fragment)


def test_nesting_up_to_the_limit_is_accepted(client, seeded):
    body = '{"name": "u", "data": ' + _deep_object(MAX_DEPTH - 1) + "}"  # the body is level 1
    resp = client.simulate_post(f"/workflows/{seeded.wf}/user_data", body=body)
    assert resp.status_code == 200, resp.text
    stored = client.simulate_get(f"/workflows/{seeded.wf}/user_data/{resp.json['_key']}").json
    assert stored["data"] == resp.json["data"]


@pytest.mark.parametrize("path, skip", [
    ("/workflows/{wf}/files", str(INT64_MAX)),
    ("/workflows", str(INT64_MAX)),
    ("/workflows/{wf}/edges/needs", "1000000"),
    ("/workflows/{wf}/job_specifications", "1e18"),  # a number parameter in the OpenAPI
    ("/workflows/{wf}/jobs/find_by_status/uninitialized", "4611686018427387904"),
])
def test_skip_beyond_the_end_is_an_empty_page(client, seeded, path, skip):
    resp = client.simulate_get(path.format(wf=seeded.wf), params={"skip": skip})
    assert resp.status_code == 200, resp.text
    assert resp.json["items"] == [] and resp.json["has_more"] is False


def test_surrogate_pairs_and_escaped_backslashes_are_fine(client, seeded):
    body = '{"name": "\\ud83d\\ude00 \\\\ud800", "path": "p"}'  # an emoji, a literal \\ud800
    resp = client.simulate_post(f"/workflows/{seeded.wf}/files", body=body)
    assert resp.status_code == 200, resp.text
    assert resp.json["name"] == "\U0001F600 \\ud800"


def test_null_body_is_still_fine_where_no_body_is_needed(client, seeded):
    resp = client.simulate_post(f"/workflows/{seeded.wf}/initialize_jobs", body="null")
    assert resp.status_code == 200, resp.text


def test_concurrent_delete_while_reading_never_500(live_server):
    """Readers hammer a workflow's routes while it is deleted: 200 or 404, never a 500."""
    session = requests.Session()
    spec = session.get(live_server + "/workflow_specifications/example").json()
    paths = ["", "/jobs", "/files", "/status", "/config", "/is_complete", "/job_specifications",
             "/dot_graph/job_blocks", "/ready_job_requirements", "/latest_event_timestamp",
             "/events_after_timestamp/0", "/job_keys", "/jobs/find_by_status/ready"]
    bad: list[tuple[int, str]] = []
    for _ in range(3):
        key = session.post(live_server + "/workflow_specifications", json=spec).json()["_key"]
        stop = threading.Event()

        def read(key=key, stop=stop):
            s = requests.Session()
            for _ in range(20):  # bounded even if the delete were slow
                for p in paths:
                    r = s.get(f"{live_server}/workflows/{key}{p}", timeout=30)
                    if r.status_code >= 500:
                        bad.append((r.status_code, p))
                r = s.post(f"{live_server}/workflows/{key}/initialize_jobs", timeout=30)
                if r.status_code >= 500:
                    bad.append((r.status_code, "initialize_jobs"))
                if stop.is_set():
                    return

        threads = [threading.Thread(target=read) for _ in range(2)]
        for t in threads:
            t.start()
        assert session.delete(f"{live_server}/workflows/{key}", timeout=30).status_code == 200
        stop.set()
        for t in threads:
            t.join(60)
        assert session.get(f"{live_server}/workflows/{key}/jobs").status_code == 404
    assert bad == []


@pytest.mark.parametrize("chunks", [b"ZZ\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"],
                         ids=["bad-size", "missing-terminator"])
def test_malformed_chunked_body_is_a_400(live_server, chunks):
    url = urlsplit(live_server)
    # The live server's URL path carries its token (torc base-URL form).
    request = (f"POST {url.path}/workflows HTTP/1.1\r\nHost: {url.netloc}\r\n".encode()
               + b"Content-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 400"), reply
    assert b"malformed chunked encoding" in rest
