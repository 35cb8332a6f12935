"""Event helpers (behavior doc §4.17) on a real SQLite store."""

from __future__ import annotations

import pytest

from torc_graph.engine import documents, events
from torc_graph.errors import InvalidInput, NotFound


def add_events(store, wf, *pairs):
    return [store.insert("events", wf, {"timestamp": ts, "category": cat, "type": "t"})
            for ts, cat in pairs]


def test_latest_event_timestamp(store, wf):
    assert events.get_latest_event_timestamp(store, wf) == {"timestamp": None}
    add_events(store, wf, (1700000000300, "job"), (1700000000100, "worker"),
               (1700000000200, "job"))
    assert events.get_latest_event_timestamp(store, wf) == {"timestamp": 1700000000300}
    # Events posted through the API get the server's clock.
    posted = documents.add_document(store, wf, "events", {"category": "workflow"})
    assert events.get_latest_event_timestamp(store, wf) == {"timestamp": posted["timestamp"]}
    with pytest.raises(NotFound):
        events.get_latest_event_timestamp(store, "nope")


def test_events_after_timestamp(store, wf):
    e1, e2, e3, e4 = add_events(store, wf, (1700000000100, "job"), (1700000000300, "worker"),
                                (1700000000123, "job"), (1700000000124, "job"))
    env = events.get_events_after_timestamp(store, wf, 1700000000123.0)
    assert [e["_key"] for e in env["items"]] == [e2["_key"], e4["_key"]]  # storage order
    assert env == {"items": env["items"], "skip": 0, "max_limit": 100000, "count": 2,
                   "total_count": 2, "has_more": False}
    assert [e["_key"] for e in events.get_events_after_timestamp(
        store, wf, 1700000000123.5)["items"]] == [e2["_key"], e4["_key"]]
    assert [e["_key"] for e in events.get_events_after_timestamp(
        store, wf, 1700000000123.9, category="job")["items"]] == [e4["_key"]]
    assert [e["_key"] for e in events.get_events_after_timestamp(
        store, wf, 0, limit=2)["items"]] == [e1["_key"], e2["_key"]]
    # skip is accepted and ignored.
    skipped = events.get_events_after_timestamp(store, wf, 0, skip=3)
    assert skipped["skip"] == 0 and skipped["count"] == 4 and skipped["has_more"] is False
    assert events.get_events_after_timestamp(store, wf, "1700000000300")["items"] == []
    assert events.get_events_after_timestamp(store, wf, 0, category="none")["items"] == []


def test_events_after_timestamp_errors(store, wf):
    with pytest.raises(InvalidInput):
        events.get_events_after_timestamp(store, wf, "soon")
    with pytest.raises(InvalidInput):
        events.get_events_after_timestamp(store, wf, float("nan"))
    with pytest.raises(NotFound):
        events.get_events_after_timestamp(store, "nope", 0)


def test_normalize_timestamp():
    assert events.normalize_timestamp(1700000000123.0) == 1700000000123
    assert isinstance(events.normalize_timestamp(1700000000123.0), int)
    assert events.normalize_timestamp(1.5) == 1.5
    assert events.normalize_timestamp("12") == 12
