"""The bulk-operation registry of the graph store: the operations a backend may rerun after a
crash (:meth:`~.base.GraphStore.bulk_transaction`), and the outcomes of merged calls
(:meth:`~.base.GraphStore.transact_many`). Re-exported by :mod:`.base`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: The bulk operations a backend may rerun after a crash
#: (:meth:`~.base.GraphStore.bulk_transaction`): name -> ``fn(store, workflow, **args)``.
BULK_OPERATIONS: dict[str, Callable[..., Any]] = {}


def bulk_operation(name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Register ``fn(store, workflow, **args)`` as the bulk operation ``name`` (a decorator;
    the function is returned unchanged). Raises ValueError for a name registered twice."""

    def register(fn: Callable[..., T]) -> Callable[..., T]:
        if BULK_OPERATIONS.get(name, fn) is not fn:
            raise ValueError(f"bulk operation {name!r} is registered twice")
        BULK_OPERATIONS[name] = fn
        return fn

    return register


def unwrap_outcome(value: Any) -> Any:
    """A :meth:`~.base.GraphStore.transact_many` outcome for its caller: returned, or raised."""
    if isinstance(value, BaseException):
        raise value
    return value
