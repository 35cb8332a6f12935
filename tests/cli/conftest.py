"""Shared fixtures of the CLI tests: a database file, a CliRunner bound to it, a populated
workflow (a diamond that ran once, one job failing), and a live gunicorn server.

Everything is real: the CLI runs in-process against the embedded store on a tmp SQLite file,
through the same Falcon app gunicorn serves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from torc_graph.cli.main import cli
from torc_graph.client import Client
from torc_graph.runner.process import stdio_paths

LONG_COMMAND = "python work.py --input f2.json --output o2.json " + " ".join(
    f"--option-{i}=value-{i}" for i in range(20)
)

DIAMOND_SPEC = {
    "name": "diamond",
    "user": "tester",
    "description": "preprocess, two work jobs, postprocess",
    "files": [
        {"name": "inputs", "path": "inputs.json"},
        {"name": "f1", "path": "f1.json"},
        {"name": "f2", "path": "f2.json"},
        {"name": "o1", "path": "o1.json"},
        {"name": "o2", "path": "o2.json"},
        {"name": "out", "path": "results/out.json"},
    ],
    "user_data": [
        {"name": "params", "data": {"alpha": 1, "labels": ["a", "b"]}},
        {"name": "summary", "is_ephemeral": True},
    ],
    "resource_requirements": [
        {"name": "small", "num_cpus": 1, "memory": "1g", "runtime": "P0DT1H"},
        {"name": "large", "num_cpus": 2, "memory": "2g", "runtime": "P0DT2H"},
    ],
    "jobs": [
        {"name": "preprocess", "command": "python preprocess.py -i inputs.json",
         "input_files": ["inputs"], "output_files": ["f1", "f2"],
         "input_user_data": ["params"], "resource_requirements": "small"},
        {"name": "work1", "command": "python work.py --input f1.json --output o1.json",
         "input_files": ["f1"], "output_files": ["o1"], "resource_requirements": "large"},
        {"name": "work2", "command": LONG_COMMAND,
         "input_files": ["f2"], "output_files": ["o2"], "resource_requirements": "large"},
        {"name": "postprocess", "command": "python postprocess.py o1.json o2.json",
         "input_files": ["o1", "o2"], "output_files": ["out"],
         "output_user_data": ["summary"], "resource_requirements": "small"},
    ],
}


@pytest.fixture
def diamond_spec() -> dict:
    """The specification of the :func:`diamond` workflow (a deep copy: tests may edit it)."""
    return json.loads(json.dumps(DIAMOND_SPEC))


@dataclass
class Diamond:
    """The populated workflow: its key, the job keys by name, the compute node that ran them,
    and the output directory where their stdout/stderr files are."""

    key: str
    jobs: dict[str, str]
    node: dict
    output_dir: Path


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'torc.db'}"


@pytest.fixture
def client(db_url: str) -> Iterator[Client]:
    with Client(database=db_url) as c:
        yield c


@pytest.fixture
def invoke(db_url: str, monkeypatch) -> Callable[..., Result]:
    """Run ``torc-graph ARGS`` in-process on the test database (via TORC_GRAPH_DATABASE)."""
    monkeypatch.delenv("TORC_GRAPH_URL", raising=False)
    monkeypatch.setenv("TORC_GRAPH_DATABASE", db_url)
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict | None = None) -> Result:
        return runner.invoke(cli, [str(a) for a in args], input=input, env=env,
                             catch_exceptions=True)

    return run


def run_job(client: Client, wf: str, job: dict, node: dict, run_id: int, rc: int,
            output_dir: Path) -> dict:
    """Start and complete a claimed job the way the local runner does (start_job, the
    process's stdout/stderr captured in the runner's files, complete_job)."""
    started = client.start_job(wf, job["_key"], job["_rev"], run_id, node["_id"])
    out, err = stdio_paths(output_dir, job["_key"], run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"hello from {job['name']}\n")
    err.write_text("" if rc == 0 else f"{job['name']} failed\n")
    result = {"job_key": job["_key"], "run_id": run_id, "return_code": rc,
              "exec_time_minutes": 0.25, "completion_time": "2026-01-01T00:00:00",
              "status": "done"}
    return client.complete_job(wf, started["_id"], "done", started["_rev"], run_id,
                               node["_key"], result)


@pytest.fixture
def diamond(client: Client, tmp_path: Path) -> Diamond:
    """The diamond workflow after one run: preprocess and work1 done, work2 done with rc 1,
    postprocess canceled (its blocker failed)."""
    wf = client.add_workflow_specification(DIAMOND_SPEC)["_key"]
    client.initialize_jobs(wf)
    run_id = client.bump_run_id(wf)
    output_dir = tmp_path / "output"
    node = client.add_document(wf, "compute_nodes", {
        "hostname": "node01", "pid": 4242, "start_time": "2026-01-01 00:00:00.000000",
        "is_active": True, "duration_seconds": 12.5,
        "resources": {"num_cpus": 8, "memory_gb": 16.0, "num_gpus": 0, "num_nodes": 1,
                      "time_limit": None},
        "scheduler": {"hostname": "node01", "scheduler_type": "local",
                      "output_dir": str(output_dir)},
    })
    resources = {"num_cpus": 8, "memory_gb": 16.0, "num_gpus": 0, "num_nodes": 1,
                 "time_limit": None, "scheduler_config_id": ""}
    return_codes = {"preprocess": 0, "work1": 0, "work2": 1}
    while True:
        claimed = client.prepare_jobs_for_submission(wf, resources)
        if not claimed:
            break
        for job in claimed:
            run_job(client, wf, job, node, run_id, return_codes[job["name"]], output_dir)
    jobs = {j["name"]: j["_key"] for j in client.list_jobs(wf)}
    return Diamond(wf, jobs, node, output_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A real gunicorn serving the test database; yields its URL."""
    port = free_port()
    # A bare gunicorn without tokens (authentication is tested in tests/api/test_auth*.py).
    env = {**os.environ, "TORC_GRAPH_DATABASE": db_url, "TORC_GRAPH_AUTH": "off"}
    env.pop("TORC_GRAPH_URL", None)
    log = open(tmp_path / "gunicorn.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "torc_graph.app:get_app()", "--bind",
         f"127.0.0.1:{port}", "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/ping", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # refused while booting, or a slow first answer
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start: "
                                   + (tmp_path / "gunicorn.log").read_text()[-2000:])
            time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def closed_url() -> str:
    """A URL nothing listens on (the port was free a moment ago)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def parse_json() -> Callable[[Result], object]:
    """Decode a successful command's JSON output (asserting exit code 0 first)."""

    def parse(result: Result):
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return parse
