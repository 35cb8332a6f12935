"""SQLite-specific behavior: URLs, pragmas, migrations, query plans, fork safety and real
multi-process concurrency (no "database is locked", no lost update, bounded WAL)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import threading
import time

import pytest

from torc_graph.errors import InvalidInput, StoreUnavailable
from torc_graph.store import open_store
from torc_graph.store import sql as q
from torc_graph.store import sqlite_connection
from torc_graph.store.base import Gt, HasEdge, In, Lt, NotIn
from torc_graph.store.sqlite import SQLiteStore
from torc_graph.store.sqlite_schema import MIGRATIONS

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "t.db")


@pytest.fixture
def store(db):
    s = SQLiteStore.from_url(f"sqlite:///{db}")
    yield s
    s.close()


def new_workflow(store):
    return store.create_workflow({"name": "w"}, {}, {"run_id": 0}).workflow["_key"]


# -- URLs and pragmas --------------------------------------------------------------------------


def test_from_url_relative_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite:///rel.db")
    assert isinstance(rel, SQLiteStore) and rel.path == str(tmp_path / "rel.db")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")
    assert absolute.path == str(tmp_path / "abs.db")
    new_workflow(rel)
    assert (tmp_path / "rel.db").exists()
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "postgres:///x"):
        with pytest.raises(InvalidInput):
            open_store(bad)
    with pytest.raises(InvalidInput):
        open_store("sqlite:///x.db", synchronous="OFF")


def test_pragmas_default(store):
    info = store.info()
    assert info["backend"] == "sqlite"
    assert info["journal_mode"] == "wal"
    assert info["synchronous"] == "FULL"
    assert info["busy_timeout"] == 120.0
    assert info["path"] == store.path
    assert info["sqlite_version"] == sqlite3.sqlite_version
    conn = store._db.conn()
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 120_000
    assert conn.execute("PRAGMA journal_size_limit").fetchone()[0] == sqlite_connection.WAL_LIMIT_BYTES


def test_pragmas_normal(db):
    s = SQLiteStore.from_url(f"sqlite:///{db}", synchronous="normal", busy_timeout=5)
    info = s.info()
    assert (info["synchronous"], info["busy_timeout"]) == ("NORMAL", 5.0)


def test_unopenable_path_is_store_unavailable(tmp_path):
    s = SQLiteStore.from_url(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(StoreUnavailable):
        s.workflow_exists("1")


# -- migrations --------------------------------------------------------------------------------


def _migrations(db):
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT name, applied_at FROM schema_migrations").fetchall()


def test_migrations_recorded_once(db, store):
    new_workflow(store)
    store.close()
    again = SQLiteStore.from_url(f"sqlite:///{db}")
    new_workflow(again)
    rows = _migrations(db)
    assert [r[0] for r in rows] == [m.name for m in MIGRATIONS]
    assert all(r[1] for r in rows)
    assert again.info()["migrations"] == [m.name for m in MIGRATIONS]


def _start_and_insert(db, barrier, errors):
    try:
        barrier.wait(10)
        s = SQLiteStore.from_url(f"sqlite:///{db}")
        new_workflow(s)
    except BaseException as exc:  # reported to the parent
        errors.put(repr(exc))
        raise


def test_concurrent_first_start_migrates_once(db):
    barrier, errors = FORK.Barrier(6), FORK.Queue()
    procs = [FORK.Process(target=_start_and_insert, args=(db, barrier, errors)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert errors.empty(), errors.get()
    assert [p.exitcode for p in procs] == [0] * 6
    assert [r[0] for r in _migrations(db)] == [m.name for m in MIGRATIONS]
    assert SQLiteStore.from_url(f"sqlite:///{db}").count("workflows", None) == 6


# -- query plans -------------------------------------------------------------------------------


def _plan(store, collection, wf, where=None, edges=()):
    c, w = store._coll(collection, wf)
    b = q.Binder()
    text = store._find_sql(c, w, where, edges, None, b)
    return " | ".join(r[3] for r in store._db.conn().execute("EXPLAIN QUERY PLAN " + text, b.params))


def test_query_plans_use_indexes(store):
    wf = new_workflow(store)
    # One index on (wf, status, claim order) serves status lookups and claims.
    plan = _plan(store, "jobs", wf, {"status": "ready"})
    assert "USING INDEX ix_doc_jobs_status_claim (wf=? AND <expr>=?)" in plan
    plan = _plan(store, "jobs", wf, {"status": In(["ready", "scheduled"])})
    assert "USING INDEX ix_doc_jobs_status_claim" in plan
    plan = _plan(store, "jobs", wf, {"status": "blocked"},
                 [HasEdge("blocks", "in", {"status": NotIn(["done"])}, exists=False)])
    assert "ix_edge_blocks_to" in plan and "SCAN" not in plan.replace("SCAN json_each", "")
    plan = _plan(store, "blocks", wf, {"_from": "jobs__1/2"})
    assert "ix_edge_blocks_from" in plan
    # Unfiltered pages walk the (wf) partial index in seq order: no sort of the workflow.
    plan = _plan(store, "jobs", wf)
    assert "USING INDEX ix_doc_jobs_seq" in plan and "TEMP B-TREE" not in plan
    c, w = store._coll("jobs", wf)
    b = q.Binder()
    text = store._find_sql(c, w, {"status": "ready"}, (), [
        ("internal.num_gpus", True), ("internal.runtime_seconds", True),
        ("internal.memory_bytes", True)], b)
    plan = " | ".join(r[3] for r in store._db.conn().execute("EXPLAIN QUERY PLAN " + text,
                                                              b.params))
    assert "USING INDEX ix_doc_jobs_status_claim" in plan


# -- SQLite-specific filter semantics ------------------------------------------------------------


def test_ordering_is_type_strict(store):
    wf = new_workflow(store)
    store.insert_many("files", wf, [{"v": v} for v in (1, "1", True, None, 5, "x", [9], {"a": 9})])
    assert [d["v"] for d in store.find("files", wf, {"v": Gt(0)})] == [1, 5]
    assert [d["v"] for d in store.find("files", wf, {"v": Lt("z")})] == ["1", "x"]
    with pytest.raises(InvalidInput):
        store.find("files", wf, {"v": Gt([1])})


def test_big_integers_and_unicode(store):
    wf = new_workflow(store)
    store.insert("files", wf, {"v": 2**70, "s": "żółw ✓"})
    assert store.find("files", wf, {"s": "żółw ✓"})[0]["v"] == 2**70
    assert store.count("files", wf, {"v": Gt(2**64)}) == 1


# -- fork safety and threads ---------------------------------------------------------------------


def _child_uses_store(store, wf, parent_conn_id, out):
    conn = store._db.conn()
    out.put((id(conn) != parent_conn_id, store.insert("jobs", wf, {"name": "child"})["_key"]))


def test_fork_safety(store):
    wf = new_workflow(store)
    store.insert("jobs", wf, {"name": "parent"})
    parent_conn = store._db.conn()
    out = FORK.Queue()
    p = FORK.Process(target=_child_uses_store, args=(store, wf, id(parent_conn), out))
    p.start()
    new_conn, key = out.get(timeout=30)
    p.join(30)
    assert p.exitcode == 0 and new_conn
    assert store._db.conn() is parent_conn
    assert [d["name"] for d in store.find("jobs", wf)] == ["parent", "child"]
    assert store.get("jobs", wf, key)["name"] == "child"


def test_threads_serialize_writers(store):
    wf = new_workflow(store)
    counter = store.insert("events", wf, {"n": 0})
    errors = []

    def work():
        try:
            for _ in range(20):
                with store.transaction(wf):
                    n = store.get("events", wf, counter["_key"])["n"]
                    store.update("events", wf, counter["_key"], {"n": n + 1})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.get("events", wf, counter["_key"])["n"] == 80


# -- multi-process concurrency -------------------------------------------------------------------


def _claimer(store, wf, counter_key, rounds, out):
    claimed, err = [], None
    try:
        for _ in range(rounds):
            with store.transaction(wf):
                job = store.find("jobs", wf, {"status": "ready"}, limit=1)[0]
                store.update("jobs", wf, job["_key"], {"status": "submitted", "by": os.getpid()},
                             rev=job["_rev"])
                n = store.get("events", wf, counter_key)["n"]
                store.update("events", wf, counter_key, {"n": n + 1})
                store.insert("events", wf, {"pad": "x" * 6000})
            claimed.append(job["_key"])
            # a reader between writes, outside any transaction
            store.count("jobs", wf, {"status": "submitted"})
    except BaseException as exc:
        err = repr(exc)
    out.put((claimed, err))


def test_multiprocess_claims(store, monkeypatch):
    # A small WAL limit (inherited by the forked workers) makes the checkpoint path run.
    monkeypatch.setattr(sqlite_connection, "WAL_LIMIT_BYTES", 256 * 1024)
    store.close()
    procs_n, rounds = 8, 25
    wf = new_workflow(store)
    store.insert_many("jobs", wf, [{"status": "ready"} for _ in range(procs_n * rounds)])
    counter = store.insert("events", wf, {"n": 0})
    out = FORK.Queue()
    procs = [FORK.Process(target=_claimer, args=(store, wf, counter["_key"], rounds, out))
             for _ in range(procs_n)]
    for p in procs:
        p.start()
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    assert [err for _, err in results] == [None] * procs_n
    claimed = [k for keys, _ in results for k in keys]
    assert len(claimed) == len(set(claimed)) == procs_n * rounds
    assert store.count("jobs", wf, {"status": "ready"}) == 0
    assert store.get("events", wf, counter["_key"])["n"] == procs_n * rounds
    # Unchecked, these writes leave a WAL of about 5 MB; the checkpoints keep it under the hard
    # cap of 4 x 256 KB plus what was written since the last one.
    wal_size = os.path.getsize(store.path + "-wal")
    assert wal_size < 2 * 1024 * 1024, wal_size


def _hold_lock(db, seconds, ready):
    s = SQLiteStore.from_url(f"sqlite:///{db}")
    wf = s.find("workflows", None)[0]["_key"]
    with s.transaction(wf):
        s.insert("jobs", wf, {"name": "holder"})
        ready.set()
        time.sleep(seconds)


def test_writer_waits_for_other_process(db, store):
    wf = new_workflow(store)
    ready = FORK.Event()
    p = FORK.Process(target=_hold_lock, args=(db, 1.5, ready))
    p.start()
    assert ready.wait(30)
    t0 = time.monotonic()
    store.insert("jobs", wf, {"name": "waiter"})
    waited = time.monotonic() - t0
    p.join(30)
    assert waited > 0.5
    assert [d["name"] for d in store.find("jobs", wf)] == ["holder", "waiter"]
    # reads never wait for the writer
    ready = FORK.Event()
    p = FORK.Process(target=_hold_lock, args=(db, 1.5, ready))
    p.start()
    assert ready.wait(30)
    t0 = time.monotonic()
    assert store.count("jobs", wf) == 2
    assert time.monotonic() - t0 < 0.5
    p.join(30)


def test_busy_past_timeout_is_store_unavailable(db, store):
    wf = new_workflow(store)
    impatient = SQLiteStore.from_url(f"sqlite:///{db}", busy_timeout=0.3)
    ready = FORK.Event()
    p = FORK.Process(target=_hold_lock, args=(db, 2.0, ready))
    p.start()
    assert ready.wait(30)
    with pytest.raises(StoreUnavailable):
        impatient.insert("jobs", wf, {"name": "x"})
    p.join(30)
    impatient.insert("jobs", wf, {"name": "after"})


def test_close_reconnects_every_thread(store):
    wf = new_workflow(store)
    seen, closed = [], threading.Event()

    def worker():
        seen.append(store.count("workflows", None))
        closed.wait(10)
        seen.append(store.insert("jobs", wf, {})["_key"])

    t = threading.Thread(target=worker)
    t.start()
    while not seen:
        time.sleep(0.01)
    store.close()
    closed.set()
    t.join()
    assert seen[0] == 1 and len(seen) == 2
    assert store.count("jobs", wf) == 1


def test_patch_paths_under_paths_set_in_the_same_patch(store):
    wf = new_workflow(store)
    store.insert_many("jobs", wf, [{"a": 5}, {"a": {"q": 1}}, {}])
    store.update_many("jobs", wf, None, {"a": {"x": 1}, "a.b": 2, "a.c.d": 3})
    assert [d["a"] for d in store.find("jobs", wf)] == [{"x": 1, "b": 2, "c": {"d": 3}}] * 3


def test_update_descendants_walks_instead_of_scanning(store):
    wf = new_workflow(store)
    docs = store.insert_many("jobs", wf, [{"status": "blocked"} for _ in range(4)])
    store.insert_many("blocks", wf, [{"_from": a["_id"], "_to": b["_id"]}
                                     for a, b in zip(docs, docs[1:])])
    conn = store._db.conn()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        got = store.update_descendants(wf, "blocks", {"status": "x"}, start_ids=[docs[0]["_id"]],
                                       where={"status": "blocked"})
    finally:
        conn.set_trace_callback(None)
    assert got == [d["_key"] for d in docs[1:]]
    (update,) = [s for s in statements if "RECURSIVE" in s]
    plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + update)]
    assert "SEARCH t USING INTEGER PRIMARY KEY (rowid=?)" in plan
    assert not [p for p in plan if p.startswith("SCAN") and p not in ("SCAN r",)
                and "json_each" not in p]


def test_driver_errors_never_escape(tmp_path):
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not a database" * 200)
    s = SQLiteStore.from_url(f"sqlite:///{bad}")
    with pytest.raises(StoreUnavailable) as info:
        s.find("workflows", None)
    assert "not a database" not in str(info.value)


def test_unstorable_values_are_invalid_input_not_store_errors(tmp_path):
    """The store boundary translates what the driver cannot bind (lone surrogates, offsets
    beyond 64 bits) into InvalidInput; callers validate first, this is the safety net."""
    from torc_graph.errors import InvalidInput
    from torc_graph.store import open_store

    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    wf = s.create_workflow({"name": "w"}, {}, {"run_id": 0}).workflow["_key"]
    with pytest.raises(InvalidInput, match="surrogate"):
        s.insert("files", wf, {"name": "\ud800", "path": "p"})
    with pytest.raises(InvalidInput, match="surrogate"):
        s.find("files", wf, {"name": "\ud800"})
    with pytest.raises(InvalidInput, match="out of range"):
        s.find("files", wf, skip=2**63)
    assert s.count("files", wf) == 0
    s.close()


# -- job fields as columns (migration 0003_job_columns) ------------------------------------------


def _raw(store, wf, key, columns="doc"):
    return store._db.conn().execute(
        f"SELECT {columns} FROM doc_jobs WHERE wf = ? AND key = ?", (wf, key)).fetchone()


def test_job_columns_are_updated_without_rewriting_the_document(store):
    wf = new_workflow(store)
    job = store.insert("jobs", wf, {"name": "a", "status": "uninitialized",
                                    "internal": {"num_cpus": 0, "runtime_seconds": 60.0,
                                                 "hash": 7}})
    before = _raw(store, wf, job["_key"])[0]
    n = store.update_many("jobs", wf, None, {"status": "ready", "internal.num_cpus": 2,
                                             "internal.runtime_seconds": 90.5})
    assert n == 1
    assert _raw(store, wf, job["_key"])[0] == before  # doc untouched: the columns changed
    got = store.get("jobs", wf, job["_key"])
    assert got["status"] == "ready" and got["_rev"] != job["_rev"]
    assert got["internal"] == {"num_cpus": 2, "runtime_seconds": 90.5, "hash": 7}
    assert isinstance(got["internal"]["runtime_seconds"], float)
    assert [d["_key"] for d in store.find("jobs", wf, {"status": "ready",
                                                        "internal.num_cpus": Gt(1)})] == [job["_key"]]
    # find_json returns the same overlaid document text
    import json
    assert json.loads(store.find_json("jobs", wf)[0]) == got
    # a stale revision is still detected on the column-held _rev
    from torc_graph.errors import RevisionConflict
    with pytest.raises(RevisionConflict):
        store.update("jobs", wf, job["_key"], {"name": "b"}, rev=job["_rev"])
    assert store.update("jobs", wf, job["_key"], {"name": "b"}, rev=got["_rev"])["name"] == "b"


@pytest.mark.parametrize("patches, expected", [
    # values a column cannot hold exactly live in the document, type-strict as before
    ([{"status": 5}], {"status": 5}),
    ([{"status": "ready"}, {"status": None}], {"status": None}),
    ([{"internal.num_cpus": True}], {"internal": {"num_cpus": True, "hash": 1}}),
    ([{"internal.num_cpus": 1 / 3}], {"internal": {"num_cpus": 1 / 3, "hash": 1}}),
    ([{"internal.num_cpus": 2**70}], {"internal": {"num_cpus": 2**70, "hash": 1}}),
    # a whole `internal` replaces the columns' values too
    ([{"internal.num_cpus": 4}, {"internal": {"num_gpus": 1}}], {"internal": {"num_gpus": 1}}),
    ([{"internal.num_cpus": 4}, {"internal": None}], {"internal": None}),
    # a column under a non-object parent, and a path below a column's value
    ([{"internal": None}, {"internal.num_cpus": 3}], {"internal": {"num_cpus": 3}}),
    ([{"internal": None}, {"internal.num_cpus": 3}, {"internal.hash": 2}],
     {"internal": {"num_cpus": 3, "hash": 2}}),
    ([{"status": {"a": 1}}, {"status": "ready"}, {"status.b": 2}], {"status": {"b": 2}}),
    ([{"internal.num_cpus": 4, "internal": {"num_cpus": 5}}], {"internal": {"num_cpus": 5}}),
])
def test_job_columns_keep_document_semantics(store, patches, expected):
    """Each patch sequence, applied with update_many (and with update when it has only
    top-level fields), reads back as if the document had been rewritten (the model the store
    had before the columns)."""
    wf = new_workflow(store)
    dotted = any("." in path for patch in patches for path in patch)
    for method in ("update_many",) if dotted else ("update_many", "update"):
        key = store.insert("jobs", wf, {"name": "a", "status": "blocked",
                                        "internal": {"num_cpus": 1, "hash": 1}})["_key"]
        for patch in patches:
            if method == "update_many":
                store.update_many("jobs", wf, {"_key": key}, patch)
            else:
                store.update("jobs", wf, key, patch)
        got = store.get("jobs", wf, key)
        want = {"name": "a", "status": "blocked", "internal": {"num_cpus": 1, "hash": 1},
                **expected}
        assert {k: got[k] for k in want} == want, method
        # filters agree with what is read back
        for field in ("status", "internal.num_cpus"):
            value = got.get(field.split(".")[0])
            if field.startswith("internal."):
                value = value.get("num_cpus") if isinstance(value, dict) else None
            if value is not None:
                assert key in [d["_key"] for d in store.find("jobs", wf, {field: value})]
        assert store.find("jobs", wf, {"_key": key})[0] == got


def _database_before(db, applied: int) -> sqlite3.Connection:
    """A connection in an open transaction on a database with only the first ``applied``
    migrations and workflow 1."""
    from torc_graph.store import sqlite_schema

    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    con.execute(sqlite_schema._CREATE_MIGRATIONS)
    for m in MIGRATIONS[:applied]:
        for stmt in m.statements():
            con.execute(stmt)
        con.execute("INSERT INTO schema_migrations VALUES (?, 'x')", (m.name,))
    con.execute("INSERT INTO doc_workflows (wf, key, doc) VALUES "
                "('', '1', '{\"_key\":\"1\",\"_id\":\"workflows/1\",\"_rev\":\"r\"}')")
    return con


def test_migration_0003_converts_existing_jobs(db):
    """A database created before the columns keeps its documents and gets the columns."""
    con = _database_before(db, 2)
    docs = {
        "2": '{"_key":"2","_id":"jobs__1/2","_rev":"a","status":"ready",'
             '"internal":{"num_cpus":2,"runtime_seconds":60.0,"scheduler_config_id":""}}',
        "3": '{"_key":"3","_id":"jobs__1/3","_rev":"b","status":7,"internal":null}',
        "4": '{"_key":"4","_id":"jobs__1/4","_rev":"c","internal":{"num_cpus":0.333333333333333333}}',
    }
    for key, text in docs.items():
        con.execute("INSERT INTO doc_jobs (wf, key, doc) VALUES ('1', ?, ?)", (key, text))
    con.execute("COMMIT")
    con.close()
    store = SQLiteStore.from_url(f"sqlite:///{db}")
    import json
    for key, text in docs.items():
        assert store.get("jobs", "1", key) == json.loads(text)
    assert _raw(store, "1", "2", "status, rev, i_num_cpus, i_runtime_seconds") == (
        "ready", "a", 2, 60.0)
    assert _raw(store, "1", "3", "status, i_num_cpus") == (None, None)
    assert _raw(store, "1", "4", "i_num_cpus") == (None,)  # not exact at 15 digits: stays JSON
    assert [d["_key"] for d in store.find("jobs", "1", {"status": "ready"})] == ["2"]
    assert [d["_key"] for d in store.find("jobs", "1", {"status": 7})] == ["3"]
    assert "0003_job_columns" in store.info()["migrations"]
    store.close()


# -- job name as a column (migration 0007_job_name_column) -----------------------------------------


def test_job_name_filter_and_sort_use_the_name_column_index(store):
    wf = new_workflow(store)
    keys = [d["_key"] for d in store.insert_many("jobs", wf, [
        {"name": "b"}, {"name": 7}, {"name": "a"}, {"command": "x"}])]
    assert _raw(store, wf, keys[0], "name") == ("b",)
    assert _raw(store, wf, keys[1], "name") == (None,)  # not a string: the document holds it
    plan = _plan(store, "jobs", wf, {"name": "a"})
    assert "USING INDEX ix_doc_jobs_name_col (wf=? AND <expr>=?)" in plan
    assert [d["_key"] for d in store.find("jobs", wf, {"name": "a"})] == [keys[2]]
    assert [d["_key"] for d in store.find("jobs", wf, {"name": 7})] == [keys[1]]
    # type-strict order as before: null (absent) < numbers < strings
    assert [d["_key"] for d in store.find("jobs", wf, order_by=[("name", False)])] == [
        keys[3], keys[1], keys[2], keys[0]]
    # renames go to the column; the document text is not rewritten, reads see the new name
    before = _raw(store, wf, keys[0])[0]
    store.update_many("jobs", wf, {"_key": keys[0]}, {"name": "c"})
    assert _raw(store, wf, keys[0])[0] == before
    assert store.get("jobs", wf, keys[0])["name"] == "c"
    store.update("jobs", wf, keys[0], {"name": None})
    assert store.get("jobs", wf, keys[0])["name"] is None
    assert store.find("jobs", wf, {"name": "c"}) == []


def test_migration_0007_moves_job_names_into_the_column(db):
    """A database at 0006 keeps its job documents; names become the column and the old
    expression index is gone."""
    con = _database_before(db, 6)
    docs = {"2": '{"_key":"2","_id":"jobs__1/2","_rev":"a","name":"x"}',
            "3": '{"_key":"3","_id":"jobs__1/3","_rev":"b","name":[1]}',
            "4": '{"_key":"4","_id":"jobs__1/4","_rev":"c"}'}
    for key, text in docs.items():
        con.execute("INSERT INTO doc_jobs (wf, key, doc, rev) VALUES ('1', ?, ?, ?)",
                    (key, text, json.loads(text)["_rev"]))
    con.execute("COMMIT")
    con.close()
    store = SQLiteStore.from_url(f"sqlite:///{db}")
    for key, text in docs.items():
        assert store.get("jobs", "1", key) == json.loads(text)
    assert [_raw(store, "1", k, "name")[0] for k in docs] == ["x", None, None]
    assert [d["_key"] for d in store.find("jobs", "1", {"name": "x"})] == ["2"]
    indexes = {r[0] for r in store._db.conn().execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'doc_jobs'")}
    assert "ix_doc_jobs_name" not in indexes and "ix_doc_jobs_name_col" in indexes
    store.close()


def test_page_cache_size_is_the_setting_per_connection(tmp_path):
    """``cache_mib`` (setting ``sqlite_cache_mib``) is each connection's page cache; a bad
    value is refused before anything is opened."""
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/c.db", cache_mib=3)
    assert store._db.read(lambda c: c.execute("PRAGMA cache_size").fetchone()[0]) == -3 * 1024
    assert store.info()["cache_mib"] == 3
    store.close()
    default = SQLiteStore(str(tmp_path / "d.db"))
    assert default._db.read(lambda c: c.execute("PRAGMA cache_size").fetchone()[0]) == -64 * 1024
    default.close()
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(InvalidInput, match="cache_mib"):
            SQLiteStore(str(tmp_path / "e.db"), cache_mib=bad)
