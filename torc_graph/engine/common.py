"""Small helpers every engine module uses: workflow lookup, key/id normalization, envelopes."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from typing import Any

from torc_graph import model
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store.base import GraphStore

MAX = model.MAX_TRANSFER_RECORDS


def require_workflow(store: GraphStore, workflow: str) -> None:
    """Raise NotFound (404, torc's message) unless the workflow exists."""
    if not store.workflow_exists(workflow):
        raise NotFound(f"Error: Document not found. Operation: Get workflow with key={workflow}")


def to_key(value: str, collection: str, workflow: str | None) -> str:
    """Accept a bare key or a full id (``jobs__12/34``) for a document of ``collection`` in
    ``workflow`` and return the key. An id of another collection or workflow is InvalidInput."""
    if "/" not in value:
        if not model.KEY_PATTERN.match(value):
            raise InvalidInput(f"invalid key {value!r}")
        return value
    try:
        base, wf, key = model.split_id(value)
    except ValueError:
        raise InvalidInput(f"invalid document id {value!r}") from None
    if base != collection or wf != workflow:
        expected = model.collection_name(collection, workflow)
        raise InvalidInput(f"id {value!r} does not refer to the collection {expected}")
    return key


def envelope(items: Sequence[Any], skip: int, total: int | None = None) -> dict[str, Any]:
    """The torc list envelope (behavior doc §2.2)."""
    return {"items": list(items), **envelope_fields(len(items), skip, total)}


def envelope_fields(count: int, skip: int, total: int | None = None) -> dict[str, Any]:
    """The envelope's fields after ``items``, for ``count`` items (in torc's order)."""
    total = count if total is None else total
    return {
        "skip": skip,
        "max_limit": MAX,
        "count": count,
        "total_count": total,
        "has_more": skip + count < total,
    }


#: The largest skip/limit: stores bind them as 64-bit integers (SQLite's OFFSET/LIMIT).
MAX_COUNT = 2**63 - 1


def count_param(name: str, value: Any, default: int | None = None) -> int | None:
    """A skip/limit value as a non-negative int. The OpenAPI declares them as numbers, so
    ``10.0`` is accepted; ``10.5``, a negative value or one over :data:`MAX_COUNT` is
    InvalidInput naming the parameter."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidInput(f"{name} must be a non-negative integer, got {value!r}")
        value = int(value)
    if not 0 <= value <= MAX_COUNT:
        raise InvalidInput(f"{name} must be an integer from 0 to {MAX_COUNT}, got {value!r}")
    return value


def clamp_limit(limit: int | None) -> int:
    """``limit`` defaults to and is capped at MAX_TRANSFER_RECORDS."""
    if limit is None or limit > MAX:
        return MAX
    return limit


def now_ms() -> int:
    """Current time in integer milliseconds since the epoch (event timestamps)."""
    return time.time_ns() // 1_000_000


def now_iso() -> str:
    """``2024-05-01T12:00:00.000Z`` (workflow timestamps, as JavaScript's toISOString)."""
    t = _dt.datetime.now(_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
