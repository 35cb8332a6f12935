"""initialize_jobs, process_changed_job_inputs, missing_user_data, required_existing_files and
the input hash (behavior doc §4.1, §4.2, §4.13, §4.14), on a real SQLite store."""

from __future__ import annotations

import pytest

from torc_graph.engine import documents, initialize, jobs, lifecycle, workflows
from torc_graph.errors import BadRequest
from torc_graph.testing import CountingStore


def new_workflow(store, run_id=1):
    wf = workflows.create_workflow(store, {"user": "test", "name": "wf"})["_key"]
    status = store.workflow_space(wf).status
    store.update("workflow_statuses", None, status["_key"], {"run_id": run_id})
    return wf


def add(store, wf, collection, body):
    return documents.add_document(store, wf, collection, body)


def add_jobs(store, wf, bodies):
    return jobs.add_jobs(store, wf, {"jobs": bodies})["items"]


def statuses(store, wf):
    return {j["name"]: j["status"] for j in store.find("jobs", wf)}


def chain(store, wf, *names):
    """Jobs named ``names``, each blocked by the previous one (explicit blocks edges)."""
    jobs = add_jobs(store, wf, [{"name": n, "command": n} for n in names])
    for blocker, blocked in zip(jobs, jobs[1:]):
        store.insert("blocks", wf, {"_from": blocker["_id"], "_to": blocked["_id"]})
    return jobs


def set_status(store, wf, job, status):
    store.update("jobs", wf, job["_key"], {"status": status})


def diamond(store, wf):
    """preprocess → (work1, work2) → postprocess, linked through files; inputs.json is a user
    input."""
    f = {n: add(store, wf, "files", {"name": n, "path": n})["_id"]
         for n in ("inputs", "f1", "f2", "f3", "f4", "out")}
    return add_jobs(store, wf, [
        {"name": "preprocess", "command": "pre", "input_files": [f["inputs"]],
         "output_files": [f["f1"], f["f2"]]},
        {"name": "work1", "command": "w1", "input_files": [f["f1"]], "output_files": [f["f3"]]},
        {"name": "work2", "command": "w2", "input_files": [f["f2"]], "output_files": [f["f4"]]},
        {"name": "postprocess", "command": "post", "input_files": [f["f3"], f["f4"]],
         "output_files": [f["out"]]},
    ]), f


def test_initialize_derives_blocks_from_files_and_sets_statuses(store):
    wf = new_workflow(store)
    (pre, w1, w2, post), files = diamond(store, wf)
    assert initialize.initialize_jobs(store, wf) == {"message": "Initialized job status"}
    assert statuses(store, wf) == {
        "preprocess": "ready", "work1": "blocked", "work2": "blocked", "postprocess": "blocked"}
    edges = {(e["_from"], e["_to"]) for e in store.find("blocks", wf)}
    assert edges == {(pre["_id"], w1["_id"]), (pre["_id"], w2["_id"]),
                     (w1["_id"], post["_id"]), (w2["_id"], post["_id"])}
    # A second initialization adds no duplicate edges.
    initialize.initialize_jobs(store, wf)
    assert store.count("blocks", wf) == 4
    assert initialize.required_existing_files(store, wf) == {"files": [files["inputs"]]}


def test_initialize_derives_blocks_from_user_data_and_clears_ephemeral(store):
    wf = new_workflow(store)
    ud = add(store, wf, "user_data", {"name": "u", "is_ephemeral": True, "data": {"x": 1}})
    empty = add(store, wf, "user_data", {"name": "e", "is_ephemeral": True, "data": {}})
    keep = add(store, wf, "user_data", {"name": "k", "data": {"y": 2}})
    producer, consumer = add_jobs(store, wf, [
        {"name": "p", "command": "p", "output_user_data": [ud["_id"]]},
        {"name": "c", "command": "c", "input_user_data": [ud["_id"], keep["_id"]]},
    ])
    initialize.initialize_jobs(store, wf)
    assert statuses(store, wf) == {"p": "ready", "c": "blocked"}
    assert store.get("user_data", wf, ud["_key"])["data"] == {}
    assert store.get("user_data", wf, empty["_key"])["_rev"] == empty["_rev"]
    assert store.get("user_data", wf, keep["_key"])["data"] == {"y": 2}

    initialize.initialize_jobs(store, wf, clear_ephemeral_user_data=False)
    store.update("user_data", wf, ud["_key"], {"data": {"z": 3}})
    initialize.initialize_jobs(store, wf, clear_ephemeral_user_data=False)
    assert store.get("user_data", wf, ud["_key"])["data"] == {"z": 3}


