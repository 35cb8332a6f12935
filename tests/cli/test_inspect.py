"""The inspection commands (workflows, jobs, files, results, events, user-data,
resource-requirements, compute-nodes) against the real app on a tmp SQLite file, their
table and JSON outputs, and the exit codes of failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from torc_graph.cli.output import ELLIPSIS

# ---------------------------------------------------------------------------------- workflows


def test_workflows_list_table_and_json(invoke, diamond, parse_json):
    result = invoke("workflows", "list")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:3] == ["KEY", "NAME", "USER"]
    assert row.split()[:3] == [diamond.key, "diamond", "tester"]

    docs = parse_json(invoke("workflows", "list", "--json"))
    assert [d["_key"] for d in docs] == [diamond.key]
    assert docs[0]["description"] == "preprocess, two work jobs, postprocess"


def test_workflows_list_paging_and_filters(invoke, client, parse_json):
    keys = [client.post("/workflows", {"name": f"w{i}", "user": "u" if i % 2 else "v"})["_key"]
            for i in range(5)]
    assert [d["_key"] for d in parse_json(invoke("workflows", "list", "--json", "--limit", "2",
                                                 "--skip", "1"))] == keys[1:3]
    assert [d["_key"] for d in parse_json(invoke("workflows", "list", "--json", "--user", "u"))
            ] == [keys[1], keys[3]]
    assert invoke("workflows", "list", "--limit", "0").exit_code == 2


def test_workflows_list_empty(invoke):
    result = invoke("workflows", "list")
    assert result.exit_code == 0
    assert result.stdout.strip() == "No workflows."
    assert json.loads(invoke("workflows", "list", "--json").stdout) == []


def test_workflows_show(invoke, diamond, parse_json):
    result = invoke("workflows", "show", diamond.key)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "name:" in out and "diamond" in out
    assert "Configuration" in out and "prepare_jobs_sort_method" in out
    assert "Jobs by status" in out

    data = parse_json(invoke("workflows", "show", diamond.key, "--json"))
    assert data["workflow"]["_key"] == diamond.key
    assert data["config"]["compute_node_expiration_buffer_seconds"] == 120
    assert data["job_counts"]["done"] == 3
    assert data["job_counts"]["canceled"] == 1


def test_workflows_status(invoke, diamond, parse_json):
    data = parse_json(invoke("workflows", "status", diamond.key, "--json"))
    assert data["run_id"] == 1
    assert data["is_canceled"] is False
    assert data["is_complete"] is True
    assert data["num_jobs"] == 4
    assert data["num_failed"] == 1  # work2: done, return code 1
    assert data["job_counts"] == {**{s: 0 for s in data["job_counts"]}, "done": 3, "canceled": 1}

    result = invoke("workflows", "status", diamond.key)
    assert result.exit_code == 0
    assert "is_complete: true" in " ".join(result.stdout.split())


def test_workflows_status_does_not_claim_the_completion_script(invoke, diamond, client):
    config = client.get_config(diamond.key)
    config["workflow_completion_script"] = "echo finished"
    client.put(f"/workflows/{diamond.key}/config", config)
    assert invoke("workflows", "status", diamond.key).exit_code == 0
    # The worker that asks next still gets the script to run.
    assert client.is_complete(diamond.key)["needs_to_run_completion_script"] is True


@pytest.mark.parametrize("suffix, text", [
    (".json", json.dumps({"name": "from-json", "jobs": [{"name": "a", "command": "true"}]})),
    (".json5", "{name: 'from-json5', // comment\n jobs: [{name: 'a', command: 'true'},]}"),
    (".yaml", "name: from-yaml\njobs:\n  - name: a\n    command: 'true'\n"),
])
def test_workflows_create_from_spec_file(invoke, client, tmp_path, suffix, text, parse_json):
    spec = tmp_path / f"spec{suffix}"
    spec.write_text(text)
    result = invoke("workflows", "create", spec)
    assert result.exit_code == 0, result.output
    key = result.stdout.split()[2]
    wf = client.get_workflow(key)
    assert wf["name"] == "from-" + suffix[1:]
    assert wf["user"]  # filled with the current user
    assert [j["name"] for j in client.list_jobs(key)] == ["a"]

    doc = parse_json(invoke("workflows", "create", spec, "--name", "renamed", "--json"))
    assert client.get_workflow(doc["_key"])["name"] == "renamed"


def test_workflows_create_empty_and_usage_errors(invoke, client, tmp_path):
    result = invoke("workflows", "create", "--name", "scratch", "--description", "d")
    assert result.exit_code == 0, result.output
    key = result.stdout.split()[2]
    assert client.get_workflow(key)["description"] == "d"

    assert invoke("workflows", "create").exit_code == 2
    missing = invoke("workflows", "create", tmp_path / "nope.yaml")
    assert missing.exit_code == 2  # a usage error, like every spec file problem
    assert "No such file" in missing.stderr and "Traceback" not in missing.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert invoke("workflows", "create", bad).exit_code == 2
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"jobs": [{"name": "a"}]}))  # command is required
    result = invoke("workflows", "create", invalid)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: invalid specification ")
    assert len(result.stderr.strip().splitlines()) == 1 and "HTTP" not in result.stderr


def test_workflows_delete_needs_confirmation(invoke, diamond, client, parse_json):
    result = invoke("workflows", "delete", diamond.key, input="n\n")
    assert result.exit_code == 1
    assert client.get_workflow(diamond.key)["_key"] == diamond.key

    result = invoke("workflows", "delete", diamond.key, "--yes")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Deleted workflow {diamond.key}"
    assert invoke("workflows", "show", diamond.key).exit_code == 4

    other = client.post("/workflows", {"name": "x", "user": "u"})["_key"]
    deleted = parse_json(invoke("workflows", "delete", other, "--json", input="y\n"))
    assert [d["_key"] for d in deleted] == [other]


def test_workflows_reset_failed_only_then_all(invoke, diamond, client):
    result = invoke("workflows", "reset", diamond.key, "--failed-only")
    assert result.exit_code == 0, result.output
    statuses = {j["name"]: j["status"] for j in client.list_jobs(diamond.key)}
    assert statuses == {"preprocess": "done", "work1": "done", "work2": "uninitialized",
                        "postprocess": "uninitialized"}

    assert invoke("workflows", "reset", diamond.key).exit_code == 0
    assert {j["status"] for j in client.list_jobs(diamond.key)} == {"uninitialized"}


def test_workflows_cancel(invoke, diamond, client):
    result = invoke("workflows", "cancel", diamond.key)
    assert result.exit_code == 0, result.output
    assert client.get_status(diamond.key)["is_canceled"] is True
    status = invoke("workflows", "status", diamond.key).stdout
    assert "is_canceled: true" in " ".join(status.split())


# --------------------------------------------------------------------------------------- jobs


def test_jobs_list_table_fits_80_columns(invoke, diamond):
    result = invoke("jobs", "list", diamond.key)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "NAME", "STATUS", "RC", "COMMAND"]
    assert [line.split()[1] for line in lines[1:]] == ["preprocess", "work1", "work2",
                                                      "postprocess"]
    assert all(len(line) <= 80 for line in lines)
    work2 = next(line for line in lines if " work2 " in line)
    assert work2.endswith(ELLIPSIS)  # the long command is cut


def test_failed_jobs_are_visible(invoke, diamond, parse_json):
    table = invoke("jobs", "list", diamond.key).stdout.splitlines()
    rows = {line.split()[1]: line.split()[2:4] for line in table[1:]}
    assert rows["work2"] == ["failed", "1"] and rows["work1"] == ["done", "0"]
    assert rows["postprocess"][0] == "canceled"
    failed = invoke("jobs", "list", diamond.key, "--status", "failed")
    assert failed.exit_code == 0, failed.output
    assert [line.split()[1] for line in failed.stdout.splitlines()[1:]] == ["work2"]
    as_json = parse_json(invoke("jobs", "list", "diamond", "--status", "failed", "--json"))
    assert [(j["name"], j["status"]) for j in as_json] == [("work2", "done")]  # stored status
    assert invoke("jobs", "list", diamond.key, "--status", "failed", "--skip", "1").stdout \
        == "No jobs.\n"
    shown = invoke("jobs", "show", "diamond", "work2").stdout
    assert "status: failed (done, return code 1)" in " ".join(shown.split())


def test_jobs_list_filters_and_json(invoke, diamond, parse_json):
    done = parse_json(invoke("jobs", "list", diamond.key, "--status", "done", "--json"))
    assert [j["name"] for j in done] == ["preprocess", "work1", "work2"]
    named = parse_json(invoke("jobs", "list", diamond.key, "--name", "work1", "--json"))
    assert [j["_key"] for j in named] == [diamond.jobs["work1"]]
    page = parse_json(invoke("jobs", "list", diamond.key, "--limit", "2", "--skip", "1",
                             "--json"))
    assert [j["name"] for j in page] == ["work1", "work2"]
    assert invoke("jobs", "list", diamond.key, "--status", "bogus").exit_code == 2


def test_jobs_show_relations(invoke, diamond, parse_json):
    key = diamond.jobs["postprocess"]
    data = parse_json(invoke("jobs", "show", diamond.key, key, "--json"))
    assert data["job"]["status"] == "canceled"
    assert data["resource_requirements"]["name"] == "small"
    assert sorted(j["name"] for j in data["blocked_by"]) == ["work1", "work2"]
    assert data["blocks"] == []
    assert sorted(f["name"] for f in data["input_files"]) == ["o1", "o2"]
    assert [f["name"] for f in data["output_files"]] == ["out"]

    data = parse_json(invoke("jobs", "show", diamond.key, diamond.jobs["work2"], "--json"))
    assert [r["return_code"] for r in data["results"]] == [1]
    assert [j["name"] for j in data["blocks"]] == ["postprocess"]

    result = invoke("jobs", "show", diamond.key, key)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for title in ("Resource requirements", "Blocked by", "Blocks", "Input files",
                  "Output files", "Results"):
        assert title in out
    assert "work2" in out and "results/out.json" in out


def test_jobs_show_accepts_a_full_id(invoke, diamond, parse_json):
    job_id = f"jobs__{diamond.key}/{diamond.jobs['work1']}"
    data = parse_json(invoke("jobs", "show", diamond.key, job_id, "--json"))
    assert data["job"]["name"] == "work1"


def test_jobs_logs(invoke, diamond, parse_json):
    key = diamond.jobs["work2"]
    result = invoke("jobs", "logs", diamond.key, key)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"job-stdio/{key}_1.o (stdout) <==" in out and "hello from work2" in out
    assert f"job-stdio/{key}_1.e (stderr) <==" in out and "work2 failed" in out

    result = invoke("jobs", "logs", diamond.key, key, "--stream", "stderr")
    assert result.stdout == "work2 failed\n"
    data = parse_json(invoke("jobs", "logs", diamond.key, key, "--run-id", "1", "--json"))
    assert data["run_id"] == 1 and data["stdout"] == "hello from work2\n"
    assert data["stderr_path"].endswith(f"job-stdio/{key}_1.e")


def test_jobs_logs_after_a_real_local_run(invoke, tmp_path, monkeypatch):
    """The runner records its output directory; `jobs logs` finds the files from elsewhere."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: echo\njobs:\n  - name: hello\n    command: echo hello world\n"
                    "  - name: oops\n    command: sh -c 'echo bad >&2; exit 3'\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = invoke("run", spec, "--no-progress", "--output", "out")
    assert result.exit_code == 1, result.output  # one job failed
    monkeypatch.chdir(tmp_path)
    (wf,) = [w["_key"] for w in json.loads(invoke("workflows", "list", "--json").stdout)]
    jobs = json.loads(invoke("jobs", "list", wf, "--json").stdout)
    keys = {j["name"]: j["_key"] for j in jobs}
    hello = invoke("jobs", "logs", wf, keys["hello"], "--stream", "stdout")
    assert hello.exit_code == 0, hello.output
    assert hello.stdout == "hello world\n"
    oops = invoke("jobs", "logs", wf, keys["oops"], "--stream", "stderr")
    assert oops.stdout == "bad\n"


