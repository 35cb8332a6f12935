"""``engine.critical_path`` on a known DAG: exact path and numbers from recorded and declared
runtimes, the remaining makespan with a running job's elapsed time subtracted, cycles, and the
pure DP."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from torc_graph.engine import critical_path
from torc_graph.errors import BadRequest

_spec = importlib.util.spec_from_file_location(
    "explain_scenarios", Path(__file__).with_name("explain_scenarios.py"))
scenarios = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenarios)
_hold_leases = scenarios.hold_leases


def test_known_dag(store):
    wf, k = scenarios.known_dag(store)
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
