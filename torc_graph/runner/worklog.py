"""The worker log file (``<output>/worker_<host>_<wf>_<run_id>.log``), written in batches.

A runner logs two lines per job (started, finished); flushing the file after each line costs a
system call per line. :class:`WorkerLog` leaves lines in the file's buffer until the loop is
about to sleep (:meth:`WorkerLog.flush`), writes warnings and errors at once, and flushes when
closed: a line is at most one loop iteration late, and a runner killed with SIGKILL loses at
most that iteration's lines.
"""

from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(message)s"


class WorkerLog(logging.FileHandler):
    """A file handler that flushes on warnings, on :meth:`flush` and on close only."""

    def __init__(self, path: Path):
        super().__init__(path, encoding="utf-8")
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
            if record.levelno >= logging.WARNING:
                self.stream.flush()
        except Exception:  # noqa: BLE001 - logging's own policy: report, never raise
            self.handleError(record)
