"""Bad input across routes: each case gets the exact torc error body with its status, and the
database is unchanged afterwards (a dump of every collection is compared)."""

from __future__ import annotations

import json

import pytest

from torc_graph.errors import error_body

# Each case: id, status, message fragment, and a function ctx -> (method, path, kwargs).
CASES = [
    ("malformed-json", 400, "not valid JSON",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"body": '{"path": '})),
    ("json-array-body", 400, "must be a JSON object",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"body": "[]"})),
    ("empty-body", 400, "body is required",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"body": ""})),
    ("missing-required", 400, "path",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"json": {"name": "x"}})),
    ("unknown-field", 400, "bogus",
     lambda c: ("POST", f"/workflows/{c.wf}/files", {"json": {"path": "/x", "bogus": 1}})),
    ("wrong-type-int", 400, "num_cpus",
     lambda c: ("POST", f"/workflows/{c.wf}/resource_requirements",
                {"json": {"num_cpus": "4"}})),
    ("float-for-int", 400, "pid",
     lambda c: ("POST", f"/workflows/{c.wf}/compute_nodes",
                {"json": {"hostname": "h", "pid": 1.0, "start_time": "t",
                          "resources": {"num_cpus": 1, "memory_gb": 1}}})),
    ("wrong-type-bool", 400, "is_archived",
     lambda c: ("POST", "/workflows", {"json": {"user": "u", "is_archived": "yes"}})),
    ("workflow-unknown-field", 400, "nope",
     lambda c: ("POST", "/workflows", {"json": {"user": "u", "nope": 1}})),
    ("workflow-duplicate-key", 400, "already exists",
     lambda c: ("POST", "/workflows", {"json": {"user": "u", "_key": c.wf}})),
    ("unknown-workflow-list", 404, "key=999999",
     lambda c: ("GET", "/workflows/999999/files", {})),
    ("unknown-workflow-post", 404, "key=999999",
     lambda c: ("POST", "/workflows/999999/files", {"json": {"path": "/x"}})),
    ("unknown-workflow-edges", 404, "key=999999",
     lambda c: ("GET", "/workflows/999999/edges/blocks", {})),
    ("unknown-workflow-config", 404, "key=999999",
     lambda c: ("PUT", "/workflows/999999/config", {"json": {}})),
    ("unknown-collection", 404, "Unknown path",
     lambda c: ("GET", f"/workflows/{c.wf}/nonsense", {})),
    ("unknown-edge-name", 400, "unknown edge collection 'nonsense'",
     lambda c: ("GET", f"/workflows/{c.wf}/edges/nonsense", {})),
    ("unknown-edge-name-post", 400, "'nonsense'",
     lambda c: ("POST", f"/workflows/{c.wf}/edges/nonsense",
                {"json": {"_from": c.job["_id"], "_to": c.job["_id"]}})),
    ("unknown-edge-name-delete", 400, "'files'",
     lambda c: ("DELETE", f"/workflows/{c.wf}/edges/files", {})),
    ("non-numeric-skip", 400, "'skip'",
     lambda c: ("GET", f"/workflows/{c.wf}/files", {"params": {"skip": "abc"}})),
    ("non-numeric-limit", 400, "'limit'",
     lambda c: ("GET", f"/workflows/{c.wf}/jobs", {"params": {"limit": "1.5"}})),
    ("negative-limit", 400, "limit must be",
     lambda c: ("GET", f"/workflows/{c.wf}/files", {"params": {"limit": "-1"}})),
    ("negative-skip", 400, "skip must be",
     lambda c: ("GET", "/workflows", {"params": {"skip": "-3"}})),
    ("bad-bool-filter", 400, "'is_archived'",
     lambda c: ("GET", "/workflows", {"params": {"is_archived": "maybe"}})),
    ("bad-int-filter", 400, "'run_id'",
     lambda c: ("GET", f"/workflows/{c.wf}/results", {"params": {"run_id": "x"}})),
    ("unknown-sort-field", 400, "cannot sort by 'nope'",
     lambda c: ("GET", f"/workflows/{c.wf}/files", {"params": {"sort_by": "nope"}})),
    ("injection-sort-field", 400, "cannot sort by",
     lambda c: ("GET", f"/workflows/{c.wf}/files", {"params": {"sort_by": "name; DROP"}})),
    ("bad-key", 400, "invalid key",
     lambda c: ("GET", f"/workflows/{c.wf}/files/bad key", {})),
    ("id-of-other-workflow", 400, "does not refer",
     lambda c: ("GET", f"/workflows/{c.wf}/files/files__999%2F{c.file['_key']}", {})),
    ("missing-document", 404, "Get file with key=987654",
     lambda c: ("GET", f"/workflows/{c.wf}/files/987654", {})),
    ("missing-document-delete", 404, "key=987654",
     lambda c: ("DELETE", f"/workflows/{c.wf}/files/987654", {})),
    ("missing-edge", 404, "key=987654",
     lambda c: ("GET", f"/workflows/{c.wf}/edges/needs/987654", {})),
    ("stale-rev", 409, "Conflicting revision",
     lambda c: ("PUT", f"/workflows/{c.wf}/files/{c.file['_key']}",
                {"json": {**c.file, "_rev": "stale", "name": "x"}})),
    ("missing-rev", 400, "requires the existing revision",
     lambda c: ("PUT", f"/workflows/{c.wf}/files/{c.file['_key']}",
                {"json": {"path": "/changed"}})),
    ("key-mismatch", 400, "does not match",
     lambda c: ("PUT", f"/workflows/{c.wf}/files/{c.file['_key']}",
                {"json": {**c.file, "_key": "other", "name": "x"}})),
    ("workflow-key-mismatch", 400, "does not match",
     lambda c: ("PUT", f"/workflows/{c.wf}", {"json": {**c.workflow, "_key": "other"}})),
    ("workflow-missing-rev", 400, "requires the existing revision",
     lambda c: ("PUT", f"/workflows/{c.wf}", {"json": {"user": "x"}})),
    ("workflow-stale-rev", 409, "Conflicting revision",
     lambda c: ("PUT", f"/workflows/{c.wf}", {"json": {**c.workflow, "_rev": "old"}})),
    ("status-missing-required", 400, "run_id",
     lambda c: ("PUT", f"/workflows/{c.wf}/status", {"json": {"is_canceled": True}})),
    ("config-bad-enum", 400, "prepare_jobs_sort_method",
     lambda c: ("PUT", f"/workflows/{c.wf}/config",
                {"json": {"prepare_jobs_sort_method": "random"}})),
    ("edge-bad-from", 400, "not a document id",
     lambda c: ("POST", f"/workflows/{c.wf}/edges/blocks",
                {"json": {"_from": "nonsense", "_to": c.job["_id"]}})),
    ("edge-missing-to", 400, "_to",
     lambda c: ("POST", f"/workflows/{c.wf}/edges/blocks", {"json": {"_from": c.job["_id"]}})),
    ("job-malformed-relation-id", 400, "input_files",
     lambda c: ("POST", f"/workflows/{c.wf}/jobs",
                {"json": {"command": "x", "input_files": ["not-an-id"]}})),
    ("job-wrong-collection-relation", 400, "resource_requirements",
     lambda c: ("POST", f"/workflows/{c.wf}/jobs",
                {"json": {"command": "x", "resource_requirements": c.file["_id"]}})),
    ("job-dangling-relation", 400, "no document",
     lambda c: ("POST", f"/workflows/{c.wf}/jobs",
                {"json": {"command": "x", "blocked_by": [f"jobs__{c.wf}/424242"]}})),
    ("job-missing-command", 400, "command",
     lambda c: ("POST", f"/workflows/{c.wf}/jobs", {"json": {"name": "x"}})),
    ("bulk-not-a-list", 400, "jobs",
     lambda c: ("POST", f"/workflows/{c.wf}/bulk_jobs", {"json": {"jobs": {"command": "x"}}})),
    ("bulk-bad-job-index", 400, "jobs[2]",
     lambda c: ("POST", f"/workflows/{c.wf}/bulk_jobs",
                {"json": {"jobs": [{"command": "a"}, {"command": "b"}, {"command": 3}]}})),
    ("duplicate-custom-key", 409, None,
     lambda c: ("POST", f"/workflows/{c.wf}/files",
                {"json": {"path": "/x", "_key": c.file["_key"]}})),
    ("method-not-allowed", 405, None,
     lambda c: ("PUT", f"/workflows/{c.wf}/files", {"json": {}})),
    ("edge-put-not-allowed", 405, None,
     lambda c: ("PUT", f"/workflows/{c.wf}/edges/needs/1", {"json": {}})),
    ("body-over-limit", 413, "larger than the limit",
     lambda c: ("POST", f"/workflows/{c.wf}/files",
                {"body": json.dumps({"path": "x" * 70_000})})),
]


class Ctx:
    def __init__(self, client):
        self.workflow = client.simulate_post("/workflows", json={"user": "u"}).json
        self.wf = self.workflow["_key"]
        self.file = client.simulate_post(f"/workflows/{self.wf}/files",
                                         json={"path": "/f", "name": "f"}).json
        self.job = client.simulate_post(f"/workflows/{self.wf}/jobs",
                                        json={"command": "c", "input_files": [self.file["_id"]]}).json


def test_enough_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("status, fragment, make", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input(client, db_dump, status, fragment, make):
    ctx = Ctx(client)
    before = db_dump()
    method, path, kwargs = make(ctx)
    resp = client.simulate_request(method, path, **kwargs)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json
    assert body == error_body(status, body["errorMessage"], body["errorNum"])
    assert isinstance(body["errorMessage"], str) and body["errorMessage"]
    if fragment is not None:
        assert fragment in body["errorMessage"]
    assert db_dump() == before
