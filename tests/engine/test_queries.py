"""Graph queries (behavior doc §4.11, §4.12, §4.16, §4.20) on a real SQLite store: downstream
jobs, joins with filters/skip/limit, per-job relation helpers and their envelopes."""

from __future__ import annotations

import pytest

from torc_graph.engine import queries, specifications
from torc_graph.errors import BadRequest, InvalidInput, NotFound


DIAMOND = {
    "files": [{"name": n, "path": f"{n}.json"} for n in ("in", "f1", "f2", "f3", "f4", "out")],
    "user_data": [{"name": "params", "data": {"a": 1}}, {"name": "u1"}, {"name": "u2"}],
    "resource_requirements": [{"name": "small"}, {"name": "big", "num_cpus": 4}],
    "jobs": [
        {"name": "pre", "command": "pre", "input_files": ["in"], "output_files": ["f1", "f2"],
         "input_user_data": ["params"], "output_user_data": ["u1", "u2"],
         "resource_requirements": "small"},
        {"name": "w1", "command": "w1", "input_files": ["f1"], "output_files": ["f3"],
         "input_user_data": ["u1"], "blocked_by": ["pre"], "resource_requirements": "big"},
        {"name": "w2", "command": "w2", "input_files": ["f2"], "output_files": ["f4"],
         "input_user_data": ["u2"], "blocked_by": ["pre"], "resource_requirements": "big"},
        {"name": "post", "command": "post", "input_files": ["f3", "f4"], "output_files": ["out"],
         "blocked_by": ["w1", "w2"]},
        {"name": "lonely", "command": "x"},
    ],
}


@pytest.fixture
def wf(store):
    return specifications.create_from_specification(store, DIAMOND)["_key"]


def by_name(store, wf, collection="jobs"):
    return {d["name"]: d for d in store.find(collection, wf)}


def names(items):
    return [d["name"] for d in items]


def assert_envelope(env, *, skip, count, total, has_more):
    assert env["skip"] == skip
    assert env["max_limit"] == 100_000
    assert env["count"] == len(env["items"]) == count
    assert env["total_count"] == total
    assert env["has_more"] is has_more


# ----------------------------------------------------------------------------------------------
# Jobs
# ----------------------------------------------------------------------------------------------


def test_downstream_jobs_breadth_first_each_once(store, wf):
    jobs = by_name(store, wf)
    env = queries.list_downstream_jobs(store, wf, jobs["pre"]["_key"])
    assert names(env["items"]) == ["w1", "w2", "post"]
    assert_envelope(env, skip=0, count=3, total=3, has_more=False)
    assert names(queries.list_downstream_jobs(store, wf, jobs["w2"]["_key"])["items"]) == ["post"]
    assert queries.list_downstream_jobs(store, wf, jobs["post"]["_key"])["items"] == []
    page = queries.list_downstream_jobs(store, wf, jobs["pre"]["_key"], skip=1, limit=1.0)
    assert names(page["items"]) == ["w2"]
    # torc v0.6.4: total_count is the number returned, has_more false.
    assert_envelope(page, skip=1, count=1, total=1, has_more=False)


def test_downstream_jobs_survive_cycles(store, wf):
    jobs = by_name(store, wf)
    store.insert("blocks", wf, {"_from": jobs["post"]["_id"], "_to": jobs["pre"]["_id"]})
    got = names(queries.list_downstream_jobs(store, wf, jobs["pre"]["_key"])["items"])
    assert got == ["w1", "w2", "post", "pre"]


def test_downstream_jobs_errors(store, wf):
    with pytest.raises(NotFound):
        queries.list_downstream_jobs(store, wf, "999999")
    with pytest.raises(NotFound):
        queries.list_downstream_jobs(store, "nope", "1")
    key = by_name(store, wf)["pre"]["_key"]
    with pytest.raises(InvalidInput, match="skip"):
        queries.list_downstream_jobs(store, wf, key, skip=1.5)
    with pytest.raises(InvalidInput, match="limit"):
        queries.list_downstream_jobs(store, wf, key, limit=-1)


