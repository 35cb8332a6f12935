"""Background tasks: a long operation runs in a server thread; a task document reports it.

``POST /workflows/{wf}/initialize_jobs?async=true`` and ``POST /workflow_specifications?async=true``
answer 202 at once with a task document (:func:`start`); ``GET /workflows/{wf}/tasks/{key}`` or
``GET /tasks/{key}`` reads it (:func:`get_task`), so an HTTP client never waits on a 10^6-job
operation. A task document (global collection ``tasks``):

``{"_key", "workflow", "operation", "state": "running"|"succeeded"|"failed", "phase",
"done", "total", "created", "updated", "heartbeat" (epoch ms), "result" (the operation's response
body on success), "error" (the one torc error body on failure), "retryable": bool}``

The operation itself keeps its atomicity (``initialize_jobs`` is one transaction), so a task
that dies with its server process leaves nothing half-visible. It cannot stay "running" either:
the document names its process (host, pid, process start time), and a read that finds that
process gone (same host) or the heartbeat older than :data:`STALE_MS` (another host) marks it
``failed`` with ``retryable: true`` (compare-and-set on ``_rev``, so a task finishing at that
moment keeps its own outcome).

Progress: the operation reports ``(phase, done, total)`` through :class:`Progress`; a heartbeat
thread stores it every :data:`HEARTBEAT_SECONDS`. On SQLite the store has one writer, so while
the operation's own transaction is open that write waits and the stored progress advances
between transactions (a one-transaction operation shows ``running``, then its outcome).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torc_graph import liveness, model
from torc_graph.engine.common import now_ms, require_workflow, to_key
from torc_graph.errors import NotFound, RevisionConflict, TorcGraphError, error_body
from torc_graph.store.base import GraphStore

log = logging.getLogger("torc_graph.tasks")

TASKS = model.GlobalCollection.TASKS.value
RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
#: Operations that create their workflow (deleted again if their process dies).
CREATING = frozenset({"create_workflow_from_specification"})
HEARTBEAT_SECONDS = 2.0
#: A running task whose process is on another host is presumed dead after this long without a
#: heartbeat (the heartbeat of a SQLite task waits for the operation's transaction; SQLite tasks
#: are on this host and judged by their process instead).
STALE_MS = 10 * 60 * 1000
INTERNAL_ERROR = "Internal server error in a background task; see the server log for details"
INTERRUPTED = ("the server process running this task stopped before it finished; nothing of "
               "it was committed: run the operation again")


def delete_tasks_of(store: GraphStore, workflow: str) -> None:
    """Delete the task documents of a workflow (with the workflow: they must not outlive it)."""
    store.delete_many(TASKS, None, {"workflow": workflow})


@dataclass(frozen=True)
class Accepted:
    """A handler's result meaning "202 Accepted": ``body`` is the task document."""

    body: dict[str, Any]


class Progress:
    """What a running operation reports: ``(phase, done, total)``, read by the heartbeat; and
    the task's own writes (:meth:`record`, :meth:`succeed`)."""

    def __init__(self, store: GraphStore | None = None, key: str | None = None) -> None:
        self._lock = threading.Lock()
        self._value: tuple[str, int, int | None] = ("started", 0, None)
        self.store, self.key = store, key
        #: Whether the operation marked the task succeeded itself (:meth:`succeed`).
        self.succeeded = False

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        with self._lock:
            self._value = (phase, int(done), total)

    def fields(self) -> dict[str, Any]:
        with self._lock:
            phase, done, total = self._value
        return {"phase": phase, "done": done, "total": total}

    def record(self, **fields: Any) -> None:
        """Write ``fields`` into the task document now (e.g. the workflow a creation made)."""
        if self.store is not None and self.key is not None:
            self.store.update(TASKS, None, self.key, {**fields, "updated": now_ms()})

    def succeed(self, result: Any) -> None:
        """Mark the task succeeded, inside the operation's own transaction: it commits with the
        operation's writes or not at all (so "running" in a dead process means "not committed")."""
        fields = self.fields()
        if fields["total"] is not None:
            fields["done"] = fields["total"]
        self.record(**fields, state=SUCCEEDED, result=result)
        self.succeeded = True


def _process_started() -> float:
    return liveness.this_process()["started"]


def start(store: GraphStore, workflow: str | None, operation: str,
          fn: Callable[[Progress], Mapping[str, Any]]) -> Accepted:
    """Record a running task and run ``fn(progress)`` in a daemon thread of this process.

    ``workflow`` is None for an operation that creates one (it records the key it creates,
    :meth:`Progress.record`; if its process dies before it succeeds, that workflow is deleted
    when the task is next read).

    Returns :class:`Accepted` with the task document. ``fn``'s result becomes ``result``; a
    :class:`TorcGraphError` becomes ``error`` (its own body, ``retryable`` false); anything else
    an internal error (logged; ``retryable`` true).
    """
    if workflow is not None:
        require_workflow(store, workflow)
    now = now_ms()
    # A random key of its own: tasks must not take keys from the counter that numbers
    # workflows (a fresh store's first workflow would otherwise be 2, not 1).
    doc = store.insert(TASKS, None, {
        "_key": f"t{secrets.token_hex(8)}", "workflow": workflow, "operation": operation, "state": RUNNING, "phase": "queued",
        "done": 0, "total": None, "created": now, "updated": now, "heartbeat": now,
        "result": None, "error": None, "retryable": False,
        "process": liveness.this_process(),
    })
    progress = Progress(store, doc["_key"])
    threading.Thread(target=_run, args=(store, doc["_key"], fn, progress), daemon=True,
                     name=f"task-{doc['_key']}").start()
    return Accepted(public(doc))


