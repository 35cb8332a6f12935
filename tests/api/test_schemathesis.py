"""Property-based fuzzing of a live server with schemathesis over the torc v0.6.4 OpenAPI.

Every operation of the spec gets a bounded, derandomized set of generated requests (valid and
invalid ones) against a real gunicorn server with a seeded workflow; most cases use the
seeded workflow's key and document keys in their path, so they reach the handlers instead of
stopping at a 404. The bar: no response is a 5xx, and every 2xx body conforms to the
response schema of the spec. Skipped when schemathesis is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

SPEC = Path(__file__).resolve().parents[3] / "shared" / "api" / "torc-v0.6.4-openapi.yaml"
PREFIX = "/_db/test-workflows/torc-service"  # the spec's servers: prefix
EXAMPLES_PER_OPERATION = 10

SEED_DOCS = {
    "files": {"name": "f1", "path": "/data/f1"},
    "jobs": {"name": "j1", "command": "echo 1"},
    "resource_requirements": {"name": "r1", "num_cpus": 2},
    "compute_nodes": {"hostname": "h1", "pid": 12, "start_time": "2024-05-01 12:00:00.1",
                      "resources": {"num_cpus": 4, "memory_gb": 8.0}, "is_active": True},
    "user_data": {"name": "u1", "data": {"x": 1}},
    "events": {"category": "job", "message": "m"},
    "results": {"job_key": "1", "run_id": 1, "return_code": 0, "exec_time_minutes": 1.5,
                "completion_time": "t", "status": "done"},
}


def _seed(base: str) -> tuple[str, dict[str, dict]]:
    s = requests.Session()
    wf = s.post(base + "/workflows", json={"user": "fuzz", "name": "wf"}).json()["_key"]
    docs = {}
    for coll, body in SEED_DOCS.items():
        resp = s.post(f"{base}/workflows/{wf}/{coll}", json=body)
        resp.raise_for_status()
        docs[coll] = resp.json()
    job2 = s.post(f"{base}/workflows/{wf}/jobs", json={"name": "j2", "command": "echo 2"}).json()
    docs["edges"] = s.post(f"{base}/workflows/{wf}/edges/blocks",
                           json={"_from": docs["jobs"]["_id"], "_to": job2["_id"]}).json()
    return wf, docs


def _fixer(path: str, wf: str, docs: dict[str, dict]):
    """A function (case, mode) -> case that puts seeded keys into the path (mode 0: leave the
    generated values, 1: seeded keys, 2: seeded keys and a real edge name)."""
    parts = path.strip("/").split("/")
    collection = parts[2] if len(parts) > 2 and parts[1] == "{workflow}" else None
    doc = docs.get(collection, docs["jobs"])

    def fix(case, mode: int):
        pp = case.path_parameters
        if not mode or pp is None:
            return case
        if "workflow" in pp:
            pp["workflow"] = wf
        if path.startswith("/workflows/{key}"):
            pp["key"] = wf
        elif "key" in pp:
            pp["key"] = doc["_key"]
        if "rr_key" in pp:
            pp["rr_key"] = docs["resource_requirements"]["_key"]
        if "compute_node_key" in pp:
            pp["compute_node_key"] = docs["compute_nodes"]["_key"]
        if "name" in pp and mode == 2:
            pp["name"] = "blocks"
        return case

    return fix


def _fuzz(operation, strategy, session, failures: list[str], counts: dict[str, int]) -> None:
    """Run the bounded, derandomized examples of one operation, collecting failures."""
    from schemathesis.specs.openapi.checks import response_schema_conformance

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
              database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(case):
        counts["cases"] += 1
        resp = case.call(session=session, timeout=60)
        if resp.status_code >= 500:
            failures.append(f"{resp.status_code} {operation.label}: {resp.text[:200]}\n"
                            f"  {case.as_curl_command()}")
        elif resp.status_code < 300:
            counts["ok"] += 1
            try:
                case.validate_response(resp, checks=[response_schema_conformance])
            except BaseExceptionGroup as exc:  # schemathesis raises its FailureGroup
                failures.append(f"non-conforming {operation.label}: {str(exc)[:300]}\n"
                                f"  {case.as_curl_command()}")

    run()


@pytest.mark.slow
@pytest.mark.skipif(not SPEC.exists(), reason="the torc OpenAPI document is not beside the repo")
def test_no_server_errors_and_conforming_responses(live_server):
    base = live_server  # already the torc base URL (PREFIX form, token inside)
    wf, docs = _seed(base)
    schema = schemathesis.openapi.from_path(str(SPEC))
    schema.config.update(base_url=base)
    session = requests.Session()
    failures: list[str] = []
    counts = {"cases": 0, "operations": 0, "ok": 0}

    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1
        fix = _fixer(operation.path, wf, docs)
        strategy = operation.as_strategy().flatmap(
            lambda case, fix=fix: st.sampled_from([0, 1, 1, 2]).map(lambda m: fix(case, m)))

        _fuzz(operation, strategy, session, failures, counts)

    assert counts["operations"] > 100  # the whole spec was exercised
    assert counts["cases"] > 5 * counts["operations"]
    assert counts["ok"] > counts["operations"]  # many requests got past validation
    assert failures == [], "\n".join(failures[:20])
