"""Streamed creation of specifications (engine/staging.py) on a real SQLite file: chunks of
jobs in short transactions, invisible until published, forward references, the in-memory
path's exact messages, nothing left after a failure or a kill -9 of the creating process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest

from torc_graph.api import media
from torc_graph.engine import dashboard, specifications, staging, tasks, workflows
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store.sqlite import SQLiteStore
from torc_graph.testing import wait_for


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(str(tmp_path / "t.db"))
    s.info()  # the schema exists
    yield s
    s.close()


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(staging, "CHUNK", 2)


def spooled(tmp_path, spec, name="spec.json"):
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))

    def load():  # the API's parser, as api/specifications.py passes it
        return media.parse_body(path.read_bytes())
    return staging.SpooledSpec(str(path), load)


def rows(store, wf):
    """Rows of every table that belong to workflow ``wf`` (staged or not)."""
    conn = sqlite3.connect(store.path)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND "
            "(name LIKE 'doc_%' OR name LIKE 'edge_%')")]
        n = sum(conn.execute(f"SELECT count(*) FROM {t} WHERE wf = ?", (wf,)).fetchone()[0]
                for t in names)
        n += conn.execute("SELECT count(*) FROM doc_workflows WHERE key = ?", (wf,)).fetchone()[0]
        n += conn.execute("SELECT count(*) FROM doc_workflow_owners WHERE key = ?",
                          (wf,)).fetchone()[0]
        return n
    finally:
        conn.close()


def all_workflow_rows(store):
    conn = sqlite3.connect(store.path)
    try:
        return conn.execute("SELECT count(*) FROM doc_workflows").fetchone()[0], \
            conn.execute("SELECT count(*) FROM doc_jobs").fetchone()[0]
    finally:
        conn.close()


# Jobs name later jobs and files defined after the jobs (JSON key order is kept).
FORWARD = ('{"name": "fwd", "user": "u", "jobs": ['
           '{"name": "a", "command": "x", "blocked_by": ["d"], "input_files": ["f2"]},'
           '{"name": "b", "command": "x", "blocked_by": ["a", "e"]},'
           '{"name": "c", "command": "x", "output_files": ["f2"], "resource_requirements": "r"},'
           '{"name": "d", "command": "x", "blocked_by": ["c"]},'
           '{"name": "e", "command": "x"}],'
           '"files": [{"name": "f1", "path": "p1"}, {"name": "f2", "path": "p2"}],'
           '"resource_requirements": [{"name": "r", "num_cpus": 2, "memory": "1g"}],'
           '"config": {"compute_node_wait_for_new_jobs_seconds": 7}}')


def by_name(spec):
    return {j["name"]: j for j in spec["jobs"]}


def test_forward_references_across_chunks(store, tmp_path, small_chunks):
    wf = staging.create(store, spooled(tmp_path, FORWARD))["_key"]
    got = by_name(specifications.get_workflow_specification(store, wf))
    assert sorted(got["b"]["blocked_by"]) == ["a", "e"] and got["a"]["blocked_by"] == ["d"]
    assert got["a"]["input_files"] == ["f2"] and got["c"]["output_files"] == ["f2"]
    assert got["c"]["resource_requirements"] == "r" and got["d"]["blocked_by"] == ["c"]
    assert store.workflow_space(wf).config["compute_node_wait_for_new_jobs_seconds"] == 7
    # The same specification through the in-memory path: the same jobs and relations.
    wf2 = specifications.create_from_specification(store, json.loads(FORWARD))["_key"]
    want = by_name(specifications.get_workflow_specification(store, wf2))
    for name, job in want.items():
        assert {k: sorted(v) if isinstance(v, list) else v for k, v in got[name].items()} == \
            {k: sorted(v) if isinstance(v, list) else v for k, v in job.items()}


BAD = [
    {"jobs": [{"name": "a", "command": "x", "input_files": ["nope"]}]},
    {"jobs": [{"name": "a", "command": "x"}, {"name": "a", "command": "y"}]},
    {"jobs": [{"name": "a", "command": "x", "key": "k"}, {"name": "b", "command": "y", "key": "k"}]},
    {"jobs": [{"name": "a", "command": "x", "key": "no/slash"}]},
    {"jobs": [{"name": "a", "command": 1}]},
    {"jobs": [{"name": "a"}]},
    {"jobs": [{"name": "a", "command": "x", "colour": "red"}]},
    {"jobs": [{"name": "a", "command": "x"}, {"name": "b", "command": "x", "blocked_by": ["zz"]}]},
    {"jobs": [{"name": "a", "command": "x", "blocked_by": ["a"]}]},
    {"jobs": [{"name": "a", "command": "x", "blocked_by": ["c"]},
              {"name": "b", "command": "x", "blocked_by": ["a"]},
              {"name": "c", "command": "x", "blocked_by": ["b"]}]},
    {"jobs": [{"name": "a", "command": "x", "resource_requirements": "big"}]},
    {"resource_requirements": [{"name": "r", "memory": "lots"}], "jobs": []},
    {"jobs": [{"name": "a", "command": "x", "scheduler": "slurm/x"}]},
    {"jobs": [{"name": "a", "command": "x", "scheduler": "slurm_schedulers/x"}]},
    {"jobs": [{"name": "a", "command": "x", "failure_handler": "h"}]},
    {"files": [{"name": "f", "path": "a"}, {"name": "f", "path": "b"}], "jobs": []},
    {"jobs": [{"name": "w", "command": "x", "output_files": ["f"]},
              {"name": "r", "command": "x", "input_files": ["f"], "output_files": ["g"]},
              {"name": "s", "command": "x", "input_files": ["g"], "blocked_by": []}],
     "files": [{"name": "f", "path": "f"}, {"name": "g", "path": "g"}], "key": "bad key"},
    {"jobs": [{"name": "a", "command": "x", "depends_on": ["b"]}, {"name": "b", "command": "x",
                                                                   "blocked_by": ["a"]}]},
    {"jobs": 5},
    {"jobs": [3]},
    {"name": 5, "jobs": []},
    {"bogus": 1, "jobs": [{"name": "a", "command": "x"}]},
]


@pytest.mark.parametrize("spec", BAD + ["{not json", "", "[1, 2]", '{"jobs": [1e400]}',
                                        '{"jobs": [{"name": "a", "command": "x", "schedule_'
                                        'compute_nodes": ' + "[" * 120 + "]" * 120 + '}]}',
                                        '{"jobs": [{"name": "a", "command": "x"}], "jobs": '
                                        '[{"name": "b", "command": 2}]}',
                                        '{"jobs": [{"name": "\\ud800", "command": "x"}]}'])
def test_errors_keep_the_in_memory_paths_messages(store, tmp_path, small_chunks, spec):
    """Each bad specification fails with exactly the message of the in-memory path (which
    the API used before), and leaves no workflow and no job behind."""
    body = spooled(tmp_path, spec)
    with pytest.raises(InvalidInput) as expected:  # what the API did before
        specifications.create_from_specification(store, body.load())
    before = all_workflow_rows(store)
    with pytest.raises(InvalidInput) as streamed:
        staging.create(store, body)
    assert streamed.value.message == expected.value.message
    assert all_workflow_rows(store) == before


def test_a_failing_late_chunk_removes_what_was_written(store, tmp_path, small_chunks,
                                                       monkeypatch):
    """Job 7 names an unknown file: found after three chunks were committed; the staged
    workflow and everything written to it are deleted."""
    seen = {}
    real = staging._Writer._write_chunk

    def spy(self, chunk):
        real(self, chunk)
        seen["wf"] = self.wf
        seen["rows"] = rows(store, self.wf)
    monkeypatch.setattr(staging._Writer, "_write_chunk", spy)
    jobs = [{"name": f"j{i}", "command": "x", **({"blocked_by": [f"j{i - 1}"]} if i else {})}
            for i in range(7)] + [{"name": "bad", "command": "x", "input_files": ["missing"]}]
    with pytest.raises(InvalidInput, match='jobs\\[7\\] \\("bad"\\): input_files references '
                                           'unknown file "missing"'):
        staging.create(store, spooled(tmp_path, {"name": "late", "jobs": jobs}))
    assert seen["rows"] > 7  # chunks were committed before the failure
    assert rows(store, seen["wf"]) == 0
    assert not store.is_staged(seen["wf"])


def test_invisible_until_published(store, tmp_path, small_chunks, monkeypatch):
    """While the chunks are written, another thread finds no workflow: not by key, not in
    the listing, 404 on its endpoints; the creating thread writes to it."""
    seen = []
    real = staging._Writer._write_chunk

    def look(self, chunk):
        real(self, chunk)

        def other():
            listed = [w["_key"] for w in store.find("workflows", None)] + [
                w["_key"] for w in dashboard.workflows(store)["items"]]
            try:
                workflows.get_workflow(store, self.wf)
                found = True
            except NotFound:
                found = False
            seen.append((store.workflow_exists(self.wf), self.wf in listed, found))
        t = threading.Thread(target=other)
        t.start()
        t.join()
    monkeypatch.setattr(staging._Writer, "_write_chunk", look)
    wf = staging.create(store, spooled(tmp_path, FORWARD))["_key"]
    assert seen and all(s == (False, False, False) for s in seen)
    assert store.workflow_exists(wf)
    assert wf in [w["_key"] for w in store.find("workflows", None)]


def test_other_writers_get_the_lock_between_chunks(store, tmp_path, small_chunks, monkeypatch):
    """Between two chunks no transaction is open: another workflow's write goes through at
    once (a creation in one transaction would make it wait for the whole creation)."""
    other = workflows.create_workflow(store, {"name": "other", "user": "u"})["_key"]
    writes = []
    real = staging._Writer._write_chunk

    def interleave(self, chunk):
        real(self, chunk)
        fast = SQLiteStore(store.path, busy_timeout=0.5)
        t = threading.Thread(target=lambda: writes.append(
            fast.insert("jobs", other, {"name": f"o{len(writes)}", "command": "x"})))
        t.start()
        t.join()
        fast.close()
    monkeypatch.setattr(staging._Writer, "_write_chunk", interleave)
    staging.create(store, spooled(tmp_path, FORWARD))
    assert len(writes) == 3


def test_tasks_are_deleted_with_their_workflow(store, tmp_path):
    accepted = specifications.create_action(store, spooled(tmp_path, FORWARD), **{"async": True})
    assert wait_for(lambda: tasks.get_any_task(store, accepted.body["_key"])["state"]
                    != "running", 30)
    task = tasks.get_any_task(store, accepted.body["_key"])
    assert task["state"] == "succeeded"
    wf = task["result"]["_key"]
    workflows.delete_workflow(store, wf)
    with pytest.raises(NotFound):
        tasks.get_any_task(store, accepted.body["_key"])
    assert not os.path.exists(tmp_path / "spec.json")  # the spooled body is deleted


def test_dead_creation_after_publishing_succeeded(store):
    """A creation whose process died after publishing: its task reads as succeeded."""
    wf = workflows.create_workflow(store, {"name": "done", "user": "u"})
    doc = store.insert("tasks", None, {
        "workflow": wf["_key"], "operation": "create_workflow_from_specification",
        "state": "running", "heartbeat": 0,
        "process": {"host": "h", "pid": 1, "started": 1.0}})
    task = tasks.get_any_task(store, doc["_key"])
    assert task["state"] == "succeeded" and task["result"]["_key"] == wf["_key"]


CREATOR = r"""
import sys, time
from torc_graph.engine import staging
from torc_graph.store.sqlite import SQLiteStore
staging.CHUNK = 2
real = staging._Writer._write_chunk
def slow(self, chunk):
    real(self, chunk)
    print(self.wf, flush=True)
    time.sleep(60)
staging._Writer._write_chunk = slow
staging.create(SQLiteStore(sys.argv[1]), staging.SpooledSpec(sys.argv[2], None))
"""


def test_kill_9_of_the_creating_process_is_swept(store, tmp_path):
    """A process killed with SIGKILL after writing a chunk leaves a staged workflow nobody
    sees; the sweep (server start, the next creation) removes all of it."""
    path = spooled(tmp_path, FORWARD).path
    proc = subprocess.Popen([sys.executable, "-c", CREATOR, store.path, path],
                            stdout=subprocess.PIPE, text=True)
    try:
        wf = proc.stdout.readline().strip()
        assert wf and store.is_staged(wf) and rows(store, wf) > 2
        assert store.sweep_staged() == []  # alive: left alone
        assert not store.workflow_exists(wf)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert store.sweep_staged() == [wf]
    assert rows(store, wf) == 0
    # The next creation of a fresh process sweeps too (first creation of a process).
    assert staging.create(store, spooled(tmp_path, FORWARD, "again.json"))["name"] == "fwd"
