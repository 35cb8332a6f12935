"""Current-torc specs → the v0.6.4 spec the engine creates: the worked examples of
../shared/docs/torc-spec-format.md expand to exactly the jobs they say, and errors name the
entry and the field."""

import pytest

from torc_graph.errors import InvalidInput
from torc_graph.spec import CURRENT, V064, dialect, normalize
from torc_graph.spec.formats import loads


def jobs_of(spec):
    """{name: command} of the expanded jobs, in order."""
    return {j["name"]: j["command"] for j in normalize(spec)["jobs"]}


def wf(*jobs, **top):
    return {"name": "w", "jobs": list(jobs), **top}


# (title, spec, expected {name: command} in order)
WORKED = [
    ("§4.7 zero-padded int range",
     wf({"name": "job_{i:03d}", "command": "echo {i}", "parameters": {"i": "8:12:2"}}),
     {"job_008": "echo 8", "job_010": "echo 10", "job_012": "echo 12"}),
    ("§4.7 float range with .2f",
     wf({"name": "r_{a:.2f}", "command": "run {a}", "parameters": {"a": "0.1:0.3:0.1"}}),
     {"r_0.10": "run 0.1", "r_0.20": "run 0.2", "r_0.30": "run 0.30000000000000004"}),
    ("§4.7 product of string and int lists",
     wf({"name": "t_{d}_{m}", "command": "x", "parameters": {"d": "['c','m']", "m": "[1,2]"}}),
     {"t_c_1": "x", "t_c_2": "x", "t_m_1": "x", "t_m_2": "x"}),
    ("§4.7 the same with parameter_mode: zip",
     wf({"name": "t_{d}_{m}", "command": "x", "parameter_mode": "zip",
         "parameters": {"d": "['c','m']", "m": "[1,2]"}}),
     {"t_c_1": "x", "t_m_2": "x"}),
    ("§4.7 shared parameters through use_parameters",
     wf({"name": "j_{lr}", "command": "t {lr}", "use_parameters": ["lr"]},
        parameters={"lr": "[0.1,0.2]", "bs": "[16]"}),
     {"j_0.1": "t 0.1", "j_0.2": "t 0.2"}),
    ("§4.7 local parameters win outright over use_parameters",
     wf({"name": "j_{lr}", "command": "t", "use_parameters": ["lr"],
         "parameters": {"lr": "[1,2,3]"}}, parameters={"lr": "[0.1,0.2]"}),
     {"j_1": "t", "j_2": "t", "j_3": "t"}),
    ("§4.1 parameters: {} gives one copy without substitution",
     wf({"name": "a_{i}", "command": "x", "parameters": {}}), {"a_{i}": "x"}),
    ("§4.1 use_parameters naming no shared parameter: not expanded",
     wf({"name": "a_{i}", "command": "x", "use_parameters": ["nope"]}, parameters={"j": "1:2"}),
     {"a_{i}": "x"}),
    ("§4.1 an empty value list gives zero copies",
     wf({"name": "a_{i}", "command": "x", "parameters": {"i": "5:1"}},
        {"name": "b", "command": "y"}), {"b": "y"}),
    ("§4.2 stepped range 1:100:25",
     wf({"name": "s{n:03d}", "command": "sim --n {n}", "parameters": {"n": "1:100:25"}}),
     {"s001": "sim --n 1", "s026": "sim --n 26", "s051": "sim --n 51", "s076": "sim --n 76"}),
    ("§4.4 mixed {lr} and {lr:.4f} in one string both substitute",
     wf({"name": "t{lr:.4f}", "command": "--lr={lr} --tag={lr:.4f}",
         "parameters": {"lr": "[0.001]"}}), {"t0.0010": "--lr=0.001 --tag=0.0010"}),
    ("§4.6 parameters first, then ${files...}",
     wf({"name": "p_{ds}", "command": "prep ${files.input.raw_{ds}}",
         "parameters": {"ds": "[train, test]"}},
        files=[{"name": "raw_train", "path": "d/train.csv"}, {"name": "raw_test", "path": "t.csv"}]),
     {"p_train": "prep d/train.csv", "p_test": "prep t.csv"}),
]


