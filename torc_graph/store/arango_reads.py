"""ArangoDB reads of documents: find, keyset pages, the event stream's seek, counts and
projections (a mixin of :class:`~torc_graph.store.arango.ArangoStore`).

Every read sorts on the indexed sequence attribute ``_torc_seq`` (or, for claims, on a
server-computed claim-order attribute through its sparse index, :func:`claim_order`), so a
``LIMIT`` stops an index scan instead of sorting the matches. Inside a stream transaction a
result comes in one batch and :meth:`ReadOps.iter_find` pages by keyset (python-arango would
continue a cursor without the transaction header).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from torc_graph import model
from torc_graph.errors import NotFound
from torc_graph.store.aql import (
    CLAIM_ORDERS,
    NO_LIMIT,
    SEQ_FIELD,
    Query,
    check_key,
    collection_name,
    seq_expr,
)
from torc_graph.store.arango_connection import translating
from torc_graph.store.arango_graph import clean
from torc_graph.store.filters import HasEdge, In, OrderBy, Where
from torc_graph.store.records import Document


def claim_order(name: str, where: Where | None, order_by: OrderBy | None) -> str | None:
    """The claim-order attribute that serves this read (:data:`~.aql.CLAIM_ORDERS`): a read of
    a jobs collection filtered to exactly the claimable statuses and ordered by a claim
    order's fields, all descending; else None."""
    if name.partition("__")[0] != model.Collection.JOBS.value or not where or not order_by:
        return None
    status = where.get("status")
    if not isinstance(status, In) or set(status.values) != set(model.CLAIMABLE_STATUSES):
        return None
    wanted = [(p, d) for p, d in order_by]
    for attr, fields in CLAIM_ORDERS.items():
        if wanted == [(f, True) for f in fields]:
            return attr
    return None


