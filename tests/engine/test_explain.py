"""``engine.explain``: every reason on its own small workflow (tests/engine/explain_scenarios.py),
the blocker chain's ends (failed, running) and its bounds, on the contract backends."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from torc_graph.engine import explain
from torc_graph.errors import NotFound
from torc_graph.store.base import In
from torc_graph.testing import CountingStore

_spec = importlib.util.spec_from_file_location(
    "explain_scenarios", Path(__file__).with_name("explain_scenarios.py"))
scenarios = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scenarios)


_hold_leases = scenarios.hold_leases


@pytest.fixture
def cases(store):
    return scenarios.build_all(store)


CASES = ("done", "failed", "canceled", "terminated", "running", "held_by_dead_node", "ready",
         "disabled", "uninitialized", "blocked", "no_node_fits", "no_active_node",
         "no_allocation", "missing_input_file", "missing_user_data")


def test_every_reason(store, cases):
    assert set(cases) == set(CASES)
    for name in CASES:
        case = cases[name]
        scenarios.check(case, explain.explain(store, case.workflow, case.job))


def test_messages_name_the_facts(store, cases):
    def message(name, index=-1):
        case = cases[name]
        return explain.explain(store, case.workflow, case.job)["reasons"][index]["message"]

    assert "return code 3" in message("failed")
    assert "busy01" in message("running")
    assert "dead01" in message("held_by_dead_node") and "lease expired" in message(
        "held_by_dead_node")
    assert "large01" in message("no_node_fits") and "32 CPUs" in message("no_node_fits")
    assert "raw.csv" in message("missing_input_file")
    assert "params" in message("missing_user_data")
    assert "canceled because" in message("canceled")


def test_chain_ends_at_failed_and_running_blockers(store):
    wf = scenarios._workflow(store, "ends")
    k = scenarios._jobs(store, wf, {
        "r": {}, "f": {}, "x": {"blocked_by": ["r"]}, "y": {"blocked_by": ["f"]},
        "z": {"blocked_by": ["x", "y"]}}, init=True)
    node = scenarios._node(store, wf)
    claimed = {j["name"]: j for j in scenarios._claim(store, wf, node, limit=2)}
    scenarios._complete(store, wf, node, claimed["f"], rc=1, status="terminated")
    # The failure canceled y and z; put them back to blocked as a status edit through the
    # generic PUT would (the state a torc-client 0.6.4 user can produce).
    store.update_many("jobs", wf, {"_key": In([k["y"], k["z"]])}, {"status": "blocked"})
    answer = explain.explain(store, wf, k["z"])
    (blocked,) = answer["reasons"]
    assert blocked["reason"] == "blocked"
    chain = {c["key"]: c for c in blocked["details"]["chain"]}
    assert set(chain) == {k["x"], k["y"], k["r"], k["f"]}
    assert chain[k["r"]]["depth"] == 2 and chain[k["r"]]["blocks"] == [k["x"]]
    ends = {e["key"]: e["state"] for e in blocked["details"]["ends"]}
    assert ends == {k["r"]: "running", k["f"]: "failed"}


def test_done_blockers_are_not_in_the_chain(store):
    wf = scenarios._workflow(store, "partial")
    k = scenarios._jobs(store, wf, {"a": {}, "b": {}, "c": {"blocked_by": ["a", "b"]}})
    node = scenarios._node(store, wf)
    first = scenarios._claim(store, wf, node, limit=1)[0]
    scenarios._complete(store, wf, node, first)
    other = k["b"] if first["_key"] == k["a"] else k["a"]
    details = explain.explain(store, wf, k["c"])["reasons"][0]["details"]
    assert [c["key"] for c in details["chain"]] == [other]


def test_chain_walk_is_bounded(store, monkeypatch):
    monkeypatch.setattr(explain, "MAX_DEPTH", 3)
    wf = scenarios._workflow(store, "long")
    specs = {"j0": {}}
    for i in range(1, 8):
        specs[f"j{i}"] = {"blocked_by": [f"j{i - 1}"]}
    k = scenarios._jobs(store, wf, specs)
    counting = CountingStore(store)
    details = explain.explain(counting, wf, k["j7"])["reasons"][0]["details"]
    assert details["truncated"] is True
    assert [c["key"] for c in details["chain"]] == [k["j6"], k["j5"], k["j4"]]
    assert counting.calls["neighbors"] <= 3 + 4  # one per level + the inputs of the ends


def test_missing_job_and_workflow(store, wf):
    with pytest.raises(NotFound):
        explain.explain(store, wf, "999999")
    with pytest.raises(NotFound):
        explain.explain(store, "999999", "1")