@pytest.mark.parametrize("title, spec, expected", WORKED, ids=[w[0] for w in WORKED])
def test_worked_examples_expand_to_exactly_these_jobs(title, spec, expected):
    got = jobs_of(spec)
    assert list(got.items()) == list(expected.items())


def test_same_name_copies_merge_into_one_fan_in_job():
    """§4.8 [REC]: a parameterized job whose name has no placeholder is one job depending on
    every expansion (union, in order), not N same-named jobs."""
    spec = wf({"name": "train_{lr}_{bs}", "command": "t", "parameters": {"lr": "[1,2]", "bs": "[8,16]"}},
              {"name": "aggregate", "command": "agg", "depends_on": ["train_{lr}_{bs}"],
               "parameters": {"lr": "[1,2]", "bs": "[8,16]"}})
    out = normalize(spec)["jobs"]
    assert [j["name"] for j in out] == ["train_1_8", "train_1_16", "train_2_8", "train_2_16",
                                        "aggregate"]
    assert out[-1]["blocked_by"] == ["train_1_8", "train_1_16", "train_2_8", "train_2_16"]


def test_depends_on_regexes_union_and_self_match():
    spec = wf({"name": "work_{i}", "command": "w", "parameters": {"i": "1:3"}},
              {"name": "post", "command": "p", "depends_on": ["work_2"],
               "depends_on_regexes": ["^work_\\d+$"]})
    assert normalize(spec)["jobs"][-1]["blocked_by"] == ["work_2", "work_1", "work_3"]
    # Unanchored search, the job itself included: a self-match is a cycle for the engine.
    selfish = wf({"name": "post", "command": "p", "depends_on_regexes": ["os"]})
    assert normalize(selfish)["jobs"][0]["blocked_by"] == ["post"]


def test_templates_add_implicit_dependencies_as_a_union():
    """§5.3 [REC]: the explicit lists and the template names are united (torc replaces)."""
    spec = wf({"name": "a", "command": "gen -o ${files.output.b}", "output_files": ["c"],
               "invocation_script": "env X=${user_data.input.cfg}"},
              {"name": "z", "command": "use ${files.input.b} '${user_data.input.cfg}'"},
              files=[{"name": "b", "path": "out/b.txt"}, {"name": "c", "path": "c.txt"}],
              user_data=[{"name": "cfg", "data": {"b": 1, "a": [1, 2]}},
                         {"name": "empty", "is_ephemeral": True}])
    out = normalize(spec)
    a, z = out["jobs"]
    assert a["output_files"] == ["c", "b"] and a["input_user_data"] == ["cfg"]
    assert a["invocation_script"] == 'env X={"a":[1,2],"b":1}'
    assert z["command"] == "use out/b.txt '{\"a\":[1,2],\"b\":1}'"
    assert z["input_files"] == ["b"] and "blocked_by" not in z  # empty lists are left out
    assert out["user_data"][1] == {"name": "empty", "data": {}, "is_ephemeral": True}


def test_parameterized_files_pair_with_jobs_by_expanded_name():
    spec = wf({"name": "train_{i}", "command": "t ${files.output.model_{i}}",
               "parameters": {"i": "1:2"}},
              files=[{"name": "model_{i}", "path": "m/{i:02d}.pt", "parameters": {"i": "1:2"}}])
    out = normalize(spec)
    assert out["files"] == [{"name": "model_1", "path": "m/01.pt"},
                            {"name": "model_2", "path": "m/02.pt"}]
    assert [(j["command"], j["output_files"]) for j in out["jobs"]] == [
        ("t m/01.pt", ["model_1"]), ("t m/02.pt", ["model_2"])]


