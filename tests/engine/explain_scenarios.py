"""One small workflow per "why is my job not running?" reason, built through the engine on a
real store (claims, completions and lease expiry through the real execution API). Shared by the
engine, API and CLI tests of explain, with the known DAG of the critical-path tests (loaded with importlib: the tests directory is not a
package).

:func:`build_all` returns ``{case: Case}``; each case names the job to explain, the reason codes
expected in order, and the facts the details must carry.
"""

from __future__ import annotations

from typing import Any

import pytest

from torc_graph.engine import documents, execution, initialize, jobs, leases, workflows
from torc_graph.engine.common import now_ms

NODE_RESOURCES = {"num_cpus": 4, "memory_gb": 8.0, "num_gpus": 0, "num_nodes": 1,
                  "time_limit": None, "scheduler_config_id": ""}
CLAIM = {"num_cpus": 4, "memory_gb": 8.0}


@pytest.fixture(autouse=True)
def hold_leases(monkeypatch):
    """Autouse in the modules that bind it: claims sweep leases, and a dead node's job must
    stay held until it is explained."""
    monkeypatch.setattr(leases, "SWEEP_INTERVAL_SECONDS", 3600.0)
    leases.reset_sweep_clock()
    yield
    leases.reset_sweep_clock()


class Case:
    """The job to explain, the reason codes expected in order, facts its details carry."""

    def __init__(self, workflow: str, job: str, codes: list[str],
                 facts: dict[str, Any] | None = None):
        self.workflow, self.job, self.codes, self.facts = workflow, job, codes, facts or {}


def _workflow(store, name: str) -> str:
    wf = workflows.create_workflow(store, {"user": "test", "name": name})["_key"]
    status = store.workflow_space(wf).status
    store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
    return wf


def _node(store, wf: str, host: str = "node01") -> dict:
    return store.insert("compute_nodes", wf, {
        "hostname": host, "pid": 1, "start_time": "t", "is_active": True,
        "resources": dict(NODE_RESOURCES)})


def _jobs(store, wf: str, specs: dict[str, dict], init: bool = True) -> dict[str, str]:
    """Jobs by name; ``blocked_by`` given as names."""
    keys: dict[str, str] = {}
    for name, spec in specs.items():
        body = {"name": name, "command": f"run {name}", **spec,
                "blocked_by": [f"jobs__{wf}/{keys[b]}" for b in spec.get("blocked_by", [])]}
        keys[name] = jobs.add_job(store, wf, body)["_key"]
    if init:
        initialize.initialize_jobs(store, wf)
    return keys


def _claim(store, wf: str, node: dict, limit: int = 1) -> list[dict]:
    return execution.claim_jobs(store, wf, {"compute_node_key": node["_key"],
                                            "resources": CLAIM, "limit": limit})["jobs"]


def _complete(store, wf: str, node: dict, job: dict, rc: int = 0, status: str = "done",
              minutes: float = 0.5) -> None:
    execution.complete_jobs(store, wf, {
        "compute_node_key": node["_key"], "run_id": 1,
        "completions": [{"job_key": job["_key"], "attempt_id": job["execution"]["attempt_id"],
                         "status": status, "cause": "exit",
                         "result": {"return_code": rc, "exec_time_minutes": minutes,
                                    "completion_time": "2026-01-01T00:00:00"}}]})


