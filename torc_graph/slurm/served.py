"""Serve an embedded store over HTTP for the duration of one Slurm run.

Compute nodes must never open the SQLite file (over a network file system SQLite's locking is
unsafe), so ``torc-graph run --slurm`` without ``--url`` starts ``torc-graph serve`` on the
submit host, bound to an address the compute nodes reach, with authentication on; the
allocations get its URL and an executor token (:mod:`torc_graph.slurm.credentials`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

#: Environment variable naming the address to bind (default: this host's name's address).
HOST_ENV = "TORC_GRAPH_SLURM_SERVER_HOST"


class ServeError(Exception):
    """The server for the run could not be started."""


def reachable_host() -> tuple[str, str]:
    """(name compute nodes use, address to bind): ``$TORC_GRAPH_SLURM_SERVER_HOST`` or this
    host's name. Raises ServeError when the name does not resolve."""
    name = os.environ.get(HOST_ENV) or socket.gethostname()
    try:
        return name, socket.gethostbyname(name)
    except OSError as exc:
        raise ServeError(f"cannot resolve {name!r} ({exc}); set {HOST_ENV} to an address of "
                         "this host that the compute nodes reach") from None


class ServedStore:
    """``torc-graph serve --database DATABASE`` as a child process (a context manager), with
    authentication on and ``admin_token_file`` as its admin token file (a file holding a valid
    admin token of the store: the server then creates none)."""

    def __init__(self, database: str, log_path: Path, admin_token_file: str, workers: int = 2,
                 startup_timeout: float = 60.0):
        self.database = database
        self.admin_token_file = admin_token_file
        self.log_path = log_path
        self.workers = workers
        self.startup_timeout = startup_timeout
        self.name, self.address = reachable_host()
        self.port = _free_port(self.address)
        self.url = f"http://{self.name}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ServedStore:
        """Start the server and wait until ``/ping`` answers. Raises ServeError."""
        argv = [sys.executable, "-c",
                "from torc_graph.cli.main import cli; cli(prog_name='torc-graph')",
                "serve", "--host", self.address, "--port", str(self.port),
                "--workers", str(self.workers), "--database", self.database,
                "--log-level", "warning", "--allowed-host", self.name]
        env = {k: v for k, v in os.environ.items() if k != "TORC_GRAPH_URL"}
        env.update(TORC_GRAPH_AUTH="on", TORC_GRAPH_ADMIN_TOKEN_FILE=self.admin_token_file)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)
        headers = {"Authorization": "Bearer " + Path(self.admin_token_file).read_text().strip()}
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServeError(f"torc-graph serve exited with {self.proc.returncode}; see "
                                 f"{self.log_path}")
            try:
                if requests.get(self.url + "/ping", headers=headers, timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise ServeError(f"torc-graph serve did not answer at {self.url} within "
                         f"{self.startup_timeout:.0f} s; see {self.log_path}")

    def __exit__(self, *exc: object) -> None:
        """Stop the server (SIGTERM: gunicorn stops its workers; SIGKILL after 30 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]
