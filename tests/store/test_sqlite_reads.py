"""Reads filtered on job fields: type-strict, and answered from the index without reading the
rows of ``doc_jobs`` (the query plans and the bytecode are pinned here, so a change that makes
a status count or page read every matching job fails; issue 14)."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest

from torc_graph.engine import dashboard, documents, queries
from torc_graph.store import sql as q
from torc_graph.store.base import In, Ne, NotIn
from torc_graph.store.sqlite import SQLiteStore

#: Every JSON type, strings that are the JSON text of an object or array, and the numbers a
#: boolean's SQL value equals.
VALUES = ["ready", "1", 1, 1.0, 0, 0.0, True, False, None, "", 2, 2.5, '{"a":1}', "[1]", "{",
          {"a": 1}, [1], [], {}, "true"]


@pytest.fixture
def store(tmp_path):
    """A SQLite store (the ``wf`` fixture of conftest.py makes a workflow in it)."""
    with contextlib.closing(SQLiteStore.from_url(f"sqlite:///{tmp_path / 't.db'}")) as s:
        yield s


def _json_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


def _same(a, b):
    """Type-strict JSON equality (the contract of a ``where`` value)."""
    return _json_type(a) == _json_type(b) and a == b


_MISSING = object()


def _matches(doc_value, spec):
    if isinstance(spec, In):
        return any(_matches(doc_value, v) for v in spec.values)
    if isinstance(spec, NotIn):
        return not _matches(doc_value, In(spec.values))
    if isinstance(spec, Ne):
        return not _matches(doc_value, spec.value)
    if doc_value is _MISSING:
        return spec is None
    return _same(doc_value, spec)


def _sql_of(store, method, collection, wf, where=None, **kw):
    """(SQL, params) of a ``count`` or ``find`` call, as the store runs it."""
    c, w = store._coll(collection, wf)
    b = q.Binder()
    if method == "count":
        text = f"SELECT count(*) FROM {c.table} t WHERE {store._select(c, w, where, (), b)}"
    else:
        text = store._page_sql(c, w, where, (), kw.get("skip", 0), kw.get("limit"),
                               kw.get("order_by"), b)
    return text, b.params


def _row_reads(conn: sqlite3.Connection, text: str, params) -> list[tuple]:
    """Opcodes that read a ``doc_jobs`` row inside a loop over one of its indexes: the rows a
    statement reads per index entry it visits (none if the index alone answers the filter)."""
    roots = dict(conn.execute("SELECT rootpage, type FROM sqlite_master "
                              "WHERE tbl_name = 'doc_jobs' AND rootpage > 0"))
    ops = conn.execute("EXPLAIN " + text, params).fetchall()  # addr, opcode, p1, p2, ...
    table = {op[2] for op in ops if op[1] == "OpenRead" and roots.get(op[3]) == "table"}
    index = {op[2] for op in ops if op[1] == "OpenRead" and roots.get(op[3]) == "index"}
    reads = []
    for addr, opcode, p1, p2, *_ in ops:
        if opcode in ("Next", "Prev") and p1 in index:
            reads += [op for op in ops[p2:addr] if op[1] in ("Column", "Rowid") and op[2] in table]
    return reads


def _plan(conn, text, params, *, rows_only: bool = False) -> str:
    """The query plan's lines; with ``rows_only`` those of the subquery selecting the rows of a
    page (:meth:`SQLiteStore._page_sql`), without the final sort of the page's documents."""
    plan = conn.execute("EXPLAIN QUERY PLAN " + text, params).fetchall()
    if rows_only:
        (sub,) = [r[0] for r in plan if r[3].startswith("LIST SUBQUERY")]
        plan = [r for r in plan if r[1] == sub]
    return " | ".join(r[3] for r in plan)


@pytest.fixture
def typed_jobs(store, wf):
    """One job per value of :data:`VALUES` in ``status``, ``name`` and ``internal.num_gpus``
    (a string goes to the text columns, a number to the number column, the rest stays in the
    document), and one job without these fields."""
    docs = [{"i": i, "status": v, "name": v, "internal": {"num_gpus": v}}
            for i, v in enumerate(VALUES)] + [{"i": len(VALUES), "internal": {}}]
    store.insert_many("jobs", wf, docs)
    return wf, docs


