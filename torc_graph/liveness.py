"""Whether the process that wrote a record is still alive (background tasks, staged creations).

A record names its process: ``{"host", "pid", "started"}`` (process start time, so a reused pid
is not mistaken for it). On this host the process table decides; for another host only the
record's last sign of life can (older than the caller's limit: presumed dead). A zombie
process counts as gone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

import psutil


def this_process() -> dict[str, Any]:
    """The record of the calling process."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": psutil.Process().create_time()}


def gone(proc: Mapping[str, Any] | None, last_sign_ms: int, now_ms: int, stale_ms: int) -> bool:
    """Whether the process of record ``proc`` is gone (see the module docstring)."""
    proc = proc if isinstance(proc, Mapping) else {}
    if proc.get("host") != socket.gethostname():
        return now_ms - int(last_sign_ms or 0) > stale_ms
    try:
        p = psutil.Process(int(proc["pid"]))
        # A zombie (killed, not yet reaped: e.g. its parent died too) runs nothing.
        return p.create_time() != proc.get("started") or p.status() == psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError, ValueError):
        return True
