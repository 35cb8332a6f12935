"""SQLite graph operations: one-hop neighbors, joins with edges, transitive descendants (one
recursive CTE each), set-based updates of descendants, derived edges and the id-order proof of
acyclicity (a mixin of :class:`~torc_graph.store.sqlite.SQLiteStore`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from torc_graph.errors import InvalidInput
from torc_graph.store import sql as q
from torc_graph.store.filters import Direction, Where
from torc_graph.store.records import Document, Neighbor
from torc_graph.store.sqlite_collections import COLLS, SYSTEM, Coll, check_key, loads


class GraphOps:
    """Mixin of :class:`~torc_graph.store.sqlite.SQLiteStore` (uses its ``_db``, ``_coll``,
    ``_prefix`` and ``_select``)."""


    def _edge(self, edge: str, workflow: str) -> tuple[Coll, str]:
        name = q.edge_name(edge)
        c = COLLS[name]
        if c.is_global:
            return c, ""
        check_key(workflow)
        return c, workflow

    def neighbors(self, workflow: str, edge: str, direction: Direction,
                  start_ids: Sequence[str] | None = None, *, where: Where | None = None,
                  edge_where: Where | None = None) -> list[Neighbor]:
        c, wf = self._edge(edge, workflow)
        if direction not in ("out", "in"):
            raise InvalidInput(f"invalid direction {direction!r}")
        own, other = ("from_id", "to_id") if direction == "out" else ("to_id", "from_id")
        b = q.Binder()
        joins, doc_expr, vcond = q.other_joins(c.name, direction, f"e.{other}", wf, where, b)
        conds = [f"e.wf = {b(wf)}", vcond]
        if start_ids is not None:
            conds.append(f"e.{own} IN (SELECT value FROM json_each({b(q.dumps(list(start_ids)))}))")
        conds += q.where_doc(edge_where, "e", b, edge=True, prefix=self._prefix(c, wf))
        text = (f"SELECT e.doc, {doc_expr} FROM {c.table} e {joins} "
                f"WHERE {' AND '.join(conds)} ORDER BY e.seq")
        rows = self._db.read(lambda conn: conn.execute(text, b.params).fetchall())
        out = []
        for e_text, v_text in rows:
            e = loads(e_text)
            out.append(Neighbor(e["_from"] if direction == "out" else e["_to"], e,
                                None if v_text is None else loads(v_text)))
        return out

    def join(self, workflow: str, collection: str, edge: str, direction: Direction,
             where: Where | None = None, *, skip: int = 0,
             limit: int | None = None) -> list[dict[str, Document | None]]:
        c, wf = self._coll(collection, workflow)
        ec, ewf = self._edge(edge, workflow)
        if direction not in ("out", "in"):
            raise InvalidInput(f"invalid direction {direction!r}")
        own, other = ("from_id", "to_id") if direction == "out" else ("to_id", "from_id")
        b = q.Binder()
        cond = self._select(c, wf, where, (), b)
        lim = f"LIMIT {b(-1 if limit is None else int(limit))} OFFSET {b(int(skip or 0))}"
        joins, doc_expr, _ = q.other_joins(ec.name, direction, f"e.{other}", ewf, None, b)
        prefix = b(self._prefix(c, wf))
        # The page's rows carry their raw columns; documents are assembled only for rows that
        # have an edge (a page of 1,000 jobs without edges costs no JSON work).
        raw = "".join(f", t.{name}" for name in (["rev"] + [k.name for k in c.columns]
                                                 if c.columns else []))
        text = (f"SELECT {c.doc('d')}, e.doc, {doc_expr} FROM "
                f"(SELECT t.seq, t.key, t.doc{raw} FROM {c.table} t WHERE {cond} "
                f"ORDER BY t.seq {lim}) d "
                f"JOIN {ec.table} e ON e.wf = {b(ewf)} AND e.{own} = {prefix} || d.key {joins} "
                f"ORDER BY d.seq, e.seq")
        rows = self._db.read(lambda conn: conn.execute(text, b.params).fetchall())
        out = []
        for d_text, e_text, o_text in rows:
            d, e = loads(d_text), loads(e_text)
            o = None if o_text is None else loads(o_text)
            out.append({"from": d, "to": o, "edge": e} if direction == "out"
                       else {"from": o, "to": d, "edge": e})
        return out

    def descendants(self, workflow: str, edge: str, start_ids: Sequence[str], *, skip: int = 0,
                    limit: int | None = None) -> list[Document]:
        c, wf = self._edge(edge, workflow)
        b = q.Binder()
        wf_param = b(wf)
        cte = q.reach_cte(c.table, wf_param,
                              f"SELECT value FROM json_each({b(q.dumps(list(start_ids)))})", "")
        joins, doc_expr, _ = q.other_joins(c.name, "out", "r.id", wf, None, b)
        lim = f"LIMIT {b(-1 if limit is None else int(limit))} OFFSET {b(int(skip or 0))}"
        text = (f"WITH RECURSIVE {cte} SELECT {doc_expr} AS doc FROM r {joins} "
                f"WHERE {doc_expr} IS NOT NULL {lim}")
        rows = self._db.read(lambda conn: conn.execute(text, b.params).fetchall())
        return [loads(r[0]) for r in rows]

    def update_descendants(self, workflow: str, edge: str, patch: Mapping[str, Any], *,
                           start_ids: Sequence[str] | None = None, start_where: Where | None = None,
                           where: Where | None = None,
                           through_matching_only: bool = False) -> list[str]:
        c, wf = self._edge(edge, workflow)
        b = q.Binder()
        wf_param = b(wf)
        if start_ids is not None:
            start = f"SELECT value FROM json_each({b(q.dumps(list(start_ids)))})"
        else:
            parts = []
            for coll in q.other_end_collections(c.name, "in"):
                sc = COLLS[coll]
                parts.append(f"SELECT {b(self._prefix(sc, wf))} || t.key FROM {sc.table} t "
                             f"WHERE {self._select(sc, wf, start_where, (), b)}")
            start = " UNION ALL ".join(parts)
        through = ""
        if through_matching_only and where:
            # The target vertex of edge ``e`` must match ``where`` to be traversed.
            through = q.other_vertex_exists(c.name, "out", "e.to_id", where, wf, b, depth=9)
        cte = q.reach_cte(c.table, wf_param, start, through)
        keys: list[tuple[int, str]] = []
        with self._db.write() as conn:
            for coll in q.other_end_collections(c.name, "out"):
                tc = COLLS[coll]
                tb = q.Binder()
                tb.params = dict(b.params)
                setter = q.set_clause(tc.name, patch, tb, system=SYSTEM)
                prefix = self._prefix(tc, wf)
                cond = self._select(tc, wf, where, (), tb, alias="d")
                # The reachable rows are selected first (rowids, driven by r), then updated: the
                # planner cannot trade the walk for a scan of every vertex matching ``where``.
                text = (f"WITH RECURSIVE {cte} UPDATE {tc.table} AS t SET {setter} "
                        f"WHERE t.seq IN (SELECT d.seq FROM r CROSS JOIN {tc.table} d ON "
                        f"d.key = substr(r.id, {tb(len(prefix) + 1)}) "
                        f"AND r.id = {tb(prefix)} || d.key WHERE {cond}) RETURNING seq, key")
                keys += conn.execute(text, tb.params).fetchall()
        return [k for _, k in sorted(keys)]

    def derive_edges(self, workflow: str, out_edge: str, producer_edge: str,
                     consumer_edge: str) -> int:
        out_c, wf = self._edge(out_edge, workflow)
        prod, _ = self._edge(producer_edge, workflow)
        cons, _ = self._edge(consumer_edge, workflow)
        if out_c.is_global or prod.is_global or cons.is_global:
            raise InvalidInput("derive_edges works on per-workflow edges")
        with self._db.write() as conn:
            (base,) = conn.execute("SELECT value FROM meta WHERE name = 'key_counter'").fetchone()
            cur = conn.execute(
                q.derive_edges_sql(out_c.table, prod.table, cons.table),
                {"wf": wf, "prefix": self._prefix(out_c, wf), "base": base},
            )
            n = cur.rowcount
            if n:
                conn.execute("UPDATE meta SET value = value + ? WHERE name = 'key_counter'", (n,))
            return n

    def dependencies_in_id_order(self, workflow: str,
                                  relations: Sequence[tuple[str, str | None]]) -> bool:
        """See :meth:`GraphStore.dependencies_in_id_order`: one indexed query per relation
        that stops at the first dependency out of order (~0.3 us per edge)."""
        texts = []
        for producer, consumer in relations:
            p, wf = self._edge(producer, workflow)
            c = self._edge(consumer, workflow)[0] if consumer is not None else None
            texts.append(q.id_order_violation_sql(p.table, c.table if c else None))

        def run(conn: sqlite3.Connection) -> bool:
            return not any(conn.execute(t, {"wf": wf}).fetchone() for t in texts)
        return self._db.read(run) if texts else True
