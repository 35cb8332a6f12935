"""A live line for a background task the CLI waits for (``initialize_jobs`` of a large
workflow): ``initialize_jobs: setting job resources and status (2/4), 3.1 s`` on a terminal,
erased when the task ends; nothing when stderr is not a terminal."""

from __future__ import annotations

import time
from typing import Any, TextIO


class TaskLine:
    """``client.on_task_progress``: redraws one line per poll of a running task."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.started: dict[str, float] = {}
        self.shown = False

    def __call__(self, task: dict[str, Any]) -> None:
        if not self.tty:
            return
        key = str(task.get("_key"))
        start = self.started.setdefault(key, time.monotonic())
        if task.get("state") != "running":
            if self.shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self.shown = False
            return
        total = task.get("total")
        count = f" ({task.get('done', 0)}/{total})" if total else ""
        self.stream.write(f"\r\x1b[K{task.get('operation')}: {task.get('phase')}{count}, "
                          f"{time.monotonic() - start:.1f} s")
        self.stream.flush()
        self.shown = True