def test_jobs_logs_failures(invoke, diamond, tmp_path):
    never_ran = invoke("jobs", "logs", diamond.key, diamond.jobs["postprocess"])
    assert never_ran.exit_code == 1 and "has not run yet" in never_ran.stderr
    other_run = invoke("jobs", "logs", diamond.key, diamond.jobs["work1"], "--run-id", "7")
    assert other_run.exit_code == 1 and "--output-dir" in other_run.stderr
    elsewhere = invoke("jobs", "logs", diamond.key, diamond.jobs["work1"], "--output-dir",
                       tmp_path / "nowhere")
    assert elsewhere.exit_code == 1 and "not found" in elsewhere.stderr
    moved = tmp_path / "moved"
    diamond.output_dir.rename(moved)
    result = invoke("jobs", "logs", diamond.key, diamond.jobs["work1"], "--output-dir", moved,
                    "--stream", "stdout")
    assert result.exit_code == 0 and result.stdout == "hello from work1\n"


def test_jobs_reset(invoke, diamond, client, parse_json):
    out = parse_json(invoke("jobs", "reset", diamond.key, diamond.jobs["work1"], "--json"))
    assert out == [{"_key": diamond.jobs["work1"], "name": "work1", "old_status": "done",
                    "status": "uninitialized"}]
    statuses = {j["name"]: j["status"] for j in client.list_jobs(diamond.key)}
    # The reset of a complete job reaches its downstream jobs.
    assert statuses == {"preprocess": "done", "work1": "uninitialized", "work2": "done",
                        "postprocess": "uninitialized"}
    # A job that is not complete is set directly (and keeps its internal resources).
    client.initialize_jobs(diamond.key)
    ready = client.get_job(diamond.key, diamond.jobs["work1"])
    assert ready["status"] == "ready"
    result = invoke("jobs", "reset", diamond.key, diamond.jobs["work1"])
    assert result.exit_code == 0, result.output
    assert "ready -> uninitialized" in result.stdout
    after = client.get_job(diamond.key, diamond.jobs["work1"])
    assert after["status"] == "uninitialized"
    assert after["internal"]["num_cpus"] == 2
    assert invoke("jobs", "reset", diamond.key).exit_code == 2