def test_handlers_actions_and_settings_go_to_the_config():
    spec = wf({"name": "a", "command": "x", "failure_handler": "retry", "scheduler": "cpu",
               "resource_requirements": "small"},
              resource_requirements=[{"name": "small", "num_cpus": 1, "memory": "1g"}],
              slurm_schedulers=[{"name": "cpu", "account": "p"}],
              failure_handlers=[{"name": "retry", "rules": [{"exit_codes": [3], "max_retries": 2}]}],
              actions=[{"trigger_type": "on_workflow_start", "action_type": "run_commands",
                        "commands": ["echo hi"]}],
              use_pending_failed=True, jobs_sort_method="none",
              compute_node_wait_for_new_jobs_seconds=5)
    out = normalize(spec)
    job = out["jobs"][0]
    assert job["failure_handler"] == "retry" and job["scheduler"] == "slurm_schedulers/cpu"
    config = out["config"]
    assert config["failure_handlers"] == [{"name": "retry", "rules": [{
        "exit_codes": [3], "match_all_exit_codes": False, "recovery_script": None,
        "max_retries": 2, "memory_factor": None, "max_memory": None, "runtime_factor": None,
        "max_runtime": None}]}]
    assert config["actions"][0]["commands"] == ["echo hi"]
    assert config["actions"][0]["persistent"] is False
    assert config["use_pending_failed"] is True and config["prepare_jobs_sort_method"] == "none"
    assert config["compute_node_wait_for_new_jobs_seconds"] == 5
    assert out["schedulers"]["slurm_schedulers"] == [
        {"nodes": 1, "walltime": "01:00:00", "name": "cpu", "account": "p"}]


