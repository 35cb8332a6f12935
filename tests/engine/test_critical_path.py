"""``engine.critical_path`` on a known DAG: exact path and numbers from recorded and declared
runtimes, the remaining makespan with a running job's elapsed time subtracted, cycles, and the
pure DP."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from torc_graph.engine import critical_path, documents, leases
from torc_graph.engine.common import now_ms
from torc_graph.errors import BadRequest

_spec = importlib.util.spec_from_file_location(
    "explain_scenarios", Path(__file__).with_name("explain_scenarios.py"))
scenarios = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenarios)


def known_dag(store):
    """a -> b -> d, a -> c -> d, e alone. Declared: a 10 min, b 10 min, c 30 min, d 5 min,
    e 60 min. a ran (recorded 2 min); c runs since 10 min ago; b, d, e wait."""
    wf = scenarios._workflow(store, "cp")
    rr = {}
    for name, runtime in (("m10", "PT10M"), ("m30", "PT30M"), ("m5", "PT5M"), ("h1", "PT1H")):
        rr[name] = documents.add_document(store, wf, "resource_requirements",
                                          {"name": name, "runtime": runtime})["_id"]
    k = scenarios._jobs(store, wf, {
        "a": {"resource_requirements": rr["m10"]},
        "b": {"resource_requirements": rr["m10"], "blocked_by": ["a"]},
        "c": {"resource_requirements": rr["m30"], "blocked_by": ["a"]},
        "d": {"resource_requirements": rr["m5"], "blocked_by": ["b", "c"]},
        "e": {"resource_requirements": rr["h1"]},
    })
    node = scenarios._node(store, wf)
    store.update("jobs", wf, k["e"], {"status": "disabled"})  # e never runs
    a = scenarios._claim(store, wf, node)[0]
    assert a["_key"] == k["a"]
    scenarios._complete(store, wf, node, a, minutes=2.0)
    c = scenarios._claim(store, wf, node)[0]  # longest runtime first
    assert c["_key"] == k["c"]
    store.update("jobs", wf, k["c"], {"execution": {**c["execution"],
                                                   "claimed_at": now_ms() - 600_000}})
    return wf, k


def test_known_dag(store):
    leases.reset_sweep_clock()
    wf, k = known_dag(store)
    answer = critical_path.critical_path(store, wf)
    assert answer["num_jobs"] == 5 and answer["num_edges"] == 4
    path = answer["critical_path"]
    # e alone (3600 s) beats a-c-d (120 + 1800 + 300 = 2220 s).
    assert [r["key"] for r in path["jobs"]] == [k["e"]]
    assert path["length_seconds"] == 3600.0
    left = answer["remaining"]
    # e is disabled (finished), a done: c has 1800 - 600 = 1200 s left, then d 300 s.
    assert [r["key"] for r in left["jobs"]] == [k["c"], k["d"]]
    assert left["makespan_seconds"] == pytest.approx(1500.0, abs=5)
    rows = {r["key"]: r for r in left["jobs"]}
    assert rows[k["c"]]["source"] == "declared" and rows[k["c"]]["duration_seconds"] == 1800.0
    assert rows[k["c"]]["remaining_seconds"] == pytest.approx(1200.0, abs=5)
    assert rows[k["d"]]["remaining_seconds"] == 300.0

    # Without e: the critical path is a (recorded) - c - d (declared).
    store.delete("jobs", wf, k["e"])
    path = critical_path.critical_path(store, wf)["critical_path"]
    assert [(r["key"], r["duration_seconds"], r["source"]) for r in path["jobs"]] == [
        (k["a"], 120.0, "recorded"), (k["c"], 1800.0, "declared"), (k["d"], 300.0, "declared")]
    assert path["length_seconds"] == 2220.0


def test_empty_and_finished_workflows(store, wf):
    answer = critical_path.critical_path(store, wf)
    assert answer["critical_path"] == {"jobs": [], "length_seconds": 0.0}
    assert answer["remaining"] == {"jobs": [], "makespan_seconds": 0.0}


def test_cycle_is_a_400(store, wf):
    k = scenarios._jobs(store, wf, {"a": {}, "b": {"blocked_by": ["a"]}}, init=False)
    store.insert("blocks", wf, {"_from": f"jobs__{wf}/{k['b']}", "_to": f"jobs__{wf}/{k['a']}"})
    with pytest.raises(BadRequest, match="cycle"):
        critical_path.critical_path(store, wf)


def test_longest_path_dp():
    w = {"a": 1, "b": 5, "c": 2, "d": 1, "e": 9}
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("e", "d")]
    assert critical_path.longest_path(list(w), edges, w) == (["e", "d"], 10)
    w["e"] = 1
    assert critical_path.longest_path(list(w), edges, w) == (["a", "b", "d"], 7)
    assert critical_path.longest_path([], [], {}) == ([], 0.0)
