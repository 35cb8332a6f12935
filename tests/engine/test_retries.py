"""Failure handlers and cause-aware retries (docs/execution-model.md §2, §3; torc spec §7): rule
matching, max_retries semantics, infra budgets, memory/runtime raising, recovery scripts."""

from __future__ import annotations

import pytest

from torc_graph.engine import execution, lifecycle, queries, retries
from torc_graph.store.base import In
from torc_graph.testing import sibling_module
from torc_graph.units import GiB

helpers = sibling_module(__file__, "execution_helpers")
add_node, claim, complete, item, make_jobs, statuses = (
    helpers.add_node, helpers.claim, helpers.complete, helpers.item, helpers.make_jobs,
    helpers.statuses)

HANDLERS = {"failure_handlers": [{"name": "h", "rules": [
    {"match_all_exit_codes": True, "max_retries": 2, "recovery_script": "echo all"},
    {"exit_codes": [12, 13], "max_retries": 3, "recovery_script": "fix.sh"},
    {"exit_codes": [137], "max_retries": 3, "memory_factor": 2.0, "max_memory": "3m"},
    {"runtime_factor": 1.5, "max_runtime": "PT2M", "max_retries": 3},
]}]}


@pytest.fixture
def node(store, wf):
    return add_node(store, wf)


def job_doc(**ex):
    return {"_key": "1", "failure_handler": "h", "execution": ex,
            "internal": {"memory_bytes": 1024 * 1024, "runtime_seconds": 60.0}}


@pytest.mark.parametrize("rc, cause, expected", [
    (12, "exit", "fix.sh"),          # a specific rule beats an earlier match-all
    (1, "exit", "echo all"),         # match-all
    (137, "exit", None),             # 137 is oom: the exit-code rule
    (-9, "oom", None),               # oom without its code: the memory_factor rule
    (-15, "timeout", None),          # timeout: the runtime_factor rule
])
def test_rule_matching(rc, cause, expected):
    decision = retries.decide(HANDLERS, job_doc(), "done", cause, rc)
    assert decision.retry and decision.charge == "retries"
    assert decision.recovery_script == expected


def test_no_handler_or_no_rule_means_no_retry():
    assert not retries.decide({}, job_doc(), "done", "exit", 12).retry
    assert not retries.decide(HANDLERS, {**job_doc(), "failure_handler": "other"}, "done",
                              "exit", 12).retry
    one_rule = {"failure_handlers": [{"name": "h", "rules": [{"exit_codes": [12]}]}]}
    assert not retries.decide(one_rule, job_doc(), "done", "exit", 1).retry
    assert not retries.decide(HANDLERS, job_doc(), "done", "exit", 0).retry
    assert not retries.decide(HANDLERS, job_doc(), "canceled", "exit", 1).retry


def test_max_retries_caps_attempts_charged_to_the_handler():
    assert retries.decide(HANDLERS, job_doc(retries=1), "done", "exit", 12).retry
    assert not retries.decide(HANDLERS, job_doc(retries=2), "done", "exit", 12).retry
    # Infrastructure requeues are not charged to the handler.
    assert retries.decide(HANDLERS, job_doc(retries=1, infra_retries=3, attempt_id=6),
                          "done", "exit", 12).retry


def test_infra_causes_have_their_own_budget():
    d = retries.decide({"max_infra_retries": 2}, job_doc(infra_retries=1, retries=9),
                       "terminated", "walltime", -15)
    assert d.retry and d.charge == "infra_retries"
    d = retries.decide({"max_infra_retries": 2}, job_doc(infra_retries=2), "terminated",
                       "walltime", -15)
    assert not d.retry and d.status == "terminated"
    assert retries.decide({}, job_doc(), "ready", "interrupted", -1).charge is None


def test_oom_and_timeout_raise_resources_up_to_the_cap():
    d = retries.decide(HANDLERS, job_doc(), "done", "oom", 137)
    assert d.internal == {"memory_bytes": 2 * 1024 * 1024}
    big = {**job_doc(), "internal": {"memory_bytes": 2 * 1024 * 1024, "runtime_seconds": 100.0}}
    assert retries.decide(HANDLERS, big, "done", "oom", 137).internal["memory_bytes"] == 3 * 1024**2
    assert retries.decide(HANDLERS, big, "terminated", "timeout", -15).internal == {
        "runtime_seconds": 120.0}
    bad = {"failure_handlers": [{"name": "h", "rules": [
        {"exit_codes": [137], "memory_factor": 2.0, "max_memory": "lots"}]}]}
    assert retries.decide(bad, job_doc(), "done", "oom", 137).internal == {}


