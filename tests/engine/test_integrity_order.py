"""The dependency-order proof of :mod:`torc_graph.engine.integrity`: cycles are still found
when the proof fails, and the proof holds for ordinary workflows (no search)."""

from __future__ import annotations

import pytest

from torc_graph.engine import integrity, jobs
from torc_graph.errors import InvalidInput


def test_generated_keys_prove_order_without_a_search(store, wf, monkeypatch):
    first = jobs.add_jobs(store, wf, {"jobs": [{"name": "a", "command": "x"}]})["items"][0]
    second = jobs.add_jobs(store, wf, {"jobs": [{"name": "b", "command": "x",
                                                 "blocked_by": [first["_id"]]}]})["items"][0]
    monkeypatch.setattr(integrity, "find_cycle", lambda *a: pytest.fail("searched"))
    jobs.add_jobs(store, wf, {"jobs": [{"name": "c", "command": "x",
                                        "blocked_by": [second["_id"], first["_id"]]}]})
    if store.__class__.__name__ == "SQLiteStore":
        assert store.dependencies_in_id_order(wf, integrity.ORDER_RELATIONS)
        integrity.check_no_cycle(store, wf)


def test_backward_edge_is_not_proven_but_has_no_cycle(store, wf):
    a = jobs.add_job(store, wf, {"name": "a", "command": "x", "_key": "9000000001"})
    jobs.add_job(store, wf, {"name": "b", "command": "x", "_key": "8000000001",
                             "blocked_by": [a["_id"]]})
    assert not store.dependencies_in_id_order(wf, integrity.ORDER_RELATIONS)
    integrity.check_no_cycle(store, wf)  # searched: acyclic


def test_bulk_job_closing_a_cycle_through_a_file_is_refused(store, wf):
    f = store.insert("files", wf, {"name": "f", "path": "/f"})
    old = jobs.add_job(store, wf, {"name": "old", "command": "x", "input_files": [f["_id"]]})
    body = {"jobs": [{"name": "new", "command": "x", "blocked_by": [old["_id"]],
                      "output_files": [f["_id"]]}]}
    with pytest.raises(InvalidInput, match=r"cycle: .*needs file f produced by new"):
        jobs.add_jobs(store, wf, body)
    assert [j["name"] for j in store.find("jobs", wf)] == ["old"]


def test_bulk_job_needing_an_older_producers_file_is_in_order(store, wf, monkeypatch):
    f = store.insert("files", wf, {"name": "f", "path": "/f"})
    jobs.add_job(store, wf, {"name": "p", "command": "x", "output_files": [f["_id"]]})
    monkeypatch.setattr(integrity, "find_cycle", lambda *a: pytest.fail("searched"))
    jobs.add_jobs(store, wf, {"jobs": [{"name": "c", "command": "x", "input_files": [f["_id"]]}]})


def test_cycle_among_custom_keys_in_one_batch_is_refused(store, wf):
    body = {"jobs": [
        {"_key": "b1", "name": "x", "command": "x", "blocked_by": [f"jobs__{wf}/b2"]},
        {"_key": "b2", "name": "y", "command": "x", "blocked_by": [f"jobs__{wf}/b1"]},
    ]}
    with pytest.raises(InvalidInput, match="cycle"):
        jobs.add_jobs(store, wf, body)
    assert store.count("jobs", wf) == 0


def test_cycle_through_an_old_job_with_a_huge_custom_key_is_refused(store, wf):
    """Old jobs x (small key) and c (a 20-digit key, beyond the key counter's reach) with c
    blocking x; a new job blocked by x that produces a file c needs closes c -> x -> new -> c.
    The new edges look ascending, so the proof must not treat the huge key as older-and-smaller."""
    f = store.insert("files", wf, {"name": "f", "path": "/f"})
    c = jobs.add_job(store, wf, {"name": "c", "command": "x", "_key": "9" * 20,
                                 "input_files": [f["_id"]]})
    x = jobs.add_job(store, wf, {"name": "x", "command": "x", "blocked_by": [c["_id"]]})
    body = {"jobs": [{"name": "new", "command": "x", "blocked_by": [x["_id"]],
                      "output_files": [f["_id"]]}]}
    with pytest.raises(InvalidInput, match="cycle"):
        jobs.add_jobs(store, wf, body)
    assert sorted(j["name"] for j in store.find("jobs", wf)) == ["c", "x"]