# ----------------------------------------------------------------------- the other collections


def test_files_list(invoke, diamond, parse_json):
    result = invoke("files", "list", diamond.key)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["KEY", "NAME", "PATH", "MTIME"]
    assert "results/out.json" in result.stdout
    files = parse_json(invoke("files", "list", diamond.key, "--json"))
    assert [f["name"] for f in files] == ["inputs", "f1", "f2", "o1", "o2", "out"]
    only = parse_json(invoke("files", "list", diamond.key, "--name", "f2", "--json"))
    assert [f["path"] for f in only] == ["f2.json"]


def test_results_list(invoke, diamond, parse_json):
    result = invoke("results", "list", diamond.key)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["KEY", "JOB_KEY", "JOB", "RUN", "STATUS", "RC"]
    assert [line.split()[2] for line in lines[1:]] == ["preprocess", "work1", "work2"]
    failed = parse_json(invoke("results", "list", diamond.key, "--return-code", "1", "--json"))
    assert [r["job_key"] for r in failed] == [diamond.jobs["work2"]]
    by_job = parse_json(invoke("results", "list", diamond.key, "--job-key",
                               diamond.jobs["preprocess"], "--json"))
    assert [(r["run_id"], r["return_code"]) for r in by_job] == [(1, 0)]
    by_name = parse_json(invoke("results", "list", "diamond", "--job", "work2", "--json"))
    assert [r["job_key"] for r in by_name] == [diamond.jobs["work2"]]