class ReadOps:
    """Mixin of :class:`~torc_graph.store.arango.ArangoStore` (uses its ``_run``, ``_tx``,
    ``_filter`` and ``_conn``)."""

    def _find_query(self, name: str, workflow, where, edges, order_by, after=None, limit=None,
                    skip: int = 0) -> tuple[str, Query]:
        q = Query()
        c = q.collection(name)
        claim = claim_order(name, where, order_by)
        if claim is not None:  # served by the claim order's sparse index, no sort
            rest = {k: v for k, v in (where or {}).items() if k != "status"}
            text = f"FOR d IN {c} {self._filter(q, name, rest, edges, workflow, [f'd.{claim} != null'])}"
            if after is not None:
                text += f" FILTER d.{claim} < {q.value(after[claim])}"
            text += f" SORT d.{claim} DESC"
        else:
            text = f"FOR d IN {c} {self._filter(q, name, where, edges, workflow)}"
            if after is not None:
                text += " " + q.after("d", order_by, after)
            text += " " + q.sort("d", order_by)
        if skip or limit is not None:
            text += f" LIMIT {q.value(int(skip))}, {q.value(NO_LIMIT if limit is None else int(limit))}"
        return text + " RETURN d", q

    def find(
        self,
        collection: str,
        workflow: str | None,
        where: Where | None = None,
        *,
        edges: Sequence[HasEdge] = (),
        skip: int = 0,
        limit: int | None = None,
        order_by: OrderBy | None = None,
    ) -> list[Document]:
        name = collection_name(collection, workflow)
        text, q = self._find_query(name, workflow, where, edges, order_by, limit=limit, skip=skip)
        return [clean(d) for d in self._run(text, q, name)]

    def iter_find(
        self,
        collection: str,
        workflow: str | None,
        where: Where | None = None,
        *,
        edges: Sequence[HasEdge] = (),
        order_by: OrderBy | None = None,
        batch_size: int = 1000,
    ) -> Iterator[Document]:
        name = collection_name(collection, workflow)
        text, q = self._find_query(name, workflow, where, edges, order_by)  # validates now
        size = max(1, int(batch_size))
        if self._tx() is not None:
            return self._iter_pages(name, workflow, where, edges, order_by, size)
        return self._iter_cursor(name, text, q, size)

    def _iter_cursor(self, name: str, text: str, q: Query, batch_size: int) -> Iterator[Document]:
        with translating(name):
            cursor = self._conn.db().aql.execute(
                q.finish(text), bind_vars=q.bind_vars, batch_size=batch_size, stream=True,
                ttl=600,
            )
        try:
            while True:
                with translating(name):
                    try:
                        doc = cursor.next()
                    except StopIteration:
                        return
                yield clean(doc)
        finally:
            with contextlib.suppress(Exception):
                cursor.close(ignore_missing=True)

    def _iter_pages(self, name, workflow, where, edges, order_by, size) -> Iterator[Document]:
        """Inside a transaction: keyset pages, each a fresh query seeing the transaction's
        state and resuming after the last row returned (served by the sort's index)."""
        after = None
        while True:
            text, q = self._find_query(name, workflow, where, edges, order_by, after, size)
            rows = self._run(text, q, name)
            for d in rows:
                yield clean(d)
            if len(rows) < size:
                return
            after = rows[-1]

    def find_after(
        self,
        collection: str,
        workflow: str | None,
        after_key: str | None,
        where: Where | None = None,
        *,
        limit: int = 1000,
    ) -> list[Document]:
        """See :meth:`GraphStore.find_after`: one query, a primary-index lookup of the anchor's
        sequence number, then a range scan of the ``_torc_seq`` index from it (``> seq``,
        sorted by the index, ``LIMIT``). Raises NotFound for an unknown ``after_key``."""
        name = collection_name(collection, workflow)
        text, q = self._after_query(name, workflow, after_key, where, limit)
        row = self._run(text, q, name)[0]
        if not row["found"]:
            raise NotFound(f"document {after_key} not found in {collection}")
        return [clean(d) for d in row["docs"]]

    def _after_query(self, name: str, workflow: str | None, after_key: str | None,
                     where: Where | None, limit: int) -> tuple[str, Query]:
        """The query of :meth:`find_after` (also EXPLAINed by the live leg). Without an anchor
        (unknown key) ``docs`` is a bounded range scan from the start, ignored by the caller."""
        if after_key is not None:
            check_key(after_key)
        q = Query()
        c = q.collection(name)
        if after_key is None:
            anchor = "LET a = 0"
        else:
            anchor = (f"LET a = FIRST(FOR x IN {c} FILTER x._key == {q.value(after_key)} "
                      f"LIMIT 1 RETURN x.{SEQ_FIELD})")
        seq = seq_expr("d")
        flt = self._filter(q, name, where, (), workflow, extra=[f"{seq} > a"])
        return (
            f"{anchor} RETURN {{found: a != null, docs: "
            f"(FOR d IN {c} {flt} SORT {seq} ASC "
            f"LIMIT {q.value(max(1, int(limit)))} RETURN d)}}"
        ), q

    def count(
        self,
        collection: str,
        workflow: str | None,
        where: Where | None = None,
        *,
        edges: Sequence[HasEdge] = (),
    ) -> int:
        return int(self._scan(collection, workflow, where, edges,
                              "COLLECT WITH COUNT INTO n RETURN n")[0])

    def exists(self, collection: str, workflow: str | None, where: Where | None = None, *,
               edges: Sequence[HasEdge] = ()) -> bool:
        """See :meth:`GraphStore.exists`: ``LIMIT 1`` with no SORT (the first index hit)."""
        return bool(self._scan(collection, workflow, where, edges, "LIMIT 1 RETURN 1"))

    def _scan(self, collection: str, workflow: str | None, where: Where | None,
              edges: Sequence[HasEdge], tail: str) -> list[Any]:
        """Rows of ``FOR d IN <collection> <filter> <tail>`` (``tail``: constant AQL)."""
        name = collection_name(collection, workflow)
        q = Query()
        c = q.collection(name)
        return self._run(f"FOR d IN {c} {self._filter(q, name, where, edges, workflow)} {tail}",
                         q, name)

    def values(
        self,
        collection: str,
        workflow: str | None,
        fields: Sequence[str],
        where: Where | None = None,
    ) -> list[tuple[Any, ...]]:
        """See :meth:`GraphStore.values`: one projection query that returns only the named
        fields (``RETURN [d[@p]..., ...]``) in sequence order, so no whole document crosses the
        wire. Raises InvalidInput for a bad field path."""
        name = collection_name(collection, workflow)
        text, q = self._values_query(name, workflow, fields, where)
        return [tuple(row) for row in self._run(text, q, name)]

    def _values_query(self, name: str, workflow: str | None, fields: Sequence[str],
                      where: Where | None) -> tuple[str, Query]:
        """The query of :meth:`values` (also linted and EXPLAINed by the tests)."""
        q = Query()
        c = q.collection(name)
        paths = [q.attr("d", f) for f in fields]
        return (f"FOR d IN {c} {self._filter(q, name, where, (), workflow)} "
                f"SORT {seq_expr('d')} RETURN [{', '.join(paths)}]"), q
