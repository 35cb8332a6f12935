"""The staged-creation block shared by the backends that stage workflow creations.

:meth:`GraphStore.staged_creation` is the same protocol on every staging backend: workflows this
thread creates inside the block stay invisible to everyone else, are published together when it
exits normally, and are removed when it raises. How a backend marks, publishes and removes a
staged workflow is its own (:mod:`.sqlite_staging`, :mod:`.arango_staging`); the block is this
one piece of code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)


class StagedBlock:
    """Mixin: :meth:`staged_creation` over four hooks of the backend's staging mixin."""

    def _staging(self) -> set[str] | None:
        """The workflows this thread is creating in a staged block (None outside one)."""
        raise NotImplementedError

    def _set_staging(self, keys: set[str] | None) -> None:
        """Enter (a fresh set) or leave (None) this thread's staged block."""
        raise NotImplementedError

    def _publish(self, keys: list[str]) -> None:
        """Make the staged workflows ``keys`` visible, atomically; StoreError if one of them
        was removed meanwhile (a sweep judged its creation abandoned)."""
        raise NotImplementedError

    def _compensate(self, key: str) -> None:
        """Remove a staged workflow of a block that raised."""
        raise NotImplementedError

    @contextlib.contextmanager
    def staged_creation(self) -> Iterator[None]:
        """See :meth:`GraphStore.staged_creation`. Nested blocks join the outermost one, which
        publishes; on any exception every workflow of the block is removed (a failure to remove
        one is logged: the backend's sweep removes it later) and the exception propagates."""
        if self._staging() is not None:
            yield
            return
        staged: set[str] = set()
        self._set_staging(staged)
        try:
            yield
            self._publish(sorted(staged))
        except BaseException:
            for key in sorted(staged):
                try:
                    self._compensate(key)
                except Exception as exc:  # noqa: BLE001  the sweep removes it later
                    log.warning("compensation of staged workflow %s failed: %s", key, exc)
            raise
        finally:
            self._set_staging(None)