@pytest.mark.parametrize("field", ["status", "name", "internal.num_gpus"])
def test_column_filters_are_type_strict_and_index_only_when_the_value_decides(
        store, typed_jobs, field):
    """Equality and IN on a column field match exactly the type-strict model for every JSON
    type; on an indexed one (``status``, ``name``), when the value alone decides (a string
    not starting with ``{``/``[``, a number other than 0 and 1) the count reads no job row
    (``internal.*`` is indexed after ``status``, in the claim order: filtered with a status).
    """
    wf, docs = typed_jobs
    conn = store._db.conn()

    def value_of(doc):
        top, _, sub = field.partition(".")
        v = doc.get(top, _MISSING)
        return v.get(sub, _MISSING) if sub and isinstance(v, dict) else v

    specs = [*VALUES, In(["ready", 2]), In(["1", 1, True]), In(['{"a":1}', "[1]", 2.5]),
             In([None, "", 0]), NotIn(["ready", 2]), Ne("ready"), Ne(2)]
    for spec in specs:
        want = [d["i"] for d in docs if _matches(value_of(d), spec)]
        got = [d["i"] for d in store.find("jobs", wf, {field: spec})]
        assert got == want, spec
        assert store.count("jobs", wf, {field: spec}) == len(want), spec
        assert [d["i"] for d in store.find("jobs", wf, {field: spec}, limit=2)] == want[:2], spec
    status = {"status": "ready"} if field.startswith("internal.") else {}
    for spec in ["ready", "", "1", 2, 2.5, -7, In(["ready", "done", 3])]:
        text, params = _sql_of(store, "count", "jobs", wf, {**status, field: spec})
        assert _row_reads(conn, text, params) == [], (spec, text)
    for spec in ['{"a":1}', 1, True]:  # the type decides: the row is read
        text, params = _sql_of(store, "count", "jobs", wf, {**status, field: spec})
        assert _row_reads(conn, text, params), (spec, text)


def test_status_reads_use_the_index_alone(store, wf):
    """Count by status, ``find(status, limit=1)`` and a page of ``list_jobs?status=`` walk
    the status index (no scan of ``doc_jobs``) and read no job row per index entry; the page
    reads only the documents it returns."""
    store.insert_many("jobs", wf, [
        {"name": f"j{i:03d}", "status": "ready" if i % 10 == 3 else "done",
         "internal": {"num_gpus": 0, "runtime_seconds": 60, "memory_bytes": 1}}
        for i in range(300)])
    conn = store._db.conn()
    cases = [
        ("count", {"status": "done"}, {}),
        ("count", {"status": In(["ready", "done"])}, {}),
        ("find", {"status": "done"}, {"limit": 1}),
        ("find", {"status": "ready"}, {"limit": 100, "skip": 10}),
        ("find", {"status": In(["ready", "blocked"])}, {"limit": 1}),
    ]
    for method, where, kw in cases:
        text, params = _sql_of(store, method, "jobs", wf, where, **kw)
        plan = _plan(conn, text, params)
        assert "ix_doc_jobs_status_claim (wf=? AND <expr>=?)" in plan, (where, plan)
        assert "SCAN t" not in plan, (where, plan)
        assert _row_reads(conn, text, params) == [], (where, text)
    # the results are those of the filter, in insertion order
    ready = [f"j{i:03d}" for i in range(300) if i % 10 == 3]
    assert [d["name"] for d in store.find("jobs", wf, {"status": "ready"}, limit=5,
                                          skip=2)] == ready[2:7]
    assert [d["name"] for d in store.find("jobs", wf, {"status": "done"}, limit=1)] == ["j000"]
    page = queries.list_jobs_by_status(store, wf, "ready", limit=1)
    assert [d["name"] for d in page["items"]] == ready[:1] and page["total_count"] == 30
    listed = documents.list_documents(store, wf, "jobs", documents.Listing(
        limit=1, filters={"status": "ready"}))
    assert b'"j003"' in listed and b'"total_count":30' in listed.replace(b" ", b"")
    (counts,) = [w["counts"] for w in dashboard.workflows(store)["items"] if w["key"] == wf]
    assert (counts["done"], counts["ready"], counts.get("blocked")) == (270, 30, None)