def test_jobs_by_status(store, wf):
    jobs = by_name(store, wf)
    for name in ("w1", "post"):
        store.update("jobs", wf, jobs[name]["_key"], {"status": "done"})
    env = queries.list_jobs_by_status(store, wf, "uninitialized")
    assert names(env["items"]) == ["pre", "w2", "lonely"]
    assert_envelope(env, skip=0, count=3, total=3, has_more=False)
    page = queries.list_jobs_by_status(store, wf, "uninitialized", skip=1, limit=1)
    assert names(page["items"]) == ["w2"]
    assert_envelope(page, skip=1, count=1, total=3, has_more=True)
    assert names(queries.list_jobs_by_status(store, wf, "done")["items"]) == ["w1", "post"]
    assert queries.list_jobs_by_status(store, wf, "bogus")["items"] == []


def test_jobs_by_needs_file(store, wf):
    files = by_name(store, wf, "files")
    env = queries.list_jobs_by_needs_file(store, wf, files["f1"]["_key"])
    assert names(env["items"]) == ["w1"]
    assert_envelope(env, skip=0, count=1, total=1, has_more=False)
    jobs = by_name(store, wf)
    store.insert("needs", wf, {"_from": jobs["lonely"]["_id"], "_to": files["f1"]["_id"]})
    assert names(queries.list_jobs_by_needs_file(store, wf, files["f1"]["_key"])["items"]) == [
        "w1", "lonely"]
    page = queries.list_jobs_by_needs_file(store, wf, files["f1"]["_key"], skip=1, limit=5)
    assert names(page["items"]) == ["lonely"]
    assert_envelope(page, skip=1, count=1, total=1, has_more=False)
    assert queries.list_jobs_by_needs_file(store, wf, files["out"]["_key"])["items"] == []
    with pytest.raises(NotFound, match="File 12345 is not stored"):
        queries.list_jobs_by_needs_file(store, wf, "12345")


def test_files_produced_by_job_honors_skip(store, wf):
    pre = by_name(store, wf)["pre"]["_key"]
    env = queries.list_files_produced_by_job(store, wf, pre)
    assert names(env["items"]) == ["f1", "f2"]
    assert_envelope(env, skip=0, count=2, total=2, has_more=False)
    # The original ignored skip and returned f1 again.
    page = queries.list_files_produced_by_job(store, wf, pre, skip=1)
    assert names(page["items"]) == ["f2"]
    assert_envelope(page, skip=1, count=1, total=2, has_more=False)
    first = queries.list_files_produced_by_job(store, wf, pre, limit=1)
    assert names(first["items"]) == ["f1"]
    assert_envelope(first, skip=0, count=1, total=2, has_more=True)
    with pytest.raises(NotFound):
        queries.list_files_produced_by_job(store, wf, "999999")


# ----------------------------------------------------------------------------------------------
# Per-job relations
# ----------------------------------------------------------------------------------------------


def test_user_data_stores_and_consumes(store, wf):
    jobs = by_name(store, wf)
    stores = queries.list_job_user_data_stores(store, wf, jobs["pre"]["_key"])
    assert names(stores["items"]) == ["u1", "u2"]
    assert_envelope(stores, skip=0, count=2, total=2, has_more=False)
    consumes = queries.list_job_user_data_consumes(store, wf, jobs["pre"]["_key"])
    assert names(consumes["items"]) == ["params"]
    assert consumes["items"][0]["data"] == {"a": 1}
    assert queries.list_job_user_data_stores(store, wf, jobs["lonely"]["_key"])["items"] == []
    with pytest.raises(NotFound):
        queries.list_job_user_data_consumes(store, wf, "999999")


def test_add_job_user_data(store, wf):
    job = by_name(store, wf)["lonely"]
    stored = queries.add_job_user_data(store, wf, job["_key"], {"name": "result", "data": {"x": 2},
                                                                  "is_ephemeral": False})
    assert stored["_id"].startswith(f"user_data__{wf}/")
    assert stored["data"] == {"x": 2}
    again = queries.add_job_user_data(store, wf, job["_key"], {"name": "result"})
    assert again["_key"] != stored["_key"]  # no de-duplication
    assert names(queries.list_job_user_data_stores(store, wf, job["_key"])["items"]) == [
        "result", "result"]
    before = store.count("user_data", wf)
    with pytest.raises(NotFound):
        queries.add_job_user_data(store, wf, "999999", {"name": "orphan"})
    assert store.count("user_data", wf) == before


