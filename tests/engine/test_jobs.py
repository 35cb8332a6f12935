"""Job insertion: relation fields become edges, bulk insert is atomic and set-based."""

from __future__ import annotations

import time

import pytest

from torc_graph import json_codec
from torc_graph.engine import integrity, jobs
from torc_graph.errors import InvalidInput
from torc_graph.testing import CountingStore


def test_relations_table_matches_the_unstored_job_fields():
    from torc_graph.engine.documents import JOB_RELATION_FIELDS

    assert tuple(r.field for r in jobs.RELATIONS) == JOB_RELATION_FIELDS


def edges(store, wf, name):
    return [(e["_from"], e["_to"]) for e in store.find(name, wf)]


def test_add_job_relations(store, wf):
    f = store.insert("files", wf, {"path": "/f"})
    sch = store.insert("local_schedulers", wf, {"name": "l"})
    job = jobs.add_job(store, wf, {"command": "c", "input_files": [f["_id"]],
                                   "scheduler": sch["_id"]})
    assert job["status"] == "uninitialized" and "input_files" not in job
    assert edges(store, wf, "needs") == [(job["_id"], f["_id"])]
    assert edges(store, wf, "scheduled_bys") == [(job["_id"], sch["_id"])]


@pytest.mark.parametrize("field, value, message", [
    ("input_files", ["junk"], "not a document id"),
    ("scheduler", "files__{wf}/1", "is not an id in"),
    ("blocked_by", ["jobs__other/1"], "is not an id in"),
    ("output_user_data", ["user_data__{wf}/999"], "no document"),
])
def test_bad_relations_change_nothing(store, wf, field, value, message):
    value = value.replace("{wf}", wf) if isinstance(value, str) else [
        v.replace("{wf}", wf) for v in value]
    with pytest.raises(InvalidInput, match=message):
        jobs.add_job(store, wf, {"command": "c", field: value})
    assert store.count("jobs", wf) == 0


def test_bulk_is_set_based(store, wf):
    files = store.insert_many("files", wf, [{"path": f"/{i}"} for i in range(20)])
    rr = store.insert("resource_requirements", wf, {"name": "r"})
    body = {"jobs": [{"command": f"c{i}", "input_files": [files[i % 10]["_id"]],
                      "output_files": [files[10 + i % 10]["_id"]],  # no dependency cycle
                      "resource_requirements": rr["_id"]} for i in range(2000)]}
    counting = CountingStore(store)
    items = jobs.add_jobs(counting, wf, body)["items"]
    assert len(items) == 2000
    assert counting.calls.get("insert", 0) == 0
    assert counting.calls.get("insert_many", 0) == 0
    assert counting.calls["insert_encoded"] == 4  # jobs, needs, produces, requires
    # one existence check per referenced collection, and the cycle check's one read per
    # dependency edge collection (engine/integrity.py): a fixed number, whatever the batch size
    assert counting.calls.get("find", 0) <= 2 + len(integrity.DEPENDENCY_EDGES)
    assert store.count("needs", wf) == 2000 and store.count("requires", wf) == 2000
    assert [int(j["_key"]) for j in items] == sorted(int(j["_key"]) for j in items)


def test_bulk_rejects_whole_batch_naming_the_index(store, wf):
    body = {"jobs": [{"command": "a"}, {"command": "b", "input_files": ["files__x/1"]}]}
    with pytest.raises(InvalidInput, match=r"jobs\[1\]"):
        jobs.add_jobs(store, wf, body)
    body = {"jobs": [{"command": "a"}, {"command": "b"}, {"name": "no command"}]}
    with pytest.raises(InvalidInput, match=r"jobs\[2\]"):
        jobs.add_jobs(store, wf, body)
    assert store.count("jobs", wf) == 0


def test_bulk_blocked_by_a_custom_key_in_the_batch(store, wf):
    body = {"jobs": [{"command": "a", "_key": "first"},
                     {"command": "b", "blocked_by": [f"jobs__{wf}/first"]}]}
    items = jobs.add_jobs(store, wf, body)["items"]
    assert edges(store, wf, "blocks") == [(f"jobs__{wf}/first", items[1]["_id"])]
    assert jobs.job_keys(store, wf) == {"items": ["first", items[1]["_key"]]}


@pytest.mark.slow
def test_bulk_10000_jobs_timing(store, wf):
    f = store.insert("files", wf, {"path": "/f"})
    body = {"jobs": [{"command": f"c{i}", "input_files": [f["_id"]]} for i in range(10_000)]}
    start = time.perf_counter()
    jobs.add_jobs(store, wf, body)
    elapsed = time.perf_counter() - start
    print(f"bulk insert of 10,000 jobs with 10,000 edges: {elapsed:.2f} s")
    assert elapsed < 20


def test_bulk_response_bytes_are_the_stored_jobs(store, wf):
    """add_jobs_json splices the response from the stored texts: it decodes to exactly the
    stored jobs (same fields, same order of keys), edges included, for both backends."""
    rr = store.insert("resource_requirements", wf, {"name": "r"})
    first = jobs.add_jobs(store, wf, {"jobs": [{"command": "a"}]})["items"][0]
    body = {"jobs": [{"command": "b", "name": "\u00e9\"\\", "blocked_by": [first["_id"]],
                      "resource_requirements": rr["_id"], "invocation_script": "x \u2603"},
                     {"command": "c", "internal": {"num_cpus": 3}, "_key": "custom"}]}
    raw = jobs.add_jobs_json(store, wf, body)
    items = json_codec.loads(raw)["items"]
    stored = [store.get("jobs", wf, d["_key"]) for d in items]
    assert items == stored and [list(d) for d in items] == [list(d) for d in stored]
    assert items[1]["_key"] == "custom" and items[1]["internal"]["num_cpus"] == 3
    assert edges(store, wf, "blocks") == [(first["_id"], items[0]["_id"])]
    assert edges(store, wf, "requires") == [(items[0]["_id"], rr["_id"])]
    assert jobs.add_jobs(store, wf, {"jobs": [{"command": "d"}]})["items"][0]["command"] == "d"
