"""Run a real torc_graph server for tests and benchmarks (like ``falcon.testing``).

``LiveServer`` starts ``torc-graph serve`` (gunicorn) as a subprocess on a free loopback port,
with authentication ON (unless ``auth=False``), waits until ``GET /ping`` answers, and stops it
(with its workers) on exit. The admin token the server creates on first start is read from its
token file (``<database>.admin-token`` beside a SQLite file) and handed to clients::

    with LiveServer("sqlite:///tmp/x.db", workers=2) as server:
        requests.get(server.url + "/ping")            # token inside the URL (torc v0.6.4 form)
        server.client().get("/ping")                  # torc_graph Client, Bearer token
        requests.get(server.base_url + "/ping", headers=server.headers)
        subprocess.run(..., env=clean_env(**server.env()))   # CLI / runner subprocesses

``url`` is torc v0.6.4's base-URL form ``http://127.0.0.1:PORT/_db/<token>/torc-service``: the
published torc client (``make_api(url)``, ``torc -u URL``), ``requests`` and torc_graph's Client
all work with it unchanged. ``base_url`` is the bare ``http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import psutil
import requests


def cli_argv(*args: str) -> list[str]:
    """argv that runs ``torc-graph ARGS`` with this interpreter (no PATH lookup). ``-P`` keeps
    the working directory off ``sys.path``: from a source checkout's root, the installed
    torc_graph is imported, not the source folder (which lacks ``cli`` and ``schemas``)."""
    return [sys.executable, "-P", "-c",
            "from torc_graph.cli.main import cli; cli(prog_name='torc-graph')", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``TORC_GRAPH_*`` variable, plus ``extra``: child
    processes see only the settings a test gives them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORC_GRAPH_")}
    env.update(extra)
    return env


def sibling_module(test_file: str, name: str):
    """The module ``<name>.py`` next to ``test_file``, loaded once per process (the tests run
    with ``--import-mode=importlib``, so a test directory is not on ``sys.path``)."""
    path = Path(test_file).with_name(f"{name}.py").resolve()
    key = f"_torc_graph_tests.{path.parent.name}.{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[key] = module
    return sys.modules[key]


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an unreaped corpse runs nothing)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A ``torc-graph serve`` subprocess on a free port of 127.0.0.1.

    ``database=None`` leaves ``--database`` out (the default file in ``cwd``). The server's
    environment is :func:`clean_env` plus ``env``."""

    def __init__(
        self,
        database: str | None,
        *,
        workers: int = 2,
        cwd: Path | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
        auth: bool = True,
        admin_token_file: Path | None = None,
        serve_args: tuple[str, ...] = (),
        scheme: str = "http",
    ):
        self.database = database
        self.workers = workers
        self.port = free_port()
        self.base_url = f"{scheme}://127.0.0.1:{self.port}"
        self.url = self.base_url
        self.token: str | None = None
        self.auth = auth
        self.log_path = log_path
        self.cwd = cwd
        self.admin_token_file = Path(admin_token_file or _token_file_for(database, cwd))
        self._env = clean_env(TORC_GRAPH_LOG_LEVEL="warning",
                              TORC_GRAPH_ADMIN_TOKEN_FILE=str(self.admin_token_file),
                              **(env or {}))
        self._serve_args = tuple(serve_args)
        self._startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` header for raw HTTP to :attr:`base_url` (empty without auth)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def env(self) -> dict[str, str]:
        """Environment for a torc_graph CLI or runner subprocess to reach this server."""
        env = {"TORC_GRAPH_URL": self.base_url}
        if self.token:
            env["TORC_GRAPH_TOKEN"] = self.token
        return env

    def client(self, **kwargs):
        """A :class:`torc_graph.client.Client` of this server, sending the admin token."""
        from torc_graph.client import Client

        client = Client(self.base_url, **kwargs)
        if self.token:
            client.token = self.token
            client.session.headers["Authorization"] = f"Bearer {self.token}"
        return client

    def browser(self, token: str | None = None, *, login: bool = True) -> requests.Session:
        """A ``requests`` session that behaves like the web dashboard in a browser: it sends
        the page's own ``Origin`` and no ``Authorization`` header; with ``login`` it first
        logs in (``POST /dashboard/session`` with ``token``, default the admin token) and
        then carries only the session cookie. Raises ``requests.HTTPError`` if the login
        fails."""
        session = requests.Session()
        session.headers["Origin"] = self.base_url
        if login:
            resp = session.post(self.base_url + "/dashboard/session",
                                json={"token": token or self.token}, timeout=30)
            resp.raise_for_status()
        return session

    def torc_api(self):
        """The published torc client (``torc.openapi_client.DefaultApi``) of this server."""
        from torc.api import make_api

        return make_api(self.url)

    def _ping_target(self) -> tuple[str, dict[str, str]]:
        if not self.auth:
            return self.base_url + "/ping", {}
        if self.token is None:
            self.token = _read_token(self.admin_token_file)
            if self.token is None:
                return "", {}
            self.url = f"{self.base_url}/_db/{self.token}/torc-service"
        return self.base_url + "/ping", self.headers

    def start(self) -> "LiveServer":
        cmd = cli_argv("serve", "--host", "127.0.0.1", "--port", str(self.port),
                       "--workers", str(self.workers), *self._serve_args)
        if not self.auth:
            cmd.append("--no-auth")
        if self.database is not None:
            cmd += ["--database", self.database]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=self._env, cwd=self.cwd, stdout=out,
                                     stderr=subprocess.STDOUT)
        if self.log_path:
            out.close()  # the child holds its own descriptor
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"torc-graph serve exited with {self.proc.returncode}"
                                   + self._log_tail())
            target, headers = self._ping_target()
            with contextlib.suppress(requests.RequestException), warnings.catch_warnings():
                # A TLS test server has a self-signed certificate: readiness only, no data.
                warnings.simplefilter("ignore")
                if target and requests.get(target, headers=headers, timeout=2,
                                           verify=False).ok:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"torc-graph serve did not answer /ping within {self._startup_timeout} s"
                           + self._log_tail())

    def _log_tail(self, size: int = 3000) -> str:
        if not self.log_path:
            return ""
        try:
            text = Path(self.log_path).read_bytes()[-size:].decode(errors="replace")
        except OSError:
            text = ""
        return f"; {self.log_path} ends:\n{text}"

    def kill9(self, timeout: float = 10.0) -> None:
        """kill -9 the server, master and workers, with no cleanup; return once the port can be
        bound again (so :meth:`start` can restart it on the same URL).

        The master is stopped (SIGSTOP) first: a master that saw a worker die forks a
        replacement at once, and a replacement forked between "list the workers" and "kill the
        master" would outlive it as an orphan that keeps the listening socket open (gunicorn's
        gthread worker closes it only after its in-flight requests, a long poll among them,
        end)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGSTOP)
        pids = self.worker_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        if not wait_for(lambda: not any(alive(p) for p in pids), timeout):
            raise RuntimeError(f"gunicorn workers {pids} outlived SIGKILL for {timeout} s")
        if not wait_for(lambda: _bindable(self.port), timeout, 0.1):
            raise RuntimeError(f"port {self.port} still in use {timeout} s after the kill")

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes (children of the master)."""
        if self.proc is None:
            return []
        with contextlib.suppress(psutil.Error):
            return [c.pid for c in psutil.Process(self.proc.pid).children()]
        return []

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # gunicorn's master stops its workers on SIGTERM
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _bindable(port: int) -> bool:
    """Whether a listening socket could bind 127.0.0.1:``port`` now (as gunicorn binds it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _token_file_for(database: str | None, cwd: Path | None) -> Path:
    """The admin token file of a server on ``database``: beside its SQLite file (so a restart on
    the same file finds the same token), else in a fresh temporary directory."""
    prefix = "sqlite:///"
    if database is None:
        return Path(cwd or os.getcwd()) / "torc_graph.db.admin-token"
    if database.startswith(prefix) and database[len(prefix):] not in ("", ":memory:"):
        path = Path(database[len(prefix):] + ".admin-token")
        return path if path.is_absolute() else Path(cwd or os.getcwd()) / path
    return Path(tempfile.mkdtemp(prefix="torc-graph-token-")) / "admin-token"


def _read_token(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class CountingStore:
    """A store proxy that counts calls per store method (``calls``) and in all (``total``).

    Tests use it to show that an operation's number of store calls does not grow with the
    number of jobs (no per-job round trips)."""

    def __init__(self, store):
        self._store = store
        self.calls: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


#: Environment variable naming the ArangoDB server of the optional test leg.
ARANGO_TEST_ENV = "TORC_GRAPH_TEST_ARANGO_URL"
#: Backends of the contract-suite legs.
BACKENDS = ("sqlite", "arango")


def backend_url(backend: str, directory: Path) -> str | None:
    """The store URL of a test leg: a fresh SQLite file in ``directory``, or the ArangoDB server
    named by $TORC_GRAPH_TEST_ARANGO_URL (None when it is unset: the leg is skipped)."""
    if backend == "sqlite":
        return f"sqlite:///{Path(directory) / 'store.db'}"
    if backend == "arango":
        return os.environ.get(ARANGO_TEST_ENV) or None
    raise ValueError(f"unknown backend {backend!r}")


def run_processes(target, args: list[tuple], timeout: float) -> list:
    """Run ``target(*a, queue)`` in one forked process per ``a`` in ``args``; return what each
    put on the queue (one report per process, in arrival order). Processes still alive at the
    end are killed."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, queue)) for a in args]
    for p in procs:
        p.start()
    reports = []
    try:
        for _ in procs:
            reports.append(queue.get(timeout=timeout))
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return reports


def staged_workflow(store, num_jobs: int, *, finished: int = 0, failed_every: int = 0,
                    running: int = 0, name: str | None = None) -> str:
    """Build a workflow of ``num_jobs`` jobs in four stages on ``store`` (engine calls, no
    server) for dashboard tests and benchmarks; returns its key.

    Stages: ``prep`` (1 job) -> ``sim_<i>`` (half) -> ``analyze_<i>`` (the rest but one, each
    blocked by one sim job) -> ``report`` (blocked by every analyze job). Initialized; then the
    first ``finished`` ready jobs (prep first, then sims) are claimed and completed through the
    batched execution API, every ``failed_every``-th with return code 1, completion times one
    second apart; then ``running`` more are claimed and left running."""
    from torc_graph.engine import execution, initialize, jobs, workflows

    wf = workflows.create_workflow(store, {"user": "bench", "name": name or f"staged-{num_jobs}"}
                                   )["_key"]
    status = store.workflow_space(wf).status
    store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
    sims = max(1, (num_jobs - 2) // 2)
    analyses = max(0, num_jobs - 2 - sims)
    [prep] = jobs.add_jobs(store, wf, {"jobs": [{"name": "prep", "command": "true"}]})["items"]
    sim_docs = jobs.add_jobs(store, wf, {"jobs": [
        {"name": f"sim_{i}", "command": "true", "blocked_by": [prep["_id"]]}
        for i in range(sims)]})["items"]
    ana_docs = jobs.add_jobs(store, wf, {"jobs": [
        {"name": f"analyze_{i}", "command": "true", "blocked_by": [sim_docs[i % sims]["_id"]]}
        for i in range(analyses)]})["items"]
    jobs.add_jobs(store, wf, {"jobs": [{"name": "report", "command": "true",
                                         "blocked_by": [d["_id"] for d in ana_docs]}]})
    initialize.initialize_jobs(store, wf)
    node = store.insert("compute_nodes", wf, {
        "hostname": "bench-node", "pid": 1, "start_time": "t", "is_active": True,
        "resources": {"num_cpus": 10**6, "memory_gb": 10.0**6, "num_gpus": 0, "num_nodes": 1},
        "scheduler": {"output_dir": "/nonexistent"}})["_key"]
    resources = {"num_cpus": 10**6, "memory_gb": 10.0**6}
    done, t0 = 0, 1.767e9
    while done < finished:
        claimed = execution.claim_jobs(store, wf, {"compute_node_key": node, "resources":
                                                   resources, "limit": min(5000,
                                                                           finished - done)})
        if not claimed["jobs"]:
            break
        completions = []
        for j in claimed["jobs"]:
            done += 1
            rc = 1 if failed_every and done % failed_every == 0 else 0
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0 + done))
            completions.append({"job_key": j["_key"], "attempt_id": j["execution"]["attempt_id"],
                                "status": "done", "cause": "exit",
                                "result": {"return_code": rc, "exec_time_minutes": 0.1,
                                           "completion_time": stamp}})
        execution.complete_jobs(store, wf, {"compute_node_key": node, "run_id": 1,
                                            "completions": completions})
    if running:
        execution.claim_jobs(store, wf, {"compute_node_key": node, "resources": resources,
                                         "limit": running})
    return wf