@pytest.mark.parametrize("spec, message", [
    (wf({"name": "a", "command": "x", "parameters": {"i": "1:10:0.5"}},
        {"name": "b", "command": "x"}, {"name": "c", "command": "x"},
        {"name": "d", "command": "x", "parameters": {"i": "a:b"}}),
     "jobs[0].parameters.i: range '1:10:0.5'"),
    (wf({"name": "a", "command": "x"}, {"name": "b", "command": "x"}, {"name": "c", "command": "x"},
        {"name": "d_{i}", "command": "x", "parameters": {"i": "a:b"}}),
     "jobs[3].parameters.i: range 'a:b': start and end must be numbers"),
    (wf({"name": "a", "command": "x", "parameters": {"i": 5}}),
     "jobs[0].parameters.i: must be a string (got 5)"),
    (wf({"name": "a"}, parameters={}), "jobs[0].command: required"),
    (wf({"name": "a", "command": "x", "cancel_on_blocking_job_failure": "yes"}, parameters={}),
     'jobs[0].cancel_on_blocking_job_failure: must be a boolean (got "yes")'),
    (wf({"name": "a", "command": "x", "depends_on": ["b"], "colour": 1}),
     'jobs[0]: unknown field "colour"'),
    (wf({"name": "a", "command": "x", "depends_on": ["nope"]}),
     'jobs[0] ("a").depends_on: unknown job "nope"'),
    (wf({"name": "a", "command": "x", "depends_on_regexes": ["^zzz"]}),
     'jobs[0] ("a").depends_on_regexes[0]: pattern "^zzz" did not match'),
    (wf({"name": "a", "command": "x", "depends_on_regexes": ["("]}),
     'jobs[0] ("a").depends_on_regexes[0]: invalid regular expression'),
    (wf({"name": "a", "command": "cat ${files.input.nope}"}),
     'jobs[0] ("a").command: ${files.input.nope} names no declared file "nope"'),
    (wf({"name": "a", "command": "x", "resource_requirements": "big"}, parameters={}),
     'jobs[0] ("a").resource_requirements: unknown resource requirements "big"'),
    (wf({"name": "a", "command": "x", "failure_handler": "h"}, parameters={}),
     'jobs[0] ("a").failure_handler: unknown failure handler "h"'),
    (wf({"name": "a_{x}", "command": "x", "parameter_mode": "zip",
         "parameters": {"x": "1:3", "y": "1:2"}}),
     "jobs[0].parameters: all parameters must have the same number of values in zip mode"),
    (wf({"name": "r_{a:.1f}", "command": "run {a}", "parameters": {"a": "[0.01, 0.02]"}}),
     'jobs[0] ("r_0.0").command: copies with the same name differ'),
    (wf({"name": "a", "command": "x"}, {"name": "a", "command": "y", "parameters": {}}),
     'jobs[1] ("a"): duplicate job name; jobs[0] expands to the same name'),
    (wf({"name": "a", "command": "x"},
        failure_handlers=[{"name": "h", "rules": [{"max_retries": "3"}]}]),
     'failure_handlers[0].rules[0].max_retries: must be an integer (got "3")'),
    (wf({"name": "a", "command": "x"},
        actions=[{"trigger_type": "on_jobs_ready", "action_type": "run_commands"}]),
     "actions[0].commands: run_commands needs at least one command"),
    (wf({"name": "a", "command": "x"},
        actions=[{"trigger_type": "on_lunch", "action_type": "run_commands", "commands": ["x"]}]),
     "actions[0].trigger_type: must be one of"),
    (wf({"name": "a", "command": "x"}, user_data=[{"name": "u", "data": [1]}], parameters={}),
     "user_data[0].data: torc_graph stores user data as a JSON object"),
    (wf({"name": "a", "command": "x"}, files=[{"name": "f", "path": "p{i}", "parameters": {"i": "1:2"}}]),
     'files[0] ("f"): duplicate file name'),
    (wf({"name": "a", "command": "x"}, slurm_defaults={"partition": "debug"}),
     "slurm_defaults.partition: set it on the scheduler"),
    ({"jobs": [], "parameters": {}}, "specification.name: required"),
    (wf({"name": "a_{i}", "command": "x", "parameters": {"i": "1:100000000000"}}),
     "jobs[0].parameters.i: range '1:100000000000' has more than 10,000,000 values"),
    (wf({"name": "a_{i}_{j}", "command": "x", "parameters": {"i": "1:2000", "j": "1:2000"}}),
     "jobs[0].parameters: expands to more than 2,000,000 copies"),
    (wf({"name": "a", "command": "x", "depends_on": ["b"]}, {"name": "b", "command": "y", "blocked_by": ["a"]}),
     "mixes torc v0.6.4 keys (jobs[1].blocked_by) with current torc keys (jobs[0].depends_on)"),
])
def test_errors_name_entry_and_field(spec, message):
    with pytest.raises(InvalidInput) as exc:
        normalize(spec)
    assert message in exc.value.message


def test_dialects():
    assert dialect(wf({"name": "a", "command": "x"})) == V064
    assert dialect(wf({"name": "a", "command": "x", "blocked_by": []})) == V064
    assert dialect(wf({"name": "a", "command": "x", "depends_on": []})) == CURRENT
    assert dialect(wf({"name": "a", "command": "cat ${files.input.f}"})) == CURRENT
    assert dialect(wf(failure_handlers=[])) == CURRENT
    v064 = wf({"name": "a", "command": "x"}, config={})
    assert normalize(v064) is v064


