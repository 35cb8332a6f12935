"""Per-process caches behind the dashboard summary: a workflow's stage structure and the
latest result of each of its jobs.

The dashboard refreshes a workflow's summary on its events (up to twice a second per open
page). What changes between refreshes is job statuses and new results; the structure (which
job is in which stage, the ``blocks`` edges between stages) changes only when jobs or edges are
added, deleted or renamed. So:

* :class:`StageIndex` (job key -> stage, names, stage edges) is rebuilt when its fingerprint —
  the number of jobs, the key of the last inserted job, the number of ``blocks`` edges —
  changes, and at least every :data:`STRUCTURE_TTL` seconds (a job renamed with PUT, or an
  edge replaced by another, shows under its new stage within that time).
* :class:`ResultIndex` (job key -> latest result) follows the ``results`` collection, which
  only grows in insertion order: each refresh reads only the results inserted after the last
  one it saw (:meth:`~torc_graph.store.base.GraphStore.find_after`); if that one is gone or the
  count does not add up (results deleted), it is rebuilt from scratch.

Both are read with a constant number of store calls. The caches are per process (gunicorn
workers each hold their own), bounded to :data:`MAX_WORKFLOWS` workflows each, and guarded by
a lock (gthread workers serve requests in threads).
"""

from __future__ import annotations

import datetime as _dt
import operator
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from torc_graph import model
from torc_graph.errors import NotFound
from torc_graph.store.base import GraphStore

JOBS = model.Collection.JOBS.value
RESULTS = model.Collection.RESULTS.value
BLOCKS = model.Edge.BLOCKS.value
#: Workflows with at most this many jobs are drawn job by job; larger ones by stage.
STAGE_THRESHOLD = 300
#: Seconds a stage structure is trusted while its fingerprint is unchanged (a rebuild of a
#: 10^5-job workflow costs about a second of CPU: at most once a minute per process).
STRUCTURE_TTL = 60.0
#: Workflows whose indexes a process keeps (least recently used ones are dropped).
MAX_WORKFLOWS = 8
#: Result fields kept per job: return code, completion time, cause, run id.
RESULT_FIELDS = ("job_key", "return_code", "completion_time", "cause", "run_id")

# The first digit and the separator before it: ``sim_a1_b2`` -> ``sim_``; ``step3`` -> none.
_SUFFIX = re.compile(r"^([^\d]*[_\-.])?[^\d_\-.]*\d")


def stage_of(name: Any) -> str:
    """A job name's stage: from the first name part (split on ``_ - .``) that contains a
    digit on, everything is ``*``: ``work_17`` -> ``work_*``, ``sim_a1_b2`` -> ``sim_*``,
    ``train_0.01`` -> ``train_*``, ``step3`` -> ``step*``; a name without digits is its own
    stage."""
    name = "" if name is None else str(name)
    m = _SUFFIX.match(name)
    if m is None:
        return name
    return (m.group(1) or name[:m.end() - 1]) + "*"


def epoch(value: Any) -> float | None:
    """An ISO 8601 time (naive: this machine's local time, as the runner writes it) or an
    epoch number (seconds, or milliseconds when it is that large) as epoch seconds; else
    None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / (1000.0 if value > 1e11 else 1.0)
    if isinstance(value, str) and value:
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def stages_of(names: list[Any]) -> list[str]:
    """``[stage_of(n) for n in names]``, several times faster on generated names: a name's
    stage depends only on the part before its first digit, so names that differ only in their
    trailing digits (``sim_17``, ``sim_18``) share one computation."""
    memo: dict[tuple[str, bool], str] = {}  # (name without trailing digits, had none)
    out = []
    for name in names:
        if not isinstance(name, str):
            out.append(stage_of(name))
            continue
        head = name.rstrip("0123456789")
        key = (head, len(head) == len(name))  # "x" and "x<digits>" differ
        stage = memo.get(key)
        if stage is None:
            stage = memo[key] = stage_of(name)
        out.append(stage)
    return out


@dataclass
class StageIndex:
    """A workflow's stage structure. ``stages[i]`` is ``{"stage", ...}`` (plus ``key`` and
    ``name`` when not aggregated); ``stage_of_key`` maps each job key to its stage's index."""

    fingerprint: tuple
    built: float
    aggregated: bool
    names: dict[str, Any]
    stage_of_key: dict[str, int]
    stages: list[dict[str, Any]]
    stage_edges: list[dict[str, Any]]


@dataclass
class ResultIndex:
    """The latest result of each job: ``latest[job_key] = (return_code, completion_time,
    cause, run_id, completion time as epoch seconds or None)``; ``last_key``/``count``: the
    newest result read and how many were."""

    latest: dict[str, tuple] = field(default_factory=dict)
    last_key: str | None = None
    count: int = 0


T = TypeVar("T")


class _Lru(Generic[T]):
    """A small thread-safe LRU map of (store, workflow) -> T."""

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict[tuple, T] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> T | None:
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: tuple, value: T) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_STAGES: _Lru[StageIndex] = _Lru(MAX_WORKFLOWS)
_RESULTS: _Lru[ResultIndex] = _Lru(MAX_WORKFLOWS)


