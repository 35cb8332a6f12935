"""The runner's link to the server: retries with exponential backoff that never block the loop.

While the server cannot be reached (connection refused, timeout, or a 502/503/504 answer), a
call raises :class:`LinkDown` at once and the link stays down until its retry time; the runner
keeps its jobs running, queues their completions and tries again then (0.5 s, 1 s, 2 s, ... up
to ``max_delay``). After ``give_up_seconds`` of failures (the workflow config's
``compute_node_wait_for_healthy_database_minutes``) the call raises the last
ServerUnreachable: the runner stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from torc_graph.client import ApiError, ServerUnreachable

logger = logging.getLogger("torc_graph.runner")
T = TypeVar("T")
#: HTTP statuses that mean "the server is there but cannot answer now".
TRANSIENT_STATUSES = (502, 503, 504)


class LinkDown(Exception):
    """The server is unreachable right now; retry at :attr:`ServerLink.retry_at`."""


class ServerLink:
    """Backoff state shared by every server call of one runner (thread-safe: the loop and
    its courier call through it)."""

    def __init__(self, give_up_seconds: float, first_delay: float = 0.5, max_delay: float = 8.0):
        self.give_up_seconds = float(give_up_seconds)
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.down_since: float | None = None
        self.retry_at = 0.0
        self._delay = first_delay
        self.outages = 0  #: number of outages seen
        self._lock = threading.Lock()

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def ready(self, now: float) -> bool:
        return now >= self.retry_at

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``. Raises LinkDown while the server is unreachable (the call
        is not attempted before the retry time), ServerUnreachable once the outage lasted
        ``give_up_seconds``, ApiError for other error answers."""
        now = time.monotonic()
        if now < self.retry_at:
            raise LinkDown()
        try:
            result = fn(*args, **kwargs)
        except ServerUnreachable as exc:
            self._failed(now, exc, exc)
        except ApiError as exc:
            if exc.status not in TRANSIENT_STATUSES:
                raise
            self._failed(now, exc, ServerUnreachable("the server", str(exc)))
        if self.down_since is not None:
            with self._lock:
                if self.down_since is not None:
                    logger.warning("the server answers again after %.1f s",
                                   time.monotonic() - self.down_since)
                self.down_since = None
                self.retry_at = 0.0
                self._delay = self.first_delay
        return result

    def _failed(self, now: float, exc: Exception, final: ServerUnreachable) -> None:
        with self._lock:
            if self.down_since is None:
                self.down_since = now
                self.outages += 1
            if now - self.down_since >= self.give_up_seconds:
                raise final
            self.retry_at = now + self._delay
            logger.warning("%s; retrying in %.1f s", exc, self._delay)
            self._delay = min(self._delay * 2, self.max_delay)
        raise LinkDown() from None

    def wait(self, fn: Callable[..., T], *args: Any, stop: Callable[[], bool] = lambda: False,
             **kwargs: Any) -> T:
        """``call`` that sleeps through an outage (for setup and shutdown, when no job runs).
        Raises ServerUnreachable when giving up or when ``stop()`` turns true meanwhile."""
        while True:
            try:
                return self.call(fn, *args, **kwargs)
            except LinkDown:
                if stop():
                    raise ServerUnreachable("the server", "stopped while it was unreachable") \
                        from None
                time.sleep(max(self.retry_at - time.monotonic(), 0.0))