def _run_attempts(store, wf, node, codes):
    """Run job ``a`` with the given exit codes, one per attempt, until it is not retried."""
    outcomes = []
    for rc in codes:
        job = claim(store, wf, node)["jobs"][0]
        resp = complete(store, wf, node, [item(job, rc)])
        outcomes.append(resp["items"][0])
        if resp["items"][0]["outcome"] != "retried":
            break
    return outcomes


def test_exit_12_twice_then_success_under_max_retries_3(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": ["a"]}, config={"failure_handlers": [
        {"name": "h", "rules": [{"exit_codes": [12], "max_retries": 3,
                                 "recovery_script": "fix.sh"}]}]})
    store.update_many("jobs", wf, {"name": "a"}, {"failure_handler": "h"})
    out = _run_attempts(store, wf, node, [12, 12, 0])
    assert [o["outcome"] for o in out] == ["retried", "retried", "completed"]
    assert out[0]["recovery_script"] == "fix.sh"
    assert statuses(store, wf) == {"a": "done", "b": "ready"}
    rows = sorted((r["attempt_id"], r["return_code"], r["cause"], r["status"])
                  for r in store.find("results", wf))
    assert rows == [(1, 12, "exit", "ready"), (2, 12, "exit", "ready"), (3, 0, "exit", "done")]
    key = store.find("jobs", wf, {"name": "a"})[0]["_key"]
    assert queries.get_latest_job_result(store, wf, key)["attempt_id"] == 3
    # reset --failed-only ignores the retried attempts of a job that succeeded
    lifecycle.reset_job_status(store, wf, failed_only=True)
    assert statuses(store, wf)["a"] == "done"


def test_exit_12_three_times_fails_after_three_attempts(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": ["a"]}, config={"failure_handlers": [
        {"name": "h", "rules": [{"exit_codes": [12], "max_retries": 3}]}]})
    store.update_many("jobs", wf, {"name": "a"}, {"failure_handler": "h"})
    out = _run_attempts(store, wf, node, [12, 12, 12])
    assert [o["outcome"] for o in out] == ["retried", "retried", "completed"]
    assert statuses(store, wf) == {"a": "done", "b": "canceled"}


def test_exit_1_without_a_rule_is_not_retried(store, wf, node):
    make_jobs(store, wf, {"a": [], "b": ["a"]}, config={"failure_handlers": [
        {"name": "h", "rules": [{"exit_codes": [12]}]}]})
    store.update_many("jobs", wf, {"name": "a"}, {"failure_handler": "h"})
    out = _run_attempts(store, wf, node, [1])
    assert [o["outcome"] for o in out] == ["completed"]
    assert statuses(store, wf) == {"a": "done", "b": "canceled"}
    assert len(store.find("results", wf)) == 1


def test_oom_is_retried_with_more_memory_and_claims_use_it(store, wf, node):
    make_jobs(store, wf, {"a": []}, config={"failure_handlers": [{"name": "h", "rules": [
        {"exit_codes": [137], "max_retries": 4, "memory_factor": 4.0, "max_memory": "3g"}]}]})
    store.update_many("jobs", wf, {"name": "a"}, {"failure_handler": "h",
                                                  "internal.memory_bytes": GiB})
    job = claim(store, wf, node)["jobs"][0]
    resp = complete(store, wf, node, [item(job, 137, cause="oom")])
    assert resp["items"][0]["outcome"] == "retried"
    again = store.find("jobs", wf, {"name": "a"})[0]
    assert again["internal"]["memory_bytes"] == 3 * GiB
    # A worker with 2 GiB no longer fits it; one with 4 GiB does.
    none = execution.claim_jobs(store, wf, {"compute_node_key": node["_key"], "resources": {
        "num_cpus": 4, "memory_gb": 2.0}})
    assert none["jobs"] == []
    got = claim(store, wf, node)["jobs"]
    assert [j["execution"]["attempt_id"] for j in got] == [2]
    rows = store.find("results", wf, {"attempt_id": In([1])})
    assert rows[0]["cause"] == "oom"
