"""Fixtures for the end-to-end tests: a real ``torc-graph serve`` (gunicorn, 4 workers, SQLite)
per test module, the published torc client (``torc-client==0.6.4``) pointed at it, and an
isolated environment for the torc CLI and its job runner.

The torc CLI reads dynaconf settings (``.torc_settings.toml`` in the working directory and
``TORC_*`` variables). Every CLI subprocess runs in a fresh working directory with a fresh HOME
and an environment from which every inherited ``TORC_*`` variable was removed, and then set
explicitly, so no user configuration leaks in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from torc.api import iter_documents, make_api
from torc.openapi_client import DefaultApi

from torc_graph.testing import LiveServer

#: The published torc CLI (console script ``torc``), run with this interpreter.
TORC_CLI = [sys.executable, "-c", "from torc.cli.torc import cli; cli()"]

#: Server log lines that must never appear (a client would have seen them as failures).
FORBIDDEN_LOG_TEXT = ("database is locked", "Traceback")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A live torc_graph on a fresh SQLite file, shared by the tests of one module.

    At teardown the server log is checked: no "database is locked", no traceback.
    """
    root = tmp_path_factory.mktemp("server")
    log_path = root / "server.log"
    live = LiveServer(f"sqlite:///{root / 'db.sqlite'}", workers=4, log_path=log_path)
    with live:
        yield live
    text = log_path.read_text(errors="replace")
    for forbidden in FORBIDDEN_LOG_TEXT:
        assert forbidden not in text, f"server log {log_path} contains {forbidden!r}"


@pytest.fixture(scope="module")
def api(server) -> DefaultApi:
    """The torc openapi client for the live server."""
    return make_api(server.url)


class Torc:
    """Runs the real torc CLI against the live server in an isolated directory."""

    def __init__(self, url: str, workdir: Path):
        self.url = url
        self.workdir = workdir
        home = workdir / "home"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TORC_")}
        env.update(
            HOME=str(home),
            TORC_DATABASE_URL=url,  # also what the job scripts use to reach user data
            TORC_OUTPUT_FORMAT="text",
            TORC_FILTER_WORKFLOWS_BY_USER="true",
            TORC_CONSOLE_LEVEL="info",
            TORC_FILE_LEVEL="info",
            TORC_TIMINGS="false",
        )
        self.env = env

    def start(self, *args: str, key: str | None = None,
              fmt: str | None = None) -> subprocess.Popen:
        """Start ``torc -n -u URL [-k KEY] [-F FMT] ARGS`` in its own session; see
        :meth:`wait`. Output goes to pipes: keep it small until :meth:`wait` reads it."""
        argv = [*TORC_CLI, "-n", "-u", self.url]
        if key is not None:
            argv += ["-k", key]
        if fmt is not None:
            argv += ["-F", fmt]
        argv += list(args)
        return subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    def run(self, *args: str, key: str | None = None, fmt: str | None = None,
            timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """``torc -n -u URL [-k KEY] [-F FMT] ARGS``; asserts exit code 0 when ``check``."""
        return self.wait(self.start(*args, key=key, fmt=fmt), timeout=timeout, check=check)

    @staticmethod
    def wait(proc: subprocess.Popen, *, timeout: float = 60,
             check: bool = True) -> subprocess.CompletedProcess:
        """Wait for a started torc process; asserts exit code 0 when ``check``.

        On timeout the whole process group (runner, job processes, resource monitor) is
        killed and the test fails, so a hanging runner cannot hang CI.
        """
        args = proc.args[len(TORC_CLI):]
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"torc {' '.join(args)} did not finish within {timeout} s\n"
                        f"stdout:\n{out}\nstderr:\n{err[-4000:]}")
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and done.returncode != 0:
            pytest.fail(f"torc {' '.join(args)} exited with {done.returncode}\n"
                        f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}")
        return done

    def json(self, *args: str, key: str | None = None, **kwargs) -> Any:
        """Run with ``-F json`` and parse stdout."""
        done = self.run(*args, key=key, fmt="json", **kwargs)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"torc {' '.join(args)} printed no JSON:\n{done.stdout[-4000:]}\n"
                        f"stderr:\n{done.stderr[-4000:]}")

    def create_from_spec(self, spec: dict[str, Any], name: str = "spec.json") -> str:
        """``torc workflows create-from-json-file``; returns the new workflow key."""
        path = self.workdir / name
        path.write_text(json.dumps(spec, indent=2))
        data = self.json("workflows", "create-from-json-file", str(path))
        assert data["filename"] == str(path)
        assert data["key"].isdigit(), data
        return data["key"]

    def run_jobs(self, key: str, output: Path,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        """torc's own job runner on this machine: ``torc -k KEY jobs run -p 1 -o OUTPUT``."""
        return self.run("jobs", "run", "-p", "1", "-o", str(output), key=key, timeout=timeout)


@pytest.fixture
def torc(server, tmp_path) -> Torc:
    """The torc CLI, isolated in ``tmp_path/"cli"``."""
    workdir = tmp_path / "cli"
    workdir.mkdir()
    return Torc(server.url, workdir)


@pytest.fixture(scope="module")
def module_torc(server, tmp_path_factory) -> Torc:
    """The torc CLI for module-scoped fixtures; its ``workdir.parent`` is a fresh directory."""
    workdir = tmp_path_factory.mktemp("torc") / "cli"
    workdir.mkdir()
    return Torc(server.url, workdir)


# -- read helpers shared by the test modules (fixtures, since tests/ has no package layout) ----


class Reader:
    """Whole-collection reads through the torc client's own paging (``iter_documents``)."""

    def __init__(self, api: DefaultApi):
        self.api = api

    def jobs(self, wf: str) -> dict[str, Any]:
        """Jobs by name."""
        return {j.name: j for j in iter_documents(self.api.list_jobs, wf)}

    def statuses(self, wf: str) -> dict[str, str]:
        return {name: j.status for name, j in self.jobs(wf).items()}

    def results(self, wf: str) -> list[Any]:
        return list(iter_documents(self.api.list_results, wf))

    def result_runs(self, wf: str) -> dict[str, list[int]]:
        """Job name -> sorted run_ids of its results."""
        names = {j.key: name for name, j in self.jobs(wf).items()}
        runs: dict[str, list[int]] = defaultdict(list)
        for r in self.results(wf):
            runs[names[r.job_key]].append(r.run_id)
        return {name: sorted(v) for name, v in runs.items()}

    def edges(self, wf: str, name: str) -> list[dict[str, Any]]:
        return [e if isinstance(e, dict) else e.to_dict()
                for e in iter_documents(self.api.list_edges, wf, name)]

    def events(self, wf: str) -> list[dict[str, Any]]:
        return list(iter_documents(self.api.list_events, wf))

    def job_event_counts(self, wf: str) -> Counter:
        """(type, job_key) -> number of job events."""
        return Counter((e["type"], e["job_key"]) for e in self.events(wf)
                       if e.get("category") == "job")


@pytest.fixture(scope="module")
def read(api) -> Reader:
    return Reader(api)
