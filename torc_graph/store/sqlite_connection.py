"""SQLite connections, transactions, busy handling and error translation for the SQLite store.

Rules (architecture doc §3):

* Connections are opened lazily, one per process and thread (a forked child never reuses its
  parent's connection), in WAL mode with ``busy_timeout``, ``foreign_keys=ON`` and the chosen
  ``synchronous``; pending schema migrations are applied on first open.
* Every write, even a single statement, runs under ``BEGIN IMMEDIATE`` (a DEFERRED transaction
  that upgrades to a writer gets SQLITE_BUSY at once) while holding a process-wide lock that
  serializes this process's writers. ``SQLITE_BUSY`` is retried until the busy timeout, then
  ``StoreUnavailable``: "database is locked" never reaches a caller. Nested transactions (and
  every write inside one) are savepoints, so a failing operation leaves nothing half-done.
* After commits, a WAL over :data:`WAL_LIMIT_BYTES` is checkpointed with ``TRUNCATE`` (short
  busy timeout, then a pause before the next try) and ``journal_size_limit`` caps what remains,
  so concurrent writers cannot grow the WAL without bound.
* Reads outside a transaction run in autocommit mode and are retried on ``SQLITE_BUSY``.
* Group commit (:meth:`Connections.group`): concurrent callers of one process hand their write
  function to one leader thread, which runs them all in ONE ``BEGIN IMMEDIATE ... COMMIT`` (one
  lock hand-over and one fsync for all), each in a savepoint of its own; every caller returns
  only after that commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

try:
    import fcntl
except ImportError:  # not POSIX: writers of other processes wait in SQLite's busy handler
    fcntl = None  # type: ignore[assignment]

from torc_graph.errors import (
    InvalidInput,
    StoreError,
    StoreUnavailable,
    TorcGraphError,
    UniqueConstraintViolated,
)
from torc_graph.store import sqlite_schema as schema
from torc_graph.store.bulk import unwrap_outcome

log = logging.getLogger(__name__)
T = TypeVar("T")

WAL_LIMIT_BYTES = 64 * 1024 * 1024
#: Default page cache per connection, MiB (setting ``sqlite_cache_mib``; SQLite's own default
#: is 2 MB; pages are allocated only as used, so a connection's cache grows with the pages it
#: touched, up to this). A 10,000-job ``bulk_jobs`` transaction dirties more pages than 2 MB hold, so SQLite
#: spilled them into the WAL mid-transaction (native profile: ~20 % of the inserts in cache
#: stress and WAL writes). Measured, the SQL inserts of 10^6 jobs + 990,000 edges in 10^4
#: batches: 24.2 -> 20.5 s CPU (10^5: -12 %).
DEFAULT_CACHE_MIB = 64
_CHECKPOINT_TIMEOUT_MS = 500
_CHECKPOINT_PAUSE = 1.0  # seconds before retrying a checkpoint that found readers busy
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (extended codes carry them in the low byte)

# One lock per database file per process serializes this process's writers. A forked child
# gets fresh locks: a thread of the parent might have held one at the fork.
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


# Writers of different processes also queue on an advisory lock file next to the database
# (``<db>-wlock``) before BEGIN IMMEDIATE. SQLite's busy handler sleeps 1, 2, 5, ... up to
# 100 ms between tries, so under contention a freed write lock sits idle for tens of ms; polling
# the lock file instead cost 18 % of a gunicorn worker's samples and still left it idle up to
# 2 ms per hand-over. So a waiter blocks in ``flock`` (the kernel wakes it the moment the holder
# unlocks or dies) — on a helper thread of its process (:class:`_FileLock`), so that the waiter
# itself can give up at its deadline. One descriptor per database file per process; a forked
# child opens its own (sharing the parent's open file description would share its lock).
_LOCK_FDS: dict[str, int] = {}
_FILE_LOCKS: dict[str, "_FileLock"] = {}


def _reset_locks_after_fork() -> None:
    global _WRITE_LOCKS_GUARD
    _WRITE_LOCKS_GUARD = threading.Lock()
    _WRITE_LOCKS.clear()
    for fd in _LOCK_FDS.values():
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)  # the parent's descriptor, and any lock it holds, stay intact
    _LOCK_FDS.clear()
    _FILE_LOCKS.clear()  # their helper threads do not exist in the child


os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _write_lock(path: str) -> threading.Lock:
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(path, threading.Lock())


def _file_lock(path: str) -> "_FileLock | None":
    """This process's cross-process writer lock of the database; None if there is none
    (in-memory database, no fcntl, or a directory where the lock file cannot be created)."""
    with _WRITE_LOCKS_GUARD:
        if path in _FILE_LOCKS:
            return _FILE_LOCKS[path]
        fd = _LOCK_FDS.get(path, -1)
        if path not in _LOCK_FDS:
            if fcntl is not None and path not in ("", ":memory:") and not path.startswith("file:"):
                with contextlib.suppress(OSError):
                    fd = os.open(path + "-wlock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            _LOCK_FDS[path] = fd
        lock = _FileLock(fd) if fd >= 0 else None
        if lock is not None:
            _FILE_LOCKS[path] = lock
        return lock


class _FileLock:
    """The exclusive ``flock`` of one lock-file descriptor, handed over without polling.

    Callers are serialized by the process write lock, so at most one waits at a time; a taken
    lock is released with :meth:`release`. Uncontended, :meth:`acquire` is one non-blocking
    ``flock``. Contended, a helper thread blocks in ``flock`` (without the GIL; the kernel wakes
    it when the holder unlocks or dies) and hands the lock to the waiter, who waits on a
    condition only until its deadline. If the waiter gave up first, the helper releases the
    lock at once. While the helper is in ``flock`` (``_armed``) nobody else tries it: a
    second ``flock`` on the same descriptor would succeed at once (one open file description)
    and the helper's release would then drop that caller's lock.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self._cond = threading.Condition(threading.Lock())
        self._wanted = False  # a waiter wants the lock from the helper
        self._armed = False  # the helper is taking the lock (or holds it, not yet passed on)
        self._granted = False  # the helper took it for the waiter
        self._helper: threading.Thread | None = None

    def acquire(self, deadline: float) -> bool:
        """Take the lock; False (not taken) once ``deadline`` (monotonic) passed."""
        with self._cond:
            if not self._armed:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass
            self._wanted = True
            if self._helper is None:
                self._helper = threading.Thread(target=self._serve, daemon=True,
                                                name="torc-graph-sqlite-wlock")
                self._helper.start()
            self._cond.notify_all()
            while not self._granted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._wanted = False
                    return False
                self._cond.wait(remaining)
            self._granted = self._wanted = False
            return True

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._wanted or self._granted:
                    self._cond.wait()
                self._armed = True
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)  # blocks without the GIL
            except OSError:  # the descriptor is unusable: waiters time out into a 503
                log.exception("cannot wait for the SQLite writer lock file")
                with self._cond:
                    self._armed, self._helper = False, None
                return
            with self._cond:
                self._armed = False
                if self._wanted:
                    self._granted = True
                    self._cond.notify_all()
                else:
                    self.release()  # its waiter gave up meanwhile


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLITE_BUSY/SQLITE_LOCKED ("database is locked")."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class _ThreadState(threading.local):
    pid: int | None = None
    conn: sqlite3.Connection | None = None
    generation: int = -1
    depth: int = 0


