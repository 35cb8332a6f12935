"""liveness: which process wrote a record, and whether it still runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from torc_graph import liveness

CHILD = ("import json, sys, time; from torc_graph import liveness; "
         "print(json.dumps(liveness.this_process()), flush=True); time.sleep(60)")


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        yield proc, json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


def test_a_live_process_of_this_host_is_not_gone(child):
    proc, record = child
    assert record["pid"] == proc.pid and record["host"] == socket.gethostname()
    assert not liveness.gone(record, 0, 10**15, 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil's Linux boot time")
def test_a_stepped_clock_does_not_make_a_live_process_gone(child, monkeypatch):
    """psutil derives a start time from the boot time the kernel reports now; NTP stepping the
    clock between the writer's reading and the checker's moves it (a CI failure: a live
    creation swept as abandoned)."""
    from psutil import _pslinux
    _, record = child
    monkeypatch.setattr(_pslinux, "BOOT_TIME", psutil.boot_time() + 3.0)
    assert abs(psutil.Process(record["pid"]).create_time() - record["started"]) >= 2.9
    assert not liveness.gone(record, 0, 10**15, 1)
    # A record of an older version (no boot id, no ticks) is judged with the tolerance.
    old = {k: record[k] for k in ("host", "pid", "started")}
    assert not liveness.gone(old, 0, 10**15, 1)


def test_a_reused_pid_is_gone(child):
    _, record = child
    assert not liveness.gone(record, 0, 0, 1)
    if "ticks" in record:
        assert liveness.gone({**record, "ticks": record["ticks"] - 1}, 0, 0, 1)
        assert liveness.gone({**record, "boot": "another-boot"}, 0, 0, 1)
    old = {k: record[k] for k in ("host", "pid", "started")}
    assert liveness.gone({**old, "started": old["started"] - 3600}, 0, 0, 1)


def test_an_exited_or_zombie_process_is_gone():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    record = json.loads(proc.stdout.readline())
    proc.kill()
    # Killed, not yet reaped: a zombie.
    deadline = time.monotonic() + 10
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert liveness.gone(record, 0, 0, 1)
    proc.wait()
    assert liveness.gone(record, 0, 0, 1)


def test_another_host_is_judged_by_its_last_sign_of_life():
    record = {"host": "not-" + socket.gethostname(), "pid": os.getpid(), "started": 0.0}
    assert not liveness.gone(record, 1_000, 1_500, 1_000)
    assert liveness.gone(record, 1_000, 2_500, 1_000)
    assert liveness.gone(None, 0, 2_500, 1_000)