def _run(store: GraphStore, key: str, fn: Callable[[Progress], Any], progress: Progress) -> None:
    finished = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, key, progress, finished), daemon=True,
                            name=f"task-{key}-heartbeat")
    beat.start()
    try:
        outcome: dict[str, Any] = {"state": SUCCEEDED, "result": fn(progress)}
    except TorcGraphError as exc:
        outcome = {"state": FAILED, "error": exc.body(), "retryable": exc.status >= 500}
    except Exception:  # noqa: BLE001  the thread's last resort: record, log, never raise
        log.exception("background task %s failed", key)
        outcome = {"state": FAILED, "error": error_body(500, INTERNAL_ERROR), "retryable": True}
    finished.set()
    beat.join()
    if outcome["state"] == SUCCEEDED and progress.succeeded:
        return  # recorded in the operation's own transaction: a reader may have seen it final
    fields = progress.fields()
    if outcome["state"] == SUCCEEDED and fields["total"] is not None:
        fields["done"] = fields["total"]
    try:
        store.update(TASKS, None, key, {**fields, **outcome, "updated": now_ms()})
    except Exception:  # noqa: BLE001  e.g. the store is gone: a reader will mark it failed
        log.exception("could not record the outcome of background task %s", key)


def _heartbeat(store: GraphStore, key: str, progress: Progress, finished: threading.Event) -> None:
    while not finished.wait(HEARTBEAT_SECONDS):
        try:
            doc = store.get(TASKS, None, key)
            if doc.get("state") != RUNNING:
                return  # finished in the operation's transaction: its record is final
            store.update(TASKS, None, key, {**progress.fields(), "heartbeat": now_ms(),
                                            "updated": now_ms()}, rev=doc["_rev"])
        except RevisionConflict:
            continue  # written meanwhile (progress, or the final state): the next beat reads it
        except Exception:  # noqa: BLE001  a missed heartbeat is harmless
            log.warning("heartbeat of background task %s failed", key, exc_info=True)


def _dead(doc: Mapping[str, Any], now: int) -> bool:
    """Whether a ``running`` task's process is gone."""
    return liveness.gone(doc.get("process"), int(doc.get("heartbeat") or 0), now, STALE_MS)


def _settle(store: GraphStore, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc``, settled first if it is running in a dead process: a creation whose workflow
    was published (it died between publishing and recording) succeeded; otherwise the task
    failed (retryable) and what a dead creation staged is removed (never visible)."""
    if doc.get("state") != RUNNING or not _dead(doc, now_ms()):
        return doc
    outcome: dict[str, Any] = {"state": FAILED, "retryable": True,
                               "error": error_body(500, INTERRUPTED)}
    wf = doc.get("workflow")
    if doc.get("operation") in CREATING and wf:
        if store.workflow_exists(wf):
            with contextlib.suppress(NotFound):
                outcome = {"state": SUCCEEDED, "result": store.workflow_space(wf).workflow}
        else:
            store.discard_staged(wf)
    try:
        return store.update(TASKS, None, doc["_key"], {**outcome, "updated": now_ms()},
                            rev=doc["_rev"])
    except RevisionConflict:  # it changed meanwhile (finished, or settled by another reader)
        return store.get(TASKS, None, doc["_key"])


def public(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The task as the API shows it (without its process record)."""
    return {k: v for k, v in doc.items() if k not in ("process", "_id", "_rev", "_oldRev")}


def get_task(store: GraphStore, workflow: str | None, key: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/tasks/{key}`` (or ``GET /tasks/{key}``, ``workflow`` None: any
    task): the task (settled if its process died).

    Raises NotFound (404) for a missing workflow or a task of another workflow."""
    if workflow is not None:
        require_workflow(store, workflow)
    key = to_key(key, TASKS, None)
    try:
        doc = store.get(TASKS, None, key)
    except NotFound:
        doc = None
    if doc is None or (workflow is not None and doc.get("workflow") != workflow):
        raise NotFound(f"Error: Document not found. Operation: Get task with key={key}")
    return public(_settle(store, doc))


def get_any_task(store: GraphStore, key: str) -> dict[str, Any]:
    """``GET /tasks/{key}``: a task whatever its workflow (creations start without one)."""
    return get_task(store, None, key)


def list_tasks(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``GET /workflows/{wf}/tasks``: ``{"items": [tasks of the workflow, oldest first]}``."""
    require_workflow(store, workflow)
    docs = store.find(TASKS, None, {"workflow": workflow})
    return {"items": [public(_settle(store, d)) for d in docs]}
