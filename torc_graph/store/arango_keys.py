"""Keys and insertion order on ArangoDB: one database-wide sequence counter.

The protocol wants generated keys that are decimal, increase in insertion order across all
collections, and exceed every decimal key a caller supplied. ArangoDB's key generators are per
collection, and in a cluster the traditional generator's ``track()`` of user keys does nothing,
so the store keeps one counter document ``torc_graph_ticks/seq`` (``{value: N}``) and reserves
``n`` numbers with one standalone query (an UPSERT that adds ``n``; a caller's decimal key K
first raises the counter to K). No placeholder documents exist, so nothing can collide.

Every stored document carries its number in the attribute ``_torc_seq`` (indexed in every
collection): queries sort and page by it (keyset). A generated ``_key`` is that number as text.

The reservation runs outside any stream transaction, so the counter is never locked for the
length of one: a rolled-back insert leaves a gap (harmless). Within one workflow, writers are
serialized by the exclusive lock on its jobs collection, so numbers reserved later are inserted
later. A write-write conflict on the counter (errno 1200, concurrent reservations) or a
duplicate first insert (1210) is retried; the query is atomic, so a retry never double-counts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from arango import errno
from arango.exceptions import ArangoServerError

from torc_graph.store.arango_layout import TICKS

COUNTER_KEY = "seq"
#: Largest number the counter hands out (JSON integers stay exact up to 2^53).
MAX_SEQ = 2**53 - 1
RETRIES = 8

RESERVE_AQL = (
    "UPSERT {_key: @key} "
    "INSERT {_key: @key, value: @floor + @n} "
    "UPDATE {value: MAX([OLD.value, @floor]) + @n} "
    "IN @@ticks RETURN NEW.value"
)


def floor_of(keys: Sequence[str]) -> int:
    """The largest decimal key among ``keys`` below 2^53 (else 0)."""
    nums = [int(k) for k in keys if isinstance(k, str) and k.isdigit() and k.isascii()]
    return max((n for n in nums if 0 < n <= MAX_SEQ), default=0)


def reserve(execute, n: int, floor: int = 0) -> list[int]:
    """Reserve ``n`` consecutive sequence numbers above ``floor``; return them in order.

    ``execute(text, bind_vars)`` runs a standalone query and returns its rows (driver errors
    propagate). Retries write-write conflicts with jittered backoff, then re-raises.
    """
    if n <= 0 and not floor:
        return []
    bind: dict[str, Any] = {"key": COUNTER_KEY, "floor": int(floor), "n": int(n), "@ticks": TICKS}
    for attempt in range(RETRIES):
        try:
            last = int(execute(RESERVE_AQL, bind)[0])
            break
        except ArangoServerError as exc:
            retry = exc.error_code in (errno.CONFLICT, errno.UNIQUE_CONSTRAINT_VIOLATED)
            if not retry or attempt == RETRIES - 1:
                raise
            time.sleep(random.uniform(0, 0.002 * 2**attempt))
    return list(range(last - n + 1, last + 1))