def test_process_stats_sorted_by_run_id(store, wf):
    job = by_name(store, wf)["w1"]
    for run_id in (3, 1, 2):
        stats = store.insert("job_process_stats", wf, {
            "job_key": job["_key"], "run_id": run_id, "avg_cpu_percent": 1.0,
            "max_cpu_percent": 2.0, "avg_rss": 10.0, "max_rss": 20.0, "num_samples": 3,
            "timestamp": "t"})
        store.insert("process_used", wf, {"_from": job["_id"], "_to": stats["_id"]})
    got = queries.get_process_stats_for_job(store, wf, job["_key"])
    assert isinstance(got, list)
    assert [s["run_id"] for s in got] == [1, 2, 3]
    assert queries.get_process_stats_for_job(store, wf, by_name(store, wf)["pre"]["_key"]) == []


def test_job_resource_requirements(store, wf):
    jobs = by_name(store, wf)
    rrs = by_name(store, wf, "resource_requirements")
    assert queries.get_job_resource_requirements(store, wf, jobs["w1"]["_key"]) == rrs["big"]
    default = queries.get_job_resource_requirements(store, wf, jobs["post"]["_key"])
    assert default == {"name": "default", "num_cpus": 1, "num_gpus": 0, "num_nodes": 1,
                       "memory": "1m", "runtime": "P0DT1M"}
    edge = queries.modify_job_resource_requirements(store, wf, jobs["w1"]["_key"],
                                                    rrs["small"]["_key"])
    assert (edge["_from"], edge["_to"]) == (jobs["w1"]["_id"], rrs["small"]["_id"])
    assert store.count("requires", wf, {"_from": jobs["w1"]["_id"]}) == 1
    assert queries.get_job_resource_requirements(store, wf, jobs["w1"]["_key"]) == rrs["small"]
    queries.modify_job_resource_requirements(store, wf, jobs["post"]["_key"], rrs["big"]["_key"])
    assert queries.get_job_resource_requirements(store, wf, jobs["post"]["_key"]) == rrs["big"]
    # A second edge (only possible through the edge endpoints) is a 400.
    store.insert("requires", wf, {"_from": jobs["post"]["_id"], "_to": rrs["small"]["_id"]})
    with pytest.raises(BadRequest, match="2 resource requirements"):
        queries.get_job_resource_requirements(store, wf, jobs["post"]["_key"])
    with pytest.raises(NotFound):
        queries.modify_job_resource_requirements(store, wf, jobs["w1"]["_key"], "999999")
    with pytest.raises(NotFound):
        queries.modify_job_resource_requirements(store, wf, "999999", rrs["big"]["_key"])
    assert queries.get_job_resource_requirements(store, wf, jobs["w1"]["_key"]) == rrs["small"]


def _add_result(store, wf, job, run_id, return_code=0):
    result = store.insert("results", wf, {
        "job_key": job["_key"], "run_id": run_id, "return_code": return_code,
        "exec_time_minutes": 1.5, "completion_time": "now", "status": "done"})
    store.insert("returned", wf, {"_from": job["_id"], "_to": result["_id"]})
    return result


def test_result_of_the_current_run(store, wf):
    job = by_name(store, wf)["w1"]
    status = store.workflow_space(wf).status
    with pytest.raises(NotFound, match=f"No result is stored for job {job['_key']}"):
        queries.get_latest_job_result(store, wf, job["_key"])
    _add_result(store, wf, job, 0)
    store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
    with pytest.raises(NotFound):
        queries.get_latest_job_result(store, wf, job["_key"])
    _add_result(store, wf, job, 1, return_code=1)
    second = _add_result(store, wf, job, 1, return_code=2)
    _add_result(store, wf, job, 2)
    # Only the current run counts; with two results for it the last one stored wins.
    assert queries.get_latest_job_result(store, wf, job["_key"]) == second


# ----------------------------------------------------------------------------------------------
# Joins
# ----------------------------------------------------------------------------------------------


