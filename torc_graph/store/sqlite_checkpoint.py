"""WAL checkpoints of large transactions, off the committing request's path.

SQLite checkpoints the WAL inside ``COMMIT`` once it holds 1,000 pages (``wal_autocheckpoint``):
the committing caller copies every page it wrote into the database file and fsyncs it before it
returns. For a 10,000-job ``bulk_jobs`` batch that copy was ~13 % of the request's server time,
spent while its client waited, and while the client then prepared the next batch the server
sat idle.

So a transaction that writes many rows (:meth:`Connections.defer_checkpoint`) commits with the
automatic checkpoint off, and this process's :class:`Checkpointer` thread runs a ``PASSIVE``
checkpoint on its own connection right after. Durability is unchanged: a commit is durable once
its WAL frames are synced (``synchronous`` as configured), which ``COMMIT`` still does before it
returns; a checkpoint only moves committed pages into the main file, and one interrupted (by a
crash, or by the process exiting) is resumed by the next. A ``PASSIVE`` checkpoint takes no
write lock and never waits for readers or writers, so it runs beside the next transaction. The
WAL stays bounded: small transactions keep SQLite's automatic checkpoints, and the commit path's
``TRUNCATE`` above ``WAL_LIMIT_BYTES`` still applies.

One thread per process and database file, started on first use (again in a forked child: a
thread does not survive ``fork``), sleeping on an event between checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

#: A WAL past this size is truncated after a commit (and ``journal_size_limit`` caps what stays).
WAL_LIMIT_BYTES = 64 * 1024 * 1024
_TRUNCATE_TIMEOUT_MS = 500
_TRUNCATE_PAUSE = 1.0  # seconds before retrying a truncation that found readers busy
#: SQLite's default ``wal_autocheckpoint`` (pages), restored after a deferred commit.
AUTOCHECKPOINT_PAGES = 1000
#: Rows one statement must write for its transaction to defer its checkpoint: below this a
#: transaction's pages rarely reach the automatic checkpoint's 1,000 at all.
LARGE_WRITE_ROWS = 1000


class Checkpointer:
    """The background checkpoints of one database file in this process (see module doc)."""

    def __init__(self, path: str, synchronous: str):
        self.path = path
        self.synchronous = synchronous
        self._guard = threading.Lock()
        self._pid = 0
        self._wake = threading.Event()  # replaced when a thread is started or stopped
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # completed checkpoints in this process (tests, diagnostics)
        self._truncate_after = 0.0

    def truncate_if_large(self, conn: sqlite3.Connection, busy_ms: int) -> None:
        """Truncate a WAL that grew past the limit (after a commit, under the process write
        lock, on the committing connection, whose busy timeout is ``busy_ms``). Continuous
        readers and writers keep PASSIVE checkpoints from ever resetting the WAL; TRUNCATE waits
        briefly for them to reach the newest snapshot. After a failed attempt the next one waits
        a pause, unless the WAL reached the hard cap of four times the limit."""
        try:
            size = os.stat(self.path + "-wal").st_size
        except OSError:
            return
        if size <= WAL_LIMIT_BYTES:
            return
        if time.monotonic() < self._truncate_after and size <= 4 * WAL_LIMIT_BYTES:
            return
        busy = 1
        try:
            conn.execute(f"PRAGMA busy_timeout = {_TRUNCATE_TIMEOUT_MS}")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            pass
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        if busy:
            log.info("WAL checkpoint of %s postponed: readers are busy", self.path)
            self._truncate_after = time.monotonic() + _TRUNCATE_PAUSE

    def request(self) -> None:
        """Ask for a checkpoint soon; returns at once."""
        pid = os.getpid()
        if self._pid != pid or self._thread is None:
            with self._guard:
                if self._pid != pid or self._thread is None:
                    # First use in this process, or a forked child (the parent's thread and
                    # event are not ours).
                    self._wake, self.checkpoints = threading.Event(), 0
                    self._thread = threading.Thread(
                        target=self._run, args=(self._wake,), daemon=True,
                        name=f"torc-graph-checkpoint-{os.path.basename(self.path)}")
                    self._pid = pid
                    self._thread.start()
        self._wake.set()

    def close(self, timeout: float = 30.0) -> None:
        """Stop this process's thread after the checkpoint it runs, if any."""
        with self._guard:
            thread = self._thread if self._pid == os.getpid() else None
            old, self._wake = self._wake, threading.Event()
            self._thread, self._pid = None, 0
            old.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self, wake: threading.Event) -> None:
        conn = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 0")
            # The checkpoint's syncs follow the store's setting, as the commit's do.
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            while True:
                wake.wait()
                wake.clear()
                if self._wake is not wake:  # stopped, or replaced after a fork
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy or gone: the next request retries
                    log.debug("background checkpoint of %s: %s", self.path, exc)
        except sqlite3.Error as exc:
            log.warning("background checkpoints of %s stopped: %s", self.path, exc)
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