def test_initialize_copies_resource_requirements_and_scheduler(store):
    wf = new_workflow(store)
    big = add(store, wf, "resource_requirements",
              {"name": "big", "num_cpus": 8, "num_gpus": 2, "num_nodes": 3, "memory": "4g",
               "runtime": "P0DT2H"})
    zero = add(store, wf, "resource_requirements", {"name": "zero", "num_cpus": 0})
    sched = add(store, wf, "slurm_schedulers", {"name": "s", "account": "a", "nodes": 1})
    a, b, c = add_jobs(store, wf, [
        {"name": "a", "command": "a", "resource_requirements": big["_id"],
         "scheduler": sched["_id"]},
        {"name": "b", "command": "b"},
        {"name": "c", "command": "c", "resource_requirements": zero["_id"]},
    ])
    store.update("jobs", wf, a["_key"], {"internal": {**a["internal"], "hash": 77}})
    initialize.initialize_jobs(store, wf)
    internal = {j["name"]: j["internal"] for j in store.find("jobs", wf)}
    assert internal["a"] == {"num_cpus": 8, "num_gpus": 2, "num_nodes": 3,
                             "memory_bytes": 4 * 1024**3, "runtime_seconds": 7200,
                             "scheduler_config_id": sched["_id"], "hash": 77}
    default = {"num_cpus": 1, "num_gpus": 0, "num_nodes": 1, "memory_bytes": 1048576,
               "runtime_seconds": 60}
    for name in ("b", "c"):
        assert {k: internal[name][k] for k in default} == default
        assert internal[name]["scheduler_config_id"] == ""
    assert isinstance(internal["a"]["memory_bytes"], int)
    # A deleted rr leaves the job on the default at the next initialization (§2.7).
    store.delete("resource_requirements", wf, big["_key"])
    initialize.initialize_jobs(store, wf)
    assert store.get("jobs", wf, a["_key"])["internal"]["num_cpus"] == 1


def test_initialize_bad_rr_is_400_and_changes_nothing(store):
    wf = new_workflow(store)
    # Stored directly: the API refuses such a document since issue 10 (item 5).
    rr = store.insert("resource_requirements", wf, {"name": "bad", "memory": "lots"})
    ud = add(store, wf, "user_data", {"name": "u", "is_ephemeral": True, "data": {"x": 1}})
    add_jobs(store, wf, [{"name": "a", "command": "a", "resource_requirements": rr["_id"]}])
    with pytest.raises(BadRequest, match="bad"):
        initialize.initialize_jobs(store, wf)
    assert statuses(store, wf) == {"a": "uninitialized"}
    assert store.get("user_data", wf, ud["_key"])["data"] == {"x": 1}


def test_initialize_archived_is_400(store):
    wf = new_workflow(store)
    store.update("workflows", None, wf, {"is_archived": True})
    with pytest.raises(BadRequest, match="archived"):
        initialize.initialize_jobs(store, wf)


def test_safety_net_and_only_uninitialized(store):
    wf = new_workflow(store)
    a, b, c = chain(store, wf, "a", "b", "c")
    # b and c done, a uninitialized: the safety net resets everything below a.
    set_status(store, wf, b, "done")
    set_status(store, wf, c, "disabled")
    initialize.initialize_jobs(store, wf)
    assert statuses(store, wf) == {"a": "ready", "b": "blocked", "c": "blocked"}

    # only_uninitialized: blocked jobs are not re-evaluated, uninitialized ones are.
    set_status(store, wf, a, "done")
    set_status(store, wf, c, "uninitialized")
    initialize.initialize_jobs(store, wf, only_uninitialized=True)
    assert statuses(store, wf) == {"a": "done", "b": "blocked", "c": "blocked"}


def test_done_job_below_canceled_job_is_not_blocked_forever(store):
    """§8 item 11: a done job whose blocker stays canceled must not become blocked."""
    wf = new_workflow(store)
    a, b, c = chain(store, wf, "a", "b", "c")
    set_status(store, wf, a, "done")
    set_status(store, wf, b, "canceled")
    set_status(store, wf, c, "done")
    initialize.initialize_jobs(store, wf)
    assert statuses(store, wf) == {"a": "done", "b": "canceled", "c": "done"}
    assert lifecycle.is_complete(store, wf)["is_complete"] is True
    # A terminated blocker is re-queued, and its direct dependents wait for it again (torc).
    set_status(store, wf, a, "terminated")
    initialize.initialize_jobs(store, wf)
    assert statuses(store, wf) == {"a": "ready", "b": "blocked", "c": "done"}


