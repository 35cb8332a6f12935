"""Staged workflows on ArangoDB: creation in chunks, invisible until published, with
compensation and a sweep of what a crash left behind.

A stream transaction holds at most ``max_transaction_bytes`` (see :mod:`.arango`), and a
10^6-job specification writes about 1 GiB. So a workflow is created **staged**: its workflow
document carries the hidden attribute ``_torc_staged`` (epoch ms of the last sign of life),
and every read of the ``workflows`` collection ignores such documents, except in the thread
that is creating it. Inside :meth:`StagingOps.staged_creation`, a ``transaction(workflow)`` on
a workflow this thread staged is **chunked**: when the next write would cross the cap, the
store commits what it has (nobody can see it) and continues in a new stream transaction; an
insert larger than the cap is split into pieces. Each chunk refreshes the stamp. When the
block exits normally one small query **publishes** the workflows (removes the attribute); on
an exception they are **purged** (compensation: graph, collections, global documents).

Every workflow, staged or not, gets its documents before its collections (DDL), and a plain
``create_workflow`` publishes at once. Hence after a crash (kill -9 at any point):

* a staged workflow document whose stamp is older than ``staging_grace`` is abandoned: the
  sweep condemns it (stamp 0, one atomic query) and purges it. Publishing and the stamp
  refresh require a stamp > 0, so a creation finishing at that moment either publishes first
  (the sweep's query then conflicts and condemns nothing) or fails and compensates: a
  published workflow is never swept;
* a per-workflow collection (``<base>__<WF>``) or graph without any workflow document ``WF``
  is an orphan (its creation always wrote the document first, its deletion drops the
  collections first): the sweep drops it. This assumes the database belongs to torc_graph
  (a torc v0.6.4 server or an older torc_graph creates collections before the document).

:meth:`StagingOps.sweep` runs in the first ``create_workflow`` of a process and then at most
every ``SWEEP_INTERVAL`` seconds (it lists collections: one request, plus one query).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from torc_graph import model
from torc_graph.errors import StoreError
from torc_graph.store.aql import STAGED_FIELD, Query
from torc_graph.store.arango_connection import translating
from torc_graph.store.arango_layout import TICKS, graph_name
from torc_graph.store.staging import StagedBlock

log = logging.getLogger(__name__)

#: Seconds between two sweeps of one process.
SWEEP_INTERVAL = 60.0

_WF = model.GlobalCollection.WORKFLOWS.value
_BASES = frozenset(c.value for c in model.Collection) | frozenset(e.value for e in model.Edge)


def now_ms() -> int:
    return int(time.time() * 1000)


def orphan_workflows(collection_names: list[str], graph_names: list[str]) -> set[str]:
    """Workflow keys named by per-workflow collections or graphs (candidates of the sweep)."""
    keys = set()
    for name in collection_names:
        base, sep, wf = name.partition("__")
        if sep and base in _BASES and wf:
            keys.add(wf)
    for name in graph_names:
        base, sep, wf = name.partition("__")
        if sep and base == "workflow_graph" and wf:
            keys.add(wf)
    return keys


class StagingOps(StagedBlock):
    """Mixin of :class:`~torc_graph.store.arango.ArangoStore` (uses its ``_run``, ``_conn``,
    ``_layout``, ``_local``, ``_remove_global`` and ``settings``)."""

    _last_sweep: float = float("-inf")

    # -- visibility ---------------------------------------------------------------------------

    def _staging(self) -> set[str] | None:
        """The workflows this thread is creating in a staged block (None outside one)."""
        return getattr(self._local, "staging", None)

    def visible(self, q: Query, name: str, var: str = "d") -> list[str]:
        """Conditions hiding staged workflow documents from every thread but their creator's
        (empty for other collections)."""
        if name != _WF:
            return []
        mine = sorted(self._staging() or ())
        cond = f"{var}.{STAGED_FIELD} == null"
        if mine:
            cond = f"({cond} OR {var}._key IN {q.value(mine)})"
        return [cond]

    def is_staged_here(self, workflow: str | None) -> bool:
        return workflow is not None and workflow in (self._staging() or ())

    def _set_staging(self, keys: set[str] | None) -> None:
        self._local.staging = keys

    def _compensate(self, key: str) -> None:
        self.purge_workflow(key)

    def _publish(self, keys: list[str]) -> None:
        """Make staged workflows visible: one standalone query (atomic). A workflow the sweep
        condemned (stamp 0) is not published: StoreError; a concurrent sweep is a write-write
        conflict (503); either way the caller's compensation removes it."""
        if not keys:
            return
        q = Query()
        w = q.collection(_WF)
        text = (
            f"FOR w IN {w} FILTER w._key IN {q.value(keys)} AND w.{STAGED_FIELD} > 0 "
            f"UPDATE w WITH {{{STAGED_FIELD}: null}} IN {w} OPTIONS {{keepNull: false}} RETURN 1"
        )
        if len(self._run(text, q, "workflows", db=self._conn.db())) != len(keys):
            raise StoreError("storage error: the workflow was removed while it was being "
                             "created (it took longer than the staging grace period)")

    def touch_staged(self, workflow: str) -> None:
        """Refresh a staged workflow's stamp (a chunk boundary: the creation is alive)."""
        q = Query()
        w = q.collection(_WF)
        text = (f"FOR w IN {w} FILTER w._key == {q.value(workflow)} AND w.{STAGED_FIELD} > 0 "
                f"UPDATE w WITH {{{STAGED_FIELD}: {q.value(now_ms())}}} IN {w} RETURN 1")
        self._run(text, q, "workflows", db=self._conn.db())

    # -- removal ------------------------------------------------------------------------------

    def purge_workflow(self, key: str) -> Any:
        """Remove a workflow whatever its state (compensation, sweep): graph and collections
        first, then its global documents; return the workflow document as it was (None if
        there was none). Idempotent."""
        db = self._conn.db()
        with translating(f"workflow {key}"):
            self._layout.drop(db, key)
        return self._remove_global(key)

    def discard_staged(self, key: str) -> bool:
        """See :meth:`GraphStore.discard_staged`: condemn the workflow if it is still staged
        (stamp 0, one atomic query: its creator, if alive after all, then fails to publish and
        compensates), then purge it. A published workflow (or none) is left alone."""
        q = Query()
        w = q.collection(_WF)
        text = (f"FOR w IN {w} FILTER w._key == {q.value(key)} AND w.{STAGED_FIELD} != null "
                f"UPDATE w WITH {{{STAGED_FIELD}: 0}} IN {w} RETURN 1")
        if not self._run(text, q, "workflows", db=self._conn.db()):
            return False
        self.purge_workflow(key)
        return True

    def sweep_staged(self) -> list[str]:
        """See :meth:`GraphStore.sweep_staged`: :meth:`sweep` (ArangoDB judges a creation
        abandoned by its stamp's age, ``staging_grace``: creations may run on other hosts)."""
        return self.sweep()

    # -- the sweep ----------------------------------------------------------------------------

    def maybe_sweep(self) -> None:
        """:meth:`sweep` if this process has not swept for ``SWEEP_INTERVAL`` seconds; a
        failure is logged, never raised (the next interval retries)."""
        if time.monotonic() - self._last_sweep < SWEEP_INTERVAL:
            return
        self._last_sweep = time.monotonic()
        try:
            self.sweep()
        except Exception as exc:
            log.warning("sweep of abandoned ArangoDB workflows failed: %s", exc)

    def sweep(self, now: int | None = None) -> list[str]:
        """Purge staged workflows abandoned for ``staging_grace`` seconds and drop orphan
        per-workflow collections and graphs; return the workflow keys removed."""
        db = self._conn.db()
        cutoff = (now_ms() if now is None else now) - int(self.settings.staging_grace * 1000)
        q = Query()
        w = q.collection(_WF)
        mine = sorted(self._staging() or ())
        not_mine = f"AND w._key NOT IN {q.value(mine)} " if mine else ""
        # Condemn first (stamp 0, atomically, only if still abandoned): a creation publishing
        # at the same moment either wins (then this query conflicts: 503, nothing condemned)
        # or finds its stamp 0 and fails (its caller compensates): never both.
        text = (f"FOR w IN {w} FILTER w.{STAGED_FIELD} != null AND w.{STAGED_FIELD} < "
                f"{q.value(cutoff)} {not_mine}UPDATE w WITH {{{STAGED_FIELD}: 0}} IN {w} "
                "RETURN NEW._key")
        removed = []
        for key in self._run(text, q, "workflows", db=db):
            log.warning("removing workflow %s: its creation was abandoned", key)
            self.purge_workflow(key)
            removed.append(key)
        with translating("collections"):
            names = [c["name"] for c in db.collections()]
            graphs = [g["name"] for g in db.graphs()]
        candidates = sorted(orphan_workflows(names, graphs) - {TICKS})
        if candidates:
            q = Query()
            w = q.collection(_WF)
            text = f"FOR w IN {w} FILTER w._key IN {q.value(candidates)} RETURN w._key"
            present = set(self._run(text, q, "workflows", db=db))
            for key in candidates:
                if key not in present:
                    log.warning("dropping orphan collections of workflow %s (no workflow "
                                "document)", key)
                    with translating(f"workflow {key}"):
                        self._layout.drop(db, key, [n for n in names
                                                    if n.partition("__")[2] == key],
                                          graph=graph_name(key) in graphs)
                    removed.append(key)
        return removed
