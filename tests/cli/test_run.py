"""``torc-graph run`` and ``torc-graph jobs run``: the examples end to end (in-process with
CliRunner and as a real subprocess), exit codes, spec errors, progress, a remote server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torc_graph.cli.run import Progress

from torc_graph.client import Client
from torc_graph.testing import clean_env, cli_argv

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


#: example -> (file it writes, expected content)
EXPECTED = {
    "diamond.yaml": ("output/diamond/f6.txt", "total 20100\n"),
    "sweep.json5": ("output/sweep/summary.txt", "8 51\n"),
    "user_data.yaml": ("output/user_data/report.txt", "count=5 sum=15.0 mean=3.0\n"),
    "pipeline.kdl": ("output/pipeline/report.txt", "0.1 55.0\n0.2 110.0\n0.4 220.0\n"),
    "fan_in.yaml": ("output/fan_in/total.txt", "1000 500500\n"),
}
#: examples of 1,000 jobs: only in the slow runs
SLOW_EXAMPLES = {"fan_in.yaml"}
EXAMPLE_PARAMS = [pytest.param(e, marks=pytest.mark.slow) if e in SLOW_EXAMPLES else e
                  for e in sorted(EXPECTED)]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """cwd for the jobs; ``python3`` is this interpreter (the examples call python3)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))
    return tmp_path


def _all_done(client: Client) -> None:
    (wf,) = [w["_key"] for w in client.iter_items("/workflows")]
    jobs = client.list_jobs(wf)
    assert jobs and all(j["status"] == "done" for j in jobs)
    assert all(r["return_code"] == 0 for r in client.iter_items(f"/workflows/{wf}/results"))


@pytest.mark.parametrize("example", EXAMPLE_PARAMS)
def test_example_runs_in_process(example, invoke, client, workdir):
    result = invoke("run", EXAMPLES / example, "--num-cpus", "2", "--poll-interval", "0.2")
    assert result.exit_code == 0, result.output
    path, content = EXPECTED[example]
    assert (workdir / path).read_text() == content
    _all_done(client)
    assert "not successful" in result.stdout and " 0 not successful" in result.stdout
    if example not in SLOW_EXAMPLES:  # 1,000 jobs: the summary gives counts, not a table
        assert "STATUS" in result.stdout  # the summary table


