"""Auto-tune (behavior doc §4.15, with the fixes of §8.12) on a real SQLite store."""

from __future__ import annotations

import pytest

from torc_graph.engine import autotune, specifications
from torc_graph.errors import BadRequest, NotFound

GiB = 1024**3


def make(store, *, process=True, jobs=None):
    spec = {
        "resource_requirements": [
            {"name": "small", "num_cpus": 2, "memory": "4g", "runtime": "P0DT2H"},
            {"name": "medium", "num_cpus": 8, "memory": "30g", "runtime": "P0DT4H"},
        ],
        "jobs": jobs or [
            {"name": "a1", "command": "a", "resource_requirements": "small"},
            {"name": "b1", "command": "b", "resource_requirements": "medium"},
            {"name": "a2", "command": "a", "resource_requirements": "small"},
            {"name": "b2", "command": "b", "resource_requirements": "medium"},
            {"name": "a3", "command": "a", "resource_requirements": "small"},
        ],
        "config": {"compute_node_resource_stats": {"process": process}},
    }
    wf = specifications.create_from_specification(store, spec)["_key"]
    status = store.workflow_space(wf).status
    store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
    return wf


def jobs(store, wf):
    return {j["name"]: j for j in store.find("jobs", wf)}


def statuses(store, wf):
    return {j["name"]: j["status"] for j in store.find("jobs", wf)}


def auto_tune_status(store, wf):
    return store.workflow_space(wf).status["auto_tune_status"]


def record_run(store, wf, job, *, run_id=1, max_cpu=150.0, max_rss=1.5 * GiB, minutes=2.2):
    stats = store.insert("job_process_stats", wf, {
        "job_key": job["_key"], "run_id": run_id, "avg_cpu_percent": max_cpu / 2,
        "max_cpu_percent": max_cpu, "avg_rss": max_rss / 2, "max_rss": max_rss,
        "num_samples": 5, "timestamp": "t"})
    store.insert("process_used", wf, {"_from": job["_id"], "_to": stats["_id"]})
    result = store.insert("results", wf, {
        "job_key": job["_key"], "run_id": run_id, "return_code": 0,
        "exec_time_minutes": minutes, "completion_time": "t", "status": "done"})
    store.insert("returned", wf, {"_from": job["_id"], "_to": result["_id"]})


def dump(store, wf):
    out = {c: store.find(c, wf) for c in ("jobs", "resource_requirements", "events")}
    out["status"] = store.workflow_space(wf).status
    return out


def test_enable_picks_one_job_per_requirements_name(store):
    wf = make(store)
    j = jobs(store, wf)
    assert autotune.auto_tune_resource_requirements(store, wf) == {
        "message": "Enabled jobs for auto-tune mode."}
    assert auto_tune_status(store, wf) == {"enabled": True,
                                           "job_keys": [j["a1"]["_key"], j["b1"]["_key"]]}
    assert statuses(store, wf) == {"a1": "uninitialized", "b1": "uninitialized",
                                   "a2": "disabled", "b2": "disabled", "a3": "disabled"}
    assert store.find("events", wf) == []


def test_enable_skips_blocked_jobs_and_groups_jobs_without_requirements(store):
    wf = make(store, jobs=[
        {"name": "x", "command": "x"},
        {"name": "blocked", "command": "b", "resource_requirements": "small"},
        {"name": "a", "command": "a", "resource_requirements": "small"},
        {"name": "y", "command": "y"},
    ])
    j = jobs(store, wf)
    store.update("jobs", wf, j["blocked"]["_key"], {"status": "blocked"})
    autotune.auto_tune_resource_requirements(store, wf)
    assert auto_tune_status(store, wf)["job_keys"] == [j["x"]["_key"], j["a"]["_key"]]
    assert statuses(store, wf) == {"x": "uninitialized", "blocked": "blocked",
                                   "a": "uninitialized", "y": "disabled"}


def test_enable_requires_process_stats(store):
    wf = make(store, process=False)
    before = dump(store, wf)
    with pytest.raises(BadRequest, match="compute_node_resource_stats.process"):
        autotune.auto_tune_resource_requirements(store, wf)
    assert dump(store, wf) == before


def test_enable_with_an_already_disabled_job_is_a_clear_400(store):
    wf = make(store)
    store.update("jobs", wf, jobs(store, wf)["a3"]["_key"], {"status": "disabled"})
    before = dump(store, wf)
    with pytest.raises(BadRequest, match=r"job \d+ \('a3'\) would be disabled but already is"):
        autotune.auto_tune_resource_requirements(store, wf)
    assert dump(store, wf) == before


