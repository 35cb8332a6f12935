"""Bulk transactions on ArangoDB: a set-based update larger than one stream transaction, in
chunks, guarded so that its partial application is harmless.

``initialize_jobs`` of a 10^6-job workflow writes about 1 GiB; a stream transaction holds at
most ``max_transaction_bytes``. :meth:`ChunkOps.bulk_transaction` is ``transaction(workflow)``
that may **chunk**: when the next write would cross the cap, the store commits what it holds
and continues in a new stream transaction with the same locks. Set-based updates in a chunked
transaction read their targets first (one query, on the state before the update, as the
single query does, with each target's current size) and update them by key in batches packed
to fill the room left.

**The guard.** Before its first chunk commits, a bulk transaction marks the workflow
document (hidden attribute ``_torc_bulk``: the name of the operation); its last chunk removes
the mark. While the mark
is there, every other transaction on the workflow that reads the workflow
(:meth:`~.arango_workflows.WorkflowOps.workflow_space`: claims, completions, resets, ...)
gets ``StoreUnavailable`` (503, retry) naming the cause: nothing is handed out from a half-
initialized workflow. If the process dies mid-way (kill -9) the mark stays until the same
bulk operation runs again: initialize_jobs recomputes every job's status from the graph, and
reset_job_status resets what is not reset yet (its selection does not depend on the statuses
it writes), so rerunning either over its own partial state completes it; bulk transactions
ignore the mark. A
bulk update that fits one chunk never sets it (as before: one transaction).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from torc_graph import model
from torc_graph.errors import StoreUnavailable
from torc_graph.store.aql import BULK_FIELD, Query
from torc_graph.store.arango_connection import dumps

_WF = model.GlobalCollection.WORKFLOWS.value
#: Per updated document beyond its JSON text (as :data:`.arango.DOC_OVERHEAD`).
OVERHEAD = 128
#: Bytes the server's computed values may add to a job (two claim-order arrays of 4 numbers).
COMPUTED_MARGIN = 256


class ChunkOps:
    """Mixin of :class:`~torc_graph.store.arango.ArangoStore` (uses its ``_tx``, ``_run``,
    ``_next_chunk``, ``transaction`` and ``settings``)."""

    @contextlib.contextmanager
    def bulk_transaction(self, workflow: str, operation: str = "initialize_jobs") -> Iterator[None]:
        """See :meth:`GraphStore.bulk_transaction` (module doc). Raises as
        :meth:`transaction`; on an exception the current chunk rolls back and the guard of
        committed chunks stays (rerun the operation)."""
        if self._tx() is not None:  # joins the outer transaction as it is
            yield
            return
        with self.transaction(workflow):
            tx = self._tx()
            tx.chunked = True
            tx.operation = operation
            yield
            self.set_guard(workflow, None)  # ours, or one an interrupted run left

    def set_guard(self, workflow: str, operation: str | None) -> None:
        """Set the bulk guard (naming the operation to rerun) on the workflow document, or
        clear it (``None``; writes only when it is set: the ``_rev`` stays otherwise), in the
        current transaction."""
        q = Query()
        w = q.collection(_WF)
        unless = "" if operation else f"AND w.{BULK_FIELD} != null "
        text = (f"FOR w IN {w} FILTER w._key == {q.value(workflow)} {unless}"
                f"UPDATE w WITH {{{BULK_FIELD}: {q.value(operation or None)}}} IN {w} "
                "OPTIONS {keepNull: false} RETURN 1")
        self._run(text, q, f"workflow {workflow}")

    def check_guard(self, workflow: str, doc: Mapping[str, Any]) -> None:
        """StoreUnavailable if a bulk operation has the workflow half-applied and the caller is
        a plain transaction (claims, completions, ...)."""
        tx = self._tx()
        operation = doc.get(BULK_FIELD)
        if operation and tx is not None and not tx.chunked:
            raise StoreUnavailable(
                f"workflow {workflow} is being changed by {operation} in several ArangoDB "
                f"transactions (or such a run was interrupted: run {operation} again); "
                "retry later")

    def update_keys(self, name: str, targets: list[dict[str, Any]], patch: Mapping[str, Any]) -> list[str]:
        """Apply ``patch`` to the documents ``targets`` (``{k: key, b: current JSON bytes}``,
        read before the first write) of ``name``, in batches packed to fill the room left in
        the current chunk (a new chunk when the next document does not fit); return the keys
        updated. Raises TransactionTooLarge for one document larger than the cap."""
        tx = self._tx()
        cap = self.settings.max_transaction_bytes
        # Upper bound of what the update adds: the patch, the overhead, the claim orders the
        # server may compute (:data:`.aql.CLAIM_ORDERS`).
        growth = len(dumps(dict(patch))) + OVERHEAD + COMPUTED_MARGIN
        done: list[str] = []
        i = 0
        while i < len(targets):
            room, j, nbytes = cap - tx.used, i, 0
            while j < len(targets) and nbytes + targets[j]["b"] + growth <= room:
                nbytes += targets[j]["b"] + growth
                j += 1
            if j == i:
                if tx.used == 0:
                    self._charge(targets[i]["b"] + growth)  # raises: one document too large
                self._next_chunk(tx)
                continue
            q = Query()
            c = q.collection(name)
            text = (f"FOR d IN {c} FILTER d._key IN {q.value([t['k'] for t in targets[i:j]])} "
                    f"UPDATE d WITH {q.patch('d', patch)} IN {c} "
                    "OPTIONS {mergeObjects: false, keepNull: true} "
                    "RETURN {k: NEW._key, b: LENGTH(TO_STRING(NEW))}")
            rows = self._run(text, q, name)
            tx.used += sum(r["b"] + OVERHEAD for r in rows)
            done += [r["k"] for r in rows]
            i = j
        return done