def test_events_list(invoke, diamond, parse_json):
    events = parse_json(invoke("events", "list", diamond.key, "--json"))
    # start + complete for each of the three jobs that ran
    assert sorted((e["type"], e["job_key"]) for e in events) == sorted(
        (t, diamond.jobs[n]) for n in ("preprocess", "work1", "work2")
        for t in ("start", "complete"))
    result = invoke("events", "list", diamond.key, "--category", "job")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "TIME", "CATEGORY", "TYPE", "MESSAGE"]
    assert len(lines) == 7 and "Started job" in result.stdout
    assert parse_json(invoke("events", "list", diamond.key, "--category", "worker",
                             "--json")) == []
    last = max(e["timestamp"] for e in events)
    first = min(e["timestamp"] for e in events)
    after = parse_json(invoke("events", "list", diamond.key, "--after", str(first), "--json"))
    assert 0 < len(after) < 6 and all(e["timestamp"] > first for e in after)
    assert parse_json(invoke("events", "list", diamond.key, "--after", str(last),
                             "--json")) == []
    window = parse_json(invoke("events", "list", diamond.key, "--after", str(first - 1),
                               "--skip", "1", "--limit", "2", "--json"))
    assert window == events[1:3]


def test_events_follow_prints_new_events_until_ctrl_c(diamond, client, db_url):
    """A real process: follow, add an event, then SIGINT → exit 0."""
    env = {**os.environ, "TORC_GRAPH_DATABASE": db_url, "TORC_GRAPH_URL": ""}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from torc_graph.cli.main import cli; cli()", "events", "follow",
         diamond.key, "--json", "--interval", "0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        # Add events until the follower prints one (it starts after an unknown delay on a
        # loaded machine; old events are never printed), then one more, then Ctrl-C.
        sent = 0
        deadline = time.monotonic() + 60
        while not lines and time.monotonic() < deadline:
            sent += 1
            client.add_event(diamond.key, {"category": "workflow", "type": "note",
                                           "message": f"hello follower {sent}"})
            time.sleep(0.5)
        client.add_event(diamond.key, {"category": "workflow", "type": "note",
                                       "message": "last"})
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        reader.join(10)  # the reader owns stdout: no communicate()
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    printed = [json.loads(line)["message"] for line in lines]
    assert printed[-1] == "last" and len(printed) >= 2
    first = int(printed[0].rsplit(" ", 1)[1])
    assert printed == [f"hello follower {i}" for i in range(first, sent + 1)] + ["last"]


