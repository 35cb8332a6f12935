"""The worker's heartbeat: one request per interval renews the lease of all its jobs.

The interval is the workflow config's ``heartbeat_seconds`` (the claim responses carry the
current value). The answer names the jobs whose lease this node lost (the runner kills them
and does not report them) and whether the workflow was canceled. A 409 means the node's own
lease expired: every job it held has been given to others (:class:`LeaseLost`).
"""

from __future__ import annotations

from typing import Any

from torc_graph.client import ApiError
from torc_graph.runner.execution import Execution
from torc_graph.runner.link import ServerLink

DEFAULT_SECONDS = 30.0


class LeaseLost(Exception):
    """The server declared this worker dead; its jobs run elsewhere now."""


class Heartbeat:
    """When to send the next heartbeat, and sending it."""

    def __init__(self, seconds: float = DEFAULT_SECONDS):
        self.seconds = float(seconds)
        self.next_at = 0.0

    def update(self, seconds: Any, now: float) -> None:
        """Adopt the server's ``heartbeat_seconds``; the first value starts the clock."""
        if seconds:
            if self.next_at == 0.0 or float(seconds) != self.seconds:
                self.next_at = now + float(seconds)
            self.seconds = float(seconds)

    def renewed(self, now: float) -> None:
        """A claim also renewed the lease: the next heartbeat is due one interval later."""
        self.next_at = now + self.seconds

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def beat(self, execution: Execution, link: ServerLink, job_keys: list[str],
             now: float) -> dict[str, Any]:
        """Send one heartbeat for the jobs ``job_keys``. Returns ``{"lost_jobs": [...], "is_canceled": bool}`` (empty
        against a torc v0.6.4 server). Raises LeaseLost on 409, LinkDown during an outage."""
        try:
            resp = link.call(execution.heartbeat, job_keys)
        except ApiError as exc:
            if exc.status == 409:
                raise LeaseLost(exc.message) from None
            raise
        self.next_at = now + self.seconds
        if resp is None:
            self.next_at = float("inf")  # no heartbeat on this server
            return {}
        self.update(resp.get("heartbeat_seconds"), now)
        return resp