def build_all(store) -> dict[str, Case]:
    cases: dict[str, Case] = {}

    for code, rc in (("done", 0), ("failed", 3)):
        wf = _workflow(store, code)
        k = _jobs(store, wf, {"a": {}})
        node = _node(store, wf)
        _complete(store, wf, node, _claim(store, wf, node)[0], rc=rc)
        cases[code] = Case(wf, k["a"], [code], {"return_code": rc})

    wf = _workflow(store, "canceled")
    k = _jobs(store, wf, {"a": {}, "b": {"blocked_by": ["a"]}})
    node = _node(store, wf)
    _complete(store, wf, node, _claim(store, wf, node)[0], rc=1)
    cases["canceled"] = Case(wf, k["b"], ["canceled"], {"failed_blocker": k["a"]})

    wf = _workflow(store, "terminated")
    k = _jobs(store, wf, {"a": {}})
    node = _node(store, wf)
    _complete(store, wf, node, _claim(store, wf, node)[0], rc=1, status="terminated")
    cases["terminated"] = Case(wf, k["a"], ["terminated"])

    wf = _workflow(store, "running")
    k = _jobs(store, wf, {"a": {}})
    node = _node(store, wf, "busy01")
    claimed = _claim(store, wf, node)[0]
    cases["running"] = Case(wf, k["a"], ["running"], {
        "compute_node": node["_key"], "hostname": "busy01",
        "since": claimed["execution"]["claimed_at"]})

    wf = _workflow(store, "dead")
    k = _jobs(store, wf, {"a": {}})
    node = _node(store, wf, "dead01")
    _claim(store, wf, node)
    store.update("compute_nodes", wf, node["_key"],
                 {"lease": {"seconds": 1, "expires": 1000, "heartbeat": 0}})
    cases["held_by_dead_node"] = Case(wf, k["a"], ["held_by_dead_node"],
                                      {"compute_node": node["_key"], "lease_expires": 1000})

    wf = _workflow(store, "ready")
    k = _jobs(store, wf, {"a": {}})
    _node(store, wf)
    cases["ready"] = Case(wf, k["a"], ["ready"])

    wf = _workflow(store, "disabled")
    k = _jobs(store, wf, {"a": {"status": "disabled"}})
    cases["disabled"] = Case(wf, k["a"], ["disabled"])

    wf = _workflow(store, "uninitialized")
    k = _jobs(store, wf, {"a": {}}, init=False)
    cases["uninitialized"] = Case(wf, k["a"], ["uninitialized", "no_active_node"])

    wf = _workflow(store, "blocked")
    k = _jobs(store, wf, {"a": {}, "b": {"blocked_by": ["a"]}, "c": {"blocked_by": ["b"]}})
    _node(store, wf)
    cases["blocked"] = Case(wf, k["c"], ["blocked"],
                            {"chain": [k["b"], k["a"]], "ends": [k["a"]]})

    wf = _workflow(store, "big")
    rr = documents.add_document(store, wf, "resource_requirements",
                                {"name": "huge", "num_cpus": 64, "memory": "512g"})
    k = _jobs(store, wf, {"a": {"resource_requirements": rr["_id"]}})
    small = _node(store, wf, "small01")
    large = store.insert("compute_nodes", wf, {
        "hostname": "large01", "pid": 2, "start_time": "t", "is_active": True,
        "resources": {**NODE_RESOURCES, "num_cpus": 32, "memory_gb": 128.0}})
    cases["no_node_fits"] = Case(wf, k["a"], ["ready", "no_node_fits"],
                                 {"largest": large["_key"], "not_largest": small["_key"]})

    wf = _workflow(store, "no-node")
    k = _jobs(store, wf, {"a": {}})
    cases["no_active_node"] = Case(wf, k["a"], ["ready", "no_active_node"])

    wf = _workflow(store, "slurm")
    sched = documents.add_document(store, wf, "slurm_schedulers", {
        "name": "short", "account": "acct", "nodes": 1, "walltime": "01:00:00"})
    k = _jobs(store, wf, {"a": {"scheduler": sched["_id"]}})
    _node(store, wf)
    cases["no_allocation"] = Case(wf, k["a"], ["ready", "no_allocation"],
                                  {"scheduler": sched["_id"]})

    wf = _workflow(store, "file")
    f = documents.add_document(store, wf, "files", {"name": "raw", "path": "raw.csv"})
    k = _jobs(store, wf, {"a": {"input_files": [f["_id"]]}})
    _node(store, wf)
    cases["missing_input_file"] = Case(wf, k["a"], ["ready", "missing_input_file"],
                                       {"file": f["_key"]})

    wf = _workflow(store, "data")
    ud = documents.add_document(store, wf, "user_data", {"name": "params", "data": {}})
    k = _jobs(store, wf, {"a": {"input_user_data": [ud["_id"]]}})
    _node(store, wf)
    cases["missing_user_data"] = Case(wf, k["a"], ["ready", "missing_user_data"],
                                      {"user_data": ud["_key"]})
    return cases


def known_dag(store):
    """a -> b -> d, a -> c -> d, e alone. Declared: a 10 min, b 10 min, c 30 min, d 5 min,
    e 60 min. a ran (recorded 2 min); c runs since 10 min ago; b, d, e wait."""
    wf = _workflow(store, "cp")
    rr = {}
    for name, runtime in (("m10", "PT10M"), ("m30", "PT30M"), ("m5", "PT5M"), ("h1", "PT1H")):
        rr[name] = documents.add_document(store, wf, "resource_requirements",
                                          {"name": name, "runtime": runtime})["_id"]
    k = _jobs(store, wf, {
        "a": {"resource_requirements": rr["m10"]},
        "b": {"resource_requirements": rr["m10"], "blocked_by": ["a"]},
        "c": {"resource_requirements": rr["m30"], "blocked_by": ["a"]},
        "d": {"resource_requirements": rr["m5"], "blocked_by": ["b", "c"]},
        "e": {"resource_requirements": rr["h1"]},
    })
    node = _node(store, wf)
    store.update("jobs", wf, k["e"], {"status": "disabled"})  # e never runs
    a = _claim(store, wf, node)[0]
    assert a["_key"] == k["a"]
    _complete(store, wf, node, a, minutes=2.0)
    c = _claim(store, wf, node)[0]  # longest runtime first
    assert c["_key"] == k["c"]
    store.update("jobs", wf, k["c"], {"execution": {**c["execution"],
                                                   "claimed_at": now_ms() - 600_000}})
    return wf, k


def check(case: Case, answer: dict) -> None:
    """Assert that an explain answer matches the case (codes in order, and the facts)."""
    codes = [r["reason"] for r in answer["reasons"]]
    assert codes == case.codes, answer
    assert answer["job"]["key"] == case.job
    first = answer["reasons"][0]["details"]
    last = answer["reasons"][-1]["details"]
    facts = case.facts
    if "return_code" in facts:
        assert first["return_code"] == facts["return_code"]
    if "failed_blocker" in facts:
        assert [b["key"] for b in first["failed_blockers"]] == [facts["failed_blocker"]]
    if "compute_node" in facts:
        assert first["compute_node"] == facts["compute_node"]
    for name in ("hostname", "since", "lease_expires"):
        if name in facts:
            assert first[name] == facts[name]
    if "chain" in facts:
        assert [c["key"] for c in first["chain"]] == facts["chain"]
        assert [e["key"] for e in first["ends"]] == facts["ends"]
        assert [e["state"] for e in first["ends"]] == ["waiting"]
    if "largest" in facts:
        assert last["largest_node"]["key"] == facts["largest"]
        assert last["largest_node"]["resources"]["num_cpus"] == 32
        assert last["required"]["num_cpus"] == 64
    if "scheduler" in facts:
        assert last["scheduler_config_id"] == facts["scheduler"]
    if "file" in facts:
        assert last["file"]["key"] == facts["file"]
    if "user_data" in facts:
        assert last["user_data"]["key"] == facts["user_data"]