def build_tree_workflow(store, n):
    """n jobs in a binary tree through files, 3 rrs, 1 scheduler, some explicit blocked_by."""
    wf = new_workflow(store)
    rrs = [add(store, wf, "resource_requirements", {"name": f"rr{i}", "num_cpus": i + 1})["_id"]
           for i in range(3)]
    sched = add(store, wf, "local_schedulers", {"name": "l"})["_id"]
    files = documents_insert_files(store, wf, n)
    bodies = []
    for i in range(n):
        body = {"name": f"j{i}", "command": "true", "output_files": [files[i]],
                "resource_requirements": rrs[i % 3]}
        if i:
            body["input_files"] = [files[(i - 1) // 2]]
        if i % 7 == 0:
            body["scheduler"] = sched
        bodies.append(body)
    add_jobs(store, wf, bodies)
    return wf


def documents_insert_files(store, wf, n):
    return [d["_id"] for d in store.insert_many(
        "files", wf, [{"name": f"f{i}", "path": f"f{i}"} for i in range(n)])]


def test_store_calls_do_not_depend_on_job_count(store):
    counts = {}
    for n in (100, 10_000):
        wf = build_tree_workflow(store, n)
        counting = CountingStore(store)
        initialize.initialize_jobs(counting, wf)
        counts[n] = counting.total
        st = statuses(store, wf)
        assert st["j0"] == "ready"
        assert sum(1 for s in st.values() if s == "blocked") == n - 1
    assert counts[100] == counts[10_000], counts


def complete(store, wf, job, status="done", rc=0):
    """Claim-free completion through the engine (start_job needs submitted_pending)."""
    run_id = store.workflow_space(wf).status["run_id"]
    node = store.find("compute_nodes", wf, {"hostname": "h"}) or [store.insert(
        "compute_nodes", wf, {"hostname": "h", "pid": 1, "start_time": "t",
                              "resources": {"num_cpus": 1, "memory_gb": 1.0}})]
    job = store.get("jobs", wf, job["_key"])
    return lifecycle.complete_job(
        store, wf, job["_key"], status, job["_rev"], run_id, node[0]["_key"],
        {"job_key": job["_key"], "run_id": run_id, "return_code": rc, "exec_time_minutes": 1.0,
         "completion_time": "now", "status": status})


def test_input_hash_and_process_changed_job_inputs(store):
    wf = new_workflow(store)
    (pre, w1, w2, post), files = diamond(store, wf)
    initialize.initialize_jobs(store, wf)
    for job in (pre, w1, w2, post):
        done = complete(store, wf, job)
        assert done["internal"]["hash"] != 0
        assert done["internal"]["hash"] == initialize.job_hash(store, wf, done)
    assert initialize.process_changed_job_inputs(store, wf) == {"reinitialized_jobs": []}

    f1 = store.find("files", wf, {"name": "f1"})[0]
    store.update("files", wf, f1["_key"], {"st_mtime": 12.5})
    before = statuses(store, wf)
    expected = {"reinitialized_jobs": [w1["_key"], post["_key"]]}
    assert initialize.process_changed_job_inputs(store, wf, dry_run=True) == expected
    assert statuses(store, wf) == before
    assert initialize.process_changed_job_inputs(store, wf) == expected
    assert statuses(store, wf) == {"preprocess": "done", "work1": "uninitialized",
                                   "work2": "done", "postprocess": "uninitialized"}


def test_hash_changes_with_command_and_revisions():
    job = {"command": "a"}
    ud = [{"_key": "10", "_rev": "r1"}, {"_key": "9", "_rev": "r2"}]
    h = initialize.input_hash(job, ud, [], [])
    assert h == initialize.input_hash(job, list(reversed(ud)), [], [])
    assert h != initialize.input_hash({"command": "b"}, ud, [], [])
    assert h != initialize.input_hash(job, [{"_key": "10", "_rev": "r3"}, ud[1]], [], [])
    assert h != initialize.input_hash(job, [], ud, [])
    assert h != initialize.input_hash({"command": "a", "invocation_script": "x"}, ud, [], [])
    assert isinstance(h, int) and 0 <= h < 2**53


def test_missing_user_data(store):
    wf = new_workflow(store)
    given_empty = add(store, wf, "user_data", {"name": "given_empty", "data": {}})
    given_absent = add(store, wf, "user_data", {"name": "given_absent"})
    given_full = add(store, wf, "user_data", {"name": "given_full", "data": {"a": 1}})
    produced = add(store, wf, "user_data", {"name": "produced", "data": {}})
    p, c = add_jobs(store, wf, [
        {"name": "p", "command": "p", "output_user_data": [produced["_id"]]},
        {"name": "c", "command": "c", "input_user_data": [
            given_empty["_id"], given_absent["_id"], given_full["_id"], produced["_id"]]},
    ])
    assert initialize.missing_user_data(store, wf) == {"user_data": [given_empty["_key"]]}
    set_status(store, wf, p, "done")
    assert initialize.missing_user_data(store, wf) == {
        "user_data": [given_empty["_key"], produced["_key"]]}
    # Two producers of the same user data: 400, as torc.
    add_jobs(store, wf, [{"name": "p2", "command": "p", "output_user_data": [produced["_id"]]}])
    with pytest.raises(BadRequest):
        initialize.missing_user_data(store, wf)
