"""The replayable event feed: a workflow's events after a given event, in insertion order,
and the follow loop a live stream (``GET /workflows/{wf}/events/stream``) is built on.

The cursor is an event's ``_key``. Pages follow the store's insertion order
(:meth:`~torc_graph.store.base.GraphStore.find_after`), not key order, so events with
caller-supplied keys are neither skipped nor repeated. On SQLite every write holds the database
write lock, so insertion order is commit order: an event a reader has not seen yet can only be
inserted after the last one it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from torc_graph import model
from torc_graph.engine.common import require_workflow
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store.base import GraphStore

EVENTS = model.Collection.EVENTS.value
#: Events per store read.
PAGE = 500


def events_after(store: GraphStore, workflow: str, after: str | None,
                 category: str | None = None, job: str | None = None,
                 limit: int = PAGE) -> list[dict[str, Any]]:
    """Events of ``workflow`` inserted after the event ``after`` (None: from the first), with
    the ``category`` / ``job_key`` if given, in insertion order, at most ``limit``.

    Raises NotFound for a missing workflow, InvalidInput (400) if ``after`` is no event of it.
    """
    require_workflow(store, workflow)
    where: dict[str, Any] = {}
    if category is not None:
        where["category"] = category
    if job is not None:
        where["job_key"] = job
    try:
        return store.find_after(EVENTS, workflow, after, where, limit=limit)
    except NotFound:
        if not store.workflow_exists(workflow):
            raise
        raise InvalidInput(f"Last-Event-ID {after!r} is not an event of workflow {workflow}")


def follow(store: GraphStore, workflow: str, after: str | None, *,
           category: str | None = None, job: str | None = None,
           poll_seconds: float = 0.5, heartbeat_seconds: float = 15.0,
           max_seconds: float = 3600.0,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[list[dict[str, Any]]]:
    """Yield pages of new events as they are written (an empty list when ``heartbeat_seconds``
    pass without one); stop when the workflow is deleted or after ``max_seconds``.

    Raises (on the first ``next``) InvalidInput if ``after`` is no event of the workflow;
    validate with :func:`events_after` first to answer 400 before streaming. Each wake-up is
    one indexed read; nothing runs between wake-ups. With filters, the cursor still advances
    past the events they hide, so a quiet filtered stream does not rescan them.
    """
    cursor = after
    deadline = time.monotonic() + max_seconds
    quiet_since = time.monotonic()
    while True:
        page = _page(store, workflow, cursor, category, job)
        if page is None:
            return  # the workflow was deleted
        events, cursor = page
        now = time.monotonic()
        if events:
            quiet_since = now
            yield events
            continue
        if now - quiet_since >= heartbeat_seconds:
            quiet_since = now
            yield []
        if now >= deadline:
            return
        sleep(min(poll_seconds, max(0.0, deadline - now)))


def _page(store: GraphStore, workflow: str, cursor: str | None, category: str | None,
          job: str | None) -> tuple[list[dict[str, Any]], str | None] | None:
    """(matching events, new cursor), or None once the workflow is gone."""
    try:
        if category is None and job is None:
            events = events_after(store, workflow, cursor)
            return events, (events[-1]["_key"] if events else cursor)
        # Filtered: scan unfiltered pages so the cursor moves past hidden events too.
        scanned = events_after(store, workflow, cursor)
    except NotFound:
        return None
    if not scanned:
        return [], cursor
    events = [e for e in scanned
              if (category is None or e.get("category") == category)
              and (job is None or e.get("job_key") == job)]
    return events, scanned[-1]["_key"]
