"""Whether the process that wrote a record is still alive (background tasks, staged creations).

A record names its process: ``{"host", "pid", "started", "boot", "ticks"}``. On Linux ``boot``
is the kernel's boot id and ``ticks`` the process's start in clock ticks since boot (field 22 of
``/proc/<pid>/stat``): both are fixed for the life of the process, so a reused pid is told apart
exactly. ``started`` (psutil's wall-clock start time) is kept for records without them and for
other systems; it is derived from the boot time the kernel reports *now*, which moves when the
clock is stepped (NTP on a fresh machine), so it is compared with a tolerance of
:data:`STARTED_TOLERANCE` seconds, never exactly.

On this host the process table decides; for another host only the record's last sign of life can
(older than the caller's limit: presumed dead). A zombie process counts as gone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

import psutil

#: Seconds by which two readings of one process's wall-clock start time may differ.
STARTED_TOLERANCE = 5.0


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """Start of process ``pid`` in clock ticks since boot (Linux), None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])  # field 22 of the man page; fields here start at field 3
    except (IndexError, ValueError):
        return None


_BOOT = _boot_id()


def this_process() -> dict[str, Any]:
    """The record of the calling process."""
    record: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(),
                              "started": psutil.Process().create_time()}
    ticks = _start_ticks(os.getpid())
    if _BOOT is not None and ticks is not None:
        record.update(boot=_BOOT, ticks=ticks)
    return record


def _same_process(proc: Mapping[str, Any], p: psutil.Process) -> bool:
    if proc.get("boot") is not None and proc.get("ticks") is not None and _BOOT is not None:
        return proc["boot"] == _BOOT and _start_ticks(p.pid) == proc["ticks"]
    return abs(p.create_time() - float(proc["started"])) <= STARTED_TOLERANCE


def gone(proc: Mapping[str, Any] | None, last_sign_ms: int, now_ms: int, stale_ms: int) -> bool:
    """Whether the process of record ``proc`` is gone (see the module docstring)."""
    proc = proc if isinstance(proc, Mapping) else {}
    if proc.get("host") != socket.gethostname():
        return now_ms - int(last_sign_ms or 0) > stale_ms
    try:
        p = psutil.Process(int(proc["pid"]))
        # A zombie (killed, not yet reaped: e.g. its parent died too) runs nothing.
        return not _same_process(proc, p) or p.status() == psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, TypeError, ValueError):
        return True
