"""Event helpers: the latest event timestamp and the events after a timestamp (behavior doc
§4.17). Timestamps are integer milliseconds since the epoch (the server sets them on POST)."""

from __future__ import annotations

import math
import sys
from typing import Any

from torc_graph import model
from torc_graph.engine.common import clamp_limit, envelope, require_workflow
from torc_graph.engine.queries import count_param
from torc_graph.errors import InvalidInput
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import Ge, Gt

EVENTS = model.Collection.EVENTS.value


def get_latest_event_timestamp(store: GraphStore, workflow: str) -> dict[str, Any]:
    """``{"timestamp": <largest event timestamp>}``, or ``{"timestamp": None}`` without events.

    Raises NotFound for a missing workflow.
    """
    require_workflow(store, workflow)
    # Only numeric timestamps count: an event PUT may have stored anything in the field.
    latest = store.find(
        EVENTS, workflow, {"timestamp": Ge(-sys.float_info.max)}, order_by=[("timestamp", True)], limit=1
    )
    return {"timestamp": latest[0]["timestamp"] if latest else None}


def normalize_timestamp(value: Any) -> int | float:
    """A path timestamp (``1700000000123`` or ``1700000000123.0``) as a number; integral values
    become ints so comparisons with the stored integer timestamps stay exact."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise InvalidInput(f"timestamp must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"timestamp must be a finite number, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def get_events_after_timestamp(
    store: GraphStore,
    workflow: str,
    timestamp: Any,
    category: str | None = None,
    skip: Any = 0,
    limit: Any = None,
) -> dict[str, Any]:
    """Events with ``timestamp`` greater than the given one (and the category, if given), in
    storage order, at most ``limit``. ``skip`` is ignored (torc v0.6.4): the envelope reports
    skip 0 and ``has_more`` false, so clients paging with ``iter_documents`` stop after one call.

    Raises NotFound for a missing workflow.
    """
    del skip  # accepted and ignored, as documented
    after = normalize_timestamp(timestamp)
    limit = clamp_limit(count_param("limit", limit))
    require_workflow(store, workflow)
    where: dict[str, Any] = {"timestamp": Gt(after)}
    if category is not None:
        where["category"] = category
    items = store.find(EVENTS, workflow, where, limit=limit)
    env = envelope(items, 0)
    env["has_more"] = False
    return env
