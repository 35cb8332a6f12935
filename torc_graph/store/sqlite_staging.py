"""Staged workflows on SQLite: a creation written in many short transactions, invisible until
it is published, removed if it fails or its process dies.

Every read of a workflow (``workflow_exists``, ``workflow_space``, listings, the checks of every
per-workflow write) looks at the rows of ``doc_workflows`` with ``wf = ''``. A staged workflow's
row has ``wf = '~staged'`` instead, so it is invisible to every caller without a filter
anywhere, except to the thread that creates it inside :meth:`StagingOps.staged_creation` (that
thread's writes to it pass the workflow check). Its document carries ``_staging``: the
creating process (host, pid, process start time) and the time of its last sign of life.

* **publish** (the block exits normally): one ``UPDATE`` moves the row to ``wf = ''`` and drops
  ``_staging``: the whole workflow appears at once.
* **discard** (the block raises; a task of a dead creation is read; the sweep): the
  workflow's rows are deleted in transactions of at most :data:`DELETE_CHUNK` rows each, then
  the workflow row with its config, status, owner and global edges in one transaction. Only a
  row still staged is discarded: a published workflow is never touched.
* **sweep** (first creation of a process, then at most every :data:`SWEEP_INTERVAL` seconds,
  and at server start): a staged workflow whose process is gone (same host: pid and start time;
  another host: no sign of life for :data:`STALE_MS`) is discarded.

No writer lock is held longer than one chunk: other workflows' claims and completions go on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from torc_graph import liveness, model
from torc_graph.errors import StoreError, UniqueConstraintViolated
from torc_graph.store import sqlite_schema as schema
from torc_graph.store.staging import StagedBlock

log = logging.getLogger(__name__)

#: The ``wf`` value of a staged workflow's row in ``doc_workflows`` (visible rows have ``''``).
STAGED = "~staged"
#: Rows deleted per transaction when a staged workflow is discarded.
DELETE_CHUNK = 10_000
#: Seconds between two sweeps of one process.
SWEEP_INTERVAL = 60.0
#: A staged workflow of a process on another host is abandoned after this long without a sign
#: of life (each chunk of its creation refreshes it).
STALE_MS = 10 * 60 * 1000

_GLOBAL_OF_WORKFLOW = frozenset({"doc_workflows", "doc_workflow_configs", "doc_workflow_statuses",
                                 "edge_has_workflow_config", "edge_has_workflow_status"})


def _now_ms() -> int:
    return int(time.time() * 1000)


class StagingOps(StagedBlock):
    """Mixin of :class:`~torc_graph.store.sqlite.SQLiteStore` (uses its ``_db``; overrides the
    workflow checks so the creating thread sees its staged workflows)."""

    _staging_local = threading.local()
    _last_sweep: float = float("-inf")

    def _staging(self) -> set[str] | None:
        """The workflows this thread is creating in a staged block (None outside one)."""
        return getattr(self._staging_local, "keys", None)

    def _staged_here(self, key: str) -> bool:
        return key in (self._staging() or ())

    def _set_staging(self, keys: set[str] | None) -> None:
        self._staging_local.keys = keys

    def _compensate(self, key: str) -> None:
        self.discard_staged(key)

    def _stage(self, conn: Any, key: str) -> None:
        """Move a workflow created in this transaction to the staged rows."""
        stage = json.dumps({**liveness.this_process(), "alive": _now_ms()})
        try:
            conn.execute("UPDATE doc_workflows SET wf = ?, doc = json_set(doc, '$._staging', "
                         "json(?)) WHERE wf = '' AND key = ?", (STAGED, stage, key))
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise UniqueConstraintViolated(
                    f"a workflow with key={key} is being created already") from None
            raise
        self._staging().add(key)

    def _publish(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._db.write() as conn:
            for key in keys:
                try:
                    n = conn.execute("UPDATE doc_workflows SET wf = '', doc = json_remove(doc, "
                                     "'$._staging') WHERE wf = ? AND key = ?",
                                     (STAGED, key)).rowcount
                except Exception as exc:
                    if "UNIQUE" in str(exc):
                        raise UniqueConstraintViolated(
                            f"a workflow with key={key} already exists") from None
                    raise
                if n != 1:
                    raise StoreError("storage error: the workflow was removed while it was being "
                                     "created (its process was judged dead)")

    def touch_staged(self, workflow: str) -> None:
        """Refresh a staged workflow's sign of life (a chunk boundary: the creation is alive)."""
        with self._db.write() as conn:
            conn.execute("UPDATE doc_workflows SET doc = json_set(doc, '$._staging.alive', ?) "
                         "WHERE wf = ? AND key = ?", (_now_ms(), STAGED, workflow))

    def is_staged(self, key: str) -> bool:
        """Whether ``key`` is a staged (unpublished) workflow."""
        return self._db.read(lambda conn: conn.execute(
            "SELECT 1 FROM doc_workflows WHERE wf = ? AND key = ?", (STAGED, key)
        ).fetchone() is not None)

    # -- removal --------------------------------------------------------------------------------

    def discard_staged(self, key: str) -> bool:
        """Remove a staged workflow and everything written to it, in chunks of
        :data:`DELETE_CHUNK` rows per transaction; return whether there was one. A published
        workflow (or none) is left alone. Idempotent."""
        if not self.is_staged(key):
            return False
        for table in schema.all_tables():
            if table in _GLOBAL_OF_WORKFLOW:
                continue
            while True:
                with self._db.write() as conn:
                    n = conn.execute(f"DELETE FROM {table} WHERE seq IN (SELECT seq FROM {table} "
                                     f"WHERE wf = ? LIMIT {DELETE_CHUNK})", (key,)).rowcount
                if n < DELETE_CHUNK:
                    break
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM doc_workflows WHERE wf = ? AND key = ?",
                            (STAGED, key)).fetchone() is None:
                return False
            wf_id = f"{model.GlobalCollection.WORKFLOWS.value}/{key}"
            for edge, coll in (("has_workflow_config", "workflow_configs"),
                               ("has_workflow_status", "workflow_statuses")):
                conn.execute(f"DELETE FROM doc_{coll} WHERE wf = '' AND '{coll}/' || key IN "
                             f"(SELECT to_id FROM edge_{edge} WHERE wf = '' AND from_id = ?)",
                             (wf_id,))
            for edge in model.GlobalEdge:
                t = schema.edge_table(edge.value)
                conn.execute(f"DELETE FROM {t} WHERE wf = '' AND from_id = ?", (wf_id,))
                conn.execute(f"DELETE FROM {t} WHERE wf = '' AND to_id = ?", (wf_id,))
            conn.execute("DELETE FROM doc_workflow_owners WHERE wf = '' AND key = ?", (key,))
            conn.execute("DELETE FROM doc_workflows WHERE wf = ? AND key = ?", (STAGED, key))
        return True

    # -- the sweep ------------------------------------------------------------------------------

    def maybe_sweep(self) -> None:
        """:meth:`sweep_staged` if this process has not swept for :data:`SWEEP_INTERVAL`
        seconds; a failure is logged, never raised."""
        if time.monotonic() - self._last_sweep < SWEEP_INTERVAL:
            return
        type(self)._last_sweep = time.monotonic()
        try:
            self.sweep_staged()
        except Exception as exc:  # noqa: BLE001  the next interval retries
            log.warning("sweep of abandoned staged workflows failed: %s", exc)

    def sweep_staged(self) -> list[str]:
        """Discard staged workflows whose creating process is gone; return their keys."""
        rows = self._db.read(lambda conn: conn.execute(
            "SELECT key, json_extract(doc, '$._staging') FROM doc_workflows WHERE wf = ?",
            (STAGED,)).fetchall())
        now, removed = _now_ms(), []
        mine = self._staging() or ()
        for key, stage in rows:
            record = json.loads(stage) if stage else {}
            if key in mine or not liveness.gone(record, record.get("alive", 0), now, STALE_MS):
                continue
            log.warning("removing workflow %s: its creation was abandoned", key)
            if self.discard_staged(key):
                removed.append(key)
        return removed
