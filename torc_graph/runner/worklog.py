"""The worker log file (``<output>/worker_<host>_<wf>_<run_id>.log``), written in batches.

A runner logs two lines per job (started, finished); flushing the file after each line costs a
system call per line. :class:`WorkerLog` leaves lines in the file's buffer until the loop is
about to sleep (:meth:`WorkerLog.flush`), writes warnings and errors at once, and flushes when
closed: a line is at most one loop iteration late, and a runner killed with SIGKILL loses at
most that iteration's lines.

The two per-job lines skip the logging machinery (a ``LogRecord``, caller lookup and
formatting cost about a tenth of the runner's loop on no-op jobs): :meth:`WorkerLog.info`
writes them straight into the file, in the same format, with the timestamp text reused within
a second. They go to the worker log only; everything else is logged as usual.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"


class WorkerLog(logging.FileHandler):
    """A file handler that flushes on warnings, on :meth:`flush` and on close only."""

    def __init__(self, path: Path):
        super().__init__(path, encoding="utf-8")
        self.setFormatter(logging.Formatter(FORMAT))
        self._second = -1
        self._stamp = ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.stream.flush()
        except Exception:  # noqa: BLE001 - logging's own policy: report, never raise
            self.handleError(record)

    def info(self, message: str) -> None:
        """Write one INFO line (``asctime INFO message``, as :data:`FORMAT`) directly."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        line = f"{self._stamp},{int((now - second) * 1000):03d} INFO {message}\n"
        with self.lock:  # as emit(): the courier's thread logs too
            if self.stream is not None:  # None once closed
                self.stream.write(line)
