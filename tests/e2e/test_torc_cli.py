"""Acceptance: the published torc CLI's ``workflows``, ``jobs``, ``files``, ``events``,
``results`` and ``graphs`` commands against a live torc_graph, on a workflow that torc's own
job runner has run (files, user data, resource requirements, process stats).

Creating and running the workflow are separate ``torc`` processes. The read commands run in
one more ``torc`` process that executes each command line through the real click entry point
in turn (the CLI takes seconds to import, per command): each gets its own exit code, stdout
and stderr.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PY = sys.executable

#: Runs many torc command lines (JSON list on stdin) in one process; prints one JSON report.
BATCH_DRIVER = textwrap.dedent('''
    import contextlib, io, json, sys, traceback
    from torc.cli.torc import cli

    reports = []
    for argv in json.load(sys.stdin):
        out, err = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(argv, prog_name="torc", standalone_mode=True)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
        reports.append({"argv": argv, "code": code, "stdout": out.getvalue(),
                        "stderr": err.getvalue()})
    sys.__stdout__.write(json.dumps(reports))
''')

#: A job script: ``make`` writes a file and stores user data; ``use`` reads both.
JOB_SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    from torc.api import make_api
    api = make_api(os.environ["TORC_DATABASE_URL"])
    wf, key = os.environ["TORC_WORKFLOW_KEY"], os.environ["TORC_JOB_KEY"]
    step, path_in, path_out = sys.argv[1:]
    time.sleep(2.5)  # sampled by the resource monitor
    if step == "make":
        with open(path_in, encoding="utf-8") as f:
            text = f.read()
        ud = api.list_job_user_data_stores(wf, key).items[0]
        ud.data = {"length": len(text)}
        api.modify_user_data(wf, ud.key, ud)
    else:
        with open(path_in, encoding="utf-8") as f:
            text = f.read()
        length = api.list_job_user_data_consumes(wf, key).items[0].data["length"]
        assert length == len(text.upper()), length
        text = text.upper()
    with open(path_out, "w", encoding="utf-8") as f:
        f.write(text)
''')


def cli_spec(root: Path) -> dict:
    data = root / "data"
    data.mkdir()
    script = root / "job.py"
    script.write_text(JOB_SCRIPT)
    (data / "raw.txt").write_text("hello torc_graph\n")
    path = {n: str(data / f"{n}.txt") for n in ("raw", "mid", "final")}
    return {
        "name": "cli",
        "description": "e2e CLI workflow",
        "files": [{"name": n, "path": p} for n, p in path.items()],
        "user_data": [{"name": "stats", "is_ephemeral": False}],
        "resource_requirements": [{"name": "small", "num_cpus": 1, "memory": "1g",
                                   "runtime": "P0DT10M"}],
        "jobs": [
            {"name": "make", "command": f"{PY} {script} make {path['raw']} {path['mid']}",
             "input_files": ["raw"], "output_files": ["mid"], "output_user_data": ["stats"],
             "resource_requirements": "small"},
            {"name": "use", "command": f"{PY} {script} use {path['mid']} {path['final']}",
             "input_files": ["mid"], "output_files": ["final"], "input_user_data": ["stats"],
             "resource_requirements": "small"},
        ],
        "config": {"compute_node_resource_stats": {
            "cpu": True, "memory": True, "process": True, "interval": 1, "make_plots": False}},
    }


def run_batch(torc, commands: list[list[str]]) -> dict[str, dict]:
    """Run the command lines in one torc process; map ``" ".join(argv)`` to its report."""
    argvs = [["-n", "-u", torc.url, *argv] for argv in commands]
    done = subprocess.run([PY, "-c", BATCH_DRIVER], input=json.dumps(argvs), text=True,
                          capture_output=True, cwd=torc.workdir, env=torc.env, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    reports = json.loads(done.stdout)
    return {" ".join(r["argv"][3:]): r for r in reports}


@pytest.fixture(scope="module")
def ran(module_torc):
    """The CLI workflow, created with ``torc workflows create-from-json-file`` and run with
    ``torc jobs run``: ``(torc, key, root)``."""
    torc = module_torc
    root = torc.workdir.parent
    key = torc.create_from_spec(cli_spec(root))
    torc.run_jobs(key, root / "out", timeout=120)
    assert (root / "data" / "final.txt").read_text() == "HELLO TORC_GRAPH\n"
    return torc, key, root


def ok(reports: dict[str, dict], command: str) -> dict:
    report = reports[command]
    assert report["code"] == 0, report
    return report


def ok_json(reports: dict[str, dict], command: str):
    report = ok(reports, command)
    try:
        return json.loads(report["stdout"])
    except json.JSONDecodeError:
        pytest.fail(f"{command}: not JSON:\n{report['stdout']}\n{report['stderr']}")


def test_read_commands(ran, api):
    torc, wf, root = ran
    graphs_dir = root / "graphs"
    k = ["-k", wf]
    commands = [
        ["-F", "json", "workflows", "list"],
        ["workflows", "list"],
        [*k, "workflows", "show"],
        [*k, "workflows", "show-config"],
        [*k, "workflows", "show-status"],
        ["workflows", "example"],
        ["workflows", "template"],
        [*k, "-F", "json", "workflows", "list-scheduler-configs"],
        [*k, "-F", "json", "jobs", "list"],
        [*k, "-F", "json", "jobs", "list", "-f", "name=use"],
        [*k, "jobs", "list"],
        [*k, "-F", "json", "jobs", "list-process-stats"],
        [*k, "-F", "json", "files", "list"],
        [*k, "events", "list"],
        [*k, "events", "list", "-f", "category=job"],
        [*k, "-F", "json", "events", "get-latest-event-timestamp"],
        [*k, "-F", "json", "results", "list"],
        [*k, "-F", "json", "results", "list", "--latest-only"],
        [*k, "results", "list"],
    ]
    # `graphs plot` renders with Graphviz: checked only where `dot` is installed (CI installs
    # it), so that the README's test command also passes on a machine without Graphviz.
    has_dot = shutil.which("dot") is not None
    if has_dot:
        commands.append([*k, "graphs", "plot", "-k", "-o", str(graphs_dir),
                         "job_job_dependencies", "job_file_dependencies",
                         "job_user_data_dependencies"])
    reports = run_batch(torc, commands)
    jobs = {j.name: j for j in api.list_jobs(wf).items}
    keys = {j.key for j in jobs.values()}

    listed = ok_json(reports, "-F json workflows list")["workflows"]
    assert wf in {w["_key"] for w in listed}
    assert {w["name"] for w in listed if w["_key"] == wf} == {"cli"}
    assert "cli" in ok(reports, "workflows list")["stdout"]

    spec = ok_json(reports, f"-k {wf} workflows show")
    assert [j["name"] for j in spec["jobs"]] == ["make", "use"]
    assert {f["name"] for f in spec["files"]} == {"raw", "mid", "final"}
    assert spec["jobs"][1]["input_user_data"] == ["stats"]
    assert spec["jobs"][1]["blocked_by"] in (None, [], ["make"]), spec["jobs"][1]
    config = ok_json(reports, f"-k {wf} workflows show-config")
    assert config["compute_node_resource_stats"]["process"] is True
    assert ok_json(reports, f"-k {wf} workflows show-status")["run_id"] == 1
    assert ok_json(reports, "workflows example")["jobs"]
    assert "jobs" in ok_json(reports, "workflows template")
    assert ok_json(reports, f"-k {wf} -F json workflows list-scheduler-configs") == {"ids": []}

    listed_jobs = ok_json(reports, f"-k {wf} -F json jobs list")["jobs"]
    assert {(j["name"], j["status"]) for j in listed_jobs} == {("make", "done"), ("use", "done")}
    assert [j["name"] for j in ok_json(reports, f"-k {wf} -F json jobs list -f name=use")["jobs"]
            ] == ["use"]
    assert "make" in ok(reports, f"-k {wf} jobs list")["stdout"]
    stats = ok_json(reports, f"-k {wf} -F json jobs list-process-stats")["stats"]
    assert {s["job_key"] for s in stats} == keys and {s["run_id"] for s in stats} == {1}

    files = ok_json(reports, f"-k {wf} -F json files list")["files"]
    assert {f["name"] for f in files} == {"raw", "mid", "final"}
    assert all(f["st_mtime"] for f in files)

    events = ok_json(reports, f"-k {wf} events list")
    kinds = {(e["category"], e["type"]) for e in events}
    assert {("workflow", "start"), ("worker", "start"), ("worker", "stop"), ("job", "start"),
            ("job", "complete")} <= kinds
    job_events = ok_json(reports, f"-k {wf} events list -f category=job")
    assert sorted((e["type"], e["job_key"]) for e in job_events) == sorted(
        (t, k) for k in keys for t in ("start", "complete"))
    latest = ok_json(reports, f"-k {wf} -F json events get-latest-event-timestamp")
    assert latest["timestamp"] == max(e["timestamp"] for e in events)

    results = ok_json(reports, f"-k {wf} -F json results list")["results"]
    assert sorted((r["job_name"], r["return_code"], r["run_id"]) for r in results) == [
        ("make", 0, 1), ("use", 0, 1)]
    assert len(ok_json(reports, f"-k {wf} -F json results list --latest-only")["results"]) == 2
    assert "make" in ok(reports, f"-k {wf} results list")["stdout"]

    if not has_dot:
        return
    ok(reports, " ".join(commands[-1]))
    for name in ("job_job_dependencies", "job_file_dependencies", "job_user_data_dependencies"):
        dot = (graphs_dir / f"{name}.dot").read_text()
        assert dot.lstrip().startswith(("digraph", "strict digraph")), dot
        assert (graphs_dir / f"{name}.dot.png").stat().st_size > 0
    assert "make" in (graphs_dir / "job_job_dependencies.dot").read_text()


def test_more_read_commands(ran, api):
    """user-data, resource-requirements, compute-nodes, collections, reports and export."""
    torc, wf, root = ran
    report_dir = root / "out"  # torc's runner wrote its logs here
    export = root / "export.sqlite"
    k = ["-k", wf]
    commands = [
        [*k, "-F", "json", "user-data", "list"],
        [*k, "-F", "json", "resource-requirements", "list"],
        [*k, "compute-nodes", "list"],
        [*k, "-F", "json", "compute-nodes", "list-resource-stats"],
        [*k, "-F", "json", "collections", "list"],
        [*k, "-F", "json", "collections", "join", "job-results"],
        [*k, "-F", "json", "collections", "join", "compute-node-executed-jobs"],
        [*k, "reports", "results", "-o", str(report_dir)],
        ["export", "sqlite", wf, "-F", str(export)],
    ]
    reports = run_batch(torc, commands)
    jobs = {j.name: j for j in api.list_jobs(wf).items}
    keys = {j.key for j in jobs.values()}

    user_data = ok_json(reports, f"-k {wf} -F json user-data list")
    assert [(u["name"], u["data"]) for u in user_data] == [("stats", {"length": 17})]
    rrs = ok_json(reports, f"-k {wf} -F json resource-requirements list")
    assert [(r["name"], r["num_cpus"], r["memory"]) for r in rrs["resource_requirements"]] == [
        ("small", 1, "1g")]
    nodes = ok_json(reports, f"-k {wf} compute-nodes list")["compute_nodes"]
    assert len(nodes) == 1 and nodes[0]["is_active"] is False
    assert nodes[0]["scheduler"]["scheduler_type"] == "local"
    stats = ok_json(reports, f"-k {wf} -F json compute-nodes list-resource-stats")["stats"]
    # rmon reports resource_type "process"; the CLI only adds job_key for "Process" (a torc
    # client quirk), so the job keys are checked on the stored documents.
    assert sum(1 for s in stats if s["resource_type"] == "process") == 3 * len(keys)
    stored = [s for doc in api.list_compute_node_stats(wf).items for s in doc.stats
              if s.resource_type == "process"]
    assert {s.job_key for s in stored} == keys
    names = ok_json(reports, f"-k {wf} -F json collections list")["names"]
    assert {"jobs", "files", "user_data", "results", "blocks", "executed"} <= set(names)
    joined = ok_json(reports, f"-k {wf} -F json collections join job-results")["items"]
    assert sorted((i["from"]["name"], i["to"]["return_code"]) for i in joined) == [
        ("make", 0), ("use", 0)]
    executed = ok_json(
        reports, f"-k {wf} -F json collections join compute-node-executed-jobs")["items"]
    assert sorted(i["to"]["name"] for i in executed) == ["make", "use"]
    report = ok_json(reports, f"-k {wf} reports results -o {report_dir}")
    runs = {j["name"]: j["runs"] for j in report["jobs"]}
    assert set(runs) == {"make", "use"}
    for name, job_runs in runs.items():
        assert [(r["run_id"], r["return_code"]) for r in job_runs] == [(1, 0)], name
        assert job_runs[0]["job_runner_log_file"].startswith(str(report_dir))
    ok(reports, f"export sqlite {wf} -F {export}")
    with contextlib.closing(sqlite3.connect(export)) as db:
        exported = dict(db.execute("SELECT name, status FROM jobs").fetchall())
    assert exported == {"make": "done", "use": "done"}


def test_mutating_commands(ran, api, read):
    """``workflows modify``, ``jobs reset-status`` + ``workflows restart``, ``workflows
    reset-status``, ``workflows cancel`` and ``workflows start`` exit 0 and the server state
    follows."""
    torc, wf, _root = ran
    jobs = read.jobs(wf)
    k = ["-k", wf]
    commands = [
        ["workflows", "modify", wf, "-d", "described by the CLI"],
        [*k, "jobs", "reset-status", jobs["use"].key],
        [*k, "workflows", "restart"],
        [*k, "-F", "json", "jobs", "list"],
        ["workflows", "reset-status", wf],
        ["workflows", "cancel", wf],
        [*k, "workflows", "show-status"],
        [*k, "workflows", "start"],
    ]
    reports = run_batch(torc, commands)
    for argv in commands:
        ok(reports, " ".join(argv))
    assert api.get_workflow(wf).description == "described by the CLI"
    after_restart = ok_json(reports, f"-k {wf} -F json jobs list")["jobs"]
    assert {j["name"]: j["status"] for j in after_restart} == {"make": "done", "use": "ready"}
    status = ok_json(reports, f"-k {wf} workflows show-status")
    assert status["run_id"] == 2 and status["is_canceled"] is True
    # `workflows start` after the cancel: status reset, run_id bumped, jobs initialized.
    status = api.get_workflow_status(wf)
    assert status.run_id == 3 and status.is_canceled is False
    assert read.statuses(wf) == {"make": "ready", "use": "blocked"}
