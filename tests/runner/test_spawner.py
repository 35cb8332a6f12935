"""The job spawner: the same child as ``os.posix_spawn``, started without holding the GIL."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time

import pytest

from torc_graph.runner import process, spawner

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the spawner needs glibc's posix_spawn")


def test_glibc_spawner_is_used():
    assert spawner.AVAILABLE


def test_other_threads_run_while_a_spawned_child_has_not_exec_yet(tmp_path):
    """The child's stdout is a FIFO: its open (before exec) blocks until a reader comes. A
    Python thread is that reader; it can only run if spawning released the GIL (otherwise an
    outside reader unblocks everything after 5 s and the thread comes last)."""
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    fallback = subprocess.Popen(["sh", "-c", 'sleep 5; exec 3<"$0"; sleep 1', str(fifo)])
    opened: list[float] = []
    fds: list[int] = []

    def reader() -> None:
        time.sleep(0.2)
        fds.append(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        opened.append(time.monotonic())

    thread = threading.Thread(target=reader)
    thread.start()
    t0 = time.monotonic()
    try:
        pid = process.spawn(["/bin/true"], dict(os.environ), str(fifo), str(tmp_path / "err"))
        returned = time.monotonic()
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        thread.join()
        for fd in fds:
            os.close(fd)
        fallback.kill()
        fallback.wait()
    assert opened and opened[0] < returned
    assert returned - t0 < 4.0


def test_child_gets_the_environment_stdio_session_and_default_signals(tmp_path):
    env = {"PATH": os.environ.get("PATH", os.defpath), "TORC_TEST": "héllo wörld"}
    out, err = tmp_path / "o", tmp_path / "e"
    out.write_text("old content that must be truncated\n" * 10)
    script = ('echo "$TORC_TEST"; echo oops >&2; ps -o sid= -p $$; '
              'grep SigIgn /proc/self/status; cat')  # cat: stdin is /dev/null, returns at once
    pid = process.spawn(["/bin/sh", "-c", script], env, str(out), str(err))
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "héllo wörld"
    assert int(lines[1]) == pid  # its own session
    ignored = int(lines[2].split()[1], 16)
    assert not ignored & (1 << (13 - 1))  # SIGPIPE at its default action
    assert err.read_text() == "oops\n"


def test_failures_raise_the_errors_of_os_posix_spawn(tmp_path):
    env = dict(os.environ)
    with pytest.raises(FileNotFoundError):
        process.spawn([str(tmp_path / "missing")], env, str(tmp_path / "o"), str(tmp_path / "e"))
    with pytest.raises(FileNotFoundError):  # the stdout file's directory does not exist
        process.spawn(["/bin/true"], env, str(tmp_path / "no" / "o"), str(tmp_path / "e"))
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    plain.chmod(0o644)
    with pytest.raises(PermissionError):
        process.spawn([str(plain)], env, str(tmp_path / "o"), str(tmp_path / "e"))
    with pytest.raises(ValueError):
        process.spawn(["/bin/echo", "a\0b"], env, str(tmp_path / "o"), str(tmp_path / "e"))
