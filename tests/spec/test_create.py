"""Current-torc specs created through the engine and a real server: the same validation as
v0.6.4 specs, config fields stored, and GET /workflow_specifications/{key} round-trips."""

import pytest

from torc_graph.client import ApiError, Client
from torc_graph.engine import specifications as specs
from torc_graph.errors import InvalidInput
from torc_graph.store import open_store
from torc_graph.testing import LiveServer

SPEC = {
    "name": "demo",
    "description": "current torc",
    "parameters": {"i": "1:3"},
    "files": [{"name": "in_{i}", "path": "data/in_{i}.txt", "use_parameters": ["i"]},
              {"name": "out", "path": "out.json"}],
    "user_data": [{"name": "cfg", "data": {"alpha": 0.5}}],
    "resource_requirements": [{"name": "small", "num_cpus": 1, "memory": "2g",
                               "runtime": "PT10M"}],
    "failure_handlers": [{"name": "retry", "rules": [{"match_all_exit_codes": True,
                                                      "max_retries": 2}]}],
    "slurm_schedulers": [{"name": "cpu", "account": "proj"}],
    "jobs": [
        {"name": "gen_{i}", "command": "gen > ${files.output.in_{i}}", "use_parameters": ["i"]},
        {"name": "work_{i}", "command": "run ${files.input.in_{i}}", "failure_handler": "retry",
         "use_parameters": ["i"], "resource_requirements": "small"},
        {"name": "post", "command": "post -o ${files.output.out} '${user_data.input.cfg}'",
         "depends_on_regexes": ["^work_\\d+$"], "scheduler": "cpu"},
    ],
    "actions": [{"trigger_type": "on_jobs_ready", "action_type": "schedule_nodes",
                 "jobs": ["post"], "scheduler": "cpu", "scheduler_type": "slurm"}],
}


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'spec.db'}", synchronous="NORMAL")
    yield s
    s.close()


def strip_keys(value):
    """The value without database keys and revisions (they differ between workflows)."""
    if isinstance(value, dict):
        return {k: strip_keys(v) for k, v in value.items() if k not in ("_key", "_id", "_rev")}
    if isinstance(value, list):
        return [strip_keys(v) for v in value]
    return value


def test_created_and_round_trips(store):
    wf = specs.create_from_specification(store, SPEC)["_key"]
    got = specs.get_workflow_specification(store, wf)
    jobs = {j["name"]: j for j in got["jobs"]}
    assert sorted(jobs) == ["gen_1", "gen_2", "gen_3", "post", "work_1", "work_2", "work_3"]
    assert jobs["work_2"]["command"] == "run data/in_2.txt"
    assert jobs["work_2"]["input_files"] == ["in_2"]
    assert jobs["work_2"]["failure_handler"] == "retry"
    assert jobs["work_2"]["resource_requirements"] == "small"
    assert sorted(jobs["post"]["blocked_by"]) == ["work_1", "work_2", "work_3"]
    assert jobs["post"]["scheduler"] == "slurm_schedulers/cpu"
    assert jobs["post"]["input_user_data"] == ["cfg"]
    assert got["config"]["failure_handlers"][0]["rules"][0]["max_retries"] == 2
    assert got["config"]["actions"][0]["jobs"] == ["post"]
    # What GET returns can be posted back and creates the same workflow.
    again = specs.create_from_specification(store, got)["_key"]
    assert again != wf
    assert strip_keys(specs.get_workflow_specification(store, again)) == strip_keys(got)


@pytest.mark.parametrize("change, message", [
    (lambda s: s["jobs"].append({"name": "loop", "command": "x", "depends_on": ["loop2"]})
     or s["jobs"].append({"name": "loop2", "command": "x", "depends_on": ["loop"]}),
     "cycle"),
    (lambda s: s["jobs"][2]["depends_on_regexes"].append("^po"), "names the job itself"),
])
def test_expanded_specs_get_the_engine_checks(store, change, message):
    spec = {**SPEC, "jobs": [dict(j) for j in SPEC["jobs"]]}
    spec["jobs"][2]["depends_on_regexes"] = list(spec["jobs"][2]["depends_on_regexes"])
    change(spec)
    with pytest.raises(InvalidInput, match=message):
        specs.create_from_specification(store, spec)
    assert store.find("workflows", None) == []


@pytest.mark.parametrize("spec, message", [
    ({"name": "x", "jobs": [{"name": "a", "command": "c", "failure_handler": "nope"}]},
     'failure_handler references unknown failure handler "nope"'),
    ({"name": "x", "jobs": [{"name": "a", "command": "c"}],
      "config": {"actions": [{"trigger_type": "on_jobs_ready", "action_type": "run_commands",
                              "commands": ["x"], "jobs": ["b"]}]}},
     'actions[0].jobs[0]: unknown job "b"'),
    ({"name": "x", "jobs": [{"name": "a", "command": "c"}],
      "config": {"failure_handlers": [{"name": "h", "rules": [{"max_retries": 1.5}]}]}},
     "max_retries"),
])
def test_v064_form_gets_the_same_handler_checks(store, spec, message):
    with pytest.raises(InvalidInput) as exc:
        specs.create_from_specification(store, spec)
    assert message in exc.value.message
    assert store.find("workflows", None) == []


@pytest.mark.slow
def test_live_server_takes_both_dialects_and_derives_file_dependencies(tmp_path):
    with LiveServer(f"sqlite:///{tmp_path / 'live.db'}", workers=2, cwd=tmp_path,
                    log_path=tmp_path / "server.log") as server:
        client = Client(server.url)
        wf = client.add_workflow_specification(SPEC)["_key"]
        client.initialize_jobs(wf)
        status = {j["name"]: j["status"] for j in client.iter_items(f"/workflows/{wf}/jobs")}
        # work_i needs gen_i's output (a file template), post needs every work_i (a regex).
        assert status == {"gen_1": "ready", "gen_2": "ready", "gen_3": "ready",
                          "work_1": "blocked", "work_2": "blocked", "work_3": "blocked",
                          "post": "blocked"}
        got = client.get(f"/workflow_specifications/{wf}")
        again = client.add_workflow_specification(got)["_key"]
        assert strip_keys(client.get(f"/workflow_specifications/{again}")) == strip_keys(got)
        with pytest.raises(ApiError) as exc:
            client.add_workflow_specification(
                {"name": "x", "jobs": [{"name": "a", "command": "c", "parameters": {"i": "1:x"}}]})
        assert exc.value.status == 400
        assert "jobs[0].parameters.i: range '1:x'" in str(exc.value)
