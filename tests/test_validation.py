"""torc_graph.validation: defaults, error messages, strict integers, copies, bulk speed, and
agreement with jsonschema's Draft202012Validator."""

from __future__ import annotations

import copy
import json
import time

import pytest
from jsonschema import Draft202012Validator
from jsonschema.validators import extend
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from torc_graph import validation
from torc_graph.errors import InvalidInput

RESOURCES = {"num_cpus": 36, "memory_gb": 92.0, "num_gpus": 0, "num_nodes": 1,
             "time_limit": "PT3H59M59.8S", "scheduler_config_id": "slurm_schedulers__5/12"}

#: One full valid body per schema (every optional field present where practical).
SAMPLES = {
    "workflow": {"name": "w", "user": "me", "description": None, "timestamp": "",
                 "is_archived": False, "_key": "5"},
    "workflow_config": {"workflow_startup_script": "s.sh", "compute_node_resource_stats":
                        {"cpu": True, "interval": 0.1, "monitor_type": "periodic"},
                        "compute_node_expiration_buffer_seconds": 60,
                        "prepare_jobs_sort_method": "none"},
    "workflow_status": {"run_id": 0, "is_canceled": False, "auto_tune_status":
                        {"enabled": True, "job_keys": ["1"]},
                        "scheduled_compute_node_ids": [], "_key": "7", "_id": "workflow_statuses/7",
                        "_rev": "_a", "_oldRev": "_b"},
    "job": {"name": "j", "command": "echo hi", "invocation_script": None, "status": "ready",
            "schedule_compute_nodes": {"num_jobs": 2, "scheduler_id": "slurm_schedulers__5/1",
                                       "max_parallel_jobs": None},
            "resource_requirements": "resource_requirements__5/3", "scheduler": "local_schedulers__5/4",
            "input_files": ["files__5/1"], "blocked_by": ["jobs__5/9"],
            "internal": {"num_cpus": 4, "runtime_seconds": 1.5}},
    "file": {"name": "f", "path": "dir/f.json", "st_mtime": 1714564800.25},
    "user_data": {"name": "u", "is_ephemeral": True, "data": {"a": [1, {"b": None}]}},
    "token": {"name": "node-7", "role": "executor", "workflow": "12", "expires_in": 3600},
    "executor_token": {"name": "allocation-3", "expires_in": 604800},
    "resource_requirements": {"name": "small", "num_cpus": 2, "memory": "10g", "runtime": "P0DT1H"},
    "result": {"job_key": "9", "run_id": 1, "return_code": 0, "exec_time_minutes": 1.5,
               "completion_time": "2024-05-01T12:00:00", "status": "done"},
    "compute_node": {"hostname": "h", "pid": 123, "start_time": "2024-05-01 12:00:00.123456",
                     "is_active": True, "duration_seconds": 3.5,
                     "resources": {"num_cpus": 4, "memory_gb": 8}, "scheduler": {"hpc_type": "slurm"}},
    "compute_node_resources": dict(RESOURCES),
    "compute_node_stats": {"hostname": "h", "timestamp": "t", "stats": [
        {"resource_type": "Process", "average": {"rss": 1.0}, "minimum": {}, "maximum": {},
         "num_samples": 3, "job_key": "9"}]},
    "job_process_stats": {"job_key": "9", "run_id": 1, "avg_cpu_percent": 1.5, "max_cpu_percent": 3,
                          "avg_rss": 10, "max_rss": 20.5, "num_samples": 4, "timestamp": "t"},
    "local_scheduler": {"memory": "10g", "num_cpus": 4},
    "aws_scheduler": {"name": "aws"},
    "slurm_scheduler": {"name": "s", "account": "acct", "nodes": 2, "gres": None, "mem": "100g",
                        "ntasks_per_node": None, "partition": "debug", "tmp": None,
                        "walltime": "04:00:00", "extra": None},
    "scheduled_compute_node": {"scheduler_id": "123", "scheduler_config_id": "slurm_schedulers__5/1",
                               "status": "pending"},
    "event": {"category": "job", "type": "start", "anything": {"nested": [1, 2]}},
    "join_filters": {"name": "x", "status": ["ready"]},
    "edge": {"_from": "jobs__5/1", "_to": "jobs__5/2", "data": {"run_id": 1}},
    "claim_jobs": {"compute_node_key": "3", "resources": {"num_cpus": 2, "memory_gb": 4.0,
                   "time_limit": "PT1H"}, "limit": 4, "sort_method": "none", "wait_seconds": 2.5},
    "complete_jobs": {"compute_node_key": "3", "run_id": 1, "completions": [
        {"job_key": "9", "attempt_id": 1, "status": "done", "cause": "oom",
         "result": {"return_code": 137, "exec_time_minutes": 0.5, "completion_time": "t"},
         "process_stats": {"max_rss": 1}}],
        "claim": {"resources": {"num_cpus": 2, "memory_gb": 4.0}, "limit": 2}},
    "heartbeat": {"lease_seconds": 60, "job_keys": ["9"]},
    "release_jobs": {"compute_node_key": "3", "releases": [{"job_key": "9", "attempt_id": 2}]},
    "bulk_jobs": {"jobs": [{"command": "a"}, {"command": "b", "name": "b"}]},
    "job_specification": {"name": "work", "command": "bash x.sh", "scheduler": "slurm_schedulers/big",
                          "resource_requirements": "medium", "input_files": ["f1"],
                          "blocked_by": ["prep"]},
    "workflow_specification": {
        "name": "demo", "user": "me", "key": "77",
        "files": [{"name": "f1", "path": "dir/f1.json"}],
        "user_data": [{"name": "u", "data": {}}],
        "resource_requirements": [{"name": "medium", "num_cpus": 8, "memory": "30g"}],
        "schedulers": {"slurm_schedulers": [{"name": "big", "account": "a", "nodes": 1}]},
        "jobs": [{"name": "work", "command": "bash x.sh", "resource_requirements": "medium",
                  "scheduler": "slurm_schedulers/big", "schedule_compute_nodes": None}],
        "config": {"compute_node_resource_stats": {"process": True}}},
}


