"""The watchdog: a SIGKILLed runner's jobs die, and registering a job costs no system call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from torc_graph.runner.watchdog import FIRST_SLOTS, Watchdog
from torc_graph.testing import alive, wait_for

#: A runner stand-in: starts three job groups, registers them (and enough short-lived ones to
#: make the table grow), forgets the third, prints the pids, then waits to be killed.
RUNNER = f"""
import os, sys, time
from torc_graph.runner.watchdog import Watchdog
w = Watchdog()
pids = [os.posix_spawn("/bin/sleep", ["sleep", "60"], dict(os.environ), setsid=True)
        for _ in range(3)]
for pid in pids:
    w.watch(pid)
for fake in range(10**6, 10**6 + 2 * {FIRST_SLOTS}):
    w.watch(fake)
for fake in range(10**6, 10**6 + 2 * {FIRST_SLOTS}):
    w.forget(fake)
w.forget(pids[2])
print(*pids, w.pid, flush=True)
time.sleep(120)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (the killed runner's children are reaped by whoever adopts them)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return alive(pid)
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_groups_of_a_sigkilled_runner_are_killed_and_forgotten_ones_are_not():
    runner = subprocess.Popen([sys.executable, "-c", RUNNER], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    *jobs, guard = (int(p) for p in runner.stdout.readline().split())
    forgotten = jobs.pop()
    try:
        assert all(_running(p) for p in [*jobs, forgotten, guard])
        runner.send_signal(signal.SIGKILL)
        runner.wait(10)
        assert wait_for(lambda: not any(_running(p) for p in jobs), 10)
        assert wait_for(lambda: not _running(guard), 10)
        assert _running(forgotten)
    finally:
        os.kill(forgotten, signal.SIGKILL)


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs /proc/self/io")
def test_registering_and_forgetting_jobs_costs_no_write_system_call():
    watchdog = Watchdog()
    try:
        def writes() -> int:
            fields = dict(line.split(": ") for line in
                          Path("/proc/self/io").read_text().splitlines())
            return int(fields["syscw"])

        before = writes()
        for pgid in range(10**6, 10**6 + 500):
            watchdog.watch(pgid)
            watchdog.forget(pgid)
        assert writes() - before < 10  # was one write per job (a pipe message each)
    finally:
        watchdog.close()