@pytest.mark.slow
@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_runs_as_a_subprocess(example, db_url, client, workdir):
    env = clean_env(TORC_GRAPH_DATABASE=db_url, PATH=os.environ["PATH"])
    proc = subprocess.run(
        cli_argv("run", str(EXAMPLES / example), "--num-cpus", "2",
                        "--poll-interval", "0.2"),
        check=False, cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path, content = EXPECTED[example]
    assert (workdir / path).read_text() == content
    assert "Created workflow" in proc.stderr
    assert "remaining 0/" in proc.stderr  # the plain progress line (stderr is no terminal)
    _all_done(client)


def test_failed_job_gives_exit_code_1_and_is_listed(invoke, client, workdir):
    spec = {"name": "fails", "jobs": [
        {"name": "ok", "command": "true"},
        {"name": "bad", "command": "sh -c 'exit 7'"},
        {"name": "downstream", "command": "true", "blocked_by": ["bad"]},
    ]}
    (workdir / "spec.json").write_text(json.dumps(spec))
    result = invoke("run", "spec.json", "--no-progress")
    assert result.exit_code == 1, result.output
    rows = {line.split()[1]: line.split()[2:] for line in result.stdout.splitlines()[1:4]}
    assert rows["ok"] == ["done", "0", rows["ok"][2]]
    assert rows["bad"][:2] == ["failed", "7"]
    assert rows["downstream"] == ["canceled"]
    assert "1 succeeded, 2 not successful, 1 canceled, 1 failed" in result.stdout


@pytest.mark.parametrize("name, text, message", [
    ("bad.yaml", "jobs: [unclosed", "invalid YAML"),
    ("bad.json5", "{jobs: [", "invalid JSON5"),
    ("bad.json", '{"jobs": }', "invalid JSON at line 1"),
    ("spec.toml", "x = 1", "not a JSON, JSON5, YAML or KDL specification"),
    ("list.yaml", "- a\n- b\n", "must be an object"),
])
def test_spec_errors_are_one_line(invoke, workdir, name, text, message):
    (workdir / name).write_text(text)
    result = invoke("run", name)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert result.output.startswith("Error: ")


def test_invalid_spec_is_a_usage_error_without_http(invoke, workdir, client):
    (workdir / "spec.yaml").write_text("name: x\njobs:\n  - {name: a, command: 'true', "
                                       "blocked_by: [nosuch]}\n")
    result = invoke("run", "spec.yaml")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: invalid specification spec.yaml: ")
    assert "nosuch" in result.stderr and "HTTP" not in result.stderr
    assert list(client.iter_items("/workflows")) == []  # nothing created
    created = invoke("workflows", "create", "spec.yaml")
    assert created.exit_code == 2 and "HTTP" not in created.stderr


def test_missing_spec_file_is_a_usage_error(invoke, workdir):
    for target in ("missing.yaml", "dir/missing", "no-such-workflow"):
        result = invoke("run", target)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert "spec file 'missing.yaml' does not exist" in invoke("run", "missing.yaml").stderr
    assert "neither a spec file nor a workflow" in invoke("run", "no-such-workflow").stderr
    assert invoke("workflows", "create", "missing.yaml").exit_code == 2


def test_missing_input_file_is_refused(invoke, workdir):
    spec = {"name": "x", "files": [{"name": "in", "path": "missing-input.txt"}],
            "jobs": [{"name": "a", "command": "true", "input_files": ["in"]}]}
    (workdir / "spec.json").write_text(json.dumps(spec))
    result = invoke("run", "spec.json")
    assert result.exit_code == 1
    assert "missing-input.txt" in result.output


def test_jobs_run_starts_and_runs_an_existing_workflow(invoke, client, workdir):
    wf = client.add_workflow_specification({"name": "w", "user": "u", "jobs": [
        {"name": "a", "command": "echo a"}, {"name": "b", "command": "echo b",
                                             "blocked_by": ["a"]}]})["_key"]
    result = invoke("jobs", "run", wf, "--no-progress", "--num-cpus", "1")
    assert result.exit_code == 0, result.output
    assert client.get_status(wf)["run_id"] == 1
    assert [j["status"] for j in client.list_jobs(wf)] == ["done", "done"]
    assert (workdir / "output" / "job-stdio").is_dir()
    # Run again: nothing to do, the workflow is complete, exit 0.
    again = invoke("jobs", "run", wf, "--no-progress")
    assert again.exit_code == 0, again.output
    assert client.get_status(wf)["run_id"] == 1


def test_jobs_run_unknown_workflow(invoke):
    result = invoke("jobs", "run", "999999")
    assert result.exit_code == 4


@pytest.mark.slow
def test_run_against_a_remote_server(invoke, live_server, client, workdir):
    spec = {"name": "remote", "jobs": [{"name": "a", "command": "echo remote-a"},
                                       {"name": "b", "command": "true", "blocked_by": ["a"]}]}
    (workdir / "spec.yaml").write_text(json.dumps(spec))  # JSON is valid YAML
    result = invoke("run", "spec.yaml", "--url", live_server, "--no-progress")
    assert result.exit_code == 0, result.output
    with Client(live_server) as remote:
        (wf,) = [w["_key"] for w in remote.iter_items("/workflows")]
        assert [j["status"] for j in remote.list_jobs(wf)] == ["done", "done"]
        (node,) = remote.iter_items(f"/workflows/{wf}/compute_nodes")
        assert node["is_active"] is False


def test_progress_bar_on_a_terminal_and_lines_in_a_log(client):
    wf = client.add_workflow_specification(
        {"name": "p", "user": "u", "jobs": [{"name": "a", "command": "true"},
                                            {"name": "b", "command": "true"}]})["_key"]

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    class FakeRunner:
        running = 1

        @staticmethod
        def running_job_names() -> list[str]:
            return ["simulate_42"]

        class summary:
            succeeded, failed, terminated, canceled = 3, 1, 0, 0

    tty = Tty()
    progress = Progress(client, wf, tty)
    progress(FakeRunner())
    progress(FakeRunner())  # rate-limited: drawn once
    bar = tty.getvalue()
    assert bar.startswith("\r\033[K" + "░" * 20 + " 0/2  ✓3 ✗1 ▶1  0.0/s  ETA --:--")
    assert bar.endswith("running: simulate_42") and "\n" not in bar
    progress.close(FakeRunner())
    assert tty.getvalue() == bar + "\r\033[K"  # erased: the summary starts on a clean line
    log = io.StringIO()
    plain = Progress(client, wf, log)
    plain(FakeRunner())
    plain.close(FakeRunner())
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2
    assert "done 3  running 1  failed 1  remaining 2/2  0.0 jobs/s  ETA --:--  running: " \
           "simulate_42" in lines[0]


@pytest.mark.slow
def test_shares_a_workflow_with_torcs_own_worker(live_server, workdir):
    """A torc v0.6.4 worker (torc-client's `torc jobs run`) and ours on one workflow: every
    job runs exactly once, and both workers take part."""
    pytest.importorskip("torc")
    with Client(live_server) as client:
        wf = client.add_workflow_specification({"name": "shared", "user": "u", "jobs": [
            {"name": f"j{i}", "command": "sleep 0.5"} for i in range(16)]})["_key"]
        client.bump_run_id(wf)
        client.initialize_jobs(wf)
        env = clean_env(PATH=os.environ["PATH"])
        torc_worker = subprocess.Popen(
            [sys.executable, "-c", "from torc.cli.torc import cli; cli()", "-u", live_server,
             "-k", wf, "-n", "jobs", "run", "-p", "1", "-o", str(workdir / "torc_out")],
            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Let torc's worker claim first, then run ours next to it.
            deadline = time.monotonic() + 60
            while not list(client.iter_items(f"/workflows/{wf}/compute_nodes")):
                assert time.monotonic() < deadline and torc_worker.poll() is None
                time.sleep(0.1)
            ours = subprocess.run(
                cli_argv("jobs", "run", wf, "--url", live_server, "--num-cpus", "2",
                                "--no-progress", "--poll-interval", "0.2"),
                check=False, cwd=workdir, env=env, capture_output=True, text=True,
                timeout=120)
            assert ours.returncode == 0, ours.stdout + ours.stderr
            assert torc_worker.wait(120) == 0
        finally:
            if torc_worker.poll() is None:
                torc_worker.kill()
                torc_worker.wait()
        jobs = client.list_jobs(wf)
        assert all(j["status"] == "done" for j in jobs)
        results = list(client.iter_items(f"/workflows/{wf}/results"))
        assert sorted(r["job_key"] for r in results) == sorted(j["_key"] for j in jobs)
        nodes = {n["_id"]: n for n in client.iter_items(f"/workflows/{wf}/compute_nodes")}
        assert len(nodes) == 2 and not any(n["is_active"] for n in nodes.values())
        ran_on = {e["_from"] for e in client.iter_items(f"/workflows/{wf}/edges/executed")}
        assert ran_on == set(nodes)


def test_jobs_run_restart_reruns_failed_and_changed_jobs_only(invoke, client, workdir):
    """Fail once, fix, reset the failed jobs and restart: only they (and what follows them)
    run again; a changed input file reruns its consumers too."""
    (workdir / "input.txt").write_text("v1\n")
    spec = {"name": "restart", "files": [{"name": "input", "path": "input.txt"},
                                         {"name": "mid", "path": "mid.txt"}],
            "jobs": [
                {"name": "ok", "command": "echo ok"},
                {"name": "flaky", "command": "sh -c 'test -e fixed'"},
                {"name": "after_flaky", "command": "true", "blocked_by": ["flaky"]},
                {"name": "reader", "command": "cp input.txt mid.txt",
                 "input_files": ["input"], "output_files": ["mid"]},
            ]}
    (workdir / "spec.json").write_text(json.dumps(spec))
    assert invoke("run", "spec.json", "--no-progress").exit_code == 1
    (wf,) = [w["_key"] for w in client.iter_items("/workflows")]
    status = {j["name"]: j["status"] for j in client.list_jobs(wf)}
    assert status["after_flaky"] == "canceled"
    (workdir / "fixed").touch()
    client.reset_job_status(wf, failed_only=True)  # `torc-graph workflows reset --failed-only`
    result = invoke("jobs", "run", wf, "--restart", "--no-progress")
    assert result.exit_code == 0, result.output
    assert client.get_status(wf)["run_id"] == 2
    rerun = {r["job_key"] for r in client.iter_items(f"/workflows/{wf}/results", run_id=2)}
    names = {j["_key"]: j["name"] for j in client.list_jobs(wf)}
    assert {names[k] for k in rerun} == {"flaky", "after_flaky"}
    # Change the input on disk: its consumer runs again on the next restart, nothing else.
    time.sleep(0.01)
    (workdir / "input.txt").write_text("v2\n")
    os.utime(workdir / "input.txt", (time.time() + 5, time.time() + 5))
    result = invoke("jobs", "run", wf, "--restart", "--no-progress")
    assert result.exit_code == 0, result.output
    rerun = {r["job_key"] for r in client.iter_items(f"/workflows/{wf}/results", run_id=3)}
    assert {names[k] for k in rerun} == {"reader"}
    assert (workdir / "mid.txt").read_text() == "v2\n"


def test_runtimes_accept_short_durations(invoke, client, workdir):
    """`10m` is a runtime everywhere (spec, API validation, initialize); the server hands torc
    clients ISO 8601 for it."""
    spec = {"name": "short", "resource_requirements": [
        {"name": "ten", "runtime": "10m"}, {"name": "long", "runtime": "1h30m"}],
        "jobs": [{"name": "a", "command": "true", "resource_requirements": "ten"},
                 {"name": "b", "command": "true", "resource_requirements": "long"}]}
    (workdir / "spec.json").write_text(json.dumps(spec))
    assert invoke("run", "spec.json", "--dry-run").exit_code == 0
    wf = client.add_workflow_specification(spec)["_key"]
    client.initialize_jobs(wf)
    seconds = {j["name"]: j["internal"]["runtime_seconds"] for j in client.list_jobs(wf)}
    assert seconds == {"a": 600, "b": 5400}
    assert client.get(f"/workflows/{wf}/ready_job_requirements")["max_runtime"] == "PT1H30M"
    bad = {**spec, "resource_requirements": [{"name": "ten", "runtime": "10 minutes"}]}
    (workdir / "bad.json").write_text(json.dumps(bad))
    result = invoke("run", "bad.json")
    assert result.exit_code == 2
    assert "invalid duration '10 minutes'" in result.stderr and "'10m'" in result.stderr
