"""SIGINT/SIGTERM handling of a runner: the handlers are installed for the run (main thread
only) and the previous ones restored after it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalTrap:
    """Routes SIGINT/SIGTERM to ``handler(signum)`` while active (a context manager)."""

    def __init__(self, handler: Callable[[int], None]):
        self._handler = handler
        self._old: dict[int, Any] = {}

    def __enter__(self) -> SignalTrap:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, lambda signum, frame: self._handler(signum))
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()