#: Most write functions one group commit runs in one transaction (bounds the lock hold time).
GROUP_MAX = 64


class _Pending:
    """A write function (or a mergeable call, see :meth:`Connections.group`) waiting for a
    group commit, then its outcome."""

    __slots__ = ("fn", "merge", "result", "error", "done", "lead", "wake")

    def __init__(self, fn: Callable[[], object] | None,
                 merge: tuple[str, object, Callable[[list], list]] | None = None):
        self.fn, self.merge = fn, merge
        self.result, self.error, self.done = None, None, False
        self.lead = False  # this caller is the next leader
        self.wake = threading.Event()  # set when ``done`` or ``lead`` became true


class Connections:
    """The per-process, per-thread connections to one database file and their transactions."""

    def __init__(self, path: str, synchronous: str, busy_timeout: float,
                 cache_mib: int = DEFAULT_CACHE_MIB):
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.cache_mib = cache_mib
        self._state = _ThreadState()
        self._conns: list[tuple[int, sqlite3.Connection]] = []
        self._conns_guard = threading.Lock()
        self._generation = 0  # bumped by close(): every thread then reconnects
        self._checkpoint_after = 0.0
        self._group_cond = threading.Lock()  # guards the queue and the leader flags
        self._group_queue: list[_Pending] = []
        self._group_pid = 0  # the process whose leader flag and queue these are (fork)
        self._group_leading = False

    @property
    def _busy_ms(self) -> int:
        return int(self.busy_timeout * 1000)

    @property
    def in_transaction(self) -> bool:
        return bool(self._state.depth) and self._state.pid == os.getpid()

    def conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and after a fork or :meth:`close`)."""
        st = self._state
        pid = os.getpid()
        if st.depth and st.pid == pid:
            return st.conn  # never swap the connection under an open transaction
        if st.conn is None or st.pid != pid or st.generation != self._generation:
            # A connection inherited over fork is abandoned, never used or closed here.
            st.conn, st.pid, st.depth, st.generation = None, pid, 0, self._generation
            st.conn = self._open()
        return st.conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False, cached_statements=512)
        except sqlite3.Error:
            raise StoreUnavailable(f"cannot open the SQLite database {self.path}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self.retry(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
            conn.execute(f"PRAGMA cache_size = -{int(self.cache_mib) * 1024}")
            if self.retry(lambda: schema.pending(conn)):
                with self._immediate(conn):
                    schema.apply_pending(conn)
        except (sqlite3.Error, StoreUnavailable) as exc:
            conn.close()
            if isinstance(exc, StoreUnavailable) or is_busy(exc):
                raise StoreUnavailable("the SQLite database stayed busy") from None
            log.exception("cannot initialize SQLite database %s", self.path)
            raise StoreUnavailable(f"cannot initialize the SQLite database {self.path}") from None
        with self._conns_guard:
            self._conns.append((os.getpid(), conn))
        return conn

    def close(self) -> None:
        """Close this process's connections; every thread reconnects on next use."""
        pid = os.getpid()
        with self._conns_guard:
            mine = [c for p, c in self._conns if p == pid]
            self._conns = [(p, c) for p, c in self._conns if p != pid]
            self._generation += 1
        for conn in mine:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._state.conn = None
        self._state.depth = 0

    def retry(self, fn: Callable[[], T], deadline: float | None = None) -> T:
        """Run ``fn``, retrying SQLITE_BUSY until the busy timeout (or ``deadline``), then
        raise StoreUnavailable."""
        if deadline is None:
            deadline = time.monotonic() + self.busy_timeout
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreUnavailable("the database stayed busy past the timeout") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    @contextlib.contextmanager
    def _immediate(self, conn: sqlite3.Connection) -> Iterator[None]:
        """Hold the process write lock and a ``BEGIN IMMEDIATE`` transaction on ``conn``;
        commit on success, roll back on exception."""
        deadline = time.monotonic() + self.busy_timeout
        lock = _write_lock(self.path)
        if not lock.acquire(timeout=self.busy_timeout):
            raise StoreUnavailable("the database stayed busy past the timeout")
        flock = _file_lock(self.path)
        if flock is not None and not flock.acquire(deadline):
            lock.release()
            raise StoreUnavailable("the database stayed busy past the timeout")
        try:
            if conn.in_transaction:
                # Left open by an earlier failure: it must not swallow this transaction.
                conn.execute("ROLLBACK")
            remaining = deadline - time.monotonic()
            if remaining < self.busy_timeout - 0.5:
                # Waiting for this process's lock used part of the budget: SQLite's own busy
                # handler gets only the rest.
                conn.execute(f"PRAGMA busy_timeout = {max(1, int(remaining * 1000))}")
                try:
                    self.retry(lambda: conn.execute("BEGIN IMMEDIATE"), deadline)
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            else:
                self.retry(lambda: conn.execute("BEGIN IMMEDIATE"), deadline)
            try:
                yield
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            if not conn.in_transaction:
                raise StoreError("the transaction was aborted by the database")
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                # Never leave a failed transaction open on this connection.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            self._maybe_checkpoint(conn)
        finally:
            if flock is not None:
                flock.release()
            lock.release()

    def _maybe_checkpoint(self, conn: sqlite3.Connection) -> None:
        """Truncate a WAL that grew past the limit (after a commit, under the process write
        lock). Continuous readers and writers keep SQLite's automatic PASSIVE checkpoints from
        ever resetting the WAL; TRUNCATE waits briefly for them to reach the newest snapshot.
        After a failed attempt the next one waits a pause, unless the WAL reached the hard cap
        of four times the limit."""
        try:
            size = os.stat(self.path + "-wal").st_size
        except OSError:
            return
        if size <= WAL_LIMIT_BYTES:
            return
        if time.monotonic() < self._checkpoint_after and size <= 4 * WAL_LIMIT_BYTES:
            return
        busy = 1
        try:
            conn.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_TIMEOUT_MS}")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            pass
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        if busy:
            log.info("WAL checkpoint of %s postponed: readers are busy", self.path)
            self._checkpoint_after = time.monotonic() + _CHECKPOINT_PAUSE

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection; nested blocks are savepoints."""
        with guard("transaction"):
            conn = self.conn()
        st = self._state
        if st.depth:
            name = f"sp{st.depth}"
            with guard("transaction"):
                conn.execute(f"SAVEPOINT {name}")
            st.depth += 1
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                raise
            else:
                with guard("transaction"):
                    conn.execute(f"RELEASE {name}")
            finally:
                st.depth = max(st.depth - 1, 0)
            return
        with guard("commit"), self._immediate(conn):
            st.depth = 1
            try:
                yield conn
            finally:
                st.depth = 0

    def group(self, fn: Callable[[], T] | None,
              merge: tuple[str, object, Callable[[list], list]] | None = None) -> T:
        """Run ``fn()`` in a write transaction shared with the concurrent callers of this
        process (group commit) and return its result once that transaction committed.

        With ``merge = (key, payload, run)`` instead of ``fn``: the queued calls of the group
        with the same ``key`` run as ONE ``run([payloads])`` in one savepoint, which returns
        an outcome per payload (a value, or an exception instance raised to its caller); if
        ``run`` raises, each of them gets that error (see ``GraphStore.transact_many``).

        The first caller becomes the leader: it takes the write locks, then runs every function
        queued by then (at most :data:`GROUP_MAX`, its own included), each in a savepoint of its
        own, and commits once. A function that raises rolls back its own savepoint only; its
        exception is re-raised to its caller, and the others still commit. If the shared
        transaction itself fails (BEGIN, COMMIT, or an error that aborts it), every caller of
        the group gets that error and nothing of the group is written. ``fn`` may run on
        another thread of this process. Inside a transaction, ``fn`` joins it directly.
        """
        if self.in_transaction:
            with self.transaction():
                if merge is None:
                    return fn()
                return unwrap_outcome(merge[2]([merge[1]])[0])
        item = _Pending(fn, merge)
        pid = os.getpid()
        if self._group_pid != pid:
            # First use in this process (or a forked child: the parent's lock may have been
            # held by one of its threads at the fork). The guard is reset at fork.
            with _WRITE_LOCKS_GUARD:
                if self._group_pid != pid:
                    self._group_cond = threading.Lock()
                    self._group_queue, self._group_leading = [], False
                    self._group_pid = pid
        with self._group_cond:
            self._group_queue.append(item)
            if not self._group_leading:
                self._group_leading = item.lead = True
        # Each caller sleeps on its own event: a finished group wakes its callers and the one
        # next leader only (waking every waiter per commit cost a third of a busy worker).
        while not item.done:
            if not item.lead:
                item.wake.wait()
                item.wake.clear()  # only the leader sets it, and no one leads while we run
                continue
            item.lead = False
            try:
                self._lead(item)  # runs ``item`` unless GROUP_MAX earlier ones came first
            finally:
                with self._group_cond:
                    if self._group_queue:
                        successor = self._group_queue[0]
                        successor.lead = True
                        successor.wake.set()
                    else:
                        self._group_leading = False
        if item.error is not None:
            raise item.error
        return unwrap_outcome(item.result) if merge is not None else item.result

    def _lead(self, own: _Pending) -> None:
        """Run queued write functions, ``own`` among them, in one transaction (see
        :meth:`group`). Never raises: every outcome goes to the functions' records."""
        batch: list[_Pending] = []
        st = self._state
        try:
            with guard("transaction"):
                conn = self.conn()
            with guard("commit"), self._immediate(conn):
                # Taken after the locks: whoever queued while this thread waited joins.
                with self._group_cond:
                    batch = self._group_queue[:GROUP_MAX]
                    del self._group_queue[:GROUP_MAX]
                st.depth = 1
                try:
                    for run, items in _runs(batch):
                        try:
                            with self.transaction():
                                outcomes = run()
                            for item, outcome in zip(items, outcomes):
                                item.result = outcome
                        except Exception as exc:  # noqa: BLE001 - handed to its callers
                            for item in items:
                                item.error = exc
                            if not conn.in_transaction:
                                raise  # the whole transaction is gone: fail the group
                finally:
                    st.depth = 0
        except BaseException as exc:
            if not batch:  # the locks were not taken: only the leader's own call fails
                with self._group_cond:
                    self._group_queue.remove(own)
                batch = [own]
            for item in batch:
                item.error = exc
        finally:
            with self._group_cond:
                for item in batch:
                    item.done = True
                    if item is not own:
                        item.wake.set()

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read: inside a transaction directly, else retried on SQLITE_BUSY."""
        with guard("read"):
            conn = self.conn()
            if self._state.depth:
                return fn(conn)
            return self.retry(lambda: fn(conn))

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write operation (its own transaction, or a savepoint of the open one)."""
        with guard("write"), self.transaction() as conn:
            yield conn


