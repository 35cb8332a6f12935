"""Bulk transactions on ArangoDB: a set-based update larger than one stream transaction, in
chunks, guarded so that its partial application is harmless.

``initialize_jobs`` of a 10^6-job workflow writes about 1 GiB; a stream transaction holds at
most ``max_transaction_bytes``. :meth:`ChunkOps.bulk_transaction` is ``transaction(workflow)``
that may **chunk**: when the next write would cross the cap, the store commits what it holds
and continues in a new stream transaction with the same locks. Set-based updates in a chunked
transaction read their targets first (one query, on the state before the update, as the
single query does) and update them by key in batches that fit the room left.

**The guard.** Before its first chunk commits, a bulk transaction marks the workflow
document (hidden attribute ``_torc_bulk``); its last chunk removes the mark. While the mark
is there, every other transaction on the workflow that reads the workflow
(:meth:`~.arango_workflows.WorkflowOps.workflow_space`: claims, completions, resets, ...)
gets ``StoreUnavailable`` (503, retry) naming the cause: nothing is handed out from a half-
initialized workflow. If the process dies mid-way (kill -9) the mark stays until the same
bulk operation runs again: initialize_jobs recomputes every job's status from the graph,
so rerunning it over any partial state completes it; bulk transactions ignore the mark. A
bulk update that fits one chunk never sets it (as before: one transaction).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from torc_graph import model
from torc_graph.errors import StoreUnavailable
from torc_graph.store.aql import BULK_FIELD, Query

_WF = model.GlobalCollection.WORKFLOWS.value
#: First guess of the bytes one updated document adds to a transaction (refined per batch).
FIRST_ESTIMATE = 4096
#: Per updated document beyond its JSON text (as :data:`.arango.DOC_OVERHEAD`).
OVERHEAD = 128


class ChunkOps:
    """Mixin of :class:`~torc_graph.store.arango.ArangoStore` (uses its ``_tx``, ``_run``,
    ``_next_chunk``, ``transaction`` and ``settings``)."""

    @contextlib.contextmanager
    def bulk_transaction(self, workflow: str) -> Iterator[None]:
        """See :meth:`GraphStore.bulk_transaction` (module doc). Raises as
        :meth:`transaction`; on an exception the current chunk rolls back and the guard of
        committed chunks stays (rerun the operation)."""
        if self._tx() is not None:  # joins the outer transaction as it is
            yield
            return
        with self.transaction(workflow):
            tx = self._tx()
            tx.chunked = True
            yield
            self.set_guard(workflow, False)  # ours, or one an interrupted run left

    def set_guard(self, workflow: str, on: bool) -> None:
        """Set or clear the bulk guard on the workflow document, in the current transaction
        (clearing writes only when it is set: the document's ``_rev`` stays otherwise)."""
        q = Query()
        w = q.collection(_WF)
        unless = "" if on else f"AND w.{BULK_FIELD} != null "
        text = (f"FOR w IN {w} FILTER w._key == {q.value(workflow)} {unless}"
                f"UPDATE w WITH {{{BULK_FIELD}: {q.value(True if on else None)}}} IN {w} "
                "OPTIONS {keepNull: false} RETURN 1")
        self._run(text, q, f"workflow {workflow}")

    def check_guard(self, workflow: str, doc: Mapping[str, Any]) -> None:
        """StoreUnavailable if a bulk operation has the workflow half-applied and the caller is
        a plain transaction (claims, completions, ...)."""
        tx = self._tx()
        if doc.get(BULK_FIELD) and tx is not None and not tx.chunked:
            raise StoreUnavailable(
                f"workflow {workflow} is being initialized in several ArangoDB transactions "
                "(or such a run was interrupted: run initialize_jobs again); retry later")

    def update_keys(self, name: str, keys: list[str], patch: Mapping[str, Any]) -> list[str]:
        """Apply ``patch`` to the documents ``keys`` of ``name`` in batches that fit the room
        left in the current chunk (a new chunk when none is left); return the keys updated."""
        tx = self._tx()
        cap = self.settings.max_transaction_bytes
        estimate, done, i = FIRST_ESTIMATE, [], 0
        while i < len(keys):
            room = cap - tx.used
            count = min(len(keys) - i, room // (2 * estimate))
            if count < 1:
                self._next_chunk(tx)
                continue
            q = Query()
            c = q.collection(name)
            text = (f"FOR d IN {c} FILTER d._key IN {q.value(keys[i:i + count])} "
                    f"UPDATE d WITH {q.patch('d', patch)} IN {c} "
                    "OPTIONS {mergeObjects: false, keepNull: true} "
                    "RETURN {k: NEW._key, b: LENGTH(TO_STRING(NEW))}")
            rows = self._run(text, q, name)
            tx.used += sum(r["b"] + OVERHEAD for r in rows)
            estimate = max([estimate] + [r["b"] + OVERHEAD for r in rows])
            done += [r["k"] for r in rows]
            i += count
        return done
