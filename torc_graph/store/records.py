"""The records the graph store takes and returns: documents, listing pages, traversal hops, a
workflow's global documents and the initial job state (plain data, re-exported by
:mod:`.base`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torc_graph.store.filters import Where

Document = dict[str, Any]


@dataclass
class Page:
    """One page of a listing: ``items`` and the number of matches ignoring skip/limit."""

    items: list[Document]
    total: int


@dataclass
class Neighbor:
    """One hop of a traversal: the start vertex id, the edge and the vertex at the other end
    (``None`` if the edge dangles)."""

    start_id: str
    edge: Document
    vertex: Document | None


@dataclass
class WorkflowSpace:
    """The three global documents of a workflow."""

    workflow: Document
    config: Document
    status: Document
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InitialJobState:
    """What ``initialize_jobs`` writes to every job of a workflow
    (:meth:`~.base.GraphStore.set_initial_job_state`).

    ``resources``: ``(resource requirements id, patch)`` in order; a job with a ``requires`` edge
    to several takes the last one's patch. ``default``: the patch for jobs with none of them, or
    whose patch sets ``num_cpus_path`` to 0. ``schedulers``: scheduler ids in order; a job with a
    ``scheduled_bys`` edge to some takes the last one's id into ``scheduler_path`` (others keep
    theirs). Status: a job matching ``blockable`` with an inbound ``blocks`` edge from a job
    whose status is not in ``non_blocking`` becomes ``blocked``; else, unless its status is in
    ``keep`` (or it is ``blocked``), it becomes ``ready``.
    """

    resources: Sequence[tuple[str, Mapping[str, Any]]]
    default: Mapping[str, Any]
    num_cpus_path: str
    schedulers: Sequence[str]
    scheduler_path: str
    blockable: Where
    non_blocking: Sequence[str]
    keep: Sequence[str]
    blocked: str
    ready: str
