"""``GET /workflows/{workflow}/events/stream``: the workflow's events as Server-Sent Events.

Each event is one SSE message, ``id: <event _key>``, ``event: <category>``, ``data: <the
event document as JSON>``. A client that reconnects with ``Last-Event-ID`` (header, or the
``last_event_id`` query parameter for clients that cannot set headers) gets every event after
that one, in insertion order (:mod:`torc_graph.engine.event_feed`). Query filters:
``category``, ``job`` (a job key). A quiet stream sends ``: keepalive`` comments; it ends when
the workflow is deleted or after ``stream_max_seconds`` (clients reconnect).

Each open stream holds one gunicorn thread (gthread workers) and polls the store every
``stream_poll_seconds``; a process serves at most ``stream_connections`` streams, one more gets
503 with ``Retry-After`` and the torc error body. Authorization: the route is a GET, so the
``read`` permission of the auth table applies like any other read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import falcon

from torc_graph.api import params
from torc_graph.engine import event_feed
from torc_graph.engine.common import require_workflow
from torc_graph.errors import TorcGraphError
from torc_graph.store.base import GraphStore

PATH = "/workflows/{workflow}/events/stream"
RETRY_AFTER_SECONDS = 5


class StreamsBusy(TorcGraphError):
    """This worker process already serves its maximum of event streams (503)."""

    status = 503
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}


class _Slots:
    """A counting bound on the open streams of this process."""

    def __init__(self, limit: int):
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        """Raises StreamsBusy when all slots are taken."""
        with self._lock:
            if self.open >= self.limit:
                raise StreamsBusy(f"this server process already serves {self.limit} event "
                                  f"streams; retry in {RETRY_AFTER_SECONDS} s")
            self.open += 1

    def give(self) -> None:
        with self._lock:
            self.open -= 1


class _Body:
    """The response body: SSE text from the feed; gives its slot back exactly once, when the
    server closes it (client gone, stream ended) or it is collected unread."""

    def __init__(self, feed: Iterator[list[dict[str, Any]]], slots: _Slots, retry_ms: int):
        self._feed = feed
        self._slots = slots
        self._retry_ms = retry_ms
        self._released = False

    def __iter__(self) -> Iterator[bytes]:
        yield f"retry: {self._retry_ms}\n\n".encode()
        for events in self._feed:
            if not events:
                yield b": keepalive\n\n"
                continue
            yield "".join(message(e) for e in events).encode()

    def close(self) -> None:
        if not self._released:
            self._released = True
            self._feed.close()
            self._slots.give()

    def __del__(self) -> None:
        self.close()


def message(event: dict[str, Any]) -> str:
    """One SSE message for an event (``data`` is one line of JSON)."""
    data = json.dumps(event, separators=(",", ":"), default=str)
    kind = str(event.get("category") or "event").replace("\n", " ").replace("\r", " ")
    return f"id: {event['_key']}\nevent: {kind}\ndata: {data}\n\n"


class EventStreamResource:
    """The SSE responder (one per app; the slot count is per process, like the app)."""

    def __init__(self, store: GraphStore, settings: dict[str, Any]):
        self.store = store
        self.slots = _Slots(int(settings.get("stream_connections", 8)))
        self.poll = float(settings.get("stream_poll_seconds", 0.5))
        self.heartbeat = float(settings.get("stream_heartbeat_seconds", 15.0))
        self.max_seconds = float(settings.get("stream_max_seconds", 3600.0))

    def on_get(self, req: falcon.Request, resp: falcon.Response, workflow: str) -> None:
        """Raises NotFound (missing workflow), InvalidInput (unknown Last-Event-ID),
        StreamsBusy (503, no slot)."""
        require_workflow(self.store, workflow)
        after = req.get_header("Last-Event-ID") or params.query_value(req, "last_event_id", str)
        category = params.query_value(req, "category", str)
        job = params.query_value(req, "job", str)
        # A bad Last-Event-ID is a 400 before any byte is sent.
        event_feed.events_after(self.store, workflow, after or None, limit=1)
        self.slots.take()
        feed = event_feed.follow(
            self.store, workflow, after or None, category=category, job=job,
            poll_seconds=self.poll, heartbeat_seconds=self.heartbeat,
            max_seconds=self.max_seconds)
        resp.content_type = "text/event-stream"
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Accel-Buffering", "no")  # nginx: pass each message through
        resp.stream = _Body(feed, self.slots, int(self.poll * 1000) + 500)

