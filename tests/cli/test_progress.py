"""The progress display of ``torc-graph run`` as a user sees it: a bar on a terminal (a real
pty), plain lines in a pipe."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from torc_graph.testing import clean_env, cli_argv

SPEC = {"name": "slow", "jobs": [{"name": f"sleeper_{i}", "command": "sleep 0.8"}
                                 for i in range(2)]}


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return out
        if not chunk:
            return out
        out += chunk


def test_bar_on_a_terminal(tmp_path: Path):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    master, slave = pty.openpty()
    env = clean_env(TORC_GRAPH_DATABASE=f"sqlite:///{tmp_path / 'db.sqlite'}",
                    PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
                    COLUMNS="200")
    proc = subprocess.Popen(cli_argv("run", "spec.json", "--num-cpus", "2",
                                     "--poll-interval", "0.1"),
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    terminal = _read_all(master).decode("utf-8", "replace")
    stdout, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0, terminal + stdout.decode()
    frames = [f for f in terminal.split("\r\x1b[K") if f.strip() and "Created" not in f]
    assert frames, terminal
    running = [f for f in frames if "running: " in f]
    assert running, frames
    assert re.search(r"[█░]{20} \d/2  ✓\d ✗0 ▶\d  \d+\.\d/s  ETA ", running[0]), running[0]
    assert "sleeper_0" in " ".join(running) or "sleeper_1" in " ".join(running)
    assert terminal.endswith("\r\x1b[K")  # the bar is erased before the summary
    assert b"STATUS" in stdout and b"2 succeeded" in stdout


def test_plain_lines_in_a_pipe(tmp_path: Path):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    env = clean_env(TORC_GRAPH_DATABASE=f"sqlite:///{tmp_path / 'db.sqlite'}",
                    PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(cli_argv("run", "spec.json", "--poll-interval", "0.1"),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"\[\d\d:\d\d\] done 2  running 0  failed 0  remaining 0/2  "
                        r"\d+\.\d jobs/s  ETA .*", last), last
