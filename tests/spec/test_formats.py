"""Every spec format gives the same JSON value (spec format §10)."""

import json

import pytest

from torc_graph.spec import SpecFileError, read_file

VALUE = {
    "name": "sweep",
    "parameters": {"lr": "[0.001, 0.01]"},
    "files": [{"name": "model_{i}", "path": "m/{i:03d}.pt", "parameters": {"i": "1:3"}}],
    "user_data": [{"name": "cfg", "is_ephemeral": False, "data": {"alpha": 0.5, "k": [1, 2]}}],
    "resource_requirements": [{"name": "small", "num_cpus": 1, "memory": "2g", "runtime": "PT10M"}],
    "failure_handlers": [{"name": "retry", "rules": [{"exit_codes": [10, 11], "max_retries": 2}]}],
    "jobs": [
        {"name": "train_{i}", "command": "train --out ${files.output.model_{i}}",
         "parameters": {"i": "1:3"}, "failure_handler": "retry",
         "cancel_on_blocking_job_failure": False},
        {"name": "eval_{lr}", "command": "eval {lr}", "use_parameters": ["lr"],
         "depends_on_regexes": ["^train_\\d+$"], "resource_requirements": "small"},
    ],
    "actions": [{"trigger_type": "on_workflow_complete", "action_type": "run_commands",
                 "commands": ["echo done"]}],
    "use_pending_failed": True,
}

TEXTS = {
    "spec.json": json.dumps(VALUE),
    "spec.json5": """// the same spec in JSON5
{
  name: 'sweep',
  parameters: {lr: "[0.001, 0.01]"},
  files: [{name: "model_{i}", path: "m/{i:03d}.pt", parameters: {i: "1:3"},},],
  user_data: [{name: "cfg", is_ephemeral: false, data: {alpha: 0.5, k: [1, 2]}}],
  resource_requirements: [{name: "small", num_cpus: 1, memory: "2g", runtime: "PT10M"}],
  failure_handlers: [{name: "retry", rules: [{exit_codes: [10, 11], max_retries: 2}]}],
  jobs: [
    {name: "train_{i}", command: "train --out ${files.output.model_{i}}",
     parameters: {i: "1:3"}, failure_handler: "retry", cancel_on_blocking_job_failure: false},
    {name: "eval_{lr}", command: "eval {lr}", use_parameters: ["lr"],
     depends_on_regexes: ["^train_\\\\d+$"], resource_requirements: "small"},
  ],
  actions: [{trigger_type: "on_workflow_complete", action_type: "run_commands",
             commands: ["echo done"]}],
  use_pending_failed: true,
}
""",
    "spec.yaml": r"""
name: sweep
parameters:
  lr: "[0.001, 0.01]"
files:
  - name: model_{i}
    path: m/{i:03d}.pt
    parameters: {i: 1:3}          # unquoted 1:3 is a string in YAML 1.2
user_data:
  - {name: cfg, is_ephemeral: false, data: {alpha: 0.5, k: [1, 2]}}
resource_requirements:
  - {name: small, num_cpus: 1, memory: 2g, runtime: PT10M}
failure_handlers:
  - name: retry
    rules: [{exit_codes: [10, 11], max_retries: 2}]
jobs:
  - name: train_{i}
    command: train --out ${files.output.model_{i}}
    parameters: {i: "1:3"}
    failure_handler: retry
    cancel_on_blocking_job_failure: false
  - name: eval_{lr}
    command: eval {lr}
    use_parameters: [lr]
    depends_on_regexes: ['^train_\d+$']
    resource_requirements: small
actions:
  - {trigger_type: on_workflow_complete, action_type: run_commands, commands: [echo done]}
use_pending_failed: true
""",
    "spec.kdl": r"""
// the same spec in KDL v2
name "sweep"
parameters { lr "[0.001, 0.01]"; }
file "model_{i}" path="m/{i:03d}.pt" { parameters { i "1:3"; }; }
user_data "cfg" { is_ephemeral #false; data "{\"alpha\": 0.5, \"k\": [1, 2]}"; }
resource_requirements "small" { num_cpus 1; memory "2g"; runtime "PT10M"; }
failure_handler "retry" { rule { exit_codes 10 11; max_retries 2; }; }
job "train_{i}" {
    command "train --out ${files.output.model_{i}}"
    parameters { i "1:3"; }
    failure_handler "retry"
    cancel_on_blocking_job_failure #false
}
job "eval_{lr}" {
    command "eval {lr}"
    use_parameters "lr"
    depends_on_regexes "^train_\\d+$"
    resource_requirements "small"
}
action { trigger_type "on_workflow_complete"; action_type "run_commands"; command "echo done"; }
use_pending_failed #true
""",
}


@pytest.mark.parametrize("name", list(TEXTS))
def test_every_format_reads_to_the_same_value(tmp_path, name):
    path = tmp_path / name
    path.write_text(TEXTS[name])
    assert read_file(path) == VALUE
    # An unknown extension tries JSON, JSON5, YAML, then KDL.
    other = tmp_path / "spec.txt"
    other.write_text(TEXTS[name])
    assert read_file(other) == VALUE


def test_yaml_is_yaml_1_2(tmp_path):
    path = tmp_path / "s.yml"
    path.write_text("name: x\nparameters: {i: 1:10, t: 01:00:00, b: yes, d: 2024-01-31}\n")
    assert read_file(path)["parameters"] == {"i": "1:10", "t": "01:00:00", "b": "yes",
                                             "d": "2024-01-31"}


def test_kdl_aliases_and_every_argument(tmp_path):
    """[REC]: depends_on_job / input_files / output_files are aliases, and repeatable nodes take
    every argument (torc keeps only the first and ignores the aliases)."""
    path = tmp_path / "s.kdl"
    path.write_text('name "x"\njob "a" { command "c"; depends_on_job "p" "q"; '
                    'depends_on_regexes "^r" "^s"; input_files "f"; output_file "g" "h"; }\n')
    job = read_file(path)["jobs"][0]
    assert job == {"name": "a", "command": "c", "depends_on": ["p", "q"],
                   "depends_on_regexes": ["^r", "^s"], "input_files": ["f"],
                   "output_files": ["g", "h"]}


@pytest.mark.parametrize("name, text, message", [
    ("s.kdl", 'name "x"\njob "a" { comand "c"; }\n', 'KDL job "a": unknown job child "comand"'),
    ("s.kdl", 'name "x"\nwidget 1\n', 'KDL node "widget": unknown top-level node'),
    ("s.kdl", 'name true\n', "invalid KDL"),  # KDL v1 syntax
    ("s.kdl", 'name "x"\nuser_data "u" { is_ephemeral #true; }\n', "needs a data child"),
    ("s.yaml", "- a\n", "must be an object/mapping"),
    ("s.json", "{", "invalid JSON at line 1"),
    ("s.yaml", "name: x\nblob: !!binary aGVsbG8=\n", "has no JSON equivalent"),
    ("s.yaml", "name: x\n1: a\n", "YAML mapping key 1 must be a string"),
    ("s.txt", "x = = 1", "not a JSON, JSON5, YAML or KDL specification"),
])
def test_read_errors_name_the_file_and_problem(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecFileError) as exc:
        read_file(path)
    assert str(path) in exc.value.message and message in exc.value.message
