"""Graph operations of the ArangoDB store: neighbors, joins, reachability, derived edges.

Reachability is computed level by level as set operations: one query per level expands the
whole frontier at once over the edge index (``FILTER e._from IN @frontier``), so a multi-start
traversal touches each reachable edge once (an AQL traversal per start vertex would cost
O(starts x reachable)). A query per level: ``depth + 1`` queries for a DAG of that depth. No
query uses AQL's traversal syntax; those that load documents by runtime ids declare the
collections with ``WITH`` (required in a cluster before 3.12.6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torc_graph import model
from torc_graph.errors import InvalidInput
from torc_graph.store.aql import (
    HIDDEN_FIELDS,
    NO_LIMIT,
    Query,
    collection_name,
    edge_collection_name,
    endpoint_collections,
    seq_expr,
)
from torc_graph.store.filters import Direction, Where
from torc_graph.store.records import Neighbor

ID_PATTERN = model.ID_PATTERN


def clean(doc: Any) -> Any:
    """The document without the store's hidden attributes."""
    if isinstance(doc, dict) and not HIDDEN_FIELDS.isdisjoint(doc):
        doc = {k: v for k, v in doc.items() if k not in HIDDEN_FIELDS}
    return doc


def check_ids(ids: Sequence[str] | None) -> list[str] | None:
    """The ids as a list, each well-formed. Raises InvalidInput."""
    if ids is None:
        return None
    if isinstance(ids, str):
        raise InvalidInput("expected a list of document ids")
    for i in ids:
        if not isinstance(i, str) or not ID_PATTERN.match(i):
            raise InvalidInput(f"invalid document id {i!r}")
    return list(ids)


def ends(direction: Direction) -> tuple[str, str]:
    if direction == "out":
        return "_from", "_to"
    if direction == "in":
        return "_to", "_from"
    raise InvalidInput(f"invalid direction {direction!r}")


def _limit(q: Query, skip: int, limit: int | None) -> str:
    if not skip and limit is None:
        return ""
    return f" LIMIT {q.value(int(skip))}, {q.value(NO_LIMIT if limit is None else int(limit))}"


