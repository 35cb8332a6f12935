"""The courier: the runner's round trips to the server, one at a time, on a background thread.

The runner's loop hands a round trip (``complete_jobs`` with the piggy-backed claim, or a claim
that does not wait) to :class:`Courier` and goes on reaping and starting jobs; when the answer
(or the exception) is in, the courier calls ``wake`` (the loop's wake-up pipe) and the loop takes
it with :meth:`Courier.take` and handles it exactly as it would have handled a synchronous call.
So the loop never waits on the network or on the store's durable commit, while everything else
stays as it was: one request in flight at a time, a completion leaves the runner's queue only
when the server's answer for it has been handled, and calls that must not overlap a request in
flight (heartbeat, releases, long polls, shutdown) wait for :attr:`Courier.busy` to clear.

With an embedded store the courier's calls run the store's Python code, holding the GIL for
milliseconds; a loop woken by a job's exit would wait up to the interpreter's switch interval
(5 ms) for it while job slots stay empty. While a courier exists the switch interval is at most
:data:`SWITCH_INTERVAL` (restored when the last courier closes).

The thread is a daemon: if the runner dies with a request in flight, the server has committed
it or not (one transaction); either way no completion was acknowledged before its answer, and
the jobs of a dead runner come back when its lease expires.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

#: Longest the loop waits for the GIL held by the courier's thread (seconds).
SWITCH_INTERVAL = 0.0005

_switch_guard = threading.Lock()
_switch_users = 0
_switch_saved = 0.0


def _shorten_switch_interval(on: bool) -> None:
    """Count one more (``on``) or one fewer courier; the first sets, the last restores."""
    global _switch_users, _switch_saved
    with _switch_guard:
        if on:
            if _switch_users == 0:
                _switch_saved = sys.getswitchinterval()
                sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
            _switch_users += 1
        else:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


class Courier:
    """One background thread that runs one call at a time (see the module docstring)."""

    def __init__(self, wake: Callable[[], None]):
        self._wake = wake
        self._cond = threading.Condition()
        self._call: Callable[[], Any] | None = None
        self._outcome: tuple[Any, BaseException | None] | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="torc-graph-courier",
                                        daemon=True)
        _shorten_switch_interval(True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A call was sent and its outcome not taken yet."""
        return self._busy

    @property
    def answered(self) -> bool:
        """The call's outcome is in (take it with :meth:`take`)."""
        return self._outcome is not None

    def send(self, call: Callable[[], Any]) -> None:
        """Run ``call()`` on the courier's thread. Raises RuntimeError while busy."""
        with self._cond:
            if self._busy:
                raise RuntimeError("the courier carries one call at a time")
            self._busy = True
            self._call = call
            self._cond.notify()

    def take(self, block: bool = False) -> tuple[Any, BaseException | None] | None:
        """The finished call's ``(result, exception)`` (the courier is free again), or None
        while it runs (``block``: wait for it)."""
        with self._cond:
            while block and self._busy and self._outcome is None:
                self._cond.wait()
            outcome, self._outcome = self._outcome, None
            if outcome is not None:
                self._busy = False
            return outcome

    def close(self) -> None:
        """Stop the thread once the call in flight (if any) returns."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        _shorten_switch_interval(False)
        self._thread.join(timeout=0.1 if self._busy else 5.0)

    def _serve(self) -> None:
        while True:
            with self._cond:
                while self._call is None and not self._closed:
                    self._cond.wait()
                if self._call is None:
                    return
                call, self._call = self._call, None
            try:
                outcome: tuple[Any, BaseException | None] = (call(), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, raised there
                outcome = (None, exc)
            with self._cond:
                self._outcome = outcome
                self._cond.notify_all()
                closed = self._closed
            if not closed:  # after close the loop's wake-up pipe may be gone
                self._wake()
