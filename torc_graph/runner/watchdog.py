"""A guard process that kills a runner's jobs if the runner dies without doing it itself.

A runner that gets SIGKILL (or crashes) cannot stop its jobs, and jobs run in their own process
groups, so nothing else would. The runner starts this script as a separate process with a pipe
on its stdin (never written to) and a shared table: a memfd (else an unlinked temporary file),
mapped into the runner's memory, of 8-byte slots, each holding the process group id of a running job or 0. The runner
fills a slot when a job starts and zeroes it when it has cleaned the job up: two stores into
memory, no system call, no wake-up of the guard (a pipe message per job cost a write, a
context switch and the guard's CPU for every job). When the pipe reaches end-of-file (the
runner exited, however it exited), the guard reads the table, sends SIGTERM to every group in
it, waits up to ``GRACE`` seconds, sends SIGKILL to what is left, and exits. SIGINT is ignored
so that a Ctrl-C meant for the runner does not kill the guard first.

The table lives in the page cache, so what the runner stored is there for the guard even after
a SIGKILL of the runner. A group is registered right after ``posix_spawn`` returns (no system
call in between) and unregistered as soon as it was killed and reaped.

It runs as ``python -I watchdog.py FD`` (standard library only, no imports from torc_graph),
so it starts fast and works whatever the job environment is.
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

GRACE = 3.0
#: One slot of the table: a process group id (0: free).
SLOT = struct.Struct("=q")
#: Slots of a new table (it doubles when full).
FIRST_SLOTS = 1024


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_all(pgids: set[int], sig: int) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _registered(fd: int) -> set[int]:
    """The process groups in the table of file descriptor ``fd``."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, size - size % SLOT.size, 0)
    return {pgid for (pgid,) in SLOT.iter_unpack(data) if pgid > 0}


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    table = int(argv[1])
    while sys.stdin.buffer.read(4096):  # nothing is written: this waits for end-of-file
        pass
    pgids = {p for p in _registered(table) if _alive(p)}
    if not pgids:
        return 0
    _signal_all(pgids, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while pgids and time.monotonic() < deadline:
        time.sleep(0.05)
        pgids = {p for p in pgids if _alive(p)}
    _signal_all(pgids, signal.SIGKILL)
    return 0


def _table_fd() -> int:
    """A new, empty, unnamed file for the table: a memfd on Linux (memory only, whatever the
    temporary directory is), else an unlinked temporary file. Raises OSError."""
    if hasattr(os, "memfd_create"):
        try:
            return os.memfd_create("torc-graph-watchdog")
        except OSError:
            pass
    with tempfile.TemporaryFile(prefix="torc-graph-watchdog-") as file:
        return os.dup(file.fileno())  # non-inheritable, like the file's own descriptor


class Watchdog:
    """The runner's handle on the guard process and its table (see the module docstring)."""

    def __init__(self) -> None:
        self._fd = _table_fd()
        self._slots = 0
        self._map: mmap.mmap | None = None
        self._free: list[int] = []
        self._slot_of: dict[int, int] = {}  # pgid -> slot
        self._grow()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__), str(self._fd)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, pass_fds=(self._fd,),
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _grow(self) -> None:
        """Double the table (the guard reads the file's whole size)."""
        old, self._slots = self._slots, max(2 * self._slots, FIRST_SLOTS)
        os.ftruncate(self._fd, self._slots * SLOT.size)
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, self._slots * SLOT.size)
        self._free.extend(range(self._slots - 1, old - 1, -1))

    def watch(self, pgid: int) -> None:
        """Register a job's process group."""
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._slot_of[pgid] = slot
        assert self._map is not None
        SLOT.pack_into(self._map, slot * SLOT.size, pgid)

    def forget(self, pgid: int) -> None:
        """Unregister a cleaned-up job's process group."""
        slot = self._slot_of.pop(pgid, None)
        if slot is not None and self._map is not None:
            SLOT.pack_into(self._map, slot * SLOT.size, 0)
            self._free.append(slot)

    def close(self, timeout: float = 10.0) -> None:
        """Close the pipe; the guard then kills whatever is still registered and exits."""
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._map is not None:
            self._map.close()
            self._map = None
        os.close(self._fd)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