def test_join_outbound(store, wf):
    env = queries.join_by_outbound_edge(store, wf, "jobs", "needs", {})
    pairs = [(r["from"]["name"], r["to"]["name"]) for r in env["items"]]
    assert pairs == [("pre", "in"), ("w1", "f1"), ("w2", "f2"), ("post", "f3"), ("post", "f4")]
    assert all(r["edge"]["_from"] == r["from"]["_id"] and r["edge"]["_to"] == r["to"]["_id"]
               for r in env["items"])
    assert_envelope(env, skip=0, count=5, total=5, has_more=False)


def test_join_inbound(store, wf):
    env = queries.join_by_inbound_edge(store, wf, "resource_requirements", "requires", {})
    pairs = [(r["from"]["name"], r["to"]["name"]) for r in env["items"]]
    assert pairs == [("pre", "small"), ("w1", "big"), ("w2", "big")]
    assert all(r["edge"]["_to"] == r["to"]["_id"] for r in env["items"])


def test_join_filters_skip_limit(store, wf):
    rows = queries.join_by_outbound_edge(store, wf, "jobs", "needs", {"name": "post"})["items"]
    assert [r["to"]["name"] for r in rows] == ["f3", "f4"]
    # skip/limit count documents of the collection before the join, not rows.
    env = queries.join_by_outbound_edge(store, wf, "jobs", "needs", {}, skip=3, limit=2)
    assert [(r["from"]["name"], r["to"]["name"]) for r in env["items"]] == [
        ("post", "f3"), ("post", "f4")]
    assert_envelope(env, skip=3, count=2, total=2, has_more=False)
    env = queries.join_by_outbound_edge(store, wf, "jobs", "needs",
                                        {"status": "uninitialized"}, limit=1)
    assert [r["from"]["name"] for r in env["items"]] == ["pre"]
    inbound = queries.join_by_inbound_edge(store, wf, "resource_requirements", "requires",
                                           {"num_cpus": 4})
    assert [r["from"]["name"] for r in inbound["items"]] == ["w1", "w2"]
    # Filters are type-strict: the CLI sends all-digit strings as ints.
    assert queries.join_by_inbound_edge(store, wf, "resource_requirements", "requires",
                                        {"num_cpus": "4"})["items"] == []
    assert queries.join_by_outbound_edge(store, wf, "jobs", "needs",
                                         {"name": "lonely"})["items"] == []


def test_join_executed_edges_carry_data(store, wf):
    job = by_name(store, wf)["w1"]
    node = store.insert("compute_nodes", wf, {"hostname": "h", "pid": 1, "start_time": "t",
                                              "resources": {}, "scheduler": {"hpc_type": "local"}})
    store.insert("executed", wf, {"_from": node["_id"], "_to": job["_id"], "data": {"run_id": 1}})
    (row,) = queries.join_by_outbound_edge(store, wf, "compute_nodes", "executed", {})["items"]
    assert row["edge"]["data"]["run_id"] == 1
    assert row["from"]["scheduler"] == {"hpc_type": "local"}
    assert row["to"]["name"] == "w1"


def test_join_errors(store, wf):
    with pytest.raises(InvalidInput, match="unknown collection name 'jobz'"):
        queries.join_by_outbound_edge(store, wf, "jobz", "needs", {})
    with pytest.raises(InvalidInput, match="unknown edge name 'needz'"):
        queries.join_by_inbound_edge(store, wf, "files", "needz", {})
    with pytest.raises(InvalidInput, match="unknown filter field 'colour'"):
        queries.join_by_outbound_edge(store, wf, "jobs", "needs", {"colour": "red"})
    with pytest.raises(InvalidInput, match="invalid filter field"):
        queries.join_by_outbound_edge(store, wf, "jobs", "needs", {"name') OR 1=1 --": 1})
    with pytest.raises(NotFound):
        queries.join_by_outbound_edge(store, "nope", "jobs", "needs", {})
    # Events are free-form: any field name is a valid filter.
    assert queries.join_by_outbound_edge(store, wf, "events", "needs", {"anything": 1})[
        "items"] == []
    # System fields are always allowed.
    key = by_name(store, wf)["w1"]["_key"]
    rows = queries.join_by_outbound_edge(store, wf, "jobs", "needs", {"_key": key})["items"]
    assert [r["to"]["name"] for r in rows] == ["f1"]
