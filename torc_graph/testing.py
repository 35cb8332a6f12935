"""Run a real torc_graph server for tests and benchmarks (like ``falcon.testing``).

``LiveServer`` starts ``torc-graph serve`` (gunicorn) as a subprocess on a free loopback port,
waits until ``GET /ping`` answers, and stops it (with its workers) on exit::

    with LiveServer("sqlite:///tmp/x.db", workers=2) as server:
        requests.get(server.url + "/ping")
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import requests


def cli_argv(*args: str) -> list[str]:
    """argv that runs ``torc-graph ARGS`` with this interpreter (no PATH lookup)."""
    return [sys.executable, "-c", "from torc_graph.cli.main import cli; cli(prog_name='torc-graph')",
            *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``TORC_GRAPH_*`` variable, plus ``extra``: child
    processes see only the settings a test gives them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORC_GRAPH_")}
    env.update(extra)
    return env


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
    ):
        self.database = database
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.cwd = cwd
        self._env = clean_env(TORC_GRAPH_LOG_LEVEL="warning", **(env or {}))
        self._startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LiveServer":
        cmd = cli_argv("serve", "--host", "127.0.0.1", "--port", str(self.port),
                       "--workers", str(self.workers))
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
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/ping", timeout=2).ok:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"torc-graph serve did not answer /ping within {self._startup_timeout} s")

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
