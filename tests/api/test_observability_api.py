"""``GET /workflows/{wf}/jobs/{key}/explain`` and ``GET /workflows/{wf}/critical_path`` over
HTTP (falcon.testing on a real SQLite file): every explain reason, key-or-id job segments, and
the errors (404 missing workflow or job, 400 for a cyclic blocks graph)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


_spec = importlib.util.spec_from_file_location(
    "explain_scenarios", Path(__file__).parents[1] / "engine" / "explain_scenarios.py")
scenarios = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenarios)


_hold_leases = scenarios.hold_leases


def test_explain_every_reason(client, store):
    cases = scenarios.build_all(store)
    assert len(cases) == 15
    for name, case in cases.items():
        resp = client.simulate_get(f"/workflows/{case.workflow}/jobs/{case.job}/explain")
        assert resp.status_code == 200, (name, resp.text)
        scenarios.check(case, resp.json)
    case = cases["blocked"]
    by_id = client.simulate_get(
        f"/workflows/{case.workflow}/jobs/jobs__{case.workflow}/{case.job}/explain")
    assert by_id.status_code == 200 and by_id.json["job"]["key"] == case.job


def test_explain_errors(client, seeded, db_dump):
    before = db_dump()
    assert client.simulate_get(f"/workflows/{seeded.wf}/jobs/999999/explain").status_code == 404
    assert client.simulate_get("/workflows/999999/jobs/1/explain").status_code == 404
    bad = client.simulate_get(f"/workflows/{seeded.wf}/jobs/jobs__{seeded.wf2}/1/explain")
    assert bad.status_code == 400 and "does not refer" in bad.json["errorMessage"]
    assert db_dump() == before


def test_critical_path(client, store):
    wf, k = scenarios.known_dag(store)
    resp = client.simulate_get(f"/workflows/{wf}/critical_path")
    assert resp.status_code == 200, resp.text
    body = resp.json
    assert [r["key"] for r in body["critical_path"]["jobs"]] == [k["e"]]
    assert body["critical_path"]["length_seconds"] == 3600.0
    assert [r["key"] for r in body["remaining"]["jobs"]] == [k["c"], k["d"]]
    assert body["remaining"]["makespan_seconds"] == pytest.approx(1500.0, abs=5)


def test_critical_path_errors(client, store, seeded, db_dump):
    assert client.simulate_get("/workflows/999999/critical_path").status_code == 404
    # The API refuses cycles; a store written by another tool may still hold one.
    store.insert("blocks", seeded.wf, {"_from": seeded.job["_id"], "_to": seeded.job["_id"]})
    before = db_dump()
    resp = client.simulate_get(f"/workflows/{seeded.wf}/critical_path")
    assert resp.status_code == 400 and "cycle" in resp.json["errorMessage"]
    assert db_dump() == before
