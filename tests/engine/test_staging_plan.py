"""The streamed creation's cheap job validation (engine/staging._FastPlanner: the schema's
field checks without copies or defaults, then the planner on the job as it is): for every job
it takes, exactly the document and references of validating and planning the job
(specifications.JobPlanner); every other job goes to that exact path, whose message wins."""

from __future__ import annotations

import json
import sqlite3

import pytest

from torc_graph import validation
from torc_graph.api import media
from torc_graph.engine import specifications as specs, staging
from torc_graph.errors import InvalidInput
from torc_graph.store.sqlite import SQLiteStore

SKELETON = {
    "name": "w", "user": "u",
    "files": [{"name": "f1", "path": "p1"}, {"name": "f2", "path": "p2"}],
    "user_data": [{"name": "u1", "data": {"a": 1}}, {"name": "u2"}],
    "resource_requirements": [{"name": "r1", "num_cpus": 2, "memory": "1g"}],
    "schedulers": {"slurm_schedulers": [{"name": "s1", "account": "a", "nodes": 1}]},
    "config": {"failure_handlers": [{"name": "h", "rules": [{"exit_codes": [3],
                                                             "max_retries": 1}]}]},
}
NAMES = ["a", "b", "c"]

#: Jobs the one-pass planner must take (job index 1, named "b").
TAKEN = [
    {"name": "b", "command": "x"},
    {"command": "x"},
    {"name": "b", "command": "x", "blocked_by": ["a", "c", "a"], "input_files": ["f2", "f1"],
     "output_files": ["f1"], "input_user_data": ["u1"], "output_user_data": ["u2", "u2"],
     "resource_requirements": "r1", "invocation_script": "bash", "failure_handler": "h",
     "cancel_on_blocking_job_failure": False, "supports_termination": True},
    {"name": "b", "command": "x", "resource_requirements": "default", "scheduler": "",
     "invocation_script": None, "failure_handler": None, "blocked_by": [],
     "input_files": []},
    {"name": "b", "command": "x", "scheduler": "slurm_schedulers/s1"},
    {"supports_termination": False, "command": "y", "name": "b"},  # body order differs
    {"name": "b", "command": "x", "key": "k1"},
    {"name": "b", "command": "x", "_key": "k1", "_id": "jobs__1/k1", "_rev": "r"},
]
#: Jobs it must leave to the exact path (valid ones included: other forms).
LEFT = [
    {"name": "b", "command": "x",
     "schedule_compute_nodes": {"num_jobs": 1, "scheduler_id": "slurm_schedulers/s1"}},
    {"name": "b", "command": "x", "_oldRev": "r"},
    {"name": "b", "command": 1},
    {"name": "b"},
    {"name": "b", "command": "x", "colour": "red"},
    {"name": "b", "command": "x", "blocked_by": "a"},
    {"name": "b", "command": "x", "blocked_by": ["b"]},
    {"name": "b", "command": "x", "blocked_by": ["zz"]},
    {"name": "b", "command": "x", "input_files": ["nope"]},
    {"name": "b", "command": "x", "output_user_data": [1]},
    {"name": "b", "command": "x", "resource_requirements": "big"},
    {"name": "b", "command": "x", "resource_requirements": None},
    {"name": "b", "command": "x", "scheduler": "slurm/x"},
    {"name": "b", "command": "x", "scheduler": "slurm_schedulers/zz"},
    {"name": "b", "command": "x", "failure_handler": "nope"},
    {"name": "b", "command": "x", "supports_termination": 1},
    [1],
    "job",
]


@pytest.fixture(scope="module")
def planners():
    valid = validation.validate("workflow_specification", {**SKELETON, "jobs": []})
    pools = specs.plan_pools(valid)
    names = specs.JobNames()
    for i, name in enumerate(NAMES):
        names.add(i, {"name": name})
    planner = specs.JobPlanner(pools, names, specs.spec_config(valid))
    return staging._FastPlanner(planner), planner


def exact(planner, job):
    """The exact path's plan of job 1, or the InvalidInput it raises."""
    try:
        return planner.plan(1, validation.validate("job_specification", job))
    except InvalidInput as exc:
        return exc


@pytest.mark.parametrize("job", TAKEN)
def test_the_one_pass_plan_is_the_exact_plan(planners, job):
    fast, planner = planners
    got, want = fast.plan(1, job), exact(planner, job)
    assert got is not None and not isinstance(want, InvalidInput)
    assert list(got.doc.items()) == list(want.doc.items())  # same stored JSON text
    assert got.refs == want.refs


@pytest.mark.parametrize("job", LEFT)
def test_other_jobs_take_the_exact_path(planners, job):
    fast, _planner = planners
    assert fast.plan(1, job) is None


def test_a_chunk_keeps_the_in_memory_paths_first_message(tmp_path, monkeypatch):
    """A chunk whose first job names an unknown file and whose second is invalid: the one-pass
    planner is tried, and the message is the in-memory path's (all jobs validated first)."""
    monkeypatch.setattr(staging, "CHUNK", 4)
    calls = []
    real = staging._FastPlanner.plan
    monkeypatch.setattr(staging._FastPlanner, "plan",
                        lambda self, i, job: calls.append(i) or real(self, i, job))
    spec = {"jobs": [{"name": "a", "command": "x"}, {"name": "b", "command": "x"},
                     {"name": "c", "command": "x", "input_files": ["nope"]},
                     {"name": "d", "command": 5}]}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    store = SQLiteStore(str(tmp_path / "t.db"))
    try:
        with pytest.raises(InvalidInput) as expected:
            specs.create_from_specification(store, spec)
        with pytest.raises(InvalidInput) as streamed:
            staging.create(store, staging.SpooledSpec(
                str(path), lambda: media.parse_body(path.read_bytes())))
        assert "jobs[3]" in expected.value.message
        assert streamed.value.message == expected.value.message
        assert calls == [0, 1, 2]  # tried, left at the first job it cannot take
        conn = sqlite3.connect(store.path)
        assert conn.execute("SELECT count(*) FROM doc_jobs").fetchone() == (0,)
        conn.close()
    finally:
        store.close()


def test_gc_paused_and_sign_of_life_in_the_chunks_transaction(tmp_path, monkeypatch):
    """During the write pass Python's cyclic GC is off (back on afterwards), and each chunk's
    sign of life is written inside that chunk's transaction (no commit of its own)."""
    import gc

    monkeypatch.setattr(staging, "CHUNK", 2)
    seen = []
    store = SQLiteStore(str(tmp_path / "t.db"))
    real_touch = store.touch_staged
    monkeypatch.setattr(store, "touch_staged", lambda wf: seen.append(
        (gc.isenabled(), store._db.in_transaction)) or real_touch(wf))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"jobs": [{"name": f"j{i}", "command": "x"} for i in range(5)]}))
    assert gc.isenabled()
    try:
        staging.create(store, staging.SpooledSpec(str(path), None))
    finally:
        store.close()
    assert gc.isenabled()
    assert seen == [(False, True)] * 3