def _registry() -> Registry:
    """All schema files. ``$schema`` is stripped from the referenced resources: otherwise
    jsonschema switches to the plain Draft202012Validator when a ``$ref`` crosses files, and
    loses the strict integer type checker."""
    names = list(validation.schema_names()) + ["common"]
    resources = []
    for n in names:
        contents = validation.load(n)
        del contents["$schema"]
        resources.append((contents["$id"], DRAFT202012.create_resource(contents)))
    return Registry().with_resources(resources)


_StrictValidator = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, x: type(x) is int
    ),
)


@pytest.fixture(scope="module")
def reference():
    """jsonschema validators (strict integers), the reference the compiled validators must
    agree with."""
    registry = _registry()
    return {n: _StrictValidator(validation.load(n), registry=registry)
            for n in validation.schema_names()}


def _reason(schema, body):
    with pytest.raises(InvalidInput) as info:
        validation.validate(schema, body)
    assert info.value.status == 400
    return info.value.message


# --------------------------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------------------------


def test_samples_cover_every_schema():
    assert set(SAMPLES) == set(validation.schema_names())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_are_valid_and_output_validates(name, reference):
    out = validation.validate(name, SAMPLES[name])
    assert reference[name].is_valid(SAMPLES[name])
    errors = list(reference[name].iter_errors(out))
    assert not errors, errors[0].message
    assert "_oldRev" not in out


def test_job_defaults_top_level_and_internal():
    out = validation.validate("job", {"command": "ls"})
    assert out == {
        "command": "ls", "cancel_on_blocking_job_failure": True, "supports_termination": False,
        "input_files": [], "output_files": [], "input_user_data": [], "output_user_data": [],
        "blocked_by": [],
        "internal": {"memory_bytes": 0, "num_cpus": 0, "num_gpus": 0, "num_nodes": 0,
                     "runtime_seconds": 0, "scheduler_config_id": "", "hash": 0},
    }
    assert "status" not in out  # the server sets it on insert, not the schema


def test_present_nested_object_gets_missing_defaults():
    out = validation.validate("job", {"command": "ls", "internal": {"num_cpus": 4, "hash": -7}})
    assert out["internal"] == {"memory_bytes": 0, "num_cpus": 4, "num_gpus": 0, "num_nodes": 0,
                               "runtime_seconds": 0, "scheduler_config_id": "", "hash": -7}
    sched = validation.validate("job", {"command": "ls", "schedule_compute_nodes":
                                        {"num_jobs": 1, "scheduler_id": "x"}})
    assert sched["schedule_compute_nodes"]["start_one_worker_per_node"] is False