def test_kdl_example_of_the_format_document():
    """spec format §10: the KDL example gives the JSON value shown there, and that expands to
    the result the document states."""
    text = r'''
name "demo"
parameters { i "1:2"; }
file "in_{i}" path="data/in_{i}.txt" { use_parameters "i"; }
file "out" path="out.json"
user_data "cfg" { is_ephemeral #true; data "{\"alpha\": 0.5}"; }
resource_requirements "small" { num_cpus 1; memory "2g"; runtime "PT10M"; }
failure_handler "retry" {
    rule { exit_codes 10 11; recovery_script "./fix.sh"; max_retries 2; }
    rule { match_all_exit_codes #true; max_retries 1; }
}
slurm_scheduler "cpu" { account "proj"; walltime "02:00:00"; }
job "work_{i}" { command "run ${files.input.in_{i}}"; failure_handler "retry"; use_parameters "i"; }
job "post" {
    command "post -o ${files.output.out} '${user_data.input.cfg}'"
    resource_requirements "small"; scheduler "cpu"; depends_on_regexes "^work_\\d+$"
}
action { trigger_type "on_jobs_ready"; action_type "schedule_nodes"; job "post"; scheduler "cpu"; scheduler_type "slurm"; }
'''
    value = loads(text, "kdl")
    assert value == {
        "name": "demo", "parameters": {"i": "1:2"},
        "files": [{"name": "in_{i}", "path": "data/in_{i}.txt", "use_parameters": ["i"]},
                  {"name": "out", "path": "out.json"}],
        "user_data": [{"name": "cfg", "is_ephemeral": True, "data": {"alpha": 0.5}}],
        "resource_requirements": [{"name": "small", "num_cpus": 1, "memory": "2g", "runtime": "PT10M"}],
        "failure_handlers": [{"name": "retry", "rules": [
            {"exit_codes": [10, 11], "recovery_script": "./fix.sh", "max_retries": 2},
            {"match_all_exit_codes": True, "max_retries": 1}]}],
        "slurm_schedulers": [{"name": "cpu", "account": "proj", "walltime": "02:00:00"}],
        "jobs": [{"name": "work_{i}", "command": "run ${files.input.in_{i}}",
                  "failure_handler": "retry", "use_parameters": ["i"]},
                 {"name": "post", "command": "post -o ${files.output.out} '${user_data.input.cfg}'",
                  "resource_requirements": "small", "scheduler": "cpu",
                  "depends_on_regexes": ["^work_\\d+$"]}],
        "actions": [{"trigger_type": "on_jobs_ready", "action_type": "schedule_nodes",
                     "jobs": ["post"], "scheduler": "cpu", "scheduler_type": "slurm"}]}
    out = normalize(value)
    assert [f["name"] for f in out["files"]] == ["in_1", "in_2", "out"]
    work1, work2, post = out["jobs"]
    assert (work1["name"], work1["command"], work1["input_files"]) == ("work_1", "run data/in_1.txt", ["in_1"])
    assert work2["name"] == "work_2"
    assert post["command"] == "post -o out.json '{\"alpha\":0.5}'"
    assert post["blocked_by"] == ["work_1", "work_2"]
    assert post["output_files"] == ["out"] and post["input_user_data"] == ["cfg"]
    assert out["config"]["actions"][0]["jobs"] == ["post"]


def test_hyperparameter_sweep_shape_gives_the_documented_21_jobs():
    """§4.8: torc's unit tests count 38 jobs (2 + 18 + 18 same-named aggregates); the docs and
    torc_graph's merge give 21, the aggregate depending on all 18 training jobs."""
    grid = {"lr": "[0.0001,0.001,0.01]", "bs": "[16,32,64]", "opt": "['adam','sgd']"}
    spec = wf({"name": "prepare_train_data", "command": "prep train"},
              {"name": "prepare_val_data", "command": "prep val"},
              {"name": "train_lr{lr:.4f}_bs{bs}_opt{opt}", "parameters": grid,
               "command": "train --lr={lr} --bs={bs} --opt={opt}",
               "depends_on": ["prepare_train_data", "prepare_val_data"]},
              {"name": "aggregate_results", "command": "aggregate", "parameters": grid,
               "depends_on": ["train_lr{lr:.4f}_bs{bs}_opt{opt}"]})
    jobs = normalize(spec)["jobs"]
    assert len(jobs) == 21
    assert jobs[2]["name"] == "train_lr0.0001_bs16_optadam"
    assert jobs[2]["command"] == "train --lr=0.0001 --bs=16 --opt=adam"
    assert jobs[-1]["name"] == "aggregate_results" and len(jobs[-1]["blocked_by"]) == 18
