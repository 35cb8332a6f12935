"""The streamed creation's rows (engine/staging._Writer) on a real SQLite file: each job is
encoded once, before its chunk's transaction, and written through ``store.insert_encoded``
(jobs and edges); the stored documents and edges are those of the in-memory path, for edges to
jobs of an earlier chunk, the same chunk and a later one, and for custom keys."""

from __future__ import annotations

import json
import sqlite3

import pytest

from torc_graph import json_codec, model
from torc_graph.engine import specifications, staging
from torc_graph.store.sqlite import SQLiteStore

SKELETON = {
    "name": "w", "user": "u",
    "files": [{"name": "f1", "path": "p1"}, {"name": "f2", "path": "p2"}],
    "user_data": [{"name": "u1", "data": {"a": 1}}],
    "resource_requirements": [{"name": "r1", "num_cpus": 2, "memory": "1g"}],
    "schedulers": {"slurm_schedulers": [{"name": "s1", "account": "a", "nodes": 1}]},
}
# With CHUNK = 2: chunks (a, b), (c, d), (e, f). Edges to a job of an earlier chunk (c -> a,
# f -> b), of the same chunk (b -> a, d -> c), of a later one (a -> e, c -> f).
JOBS = [
    {"name": "a", "command": "x é \"q\" \\", "blocked_by": ["e"], "input_files": ["f1"],
     "resource_requirements": "r1"},
    {"name": "b", "command": "x", "blocked_by": ["a"], "output_files": ["f2"],
     "scheduler": "slurm_schedulers/s1"},
    {"name": "c", "command": "x", "blocked_by": ["a", "f"], "output_user_data": ["u1"]},
    {"name": "d", "command": "x", "blocked_by": ["c"], "input_files": ["f2", "f1"],
     "input_user_data": ["u1"]},
    {"name": "e", "command": "x", "supports_termination": True},
    {"name": "f", "command": "x", "blocked_by": ["b"], "resource_requirements": "r1"},
]


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "CHUNK", 2)
    s = SQLiteStore(str(tmp_path / "t.db"))
    s.info()
    yield s
    s.close()


def spec(jobs):
    return {**SKELETON, "jobs": jobs}


def create_streamed(store, tmp_path, body):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(body))
    return staging.create(store, staging.SpooledSpec(str(path), None))["_key"]


def stored(store, wf):
    """Each job's stored document without ``_id``/``_rev`` (and a generated ``_key``), by name;
    each edge table's edges as sorted ("table:name", "table:name") pairs of their ends; and the
    raw stored texts of the workflow's jobs and edges."""
    conn = sqlite3.connect(store.path)
    try:
        names, jobs = {}, {}
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'doc_%'")]
        for table in tables:  # every vertex of the workflow by id: its name
            if table != "doc_workflows":
                for (text,) in conn.execute(f"SELECT doc FROM {table} WHERE wf = ?", (wf,)):
                    doc = json.loads(text)
                    names[doc["_id"]] = f"{table}:{doc.get('name')}"
        for (text,) in conn.execute("SELECT doc FROM doc_jobs WHERE wf = ?", (wf,)):
            doc = json.loads(text)
            jobs[doc["name"]] = {k: v for k, v in doc.items() if k not in ("_id", "_rev")}
            if doc["_key"].isdigit():  # generated keys differ between workflows
                del jobs[doc["name"]]["_key"]
        texts = [t for (t,) in conn.execute("SELECT doc FROM doc_jobs WHERE wf = ?", (wf,))]
        edges = {}
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'edge_%'")]
        for table in tables:
            rows = conn.execute(f"SELECT doc FROM {table} WHERE wf = ?", (wf,)).fetchall()
            for (text,) in rows:
                doc = json.loads(text)
                assert set(doc) == {"_key", "_id", "_rev", "_from", "_to"}
                texts.append(text)
                edges.setdefault(table, []).append((names[doc["_from"]], names[doc["_to"]]))
        return jobs, {t: sorted(v) for t, v in edges.items()}, texts
    finally:
        conn.close()


def test_jobs_encoded_once_before_each_chunks_transaction(store, tmp_path, monkeypatch):
    """Every job document is encoded by json_codec.dumps_each outside any transaction (once),
    and no job or edge goes through insert_many (which encodes inside the write lock); the
    stored jobs and edges equal the in-memory path's."""
    encoded, through_insert_many = [], []
    real_each, real_many = json_codec.dumps_each, store.insert_many

    def dumps_each(values):
        encoded.extend((v.get("name"), store._db.in_transaction) for v in values
                       if isinstance(v, dict) and "command" in v)
        return real_each(values)

    def insert_many(collection, wf, docs):
        through_insert_many.append(collection)
        return real_many(collection, wf, docs)

    monkeypatch.setattr(json_codec, "dumps_each", dumps_each)
    monkeypatch.setattr(store, "insert_many", insert_many)
    wf = create_streamed(store, tmp_path, spec(JOBS))
    assert sorted(encoded) == [(j["name"], False) for j in JOBS]
    assert not {"jobs", *(e.value for e in model.Edge)} & set(through_insert_many)
    assert through_insert_many  # the pools still are
    monkeypatch.undo()
    wf2 = specifications.create_from_specification(store, spec(JOBS))["_key"]
    got, got_edges, texts = stored(store, wf)
    want, want_edges, _ = stored(store, wf2)
    assert got == want and len(got) == len(JOBS)
    assert got_edges == want_edges and len(got_edges["edge_blocks"]) == 6
    # Each stored text is the canonical encoding of its document (what insert_many stores).
    assert all(t == json_codec.dumps(json.loads(t)) for t in texts)


def test_custom_keys_and_references_to_them(store, tmp_path):
    """Jobs with custom keys (taking the store's insert_many fallback) mixed with generated
    ones, referenced across chunks: the same jobs, keys and edges as the in-memory path."""
    jobs = [dict(j, key=f"k-{j['name']}") if j["name"] in "bcf" else j for j in JOBS]
    wf = create_streamed(store, tmp_path, spec(jobs))
    got, got_edges, _ = stored(store, wf)
    store2 = SQLiteStore(str(tmp_path / "t2.db"))
    try:
        wf2 = specifications.create_from_specification(store2, spec(jobs))["_key"]
        want, want_edges, _ = stored(store2, wf2)
    finally:
        store2.close()
    assert got == want and got["c"]["_key"] == "k-c" and "_key" not in got["a"]
    assert got_edges == want_edges and len(got_edges["edge_blocks"]) == 6