def test_config_defaults_nested_stats():
    out = validation.validate("workflow_config", {"compute_node_resource_stats": {"process": True}})
    assert out["compute_node_resource_stats"] == {
        "cpu": True, "disk": False, "memory": True, "network": False, "process": True,
        "include_child_processes": True, "recurse_child_processes": False,
        "monitor_type": "aggregation", "make_plots": True, "interval": 10}
    assert out["compute_node_expiration_buffer_seconds"] == 120
    assert out["compute_node_wait_for_new_jobs_seconds"] == 0
    assert out["compute_node_wait_for_healthy_database_minutes"] == 20
    assert out["compute_node_ignore_workflow_completion"] is False
    assert out["prepare_jobs_sort_method"] == "gpus_runtime_memory"
    assert "workflow_startup_script" not in out
    assert validation.validate("workflow_config", {})["compute_node_resource_stats"]["cpu"] is True


def test_other_defaults():
    v = validation.validate
    assert v("resource_requirements", {}) == {
        "num_cpus": 1, "num_gpus": 0, "num_nodes": 1, "memory": "1m", "runtime": "P0DT1M"}
    assert v("workflow", {}) == {"name": "", "user": "", "description": "", "timestamp": "",
                                 "is_archived": False}
    node = v("compute_node", {"hostname": "h", "pid": 1, "start_time": "t",
                              "resources": {"num_cpus": 4, "memory_gb": 8}})
    assert node["scheduler"] == {}
    assert node["resources"] == {"num_cpus": 4, "memory_gb": 8, "num_gpus": 0, "num_nodes": 1,
                                 "scheduler_config_id": ""}
    assert v("local_scheduler", {})["name"] == "default"
    assert v("slurm_scheduler", {"account": "a", "nodes": 1})["qos"] == "normal"
    assert v("user_data", {})["is_ephemeral"] is False
    status = v("workflow_status", {"run_id": 0, "is_canceled": False, "auto_tune_status": {}})
    assert status["auto_tune_status"] == {"enabled": False, "job_keys": []}
    assert status["has_detected_need_to_run_completion_script"] is False


def test_workflow_specification_defaults_everywhere():
    out = validation.validate("workflow_specification", {
        "jobs": [{"command": "a"}], "resource_requirements": [{"name": "r"}],
        "schedulers": {"local_schedulers": [{}]}})
    assert out["name"] == out["user"] == out["description"] == ""
    assert out["is_archived"] is False
    assert out["files"] == [] and out["user_data"] == []
    assert out["schedulers"] == {"aws_schedulers": [], "local_schedulers": [{"name": "default"}],
                                 "slurm_schedulers": []}
    assert out["resource_requirements"][0]["memory"] == "1m"
    assert out["jobs"][0]["blocked_by"] == [] and out["jobs"][0]["supports_termination"] is False
    assert out["config"]["compute_node_resource_stats"]["interval"] == 10


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body,message", [
    ({"command": "ls", "internal": {"num_cpus": "4"}},
     "job: 'internal.num_cpus' must be an integer (got \"4\")"),
    ({"command": "ls", "foo": 1}, "job: unknown field 'foo'"),
    ({"command": "ls", "internal": {"bar": 1}}, "job: unknown field 'internal.bar'"),
    ({"name": "x"}, "job: missing required field 'command'"),
    ({"command": "ls", "schedule_compute_nodes": {"num_jobs": 1}},
     "job: missing required field 'schedule_compute_nodes.scheduler_id'"),
    ({"command": 5}, "job: 'command' must be a string (got 5)"),
    ({"command": "ls", "input_files": ["a", 3]}, "job: 'input_files[1]' must be a string (got 3)"),
    ({"command": "ls", "input_files": "a"}, "job: 'input_files' must be an array (got \"a\")"),
    ({"command": "ls", "schedule_compute_nodes": 5},
     "job: 'schedule_compute_nodes' must be an object or null (got 5)"),
    ({"command": "ls", "cancel_on_blocking_job_failure": "true"},
     "job: 'cancel_on_blocking_job_failure' must be a boolean (got \"true\")"),
    ({"command": "ls", "internal": []}, "job: 'internal' must be an object (got an array)"),
    ([], "job: body must be a JSON object (got an array)"),
    (None, "job: body must be a JSON object (got null)"),
    ("x", "job: body must be a JSON object (got \"x\")"),
])
def test_error_messages(body, message):
    assert _reason("job", body) == message


