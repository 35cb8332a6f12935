"""engine/job_rows.build_jobs: the one-pass build gives exactly what validating each body and
then splitting it gives (documents, key order, relation ids), and the same error messages."""

from __future__ import annotations

import pytest

from torc_graph import validation
from torc_graph.engine import jobs, workflows
from torc_graph.engine.job_rows import build_jobs, split_job
from torc_graph.errors import InvalidInput
from torc_graph.store.sqlite import SQLiteStore

WF = "7"


def _reference(bodies, workflow=WF):
    """The exact path: the whole schema for every body, then the split of each."""
    valid = validation.validate_many("job", bodies, label="jobs")
    return [split_job(job, workflow, f"jobs[{i}]") for i, job in enumerate(valid)]


VALID = [
    {"name": "a", "command": "x"},
    {"command": "x", "name": "b", "blocked_by": ["jobs__7/12", "jobs__7/3"],
     "input_files": ["files__7/4"], "output_files": [], "output_user_data": ["user_data__7/9"]},
    {"command": "x", "resource_requirements": "resource_requirements__7/5",
     "scheduler": "slurm_schedulers__7/6", "status": "ready", "supports_termination": True},
    # unusual forms take the exact path: custom keys, and the server-managed/system fields
    {"command": "x", "blocked_by": ["jobs__7/custom-key"], "_key": "k1", "_rev": "r",
     "_id": "jobs__7/k1", "_oldRev": "o", "execution": {"attempt_id": 2}},
    {"command": "x", "internal": {"num_cpus": 4}, "invocation_script": None,
     "failure_handler": "h", "cancel_on_blocking_job_failure": False},
    {"command": "x", "internal": {}, "input_user_data": ["user_data__7/01"]},
]


def test_valid_bodies_build_like_the_exact_path():
    rows = build_jobs(VALID, WF)
    want = _reference(VALID)
    assert rows.docs == [doc for doc, _ in want]
    assert [list(doc) for doc in rows.docs] == [list(doc) for doc, _ in want]  # key order
    assert rows.links == [link for _, link in want]
    assert rows.wanted == {"jobs": {"12", "3", "custom-key"}, "files": {"4"},
                           "user_data": {"9", "01"}, "resource_requirements": {"5"},
                           "slurm_schedulers": {"6"}}
    # defaults are fresh containers, never shared between jobs
    assert rows.docs[0]["internal"] is not rows.docs[1]["internal"]


INVALID = [
    "not an object",
    {"name": "no command"},
    {"command": "x", "unknown": 1},
    {"command": 5},
    {"command": "x", "status": "bogus"},
    {"command": "x", "blocked_by": "jobs__7/1"},
    {"command": "x", "blocked_by": [5]},
    {"command": "x", "blocked_by": ["jobs__8/1"]},  # another workflow
    {"command": "x", "blocked_by": ["files__7/1"]},  # another collection
    {"command": "x", "blocked_by": ["not an id"]},
    {"command": "x", "input_files": ["jobs__7/1"]},
    {"command": "x", "scheduler": "files__7/1"},
    {"command": "x", "resource_requirements": None},
    {"command": "x", "internal": {"num_cpus": "4"}},
    {"command": "x", "execution": 3},
    {"command": "x", "blocked_by": ["jobs__7/"]},
    # a schema error after a bad id: the schema's message wins, as on the exact path
    {"blocked_by": ["bad"], "command": 1},
]


@pytest.mark.parametrize("bad", INVALID, ids=range(len(INVALID)))
def test_invalid_body_has_the_exact_paths_message(bad):
    bodies = [{"command": "ok"}, {"command": "ok", "blocked_by": ["jobs__7/1"]}, bad]
    with pytest.raises(InvalidInput) as exact:
        _reference(bodies)
    with pytest.raises(InvalidInput) as fast:
        build_jobs(bodies, WF)
    assert fast.value.message == exact.value.message
    assert fast.value.message.startswith("jobs[2]")


def test_not_a_list_has_the_schema_message():
    with pytest.raises(InvalidInput, match="jobs must be a JSON array"):
        build_jobs({"command": "x"}, WF)


def test_bad_job_in_a_bulk_request_stores_nothing(tmp_path):
    store = SQLiteStore(str(tmp_path / "s.db"))
    wf = workflows.create_workflow(store, {"name": "w", "user": "u"})["_key"]
    first = jobs.add_jobs(store, wf, {"jobs": [{"command": "a"}]})["items"][0]
    body = {"jobs": [{"command": "b", "blocked_by": [first["_id"]]},
                     {"command": "c", "blocked_by": [f"jobs__{wf}/999999"]}]}
    with pytest.raises(InvalidInput, match=r"jobs\[1\]\.blocked_by: no document"):
        jobs.add_jobs(store, wf, body)
    assert [d["_key"] for d in store.find("jobs", wf)] == [first["_key"]]
    assert store.count("blocks", wf) == 0
    store.close()
