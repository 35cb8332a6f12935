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
    count = len(items)
    total = count if total is None else total
    return {
        "items": list(items),
        "skip": skip,
        "max_limit": MAX,
        "count": count,
        "total_count": total,
        "has_more": skip + count < total,
    }


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