def test_enum_message_names_allowed_values():
    msg = _reason("job", {"command": "ls", "status": "running"})
    assert msg.startswith("job: 'status' must be one of \"uninitialized\", \"blocked\"")
    assert msg.endswith("(got \"running\")")
    assert "sort_method" in _reason("workflow_config", {"prepare_jobs_sort_method": "fast"})


def test_nullable_fields():
    assert validation.validate("slurm_scheduler", {"account": "a", "nodes": 1, "gres": None})["gres"] is None
    assert "'mem' must be a string or null (got 5)" in _reason(
        "slurm_scheduler", {"account": "a", "nodes": 1, "mem": 5})
    assert "'ntasks_per_node' must be an integer or null" in _reason(
        "slurm_scheduler", {"account": "a", "nodes": 1, "ntasks_per_node": 1.5})
    assert validation.validate("compute_node_resources", RESOURCES | {"time_limit": None,
                               "scheduler_config_id": None})["time_limit"] is None


def test_missing_required_reported_before_other_errors():
    assert _reason("job", {"foo": 1}) == "job: missing required field 'command'"
    assert _reason("edge", {"_to": "x"}) == "edge: missing required field '_from'"


def test_error_is_deterministic_first_in_body_order():
    assert _reason("job", {"command": "ls", "b": 1, "a": 2}) == "job: unknown field 'b'"
    assert _reason("job", {"command": "ls", "name": 1, "zzz": 2}) == "job: 'name' must be a string (got 1)"


def test_long_values_are_truncated_in_messages():
    msg = _reason("job", {"command": "x" * 1000, "name": "y" * 1000, "status": "z" * 1000})
    assert len(msg) < 400


@pytest.mark.parametrize("value", [1.0, "1", True, False, None, [1], {"a": 1}, 1.5])
def test_integers_are_strict(value):
    body = {"name": "r", "num_cpus": value}
    assert "'num_cpus' must be an integer" in _reason("resource_requirements", body)


@pytest.mark.parametrize("value", [True, "1.5", None])
def test_numbers_reject_booleans_and_strings(value):
    assert "'st_mtime' must be a number" in _reason("file", {"path": "p", "st_mtime": value})


def test_numbers_accept_ints_and_floats():
    assert validation.validate("file", {"path": "p", "st_mtime": 3})["st_mtime"] == 3
    assert validation.validate("file", {"path": "p", "st_mtime": 3.25})["st_mtime"] == 3.25


def test_meta_fields_accepted_and_old_rev_dropped():
    out = validation.validate("file", {"path": "p", "_key": "1", "_id": "files__5/1", "_rev": "r",
                                       "_oldRev": "q"})
    assert out == {"path": "p", "_key": "1", "_id": "files__5/1", "_rev": "r"}
    assert "'_key' must be a string" in _reason("file", {"path": "p", "_key": 1})


def test_free_form_schemas_accept_anything_object():
    body = {"anything": [1, {"x": None}], "timestamp": 5}
    assert validation.validate("event", body) == body
    assert validation.validate("join_filters", {}) == {}
    assert _reason("event", [1]) == "event: body must be a JSON object (got an array)"
    assert validation.is_free_form("event") and not validation.is_free_form("job")


def test_unknown_schema_name_is_a_programming_error():
    for bad in ("nope", "../x", "common", "job.json", ""):
        with pytest.raises(ValueError):
            validation.validate(bad, {})


# --------------------------------------------------------------------------------------------
# Copies
# --------------------------------------------------------------------------------------------


def test_result_is_a_deep_copy_and_input_untouched():
    body = {"name": "u", "data": {"nested": {"list": [1, 2]}}}
    before = copy.deepcopy(body)
    out = validation.validate("user_data", body)
    assert body == before  # no defaults written into the input
    out["data"]["nested"]["list"].append(3)
    assert body == before
    job = {"command": "ls", "internal": {"num_cpus": 1}, "input_files": ["a"]}
    out = validation.validate("job", job)
    assert out["internal"] is not job["internal"] and out["input_files"] is not job["input_files"]


def test_defaults_are_not_shared_between_results():
    a = validation.validate("job", {"command": "a"})
    a["internal"]["num_cpus"] = 99
    a["blocked_by"].append("x")
    b = validation.validate("job", {"command": "b"})
    assert b["internal"]["num_cpus"] == 0 and b["blocked_by"] == []


def test_load_returns_a_copy():
    raw = validation.load("job")
    raw["properties"].clear()
    assert "command" in validation.load("job")["properties"]
    assert "command" in validation.fields("job")