def test_events_follow_unknown_workflow(invoke):
    result = invoke("events", "follow", "999999")
    assert result.exit_code == 4


def test_user_data_list_and_show(invoke, diamond, parse_json):
    result = invoke("user-data", "list", diamond.key)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["KEY", "NAME", "EPHEMERAL", "DATA"]
    assert '{"alpha":1,"labels":["a","b"]}' in result.stdout
    docs = parse_json(invoke("user-data", "list", diamond.key, "--json"))
    assert [d["name"] for d in docs] == ["params", "summary"]
    ephemeral = parse_json(invoke("user-data", "list", diamond.key, "--ephemeral", "--json"))
    assert [d["name"] for d in ephemeral] == ["summary"]

    key = docs[0]["_key"]
    shown = invoke("user-data", "show", diamond.key, key)
    assert shown.exit_code == 0, shown.output
    assert '"labels": [' in shown.stdout  # data printed in full, pretty
    assert parse_json(invoke("user-data", "show", diamond.key, key, "--json"))["data"] == {
        "alpha": 1, "labels": ["a", "b"]}
    assert invoke("user-data", "show", diamond.key, "424242").exit_code == 4


def test_resource_requirements_list(invoke, diamond, parse_json):
    result = invoke("resource-requirements", "list", diamond.key)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KEY", "NAME", "CPUS", "GPUS", "NODES", "MEMORY", "RUNTIME"]
    assert lines[2].split()[1:] == ["large", "2", "0", "1", "2g", "P0DT2H"]
    docs = parse_json(invoke("resource-requirements", "list", diamond.key, "--name", "small",
                             "--json"))
    assert [d["memory"] for d in docs] == ["1g"]