def _cache_key(store: GraphStore, workflow: str) -> tuple:
    """Stores opened on the same URL see the same data, so they share the entries."""
    return (getattr(store, "url", None) or id(store), workflow)


def last_key(store: GraphStore, collection: str, workflow: str, count: int) -> str | None:
    """The key of the last inserted of the ``count`` documents of ``collection`` (None if 0)."""
    if count == 0:
        return None
    docs = store.find(collection, workflow, skip=count - 1, limit=1)
    return docs[0]["_key"] if docs else None


def snapshot(store: GraphStore, workflow: str, *, clock: Callable[[], float] = time.monotonic
             ) -> tuple[StageIndex, list[tuple[str, str]]]:
    """``(stage structure, [(job key, status), ...] in insertion order)``: the structure from
    the cache when its fingerprint still matches, else rebuilt from the same read as the
    statuses (one pass over the jobs either way)."""
    jobs_count = store.count(JOBS, workflow)
    fingerprint = (jobs_count, last_key(store, JOBS, workflow, jobs_count),
                   store.count(BLOCKS, workflow))
    key = _cache_key(store, workflow)
    cached = _STAGES.get(key)
    now = clock()
    if cached is not None and cached.fingerprint == fingerprint \
            and now - cached.built < STRUCTURE_TTL:
        return cached, store.values(JOBS, workflow, ("_key", "status"))
    rows = store.values(JOBS, workflow, ("_key", "name", "status"))
    index = _build_stage_index(store, workflow, rows, fingerprint, now)
    _STAGES.put(key, index)
    return index, [(k, s) for k, _, s in rows]


def _build_stage_index(store: GraphStore, workflow: str, rows: list[tuple], fingerprint: tuple,
                       now: float) -> StageIndex:
    """From ``rows`` = ``[(job key, name, ...)]`` and the ``blocks`` edges."""
    aggregated = len(rows) > STAGE_THRESHOLD
    keys = [r[0] for r in rows]
    names = dict(zip(keys, (r[1] for r in rows)))
    labels = stages_of([r[1] for r in rows]) if aggregated else keys
    order = list(dict.fromkeys(labels))  # stages in order of first appearance
    position = {label: i for i, label in enumerate(order)}
    stage_of_key = dict(zip(keys, map(position.__getitem__, labels)))
    stages: list[dict[str, Any]] = [{"stage": label} for label in order] if aggregated else \
        [{"stage": k, "key": k, "name": names[k]} for k in keys]
    edges = store.values(BLOCKS, workflow, ("_from", "_to"))
    froms, tos = zip(*edges) if edges else ((), ())
    # Every blocks endpoint is ``jobs__<WF>/<key>``: cut the prefix and count the stage pairs
    # with C-level maps (another id maps to no stage and is left out).
    cut = operator.itemgetter(slice(len(model.make_id(JOBS, workflow, "")), None))
    counts = Counter(zip(map(stage_of_key.get, map(cut, froms)),
                         map(stage_of_key.get, map(cut, tos))))
    edges = [{"from": stages[a]["stage"], "to": stages[b]["stage"], "count": n}
             for (a, b), n in counts.items() if a is not None and b is not None]
    return StageIndex(fingerprint, now, aggregated, names, stage_of_key, stages, edges)


def result_index(store: GraphStore, workflow: str) -> ResultIndex:
    """The latest result of each job, reading only the results inserted since the last call
    (a fresh copy: callers may not mutate it)."""
    key = _cache_key(store, workflow)
    total = store.count(RESULTS, workflow)
    cached = _RESULTS.get(key)
    index = None
    if cached is not None and cached.count <= total:
        index = _advance(store, workflow, cached, total)
    if index is None:
        index = ResultIndex()
        rows = store.values(RESULTS, workflow, RESULT_FIELDS)
        index.latest = {r[0]: (*r[1:], epoch(r[2])) for r in rows}
        index.count = len(rows)
        index.last_key = last_key(store, RESULTS, workflow, index.count)
    _RESULTS.put(key, index)
    return index


def _advance(store: GraphStore, workflow: str, cached: ResultIndex,
             total: int) -> ResultIndex | None:
    """``cached`` plus the results inserted after its last one; None when it cannot be
    advanced (its last result was deleted, or the count does not add up)."""
    if cached.count == total:
        # Unchanged, unless as many were deleted as added: then the last one differs.
        same = last_key(store, RESULTS, workflow, total) == cached.last_key
        return cached if same else None
    if cached.last_key is None:
        return None
    try:
        new = store.find_after(RESULTS, workflow, cached.last_key, limit=total - cached.count)
    except NotFound:
        return None
    if cached.count + len(new) != total:
        return None
    latest = dict(cached.latest)
    for r in new:
        row = tuple(r.get(f) for f in RESULT_FIELDS[1:])
        latest[r.get("job_key")] = (*row, epoch(row[1]))
    return ResultIndex(latest, new[-1]["_key"] if new else cached.last_key, total)