# --------------------------------------------------------------------------------------------
# Bulk
# --------------------------------------------------------------------------------------------


def test_validate_many_names_the_index():
    bodies = [{"command": "a"}] * 17 + [{"command": "b", "internal": {"num_cpus": 1.0}}]
    with pytest.raises(InvalidInput) as info:
        validation.validate_many("job", bodies)
    assert info.value.message == "jobs[17]: 'internal.num_cpus' must be an integer (got 1.0)"
    with pytest.raises(InvalidInput, match=r"^files\[0\]: missing required field 'path'$"):
        validation.validate_many("file", [{}])
    with pytest.raises(InvalidInput, match=r"^specs\[1\]: "):
        validation.validate_many("job_specification", [{"command": "a"}, {}], label="specs")
    with pytest.raises(InvalidInput, match="must be a JSON array"):
        validation.validate_many("job", {"command": "a"})


def test_validate_many_fills_defaults_and_copies():
    bodies = [{"command": "a"}, {"command": "b", "internal": {"num_gpus": 1}}]
    out = validation.validate_many("job", bodies)
    assert [j["internal"]["num_gpus"] for j in out] == [0, 1]
    assert bodies[0] == {"command": "a"}
    assert validation.validate_many("job", []) == []


def _typical_job(i):
    return {"name": f"job{i}", "command": f"python run.py {i}",
            "resource_requirements": "resource_requirements__5/10", "scheduler": "slurm_schedulers__5/12",
            "input_files": [f"files__5/{i}", "files__5/1"], "output_files": [f"files__5/{i + 1}"],
            "blocked_by": [f"jobs__5/{i - 1}"], "cancel_on_blocking_job_failure": True}


def test_bulk_10k_jobs_is_fast():
    jobs = [_typical_job(i) for i in range(10_000)]
    specs = [{"name": f"j{i}", "command": "x", "resource_requirements": "small",
              "input_files": [f"f{i}"], "blocked_by": [f"j{i - 1}"]} for i in range(10_000)]
    validation.validate("job", jobs[0])
    start = time.perf_counter()
    out = validation.validate_many("job", jobs)
    validation.validate_many("job_specification", specs)
    elapsed = time.perf_counter() - start
    assert len(out) == 10_000 and out[5]["internal"]["hash"] == 0
    assert elapsed < 2.0  # ~0.15 s measured on the 2-core box; generous for shared load


# --------------------------------------------------------------------------------------------
# Agreement with jsonschema
# --------------------------------------------------------------------------------------------

_WRONG_VALUES = [1, 1.0, 1.5, True, "1", None, [], ["x"], [1], {}, {"x": 1}]


def _mutations(body):
    """Bodies derived from a valid one: each field (recursively) set to each wrong value,
    each field removed, one unknown field added at each object."""
    if isinstance(body, dict):
        yield {**body, "zz_unknown": 1}
        for k, v in body.items():
            rest = {x: y for x, y in body.items() if x != k}
            yield rest
            for wrong in _WRONG_VALUES:
                yield {**rest, k: wrong}
            for sub in _mutations(v):
                yield {**body, k: sub}
    elif isinstance(body, list):
        for i, v in enumerate(body):
            for sub in _mutations(v):
                yield body[:i] + [sub] + body[i + 1:]
            for wrong in _WRONG_VALUES:
                yield body[:i] + [wrong] + body[i + 1:]
    yield from ()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_agrees_with_jsonschema(name, reference):
    checked = rejected = 0
    for body in list(_mutations(SAMPLES[name])) + list(_WRONG_VALUES):
        expected = reference[name].is_valid(body)
        try:
            out = validation.validate(name, body)
            ok = True
        except InvalidInput:
            ok = False
        assert ok == expected, (name, json.dumps(body))
        if ok:
            assert reference[name].is_valid(out), (name, json.dumps(out))
        checked += 1
        rejected += not ok
    assert checked > 10 and rejected > 0


# --------------------------------------------------------------------------------------------
# Introspection
# --------------------------------------------------------------------------------------------


def test_fields_and_names():
    assert "command" in validation.fields("job") and "_key" in validation.fields("job")
    assert "_oldRev" not in validation.fields("job")
    assert "internal" in validation.fields("job")
    assert validation.fields("event") == frozenset()
    assert "job" in validation.schema_names() and "common" not in validation.schema_names()