def _runs(batch: list[_Pending]) -> list[tuple[Callable[[], list], list[_Pending]]]:
    """The calls of a group in queue order: each plain function alone; the mergeable ones
    with the same key together, at the place of the first."""
    runs: list[tuple[Callable[[], list], list[_Pending]]] = []
    merged: dict[str, list[_Pending]] = {}
    for item in batch:
        if item.merge is None:
            runs.append(((lambda fn=item.fn: [fn()]), [item]))
        elif item.merge[0] in merged:
            merged[item.merge[0]].append(item)
        else:
            items = merged[item.merge[0]] = [item]
            runs.append(((lambda items=items: items[0].merge[2]([i.merge[1] for i in items])),
                         items))
    return runs


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Translate driver errors into torc_graph errors (no driver text leaves the store)."""
    try:
        yield
    except TorcGraphError:
        raise
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            raise UniqueConstraintViolated(
                "unique constraint violated - in index primary of type primary over '_key'"
            ) from None
        if "datatype mismatch" in str(exc):  # e.g. an OFFSET/LIMIT beyond 64 bits
            raise InvalidInput("a value is out of range for the database") from None
        log.error("SQLite integrity error in %s: %s", what, exc)
        raise StoreError(f"storage failure in {what}") from None
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise StoreUnavailable("the database stayed busy past the timeout") from None
        log.error("SQLite error in %s: %s", what, exc)
        raise StoreError(f"storage failure in {what}") from None
    except sqlite3.Error as exc:
        log.error("SQLite error in %s: %s", what, exc)
        raise StoreError(f"storage failure in {what}") from None
    except OverflowError:
        raise InvalidInput("integer value out of range") from None
    except UnicodeEncodeError:
        raise InvalidInput("text contains a lone surrogate (not valid UTF-8)") from None
