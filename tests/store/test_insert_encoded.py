"""GraphStore.insert_encoded: documents the caller encoded are stored exactly as insert_many
would store them, and the returned texts are the stored documents' JSON."""

from __future__ import annotations

import sqlite3

import pytest

from torc_graph import json_codec
from torc_graph.errors import InvalidInput, NotFound, UniqueConstraintViolated
from torc_graph.store.sqlite import SQLiteStore


def _insert(store, collection, wf, docs):
    return store.insert_encoded(collection, wf, docs, json_codec.dumps_each(
        [{k: v for k, v in d.items() if k not in ("_from", "_to")} for d in docs]))


def _raw_docs(store, table, wf):
    """The ``doc`` column as stored (SQLite only), by key."""
    if not isinstance(store, SQLiteStore):
        return None
    with sqlite3.connect(store._db.path) as conn:
        return dict(conn.execute(f"SELECT key, doc FROM {table} WHERE wf = ?", (wf,)))


JOBS = [
    {"name": "a", "command": "true", "status": "uninitialized",
     "internal": {"num_cpus": 2, "memory_bytes": 10, "runtime_seconds": 1.5,
                  "scheduler_config_id": ""}},
    {"command": "x", "name": "é ü \u2603 \"quoted\" \\ back", "user_data": [None, 1e300, -0.0]},
    {},
    {"name": 7, "status": ["odd"], "internal": "not an object", "n": 2**70},
]


@pytest.mark.parametrize("collection", ["jobs", "files"])
def test_vertices_read_back_as_their_texts(store, wf, collection):
    ids, texts = _insert(store, collection, wf, JOBS)
    stored = store.find(collection, wf)
    assert ids == [d["_id"] for d in stored]
    assert [int(d["_key"]) for d in stored] == sorted(int(d["_key"]) for d in stored)
    for doc, given, text in zip(stored, JOBS, texts):
        assert json_codec.loads(text) == doc
        assert list(json_codec.loads(text)) == ["_key", "_id", "_rev", *given]
        assert {k: v for k, v in doc.items() if k[0] != "_"} == given
    raw = _raw_docs(store, f"doc_{collection}", wf)
    if raw is not None:  # the stored text is the returned one, byte for byte
        assert [raw[d["_key"]] for d in stored] == texts
    # filters on column fields see the values (jobs keep status/name in columns)
    assert [d["_id"] for d in store.find(collection, wf, {"name": "a"})] == ids[:1]


def test_edges_read_back_as_their_texts(store, wf):
    ids, _ = _insert(store, "jobs", wf, [{"name": "a"}, {"name": "b"}])
    edges = [{"_from": ids[0], "_to": ids[1]}, {"_from": ids[1], "_to": ids[0], "w": "x"}]
    edge_ids, texts = _insert(store, "blocks", wf, edges)
    stored = store.find("blocks", wf)
    assert edge_ids == [e["_id"] for e in stored]
    assert [json_codec.loads(t) for t in texts] == stored
    assert list(stored[0]) == ["_key", "_id", "_from", "_to", "_rev"]
    assert stored[1]["w"] == "x"
    raw = _raw_docs(store, "edge_blocks", wf)
    if raw is not None:
        assert [raw[e["_key"]] for e in stored] == texts


def test_a_custom_key_is_kept(store, wf):
    ids, texts = _insert(store, "jobs", wf, [{"_key": "first", "name": "a"}, {"name": "b"}])
    assert ids[0].endswith("/first")
    assert json_codec.loads(texts[0]) == store.get("jobs", wf, "first")
    assert json_codec.loads(texts[1])["name"] == "b"


def test_bad_input_stores_nothing(store, wf):
    ids, _ = _insert(store, "jobs", wf, [{"name": "a"}])
    with pytest.raises(InvalidInput, match="_to"):
        _insert(store, "blocks", wf, [{"_from": ids[0], "_to": ids[0]},
                                      {"_from": ids[0], "_to": "not an id"}])
    assert store.count("blocks", wf) == 0
    with pytest.raises(InvalidInput, match="one text per document"):
        store.insert_encoded("jobs", wf, [{"name": "b"}], [])
    with pytest.raises(NotFound):
        _insert(store, "jobs", "999999", [{"name": "a"}])
    assert store.count("jobs", wf) == 1


def test_a_taken_key_is_named_alone_and_nothing_is_stored(store, wf):
    """Only the taken key is named, not the batch's rows inserted before the conflict (the
    SQLite store inserts 100 rows per statement and used to name them all)."""
    store.insert("files", wf, {"_key": "taken", "path": "/a"})
    docs = [{"path": f"/{i}"} for i in range(250)]
    docs[150]["_key"] = "taken"
    with pytest.raises(UniqueConstraintViolated, match=r"conflicting key: taken$"):
        store.insert_many("files", wf, docs)
    docs[150]["_key"] = docs[249]["_key"] = "twice"
    with pytest.raises(UniqueConstraintViolated, match=r"conflicting key: twice$"):
        store.insert_many("files", wf, docs)
    assert store.count("files", wf) == 1
    stored = store.insert_many("files", wf, [{"path": f"/{i}"} for i in range(250)])
    assert [d["_key"] for d in store.find("files", wf)] == ["taken"] + [d["_key"] for d in stored]


def test_an_id_or_key_with_a_trailing_newline_is_refused(store, wf):
    """The id and key patterns end at ``\\Z``, not ``$`` (which accepts one trailing newline):
    such an id would be spliced into the stored JSON unescaped."""
    ids, _ = _insert(store, "jobs", wf, [{"name": "a"}])
    for doc in ({"_from": ids[0] + "\n", "_to": ids[0]}, {"_from": ids[0], "_to": ids[0] + "\n"}):
        with pytest.raises(InvalidInput, match="_from|_to"):
            _insert(store, "blocks", wf, [doc])
    with pytest.raises(InvalidInput):
        store.insert("jobs", wf, {"_key": "k\n"})
    assert store.count("blocks", wf) == 0 and store.count("jobs", wf) == 1


def test_the_generic_default_encodes_only_when_the_texts_are_read(tmp_path, monkeypatch):
    """A backend without its own insert_encoded (ArangoDB) stores through insert_many; the
    texts are the stored documents' JSON, encoded only if read (edges of a creation need only
    the ids)."""
    from torc_graph.store.base import GraphStore

    class Generic(SQLiteStore):
        insert_encoded = GraphStore.insert_encoded

    store = Generic(str(tmp_path / "g.db"))
    wf = store.create_workflow({"name": "g"}, {}, {"run_id": 0}).workflow["_key"]
    encoded = []
    real = json_codec.dumps_each
    monkeypatch.setattr(json_codec, "dumps_each", lambda v: encoded.append(len(v)) or real(v))
    ids, texts = store.insert_encoded("jobs", wf, JOBS, ["{}"] * len(JOBS))
    assert encoded == [] and len(texts) == len(JOBS)
    assert [json_codec.loads(t) for t in texts] == store.find("jobs", wf)
    key = ids[0].rsplit("/", 1)[1]
    assert texts[0] == json_codec.dumps(store.get("jobs", wf, key)) and encoded == [len(JOBS)]