def test_compute_nodes_list(invoke, diamond, parse_json):
    result = invoke("compute-nodes", "list", diamond.key)
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split()[:4] == ["KEY", "HOSTNAME", "PID", "CPUS"]
    assert row.split()[1:5] == ["node01", "4242", "8", "16.0"]
    docs = parse_json(invoke("compute-nodes", "list", diamond.key, "--inactive", "--json"))
    assert docs == []
    docs = parse_json(invoke("compute-nodes", "list", diamond.key, "--active", "--json"))
    assert [d["hostname"] for d in docs] == ["node01"]


# ------------------------------------------------------------------- connection and exit codes


def test_database_option_and_plain_path(invoke, diamond, db_url, tmp_path, parse_json):
    other = tmp_path / "other.db"
    # --database beats TORC_GRAPH_DATABASE; a plain path means a SQLite file.
    assert parse_json(invoke("workflows", "list", "--database", other, "--json")) == []
    assert len(parse_json(invoke("workflows", "list", "--database", db_url, "--json"))) == 1


def test_not_found_is_exit_4_with_one_line(invoke, diamond):
    result = invoke("jobs", "list", "999999")
    assert result.exit_code == 4
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "999999" in lines[0]
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback(invoke, closed_url):
    result = invoke("workflows", "list", "--url", closed_url, "--debug")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_unreachable_server_is_exit_3(invoke, closed_url):
    result = invoke("workflows", "list", "--url", closed_url)
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: cannot reach")
    assert "Traceback" not in result.output
    # The environment variable works too.
    assert invoke("workflows", "list", env={"TORC_GRAPH_URL": closed_url}).exit_code == 3


def test_usage_errors_are_exit_2(invoke):
    assert invoke("workflows", "show").exit_code == 2
    assert invoke("jobs", "list", "1", "--limit", "x").exit_code == 2
    assert invoke("nonsense").exit_code == 2


class _Failing(BaseHTTPRequestHandler):
    """A stand-in server whose storage is down: every request gets a torc 503 error body."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps({"error": True, "errorNum": 503, "code": 503,
                           "errorMessage": "the store is unavailable"}).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_server_error_is_exit_5(invoke):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = invoke("workflows", "list", "--url", url)
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 5
    assert result.stderr.strip() == "Error: the store is unavailable (HTTP 503)"


def test_http_mode_against_gunicorn(invoke, diamond, live_server, parse_json):
    """The same commands over HTTP, against a real gunicorn on the same database."""
    url = live_server
    docs = parse_json(invoke("workflows", "list", "--url", url, "--json"))
    assert [d["_key"] for d in docs] == [diamond.key]
    jobs = parse_json(invoke("jobs", "list", diamond.key, "--url", url, "--status", "done",
                             "--json"))
    assert len(jobs) == 3
    job_id = f"jobs__{diamond.key}/{diamond.jobs['postprocess']}"
    shown = parse_json(invoke("jobs", "show", diamond.key, job_id, "--url", url, "--json"))
    assert sorted(j["name"] for j in shown["blocked_by"]) == ["work1", "work2"]
    status = parse_json(invoke("workflows", "status", diamond.key, "--url", url, "--json"))
    assert status["is_complete"] is True
    result = invoke("jobs", "show", diamond.key, "999999", "--url", url)
    assert result.exit_code == 4
