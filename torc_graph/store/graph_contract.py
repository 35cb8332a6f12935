"""The graph part of the store contract (:class:`~torc_graph.store.base.GraphStore` inherits
it): traversals, joins, derived edges and the set-based initial job state. The docstrings are
the contract, like those of :mod:`torc_graph.store.base`."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from torc_graph.store.filters import Direction, HasEdge, In, NotIn, Where
from torc_graph.store.records import Document, InitialJobState, Neighbor


class GraphQueries(abc.ABC):
    """Graph operations of a store (see :class:`~torc_graph.store.base.GraphStore`)."""

    @abc.abstractmethod
    def neighbors(
        self,
        workflow: str,
        edge: str,
        direction: Direction,
        start_ids: Sequence[str] | None = None,
        *,
        where: Where | None = None,
        edge_where: Where | None = None,
    ) -> list[Neighbor]:
        """One hop over ``edge`` from each start vertex (all edges of the collection if
        ``start_ids`` is None), in edge insertion order.

        ``direction="out"`` follows ``_from → _to``; ``"in"`` follows ``_to → _from``.
        ``where`` filters the other vertex (edges whose other vertex is missing are kept only
        when ``where`` is None, with ``vertex=None``); ``edge_where`` filters the edge document
        (e.g. ``{"data.run_id": 3}``).
        """

    @abc.abstractmethod
    def join(
        self,
        workflow: str,
        collection: str,
        edge: str,
        direction: Direction,
        where: Where | None = None,
        *,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Document | None]]:
        """Inner join of ``collection`` documents (filtered by ``where``, then skip/limit, in
        insertion order) with their ``edge`` edges in ``direction``.

        One row per edge: outbound ``{"from": doc, "to": other, "edge": e}``; inbound
        ``{"from": other, "to": doc, "edge": e}``. ``other`` is None if the edge dangles.
        Rows come in document order, then edge insertion order.
        """

    @abc.abstractmethod
    def descendants(
        self,
        workflow: str,
        edge: str,
        start_ids: Sequence[str],
        *,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[Document]:
        """Every vertex reachable from the start vertices over ``edge`` outbound, transitively,
        each vertex once, in breadth-first order (a start vertex is included only if reachable
        from a start vertex over at least one edge). Cycles are safe."""

    @abc.abstractmethod
    def update_descendants(
        self,
        workflow: str,
        edge: str,
        patch: Mapping[str, Any],
        *,
        start_ids: Sequence[str] | None = None,
        start_where: Where | None = None,
        where: Where | None = None,
        through_matching_only: bool = False,
    ) -> list[str]:
        """Set-based: apply ``patch`` to every vertex reachable over ``edge`` (outbound,
        transitively) from the start set, that matches ``where``; return their keys.

        The start set is ``start_ids``, or the vertices of the edge's source collection that
        match ``start_where``. Start vertices themselves are updated only if reachable from
        another start vertex. With ``through_matching_only=True`` the traversal does not expand
        past a vertex that fails ``where`` (every vertex on the path after the start must match);
        otherwise it expands through every vertex and only the update is filtered.
        SQLite: one statement regardless of the size of the reachable set; ArangoDB: one
        set-based query per level of it (each reachable edge read once), then one update.
        """

    @abc.abstractmethod
    def derive_edges(self, workflow: str, out_edge: str, producer_edge: str, consumer_edge: str) -> int:
        """Set-based: for every vertex X with a ``producer_edge`` P→X and a ``consumer_edge``
        C→X, insert an ``out_edge`` P→C unless one already exists. Returns the number inserted.
        (``blocks`` from ``produces``/``needs`` and from ``stores``/``consumes``.)"""

    def dependencies_in_id_order(
        self, workflow: str, relations: Sequence[tuple[str, str | None]]
    ) -> bool:
        """Whether every dependency given by ``relations`` goes from a smaller to a larger id
        in the order (length, text): a strict total order, so True proves these dependencies
        form no cycle. For ids of one collection it is the numeric order of generated keys,
        which increase with insertion, so it nearly always holds.

        ``(E, None)`` means every ``E`` edge ``a -> b`` is a dependency ``a -> b``; ``(P, C)``
        means every pair of a ``P`` edge ``a -> x`` and a ``C`` edge ``b -> x`` is a dependency
        ``a -> b`` (a producer runs before a consumer). False means "not proven": the caller
        searches. Read-only. This default proves nothing (returns False); backends override it
        with set-based queries.
        """
        return False

    def set_initial_job_state(self, workflow: str, state: InitialJobState) -> None:
        """Apply :class:`InitialJobState` to the jobs of ``workflow``: atomic (call it inside the
        caller's transaction). Statuses are decided on the statuses before the call.

        This default runs one set-based update per resource requirements document, scheduler
        and status pass; backends may override it with fewer statements (SQLite: one, writing
        only the rows that change).
        """
        jobs = "jobs"
        for rr_id, patch in state.resources:
            self.update_many(jobs, workflow, None, patch,
                             edges=[HasEdge("requires", "out", {"_id": In([rr_id])})])
        rr_ids = [rr_id for rr_id, _ in state.resources]
        self.update_many(jobs, workflow, None, state.default,
                         edges=[HasEdge("requires", "out", {"_id": In(rr_ids)}, exists=False)])
        if any(patch[state.num_cpus_path] == 0 for _, patch in state.resources):
            self.update_many(jobs, workflow, {state.num_cpus_path: 0}, state.default)
        for sched_id in state.schedulers:
            self.update_many(jobs, workflow, None, {state.scheduler_path: sched_id},
                             edges=[HasEdge("scheduled_bys", "out", {"_id": In([sched_id])})])
        self.update_many(jobs, workflow, state.blockable, {"status": state.blocked},
                         edges=[HasEdge("blocks", "in", {"status": NotIn(state.non_blocking)})])
        self.update_many(jobs, workflow, {"status": NotIn((*state.keep, state.blocked))},
                         {"status": state.ready})
