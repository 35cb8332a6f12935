"""``torc-graph run`` again: resume the workflow made from the same spec, skip what is done and
unchanged, rerun what failed; ``--new``; ``run WORKFLOW``; ``--dry-run`` changes nothing."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from torc_graph.client import Client

SPEC = {
    "name": "resumable",
    "files": [{"name": "raw", "path": "raw.txt"}, {"name": "out", "path": "out.txt"}],
    "jobs": [
        {"name": "make", "command": "sh -c 'echo data > raw.txt'", "output_files": ["raw"]},
        {"name": "flaky", "command": "sh -c 'test -e fixed'"},
        {"name": "after_flaky", "command": "true", "blocked_by": ["flaky"]},
        {"name": "use", "command": "sh -c 'cat raw.txt > out.txt'", "input_files": ["raw"],
         "output_files": ["out"]},
    ],
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    return tmp_path


def runs_of(client: Client, wf: str) -> dict[str, list[int]]:
    names = {j["_key"]: j["name"] for j in client.list_jobs(wf)}
    out: dict[str, list[int]] = {n: [] for n in names.values()}
    for r in client.iter_items(f"/workflows/{wf}/results"):
        out[names[r["job_key"]]].append(r["run_id"])
    return out


def workflows(client: Client) -> list[str]:
    return [w["_key"] for w in client.iter_items("/workflows")]


def test_second_run_resumes_and_reruns_only_the_failed_part(invoke, client, workdir):
    first = invoke("run", "spec.json", "--no-progress")
    assert first.exit_code == 1
    (wf,) = workflows(client)
    (workdir / "fixed").touch()
    second = invoke("run", "spec.json", "--no-progress")
    assert second.exit_code == 0, second.output
    assert f"Resuming workflow {wf}" in second.stderr
    assert workflows(client) == [wf]
    runs = runs_of(client, wf)
    assert runs["make"] == [1] and runs["use"] == [1]  # done, inputs unchanged: skipped
    assert runs["flaky"] == [1, 2] and runs["after_flaky"] == [2]
    # Nothing left to do: a third run runs nothing and succeeds.
    third = invoke("run", "spec.json", "--no-progress")
    assert third.exit_code == 0, third.output
    assert runs_of(client, wf) == runs
    # A changed input file reruns its consumer (torc's change detection), nothing else.
    (workdir / "raw.txt").write_text("changed\n")
    os.utime(workdir / "raw.txt", (1e9, 1e9))
    assert invoke("run", "spec.json", "--no-progress").exit_code == 0
    after = runs_of(client, wf)
    assert len(after["use"]) == 2 and after["make"] == [1] and after["flaky"] == [1, 2]


def test_new_and_changed_specs_create_new_workflows(invoke, client, workdir):
    (workdir / "fixed").touch()
    assert invoke("run", "spec.json", "--no-progress").exit_code == 0
    assert invoke("run", "spec.json", "--no-progress", "--new").exit_code == 0
    assert len(workflows(client)) == 2
    changed = {**SPEC, "description": "another content"}
    (workdir / "spec.json").write_text(json.dumps(changed))
    result = invoke("run", "spec.json", "--no-progress")
    assert result.exit_code == 0 and "Created workflow" in result.stderr
    assert len(workflows(client)) == 3
    # JSON key order and formatting do not matter: the same content resumes.
    (workdir / "spec.json").write_text(json.dumps(changed, indent=4, sort_keys=True))
    assert "Resuming" in invoke("run", "spec.json", "--no-progress").stderr
    assert len(workflows(client)) == 3


def test_run_workflow_by_name_runs_ready_and_interrupted_jobs(invoke, client, workdir):
    (workdir / "fixed").touch()
    assert invoke("run", "spec.json", "--no-progress").exit_code == 0
    (wf,) = workflows(client)
    # A job the runner gave back (interrupted → ready) runs again; done ones do not.
    job = next(j for j in client.list_jobs(wf) if j["name"] == "after_flaky")
    client.update_document(wf, "jobs", {**job, "status": "ready"})
    result = invoke("run", "resumable", "--no-progress")
    assert result.exit_code == 0, result.output
    runs = runs_of(client, wf)
    assert runs["after_flaky"] == [1, 2] and runs["make"] == [1] and runs["flaky"] == [1]
    assert invoke("run", "resumable", "--new").exit_code == 2


def test_dry_run_of_a_spec_changes_nothing(invoke, client, workdir):
    spec = {"name": "plan", "files": [{"name": "in", "path": "absent.txt"},
                                      {"name": "mid", "path": "mid.txt"}],
            "jobs": [{"name": "a", "command": "true", "output_files": ["mid"]},
                     {"name": "b", "command": "true", "input_files": ["mid"]},
                     {"name": "c", "command": "true", "blocked_by": ["a", "b"]},
                     {"name": "d", "command": "true", "input_files": ["in"]},
                     {"name": "e", "command": "true", "blocked_by": ["d"]}]}
    (workdir / "plan.json").write_text(json.dumps(spec))
    result = invoke("run", "plan.json", "--dry-run")
    assert result.exit_code == 0, result.output
    assert workflows(client) == []
    lines = [line.split(None, 2) for line in result.stdout.splitlines()]
    assert result.stdout.startswith("Dry run of plan.json (a new workflow): 3 of 5 jobs would "
                                    "run.")
    assert ["1", "a", "ready"] in lines and ["2", "b", "after a"] in lines
    assert ["3", "c", "after a, b"] in lines
    text = " ".join(result.stdout.split())
    assert "d missing input file absent.txt (no job produces it)" in text
    assert "e blocked by d" in text


def test_dry_run_of_a_resume_skips_done_jobs(invoke, client, workdir):
    assert invoke("run", "spec.json", "--no-progress").exit_code == 1
    (wf,) = workflows(client)
    before = runs_of(client, wf)
    for target in ("spec.json", "resumable", wf):
        result = invoke("run", target, "--dry-run")
        assert result.exit_code == 0, result.output
        text = " ".join(result.stdout.split())
        assert "2 of 4 jobs would run" in text, text
        assert "1 flaky failed (return code 1): runs again, ready" in text
        assert "2 after_flaky canceled: runs again, after flaky" in text
        assert "make done, inputs unchanged (skipped)" in text
        assert "use done, inputs unchanged (skipped)" in text
    assert runs_of(client, wf) == before and workflows(client) == [wf]
    statuses = {j["name"]: j["status"] for j in client.list_jobs(wf)}
    assert statuses["after_flaky"] == "canceled"


def test_dry_run_of_an_invalid_spec_is_a_usage_error(invoke, client, workdir):
    (workdir / "bad.json").write_text(json.dumps(
        {"name": "bad", "jobs": [{"name": "a", "command": "true", "blocked_by": ["zz"]}]}))
    result = invoke("run", "bad.json", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: invalid specification bad.json")
    assert "zz" in result.stderr and "HTTP" not in result.stderr


def test_dry_run_names_torcs_change_detection(invoke, client, workdir):
    (workdir / "fixed").touch()
    assert invoke("run", "spec.json", "--no-progress").exit_code == 0
    os.utime(workdir / "raw.txt", (1e9, 1e9))  # the input of `use` changed on disk
    text = " ".join(invoke("run", "spec.json", "--dry-run").stdout.split())
    assert "1 of 4 jobs would run" in text
    assert "1 use input file raw.txt changed: runs again, ready" in text
    (workdir / "raw.txt").unlink()  # the output of `make` is missing: make and use rerun
    text = " ".join(invoke("run", "spec.json", "--dry-run").stdout.split())
    assert "1 make output file raw.txt is missing: runs again, ready" in text
    assert "2 use" in text and "runs again, after make" in text
    assert "flaky done, inputs unchanged (skipped)" in text