def test_process_results(store):
    wf = make(store)
    autotune.auto_tune_resource_requirements(store, wf)
    j = jobs(store, wf)
    record_run(store, wf, j["a1"], run_id=0, max_cpu=900.0, max_rss=9 * GiB)  # older run
    record_run(store, wf, j["a1"], max_cpu=150.0, max_rss=1.5 * GiB, minutes=2.2)
    record_run(store, wf, j["b1"], max_cpu=0.0, max_rss=1000.0, minutes=0.1)
    rr_before = {r["name"]: r for r in store.find("resource_requirements", wf)}

    assert autotune.process_auto_tune_resource_requirements_results(store, wf) == {
        "message": "Processed the results of auto-tuning resource requirements."}

    rr = {r["name"]: r for r in store.find("resource_requirements", wf)}
    assert (rr["small"]["num_cpus"], rr["small"]["memory"], rr["small"]["runtime"]) == (
        2, "2g", "P0DT0H3M")
    # Small processes end up with 1 CPU, 1g and one minute.
    assert (rr["medium"]["num_cpus"], rr["medium"]["memory"], rr["medium"]["runtime"]) == (
        1, "1g", "P0DT0H1M")
    assert statuses(store, wf) == {n: "uninitialized" for n in ("a1", "b1", "a2", "b2", "a3")}
    # enabled=false, and no stray "disabled" key (the original's bug).
    assert auto_tune_status(store, wf) == {"enabled": False,
                                           "job_keys": [j["a1"]["_key"], j["b1"]["_key"]]}
    events = store.find("events", wf)
    assert len(events) == 2
    for event, name in zip(events, ("small", "medium")):
        assert set(event) == {"_key", "_id", "_rev", "timestamp", "category", "type", "name",
                              "old", "new", "message"}
        assert isinstance(event["timestamp"], int)
        assert (event["category"], event["type"], event["name"]) == (
            "resource_requirements", "update", name)
        assert event["message"] == f"Updated resource requirements for name = {name}"
        assert event["old"] == rr_before[name]
        assert event["new"] == rr[name]


def test_tuned_values():
    assert autotune.tuned_values({"max_cpu_percent": 0, "max_rss": 0},
                                 {"exec_time_minutes": 0}) == {
        "num_cpus": 1, "memory": "1g", "runtime": "P0DT0H1M"}
    assert autotune.tuned_values({"max_cpu_percent": 100.0, "max_rss": GiB},
                                 {"exec_time_minutes": 60}) == {
        "num_cpus": 1, "memory": "1g", "runtime": "P0DT0H60M"}
    assert autotune.tuned_values({"max_cpu_percent": 100.5, "max_rss": GiB + 1},
                                 {"exec_time_minutes": 60.01}) == {
        "num_cpus": 2, "memory": "2g", "runtime": "P0DT0H61M"}


@pytest.mark.parametrize("problem,message", [
    ("no stats", "has no process stats"),
    ("no result", "has no result for the current run_id 1"),
    ("not disabled", "is not an auto-tune job and should be disabled"),
    ("shared rr", "would be tuned twice"),
])
def test_process_results_errors_change_nothing(store, problem, message):
    wf = make(store)
    autotune.auto_tune_resource_requirements(store, wf)
    j = jobs(store, wf)
    if problem != "no stats":
        record_run(store, wf, j["a1"], run_id=1 if problem != "no result" else 0)
    record_run(store, wf, j["b1"])
    if problem == "not disabled":
        store.update("jobs", wf, j["a2"]["_key"], {"status": "ready"})
    if problem == "shared rr":
        small = store.find("resource_requirements", wf, {"name": "small"})[0]
        store.delete_many("requires", wf, {"_from": j["b1"]["_id"]})
        store.insert("requires", wf, {"_from": j["b1"]["_id"], "_to": small["_id"]})
    before = dump(store, wf)
    with pytest.raises(BadRequest, match=message):
        autotune.process_auto_tune_resource_requirements_results(store, wf)
    assert dump(store, wf) == before


def test_process_results_job_without_requirements_is_a_clear_400(store):
    wf = make(store, jobs=[{"name": "bare", "command": "x"}])
    autotune.auto_tune_resource_requirements(store, wf)
    record_run(store, wf, jobs(store, wf)["bare"])
    before = dump(store, wf)
    with pytest.raises(BadRequest, match=r"\('bare'\) has no resource requirements document"):
        autotune.process_auto_tune_resource_requirements_results(store, wf)
    assert dump(store, wf) == before


def test_process_results_requires_auto_tune_to_be_enabled(store):
    wf = make(store)
    before = dump(store, wf)
    with pytest.raises(BadRequest, match="auto-tune is not enabled"):
        autotune.process_auto_tune_resource_requirements_results(store, wf)
    assert dump(store, wf) == before


def test_missing_workflow(store):
    with pytest.raises(NotFound):
        autotune.auto_tune_resource_requirements(store, "nope")
    with pytest.raises(NotFound):
        autotune.process_auto_tune_resource_requirements_results(store, "nope")
