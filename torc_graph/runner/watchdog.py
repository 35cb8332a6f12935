"""A guard process that kills a runner's jobs if the runner dies without doing it itself.

A runner that gets SIGKILL (or crashes) cannot stop its jobs, and jobs run in their own process
groups, so nothing else would. The runner starts this script as a separate process with a pipe
on its stdin and writes ``+PGID`` when a job starts and ``-PGID`` when it has cleaned the job up
(the ``-`` lines wait for the next write: a group already cleaned up has nothing left to kill,
and one write per loop iteration costs less than two per job).
When the pipe reaches end-of-file (the runner exited, however it exited), the guard sends SIGTERM
to every group still registered, waits up to ``GRACE`` seconds, sends SIGKILL to what is left,
and exits. SIGINT is ignored so that a Ctrl-C meant for the runner does not kill the guard first.

It runs as ``python -I watchdog.py`` (standard library only, no imports from torc_graph), so it
starts fast and works whatever the job environment is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE = 3.0


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


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pgids: set[int] = set()
    for line in sys.stdin.buffer:
        text = line.strip().decode("ascii", "replace")
        if len(text) < 2 or not text[1:].isdigit():
            continue
        pgid = int(text[1:])
        if text[0] == "+":
            pgids.add(pgid)
        elif text[0] == "-":
            pgids.discard(pgid)
    pgids = {p for p in pgids if _alive(p)}
    if not pgids:
        return 0
    _signal_all(pgids, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while pgids and time.monotonic() < deadline:
        time.sleep(0.05)
        pgids = {p for p in pgids if _alive(p)}
    _signal_all(pgids, signal.SIGKILL)
    return 0


class Watchdog:
    """The runner's handle on the guard process (see the module docstring)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, bufsize=0,
        )
        # One os.write per message: no buffer layer to fill and flush.
        self._fd = self._proc.stdin.fileno() if self._proc.stdin is not None else -1
        self._broken = False
        self._forgotten: list[str] = []

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, text: str) -> None:
        if self._forgotten:
            text = "".join(self._forgotten) + text
            self._forgotten.clear()
        if self._broken or self._fd < 0 or not text:
            return
        try:
            data = text.encode("ascii")
            while data:  # a pipe write of this size is whole unless the pipe is full
                data = data[os.write(self._fd, data):]
        except OSError:
            # The guard is gone (someone killed it); the runner still cleans up normally.
            self._broken = True

    def watch(self, pgid: int) -> None:
        """Register a job's group (written at once, with the pending forgets)."""
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        """Unregister a cleaned-up job's group (written with the next write)."""
        self._forgotten.append(f"-{pgid}\n")

    def flush(self) -> None:
        """Write the pending forgets."""
        self._send("")

    def close(self, timeout: float = 10.0) -> None:
        """Close the pipe; the guard then kills whatever is still registered and exits."""
        self.flush()
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            self._fd = -1
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


if __name__ == "__main__":
    sys.exit(main())
