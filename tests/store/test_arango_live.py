"""The ArangoDB leg against a real server: runs only when ``TORC_GRAPH_TEST_ARANGO_URL`` is set.

One command runs every ArangoDB leg (this file, the store contract suite, the engine tests)::

    TORC_GRAPH_TEST_ARANGO_URL=arangodb://root:pw@localhost:8529/torc_test \\
        pytest tests/store tests/engine

against a 3.11/3.12 single server, or against a cluster coordinator (the database is created
OneShard if missing). What this file adds to the contract suite: ``EXPLAIN`` of the hot queries
(they must use an index and no full sort), the deployment checks (OneShard, replication), the
transaction size cap (413, nothing written), keys across collections, and workflow keys with
``-``. See docs/arango-at-scale.md.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from torc_graph.errors import NotFound
from torc_graph.store import open_store
from torc_graph.store.aql import SEQ_FIELD, Query
from torc_graph.store.arango import TransactionTooLarge
from torc_graph.store.base import In, Le
from torc_graph.testing import ARANGO_TEST_ENV

URL = os.environ.get(ARANGO_TEST_ENV)
pytestmark = pytest.mark.skipif(not URL, reason=f"{ARANGO_TEST_ENV} not set")


@pytest.fixture
def live():
    store = open_store(URL)
    created: list[str] = []

    def workflow(**fields) -> str:
        key = store.create_workflow({"name": "live", **fields}, {}, {"run_id": 0}).workflow["_key"]
        created.append(key)
        return key

    store.new_workflow = workflow
    yield store
    for key in created:
        with contextlib.suppress(NotFound):
            store.delete_workflow(key)
    store.close()


def plan_nodes(store, text: str, q: Query) -> list[dict]:
    plan = store._conn.db().aql.explain(q.finish(text), bind_vars=q.bind_vars)
    return plan["nodes"]


def assert_index_no_sort(store, text: str, q: Query) -> None:
    types = [n["type"] for n in plan_nodes(store, text, q)]
    assert "IndexNode" in types, types
    assert "SortNode" not in types, types
    assert "EnumerateCollectionNode" not in types, types


@pytest.mark.parametrize("where, limit", [
    ({"status": "ready"}, 1),                          # claims / prepare_jobs: first ready job
    ({"status": In(["ready", "scheduled"])}, 100),     # claims over two statuses
    ({"status": "ready"}, None),                       # listing by status
    (None, 10),                                        # default listing, first page
])
def test_hot_job_reads_use_an_index_and_no_sort(live, where, limit):
    wf = live.new_workflow()
    live.insert_many("jobs", wf, [{"name": f"j{i}", "status": "ready"} for i in range(50)])
    text, q = live._find_query(f"jobs__{wf}", wf, where, (), None, limit=limit)
    if isinstance((where or {}).get("status"), In):
        types = [n["type"] for n in plan_nodes(live, text, q)]
        assert "IndexNode" in types and "EnumerateCollectionNode" not in types, types
    else:
        assert_index_no_sort(live, text, q)


def test_keyset_page_and_event_polling_use_the_sequence_index(live):
    wf = live.new_workflow()
    live.insert_many("events", wf, [{"category": "job", "n": i} for i in range(50)])
    text, q = live._find_query(f"events__{wf}", wf, None, (), None, after={SEQ_FIELD: 10}, limit=5)
    assert_index_no_sort(live, text, q)
    q = Query()
    c = q.collection(f"events__{wf}")
    text = f"FOR d IN {c} FILTER d.{SEQ_FIELD} > {q.value(10)} SORT d.{SEQ_FIELD} LIMIT 5 RETURN d"
    assert_index_no_sort(live, text, q)


@pytest.mark.parametrize("method", ["gpus_runtime_memory", "gpus_memory_runtime"])
def test_claims_read_the_claim_order_index_without_a_sort(live, method):
    """The default claim order is served by the sparse claim-order index (computed by the
    server on insert and update): no sort node, no collection scan, and the rows come in
    the engine's order (fields descending, ties in insertion order); jobs that stop being
    claimable leave the index."""
    from torc_graph.engine.claims import SORT_METHODS
    from torc_graph.store.arango import claim_order

    wf = live.new_workflow()
    jobs = live.insert_many("jobs", wf, [
        {"name": f"j{i}", "status": "ready" if i % 5 else "blocked",
         "internal": {"num_gpus": i % 2, "runtime_seconds": 60 * (i % 3),
                      "memory_bytes": 2**20 * (i % 4), "num_cpus": 1, "num_nodes": 1,
                      "scheduler_config_id": ""}} for i in range(60)])
    live.update("jobs", wf, jobs[1]["_key"], {"status": "done"})
    order = SORT_METHODS[method]
    where = {"status": In(["ready", "scheduled"]), "internal.num_cpus": Le(4)}
    attr = claim_order(f"jobs__{wf}", where, order)
    text, q = live._find_query(f"jobs__{wf}", wf, where, (), order, limit=10)
    nodes = plan_nodes(live, text, q)
    types = [n["type"] for n in nodes]
    assert "SortNode" not in types and "EnumerateCollectionNode" not in types, types
    assert [attr] in [i["fields"] for n in nodes for i in n.get("indexes", ())]
    got = [d["name"] for d in live.find("jobs", wf, where, order_by=order)]
    claimable = [j for j in jobs if j["status"] == "ready" and j["_key"] != jobs[1]["_key"]]
    expected = sorted(claimable, key=lambda j: tuple(-j["internal"][p.split(".")[1]]
                                                     for p, _ in order))
    assert got == [j["name"] for j in expected]


def test_find_after_seeks_the_sequence_index(live):
    """The event stream's replay: the anchor by primary index, then an index range from its
    sequence number, no sort, no collection scan."""
    wf = live.new_workflow()
    events = live.insert_many("events", wf, [{"category": "job", "n": i} for i in range(50)])
    text, q = live._after_query(f"events__{wf}", wf, events[10]["_key"], {"category": "job"}, 5)
    nodes = plan_nodes(live, text, q)
    types = [n["type"] for n in nodes]
    assert "SortNode" not in types and "EnumerateCollectionNode" not in types, types
    assert {i["fields"][0] for n in nodes for i in n.get("indexes", ())} >= {"_key", SEQ_FIELD}
    got = live.find_after("events", wf, events[10]["_key"], {"category": "job"}, limit=5)
    assert [d["n"] for d in got] == [11, 12, 13, 14, 15]


def test_count_by_status_uses_the_status_index(live):
    wf = live.new_workflow()
    live.insert_many("jobs", wf, [{"status": "done"}, {"status": "ready"}])
    q = Query()
    c = q.collection(f"jobs__{wf}")
    text = f"FOR d IN {c} {q.filter('d', {'status': 'ready'})} COLLECT WITH COUNT INTO n RETURN n"
    types = [n["type"] for n in plan_nodes(live, text, q)]
    assert "IndexNode" in types and "EnumerateCollectionNode" not in types, types
    assert live.count("jobs", wf, {"status": "ready"}) == 1


def test_deployment_is_single_server_or_one_shard_replicated(live):
    db = live._conn.db()
    if db.role() != "COORDINATOR":
        pytest.skip("single server")
    props = db.properties()
    assert props.get("sharding") == "single", props
    assert int(props.get("replication_factor") or 1) >= 2, props


def test_keys_increase_across_collections_and_exceed_custom_keys(live):
    wf = live.new_workflow()
    a = live.insert("jobs", wf, {})
    big = str(int(a["_key"]) + 1000)
    live.insert("files", wf, {"_key": big})
    b = live.insert("events", wf, {})
    assert int(b["_key"]) > int(big) > int(a["_key"])


def test_workflow_key_with_dash_gets_edges(live):
    wf = live.new_workflow(_key="live-dash-wf")
    j1, j2 = live.insert_many("jobs", wf, [{}, {}])
    live.insert("blocks", wf, {"_from": j1["_id"], "_to": j2["_id"]})
    assert [d["_key"] for d in live.descendants(wf, "blocks", [j1["_id"]])] == [j2["_key"]]


def test_transaction_over_the_cap_writes_nothing():
    store = open_store(URL + ("&" if "?" in URL else "?") + "max_transaction_mib=1")
    wf = store.create_workflow({"name": "cap"}, {}, {}).workflow["_key"]
    try:
        with pytest.raises(TransactionTooLarge):
            with store.transaction(wf):
                store.insert_many("jobs", wf, [{"blob": "x" * 1000}] * 600)
                store.insert_many("jobs", wf, [{"blob": "x" * 1000}] * 600)
        assert store.count("jobs", wf) == 0
    finally:
        store.delete_workflow(wf)
        store.close()


def _with_option(option: str) -> str:
    return URL + ("&" if "?" in URL else "?") + option


def test_chunked_creation_and_initialization_on_the_server():
    """A specification ~3x a 1 MiB cap is created in chunks and initialized in chunks: every
    job is there once, statuses are right, no guard is left, nothing staged remains."""
    from torc_graph.engine import initialize, specifications

    store = open_store(_with_option("max_transaction_mib=1"))
    jobs = [{"name": f"j{i}", "command": "echo " + "x" * 500,
             **({"blocked_by": [f"j{i - 1}"]} if i % 100 else {})} for i in range(3000)]
    wf = specifications.create_from_specification(store, {"name": "chunks", "jobs": jobs})["_key"]
    try:
        assert store.workflow_exists(wf) and store.count("jobs", wf) == 3000
        initialize.initialize_jobs(store, wf)
        assert store.count("jobs", wf, {"status": "ready"}) == 30
        assert store.count("jobs", wf, {"status": "blocked"}) == 2970
        q = Query()
        text = (f"FOR w IN {q.collection('workflows')} FILTER w._key == {q.value(wf)} "
                "RETURN [w._torc_staged, w._torc_bulk]")
        assert store._run(text, q) == [[None, None]]
    finally:
        store.delete_workflow(wf)
        store.close()


def test_abandoned_creation_is_swept_on_the_server():
    """A creation killed mid-way (its staged block never exits) is invisible, and the sweep
    removes its documents and collections after the grace period."""
    store = open_store(URL)
    block = store.staged_creation()
    block.__enter__()
    key = store.create_workflow({"name": "abandoned"}, {}, {}).workflow["_key"]
    store._local.staging = None  # the process is gone
    other = open_store(_with_option("staging_grace=1"))
    try:
        assert not other.workflow_exists(key)
        assert key in other.sweep(now=2**52)
        names = {c["name"] for c in other._conn.db().collections()}
        assert not [n for n in names if n.endswith(f"__{key}")]
    finally:
        store.close()
        other.close()


def test_values_is_an_index_ordered_projection_on_the_server(live):
    """``values`` returns the named fields only, in insertion order, None for a missing one;
    unfiltered (the dashboard's counts per stage) it reads the sequence index, no sort."""
    wf = live.new_workflow()
    live.insert_many("jobs", wf, [{"name": f"j{i}", "status": "ready", "internal": {"h": i}}
                                  for i in range(30)])
    got = live.values("jobs", wf, ["name", "internal.h", "missing"])
    assert got == [(f"j{i}", i, None) for i in range(30)]
    assert live.values("jobs", wf, ["name"], {"internal.h": 7}) == [("j7",)]
    text, q = live._values_query(f"jobs__{wf}", wf, ["name", "status"], None)
    types = [n["type"] for n in plan_nodes(live, text, q)]
    assert "IndexNode" in types and "SortNode" not in types, types


def _guard(store, wf):
    q = Query()
    text = (f"FOR w IN {q.collection('workflows')} FILTER w._key == {q.value(wf)} "
            "RETURN w._torc_bulk")
    return store._run(text, q)[0]


def test_change_detection_and_auto_tune_run_in_chunks_on_the_server():
    """At a 1 MiB cap, 3,000 jobs of ~0.6 KB: change detection resets every changed job and
    auto-tune disables every job but one, each in several stream transactions; no guard is
    left."""
    from torc_graph.engine import autotune, initialize, specifications

    store = open_store(_with_option("max_transaction_mib=1"))
    jobs = [{"name": f"j{i}", "command": "echo " + "x" * 500} for i in range(3000)]
    wf = specifications.create_from_specification(store, {"name": "bulk", "jobs": jobs})["_key"]
    try:
        with store.bulk_transaction(wf, "test_setup"):
            store.update_many("jobs", wf, None, {"status": "done", "internal": {"hash": -1}})
        got = initialize.process_changed_job_inputs(store, wf)
        assert len(got["reinitialized_jobs"]) == 3000
        assert store.count("jobs", wf, {"status": "uninitialized"}) == 3000
        space = store.workflow_space(wf)
        store.update("workflow_configs", None, space.config["_key"],
                     {"compute_node_resource_stats": {"process": True}})
        autotune.auto_tune_resource_requirements(store, wf)
        assert store.count("jobs", wf, {"status": "disabled"}) == 2999
        assert _guard(store, wf) is None
    finally:
        store.delete_workflow(wf)
        store.close()


def test_an_interrupted_bulk_run_is_completed_after_its_lease_on_the_server():
    """A chunked initialize_jobs dies after committing chunks: during the lease claims get 503;
    after it the next claim gets 503 while the store reruns initialize_jobs in the background,
    which completes it (statuses right, guard gone); then claims pass. No manual step."""
    import time

    from torc_graph.engine import initialize, specifications  # noqa: F401 (registers the rerun)
    from torc_graph.errors import StoreUnavailable

    store = open_store(_with_option("max_transaction_mib=1&bulk_lease=3"))
    jobs = [{"name": f"j{i}", "command": "echo " + "x" * 500,
             **({"blocked_by": [f"j{i - 1}"]} if i % 100 else {})} for i in range(3000)]
    wf = specifications.create_from_specification(store, {"name": "lease", "jobs": jobs})["_key"]
    try:
        with pytest.raises(RuntimeError):
            with store.bulk_transaction(wf, "initialize_jobs", only_uninitialized=False,
                                        clear_ephemeral_user_data=True):
                store.update_many("jobs", wf, None, {"status": "ready"})
                assert store._tx().chunks >= 2
                raise RuntimeError("killed")
        assert _guard(store, wf)["op"] == "initialize_jobs"
        with pytest.raises(StoreUnavailable, match="being changed"):
            with store.transaction(wf):
                store.workflow_space(wf)
        time.sleep(3.5)
        with pytest.raises(StoreUnavailable, match="being completed"):
            with store.transaction(wf):
                store.workflow_space(wf)
        deadline = time.monotonic() + 60
        while _guard(store, wf) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _guard(store, wf) is None
        assert store.count("jobs", wf, {"status": "ready"}) == 30
        assert store.count("jobs", wf, {"status": "blocked"}) == 2970
        with store.transaction(wf):
            store.workflow_space(wf)
    finally:
        store.delete_workflow(wf)
        store.close()
