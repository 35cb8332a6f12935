"""Names wherever a key is accepted: workflows and jobs by name, ambiguity lists candidates."""

from __future__ import annotations

import pytest


def test_workflow_and_job_by_name(invoke, diamond, parse_json):
    by_key = parse_json(invoke("jobs", "show", diamond.key, diamond.jobs["work1"], "--json"))
    by_name = parse_json(invoke("jobs", "show", "diamond", "work1", "--json"))
    assert by_name == by_key
    assert parse_json(invoke("workflows", "show", "diamond", "--json"))["workflow"]["_key"] \
        == diamond.key
    logs = invoke("jobs", "logs", "diamond", "preprocess")
    assert logs.exit_code == 0 and "hello from preprocess" in logs.stdout
    # a full id still works
    assert invoke("jobs", "show", diamond.key, f"jobs__{diamond.key}/{diamond.jobs['work1']}",
                  "--json").exit_code == 0


@pytest.mark.parametrize("args", [
    ("workflows", "status", "{wf}"), ("jobs", "list", "{wf}"), ("files", "list", "{wf}"),
    ("results", "list", "{wf}"), ("events", "list", "{wf}"), ("user-data", "list", "{wf}"),
    ("resource-requirements", "list", "{wf}"), ("compute-nodes", "list", "{wf}"),
    ("graph", "{wf}"), ("user-data", "show", "{wf}", "params"),
])
def test_every_workflow_command_takes_a_name(invoke, diamond, args):
    by_name = invoke(*[a.format(wf="diamond") for a in args])
    by_key = invoke(*[a.format(wf=diamond.key) for a in args])
    assert by_name.exit_code == 0, by_name.output
    assert by_name.stdout == by_key.stdout


def test_unknown_name_is_not_found(invoke, diamond):
    result = invoke("jobs", "list", "nosuch")
    assert result.exit_code == 4
    assert result.stderr == "Error: no workflow with key or name 'nosuch'\n"
    result = invoke("jobs", "show", "diamond", "nosuch")
    assert result.exit_code == 4
    assert f"no job with key or name 'nosuch' in workflow {diamond.key}" in result.stderr
    assert invoke("jobs", "show", "diamond", "999999").exit_code == 4


def test_ambiguous_names_list_the_candidates(invoke, diamond, client, diamond_spec):
    second = client.add_workflow_specification(diamond_spec)["_key"]
    result = invoke("jobs", "list", "diamond")
    assert result.exit_code == 2
    assert "2 workflows are named 'diamond'" in result.stderr
    assert f"{diamond.key} (" in result.stderr and f"{second} (" in result.stderr
    assert "give the key instead" in result.stderr
    assert invoke("jobs", "list", second).exit_code == 0  # the key is never ambiguous
    twin = client.add_workflow_specification({"name": "twins", "jobs": [
        {"name": "same", "command": "true"}]})["_key"]
    client.add_document(twin, "jobs", {"name": "same", "command": "false"})  # the API allows it
    result = invoke("jobs", "show", twin, "same")
    assert result.exit_code == 2 and "2 jobs are named 'same'" in result.stderr


def test_reset_and_delete_by_name(invoke, diamond, client):
    result = invoke("jobs", "reset", "diamond", "work2", "work1")
    assert result.exit_code == 0, result.output
    assert "Reset job " + diamond.jobs["work2"] + " (work2)" in result.stdout
    assert invoke("workflows", "delete", "diamond", "--yes").exit_code == 0
    assert list(client.iter_items("/workflows")) == []
