"""The compute node a runner registers as, and its ``worker`` start/stop events."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torc_graph.client import ApiError, Client, ServerUnreachable, seg
from torc_graph.runner.link import ServerLink
from torc_graph.runner.resources import Resources

logger = logging.getLogger("torc_graph.runner")


class ComputeNode:
    """This worker's ``compute_nodes`` document on workflow ``wf``."""

    def __init__(self, client: Client, wf: str, link: ServerLink, resources: Resources,
                 output_dir: Path):
        self.client = client
        self.wf = wf
        self.link = link
        self.resources = resources
        self.output_dir = output_dir
        self.hostname = socket.gethostname()
        #: The document's ``scheduler`` object; None: a local worker's.
        self.scheduler: dict[str, Any] | None = None
        self.doc: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        assert self.doc is not None
        return str(self.doc["_key"])

    def register(self, stop: Callable[[], bool] = lambda: False) -> str:
        """Create a new active compute node document (again after a lost lease); returns its
        key. Waits through a server outage; raises ServerUnreachable when giving up."""
        self.doc = self.link.wait(self.client.add_document, self.wf, "compute_nodes", {
            "hostname": self.hostname,
            "pid": os.getpid(),
            "start_time": str(_dt.datetime.now()),
            "resources": self.resources.to_body(),
            "is_active": True,
            "scheduler": self.scheduler or {"hostname": self.hostname, "scheduler_type": "local",
                                            "output_dir": str(self.output_dir)},
        }, stop=stop)
        return self.key

    def deactivate(self) -> None:
        """Mark the node inactive with its duration; failures are logged, not raised."""
        if self.doc is None:
            return
        node = dict(self.doc)
        node["is_active"] = False
        try:
            start = _dt.datetime.strptime(node["start_time"], "%Y-%m-%d %H:%M:%S.%f")
            node["duration_seconds"] = time.time() - start.timestamp()
        except (KeyError, ValueError):
            pass
        node.pop("_oldRev", None)
        try:  # the server may have changed it (lease renewals)
            fresh = self.client.get(f"/workflows/{seg(self.wf)}/compute_nodes/{seg(self.key)}")
            node["_rev"] = fresh.get("_rev", node.get("_rev"))
            self.client.update_document(self.wf, "compute_nodes", node)
        except (ApiError, ServerUnreachable) as exc:
            logger.warning("could not mark compute node inactive: %s", exc)

    def event(self, kind: str, message: str, **extra: Any) -> None:
        """Post a ``worker`` event; failures are logged (torc ignores them too)."""
        event = {"category": "worker", "type": kind, "node_name": self.hostname,
                 "message": message, **extra}
        try:
            self.client.add_event(self.wf, event)
        except (ApiError, ServerUnreachable) as exc:
            logger.warning("could not post worker %s event: %s", kind, exc)
