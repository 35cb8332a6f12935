"""Start a real ``torc-graph serve`` (gunicorn) in a subprocess, for tests that need one.

Load it by path (tests run with ``--import-mode=importlib`` and have no package layout)::

    server = load_helper("server")  # see tests/api/conftest.py

Works on an installed tree (``torc_graph.cli`` importable) and on a plain checkout (the ``cli/``
directory is mapped onto ``torc_graph.cli`` by :data:`BOOTSTRAP`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]

#: Runs the torc-graph click group with sys.argv[1:], installed or not.
BOOTSTRAP = """
import importlib.util, pathlib, sys
try:
    import torc_graph.cli.main as main
except ModuleNotFoundError:
    import torc_graph
    root = pathlib.Path(torc_graph.__file__).resolve().parent.parent / "cli"
    spec = importlib.util.spec_from_file_location(
        "torc_graph.cli", root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["torc_graph.cli"] = module
    spec.loader.exec_module(module)
    import torc_graph.cli.main as main
main.cli(prog_name="torc-graph")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_argv(*args: str) -> list[str]:
    """argv running ``torc-graph ARGS`` with this interpreter."""
    return [sys.executable, "-c", BOOTSTRAP, *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORC_GRAPH_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@contextlib.contextmanager
def running_server(database_url: str | None, *, workers: int = 2, cwd: Path | None = None,
                   timeout: float = 30.0, log_path: Path | None = None) -> Iterator[str]:
    """Run ``torc-graph serve`` on a free port; yield its base URL once /ping answers.

    ``database_url=None`` leaves ``--database`` out (the default: a file in ``cwd``).
    Stops it with SIGTERM (gunicorn's graceful shutdown) and waits for it.
    """
    port = free_port()
    argv = cli_argv("serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
                    str(workers), "--log-level", "warning")
    if database_url is not None:
        argv += ["--database", database_url]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(argv, cwd=cwd or REPO, env=subprocess_env(), stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"torc-graph serve exited with {proc.returncode}")
            try:
                if requests.get(f"{base}/ping", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("torc-graph serve did not answer /ping in time")
            time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log_path:
            log.close()
