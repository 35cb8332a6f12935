"""Bulk transactions on ArangoDB: a set-based update larger than one stream transaction, in
chunks, guarded so that its partial application is harmless and completed after a crash.

``initialize_jobs`` of a 10^6-job workflow writes about 1 GiB; a stream transaction holds at
most ``max_transaction_bytes``. :meth:`ChunkOps.bulk_transaction` is ``transaction(workflow)``
that may **chunk**: when the next write would cross the cap, the store commits what it holds
and continues in a new stream transaction with the same locks. Set-based updates in a chunked
transaction read their targets first (one query, on the state before the update, as the
single query does, with each target's current size) and update them by key in batches packed
to fill the room left.

**The guard** (hidden attribute ``_torc_bulk`` of the workflow document): ``{op, args, owner,
until}``: the registered operation (:data:`~.base.BULK_OPERATIONS`) and its arguments, a
random id of this run, and the end of its lease in server time (``DATE_NOW()`` +
``bulk_lease``). Every chunk writes it (renewing the lease) just before it commits, only if
the guard is still its own (else the run lost it to a takeover after its lease ran out
between two chunks: that chunk rolls back with 503); the last chunk removes it. A bulk update that fits one chunk never sets it (as before: one
transaction). Every transaction that reads the workflow
(:meth:`~.arango_workflows.WorkflowOps.workflow_space`: claims, completions, resets, and
every bulk transaction as it begins) checks it, under the exclusive jobs lock:

* lease running, another run's guard: ``StoreUnavailable`` (503, retry): nothing is handed
  out from a half-applied update and no two bulk runs interleave their chunks;
* lease over (the run's process died): a bulk transaction of the same operation and
  arguments **takes it over** (writes its own guard at once) and yields ``True`` (resumed):
  the operation completes its predecessor's work, because it is written to complete when
  rerun over its own partial state (initialize_jobs recomputes every status from the graph;
  reset_job_status, process_changed_job_inputs and auto-tune select what they change
  independently of what they write, or are told they resume). Any other caller gets 503
  while this process reruns the operation in a background thread (:meth:`ChunkOps.complete`),
  which takes the guard over the same way, or does nothing if the guard it was started for
  is gone or taken over by then (so a completed operation is never run again, which could
  reset jobs that started since). If that process dies too, the lease runs out again and
  the next caller starts over: no manual step.

Because only transactions holding the workflow's exclusive jobs lock read and write the
guard, two callers can never both take one over.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from torc_graph import model
from torc_graph.errors import StoreUnavailable
from torc_graph.store.aql import BULK_FIELD, Query
from torc_graph.store.arango_connection import dumps
from torc_graph.store.bulk import BULK_OPERATIONS

log = logging.getLogger(__name__)

_WF = model.GlobalCollection.WORKFLOWS.value
#: Per updated document beyond its JSON text (as :data:`.arango.DOC_OVERHEAD`).
OVERHEAD = 128
#: Bytes the server's computed values may add to a job (two claim-order arrays of 4 numbers).
COMPUTED_MARGIN = 256
#: (workflow, guard owner) pairs this process is completing in a background thread.
_completing: set[tuple[str, str]] = set()
_completing_lock = threading.Lock()


class Superseded(Exception):
    """A background rerun found the guard it was started for gone or taken over: the
    interrupted run was completed by another caller, so it does nothing (not a rerun of a
    completed operation, which could reset jobs that run since)."""


class ChunkOps:
    """Mixin of :class:`~torc_graph.store.arango.ArangoStore` (uses its ``_tx``, ``_run``,
    ``_next_chunk``, ``transaction``, ``workflow_space`` and ``settings``)."""

    @contextlib.contextmanager
    def bulk_transaction(self, workflow: str, operation: str = "initialize_jobs",
                         **args: Any) -> Iterator[bool]:
        """See :meth:`GraphStore.bulk_transaction` (module doc): yields whether this run took
        over an interrupted run of the same operation and arguments. Raises as
        :meth:`transaction`, StoreUnavailable while another run holds the guard; on an
        exception the current chunk rolls back and the guard of committed chunks stays until
        its lease ends."""
        tx = self._tx()
        if tx is not None:  # joins the outer transaction as it is
            yield bool(tx.resumed)
            return
        with self.transaction(workflow):
            tx = self._tx()
            tx.chunked = True
            tx.operation, tx.op_args, tx.owner = operation, dict(args), uuid.uuid4().hex
            tx.completing = getattr(self._local, "completing", None)
            self.workflow_space(workflow)  # NotFound; the guard check below (may take over)
            yield tx.resumed
            self.clear_guard(workflow, tx)  # ours, if a chunk set it or we took it over

    def set_guard(self, workflow: str, tx: Any, *, take: bool = False) -> None:
        """Write the guard of the bulk transaction ``tx`` in it, its lease renewed from the
        server's clock: only over no guard or its own (``take``: over any, a takeover).
        Raises StoreUnavailable if another run took it over meanwhile (this run's lease ran
        out between two chunks): the current chunk then rolls back."""
        q = Query()
        w = q.collection(_WF)
        guard = {"op": tx.operation, "args": tx.op_args, "owner": tx.owner}
        lease = int(self.settings.bulk_lease * 1000)
        cond = "" if take else (f"AND (w.{BULK_FIELD} == null OR "
                                f"w.{BULK_FIELD}.owner == {q.value(tx.owner)}) ")
        text = (f"FOR w IN {w} FILTER w._key == {q.value(workflow)} {cond}"
                f"UPDATE w WITH {{{BULK_FIELD}: MERGE({q.value(guard)}, "
                f"{{until: DATE_NOW() + {q.value(lease)}}})}} IN {w} RETURN 1")
        if not self._run(text, q, f"workflow {workflow}"):
            raise self._lost(workflow, tx)

    def clear_guard(self, workflow: str, tx: Any) -> None:
        """Remove this bulk transaction's guard, in its last chunk (writes nothing when there
        is none: the ``_rev`` stays). Raises StoreUnavailable if this run committed chunks (or
        took a guard over) and another run took the guard over meanwhile."""
        q = Query()
        w = q.collection(_WF)
        text = (f"FOR w IN {w} FILTER w._key == {q.value(workflow)} "
                f"AND w.{BULK_FIELD}.owner == {q.value(tx.owner)} "
                f"UPDATE w WITH {{{BULK_FIELD}: null}} IN {w} OPTIONS {{keepNull: false}} RETURN 1")
        if not self._run(text, q, f"workflow {workflow}") and (tx.chunks > 1 or tx.resumed):
            raise self._lost(workflow, tx)

    @staticmethod
    def _lost(workflow: str, tx: Any) -> StoreUnavailable:
        log.error("workflow %s: a %s lost its guard to another caller (its lease of a chunk "
                  "ran out); this chunk is rolled back", workflow, tx.operation)
        return StoreUnavailable(
            f"workflow {workflow}: this {tx.operation} took longer than its lease between two "
            "chunks and another caller took it over; retry later")

    def check_guard(self, workflow: str, doc: Mapping[str, Any], now: int) -> None:
        """The guard check of a transaction that read the workflow document ``doc`` at server
        time ``now`` (ms; module doc). Reads outside transactions pass. Raises
        StoreUnavailable (503) while another run's lease lasts, or after it when the caller
        cannot resume it (the rerun then starts in the background); a bulk transaction of
        the same operation takes an expired guard over."""
        tx = self._tx()
        guard = doc.get(BULK_FIELD)
        if tx is not None and tx.completing is not None:  # a background rerun, first check
            if not isinstance(guard, Mapping) or guard.get("owner") != tx.completing:
                raise Superseded  # someone else completed the guard or took it over
            tx.completing = None  # found: taken over below
        if not guard or tx is None:
            return
        if not isinstance(guard, Mapping):  # written by an earlier build: no lease, no args
            guard = {"op": str(guard), "args": {}, "owner": "", "until": 0}
        op = guard.get("op")
        if tx.owner is not None and guard.get("owner") == tx.owner:
            return
        if int(guard.get("until") or 0) > now:
            raise StoreUnavailable(
                f"workflow {workflow} is being changed by {op} in several ArangoDB "
                f"transactions; retry in {(int(guard['until']) - now) // 1000 + 1} s or later")
        if tx.owner is not None and (op, guard.get("args") or {}) == (tx.operation, tx.op_args):
            tx.resumed = True  # ours now: committed with our first chunk, or cleared
            self.set_guard(workflow, tx, take=True)
            log.warning("workflow %s: resuming an interrupted %s", workflow, op)
            return
        self.complete(workflow, guard)
        raise StoreUnavailable(
            f"workflow {workflow}: an interrupted {op} is being completed; retry later")

    def complete(self, workflow: str, guard: Mapping[str, Any]) -> None:
        """Rerun the interrupted bulk operation ``guard`` names, in a background thread of this
        process (once per guard per process); errors are logged. An operation this process
        did not register is logged and left to a process that did."""
        fn = BULK_OPERATIONS.get(str(guard.get("op")))
        if fn is None:
            log.error("workflow %s: no bulk operation %r registered in this process to "
                      "complete", workflow, guard.get("op"))
            return
        token = (workflow, str(guard.get("owner")))
        with _completing_lock:
            if token in _completing:
                return
            _completing.add(token)

        def run() -> None:
            self._local.completing = token[1]
            try:
                fn(self, workflow, **dict(guard.get("args") or {}))
                log.warning("workflow %s: completed an interrupted %s", workflow, guard.get("op"))
            except Superseded:
                log.info("workflow %s: the interrupted %s was completed by another caller",
                         workflow, guard.get("op"))
            except Exception:
                log.exception("workflow %s: completing an interrupted %s failed", workflow,
                              guard.get("op"))
            finally:
                self._local.completing = None
                with _completing_lock:
                    _completing.discard(token)

        threading.Thread(target=run, name=f"complete-{guard.get('op')}-{workflow}",
                         daemon=True).start()

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
