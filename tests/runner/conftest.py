"""Fixtures of the runner tests: a working directory with a real SQLite file, a client on it,
and helpers to create, start and run workflows from spec dicts."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from torc_graph.client import Client
from torc_graph.runner.local import LocalRunner, RunnerOptions, RunnerSummary
from torc_graph.runner.workflow import create_workflow, start_workflow
from torc_graph.testing import clean_env, cli_argv

PY = sys.executable


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """The jobs' working directory (the test's cwd); ``python3`` resolves to this Python."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TORC_GRAPH_URL", raising=False)
    monkeypatch.setenv("PATH", os.path.dirname(PY) + os.pathsep + os.environ.get("PATH", ""))
    return tmp_path


@pytest.fixture
def db_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'torc.db'}"


@pytest.fixture
def client(db_url: str) -> Iterator[Client]:
    with Client(database=db_url) as c:
        yield c


@pytest.fixture
def make_workflow(client: Client) -> Callable[..., str]:
    """Create a workflow from a spec dict and start it (run_id 1, jobs initialized)."""

    def make(jobs: list[dict[str, Any]], **extra: Any) -> str:
        spec = {"name": "test", "user": "tester", "jobs": jobs, **extra}
        wf = create_workflow(client, spec)
        start_workflow(client, wf)
        return wf

    return make


@pytest.fixture
def run_workflow(client: Client, workdir: Path) -> Callable[..., RunnerSummary]:
    """Run a LocalRunner on a workflow to the end (output in ``workdir/output``)."""

    def run(wf: str, **options: Any) -> RunnerSummary:
        options.setdefault("poll_interval", 0.2)
        options.setdefault("output_dir", workdir / "output")
        return LocalRunner(client, wf, RunnerOptions(**options)).run()

    return run


def jobs_by_name(client: Client, wf: str) -> dict[str, dict[str, Any]]:
    return {j["name"]: j for j in client.list_jobs(wf)}


@pytest.fixture
def by_name(client: Client) -> Callable[[str], dict[str, dict[str, Any]]]:
    return lambda wf: jobs_by_name(client, wf)



@pytest.fixture
def in_background():
    """``with in_background(runner) as box:`` runs ``runner.run()`` in a thread; the block's
    end waits for it (30 s; then it is stopped and the test fails). ``box["summary"]`` is the
    RunnerSummary."""

    @contextlib.contextmanager
    def background(runner: LocalRunner) -> Iterator[dict[str, Any]]:
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.update(summary=runner.run()))
        thread.start()
        try:
            yield box
            thread.join(30)
            assert not thread.is_alive(), "the runner did not finish"
        finally:
            if thread.is_alive():
                runner.request_stop()
                thread.join(30)

    return background


@pytest.fixture
def spawn_runner(workdir: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """``spawn_runner(wf, "--database", url)``: ``torc-graph jobs run WF`` as a subprocess in
    its own process group (output in ``workdir/output``, stdout+stderr piped). Whatever still
    runs at the test's end is killed."""
    procs: list[subprocess.Popen] = []

    def spawn(wf: str, *store: str, num_cpus: int = 2) -> subprocess.Popen:
        argv = cli_argv("jobs", "run", wf, *store, "--num-cpus", str(num_cpus),
                        "--no-progress", "--poll-interval", "0.2",
                        "--output", str(workdir / "output"))
        proc = subprocess.Popen(argv, cwd=workdir, env=clean_env(PATH=os.environ["PATH"]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