class GraphOps:
    """Mixin of :class:`~torc_graph.store.arango.ArangoStore` (uses its ``_run``,
    ``_insert_prepared`` and ``_charge``)."""

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
        near, far = ends(direction)
        q = Query()
        e = q.collection(edge_collection_name(edge, workflow))
        q.declare(endpoint_collections(str(edge), workflow, direction))
        starts = check_ids(start_ids)
        parts = [f"FOR e IN {e}"]
        if starts is not None:
            parts.append(f"FILTER e.{near} IN {q.value(starts)}")
        parts.append(q.filter("e", edge_where))
        parts.append(f"LET v = DOCUMENT(e.{far})")
        if where is not None:
            parts.append("FILTER v != null " + " ".join(f"AND {x}" for x in q.where("v", where)))
        parts.append(f"SORT {seq_expr('e')} RETURN {{e: e, v: v}}")
        rows = self._run(" ".join(parts), q, f"edges {edge}")
        return [Neighbor(r["e"][near], clean(r["e"]), clean(r["v"])) for r in rows]

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
    ) -> list[dict[str, Any]]:
        near, far = ends(direction)
        q = Query()
        c = q.collection(collection_name(collection, workflow))
        e = q.collection(edge_collection_name(edge, workflow))
        q.declare(endpoint_collections(str(edge), workflow, direction))
        text = f"FOR d IN {c} {q.filter('d', where)} {q.sort('d', None)}" + _limit(q, skip, limit)
        text += (
            f" FOR e IN {e} FILTER e.{near} == d._id SORT {seq_expr('d')}, {seq_expr('e')} "
            f"RETURN {{d: d, e: e, o: DOCUMENT(e.{far})}}"
        )
        rows = self._run(text, q, f"edges {edge}")
        out = []
        for r in rows:
            d, o = clean(r["d"]), clean(r["o"])
            pair = {"from": d, "to": o} if direction == "out" else {"from": o, "to": d}
            out.append({**pair, "edge": clean(r["e"])})
        return out

    def _levels(
        self, workflow: str, edge: str, starts: list[str], where: Where | None, through: bool
    ) -> dict[str, int]:
        """``{id: depth}`` of every vertex reachable from ``starts`` over ``edge`` outbound
        (minimal depth; a start vertex only if reachable over >= 1 edge). With ``through``,
        only vertices matching ``where`` are entered."""
        name = edge_collection_name(edge, workflow)
        depth: dict[str, int] = {}
        frontier = list(dict.fromkeys(starts))
        level = 0
        while frontier:
            level += 1
            q = Query()
            e = q.collection(name)
            text = f"FOR e IN {e} FILTER e._from IN {q.value(frontier)} "
            if through and where:
                q.declare(endpoint_collections(str(edge), workflow, "out"))
                text += "LET v = DOCUMENT(e._to) FILTER v != null AND " + " AND ".join(q.where("v", where)) + " "
            text += "COLLECT t = e._to RETURN t"
            frontier = [t for t in self._run(text, q, f"edges {edge}") if t not in depth]
            for t in frontier:
                depth[t] = level
        return depth

    def descendants(
        self,
        workflow: str,
        edge: str,
        start_ids: Sequence[str],
        *,
        skip: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        starts = check_ids(start_ids) or []
        if not starts:
            return []
        edge_collection_name(edge, workflow)
        reach = self._levels(workflow, edge, starts, None, False)
        if not reach:
            return []
        q = Query()
        q.declare(endpoint_collections(str(edge), workflow, "out"))
        text = (
            f"FOR r IN {q.value([[i, d] for i, d in reach.items()])} LET v = DOCUMENT(r[0]) "
            f"FILTER v != null SORT r[1], {seq_expr('v')}" + _limit(q, skip, limit) + " RETURN v"
        )
        return [clean(d) for d in self._run(text, q, f"edges {edge}")]

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
        definition = model.EDGE_DEFINITIONS.get(model.Edge(str(edge))) if model.is_edge(str(edge)) else None
        if definition is None or len(definition.to_collections) != 1:
            raise InvalidInput(f"update_descendants needs an edge with one target collection: {edge!r}")
        target = collection_name(definition.to_collections[0].value, workflow)
        ids = check_ids(start_ids)
        Query().patch("d", patch)  # validate before any query
        if ids is None:
            q = Query()
            src = q.collection(collection_name(definition.from_collections[0].value, workflow))
            ids = self._run(f"FOR d IN {src} {q.filter('d', start_where)} RETURN d._id", q, edge)
        reach = self._levels(workflow, edge, ids, where, through_matching_only)
        keys = [i.split("/", 1)[1] for i in reach if i.split("/", 1)[0] == target]
        if not keys:
            return []
        q = Query()
        vc = q.collection(target)
        flt = " ".join(f"AND {x}" for x in q.where("d", where))
        tx = self._tx()
        if tx is not None and tx.chunked:  # the matching targets in order, then key batches
            text = (f"FOR k IN {q.value(keys)} FOR d IN {vc} FILTER d._key == k {flt} "
                    f"SORT {seq_expr('d')} RETURN {{k: d._key, b: LENGTH(TO_STRING(d))}}")
            return self.update_keys(target, self._run(text, q, f"edges {edge}"), patch)
        text = (
            f"LET targets = (FOR k IN {q.value(keys)} FOR d IN {vc} FILTER d._key == k {flt} "
            f"SORT {seq_expr('d')} RETURN d) "
            f"LET u = (FOR d IN targets UPDATE d WITH {q.patch('d', patch)} IN {vc} "
            "OPTIONS {mergeObjects: false, keepNull: true} "
            "RETURN {k: NEW._key, b: LENGTH(TO_STRING(NEW))}) "
            "RETURN {keys: u[*].k, bytes: SUM(u[*].b)}"
        )
        row = self._run(text, q, f"edges {edge}")[0]
        self._charge(row["bytes"], after=True)
        return row["keys"]

    def derive_edges(self, workflow: str, out_edge: str, producer_edge: str, consumer_edge: str) -> int:
        q = Query()
        out = q.collection(edge_collection_name(out_edge, workflow))
        prod = q.collection(edge_collection_name(producer_edge, workflow))
        cons = q.collection(edge_collection_name(consumer_edge, workflow))
        text = (
            f"FOR p IN {prod} FOR c IN {cons} FILTER c._to == p._to "
            f"COLLECT f = p._from, t = c._from AGGREGATE ps = MIN({seq_expr('p')}), "
            f"cs = MIN({seq_expr('c')}) "
            f"FILTER LENGTH((FOR b IN {out} FILTER b._from == f AND b._to == t LIMIT 1 RETURN 1)) == 0 "
            "SORT ps, cs RETURN {_from: f, _to: t}"
        )
        candidates = self._run(text, q, f"edges {out_edge}")
        if candidates:
            self._insert_prepared(edge_collection_name(out_edge, workflow), candidates, workflow)
        return len(candidates)