def test_a_listing_sorted_by_name_walks_the_name_index(store, wf):
    """An unfiltered page ordered by ``name`` comes from the name index in order and stops
    at LIMIT (it used to sort every job of the workflow)."""
    store.insert_many("jobs", wf, [{"name": n} for n in ["c", "a", 7, "b", None]]
                      + [{"command": "x"}])
    conn = store._db.conn()
    text, params = _sql_of(store, "find", "jobs", wf, None, limit=2, order_by=[("name", False)])
    plan = _plan(conn, text, params, rows_only=True)
    assert plan == "SEARCH t USING INDEX ix_doc_jobs_name_col (wf=?)", plan
    # type-strict order, ties in insertion order: null and missing < numbers < strings
    names = [d.get("name", "-") for d in store.find("jobs", wf, order_by=[("name", False)])]
    assert names == [None, "-", 7, "a", "b", "c"]
    assert [d.get("name") for d in store.find("jobs", wf, limit=2, skip=3,
                                              order_by=[("name", False)])] == ["a", "b"]
    assert [d.get("name") for d in store.find("jobs", wf, limit=2,
                                              order_by=[("name", True)])] == ["c", "b"]


def test_a_listing_sorted_by_status_walks_the_status_index(store, wf):
    """An unfiltered page ordered by ``status`` walks the status index (each status's jobs
    sorted by ``seq``, not the whole workflow) and reads only the rows it returns."""
    statuses = ["ready", "done", 3, "blocked", None, "done", "ready", {"a": 1}, "blocked"]
    store.insert_many("jobs", wf, [{"i": i, "status": s, "internal": {"num_gpus": i % 2}}
                                   for i, s in enumerate(statuses)])
    conn = store._db.conn()
    for desc in (False, True):
        text, params = _sql_of(store, "find", "jobs", wf, None, limit=3,
                               order_by=[("status", desc)])
        plan = _plan(conn, text, params, rows_only=True)
        assert plan == ("SEARCH t USING INDEX ix_doc_jobs_status_claim (wf=?) | "
                        "USE TEMP B-TREE FOR RIGHT PART OF ORDER BY"), plan
        assert _row_reads(conn, text, params) == [], text
    # type-strict order (null < numbers < text < object text), ties in insertion order
    want = [4, 2, 3, 8, 1, 5, 0, 6, 7]
    assert [d["i"] for d in store.find("jobs", wf, order_by=[("status", False)])] == want
    assert [d["i"] for d in store.find("jobs", wf, order_by=[("status", False)], limit=4,
                                       skip=2)] == want[2:6]
    assert [d["i"] for d in store.find("jobs", wf, order_by=[("status", True)], limit=3)] == [
        7, 0, 6]


def test_exists_stops_at_the_first_index_entry(store, wf):
    """``exists`` (the completion and scheduled-job checks polled by every worker) visits one
    index entry; a ``find`` of one must sort every match first, so it grows with the workflow."""
    store.insert_many("jobs", wf, [{"name": f"j{i}", "status": "ready", "internal": {}}
                                   for i in range(3000)])
    conn = store._db.conn()
    steps = []

    def instructions(call) -> int:
        steps.clear()
        conn.set_progress_handler(lambda: steps.append(1), 10)
        try:
            call()
        finally:
            conn.set_progress_handler(None, 10)
        return len(steps) * 10

    where = {"status": In(["ready", "blocked", "submitted"])}
    assert store.exists("jobs", wf, where)
    exists = instructions(lambda: store.exists("jobs", wf, where))
    find = instructions(lambda: store.find("jobs", wf, where, limit=1))
    assert exists < 300 < 3000 < find, (exists, find)
    assert not store.exists("jobs", wf, {"status": "done"})
