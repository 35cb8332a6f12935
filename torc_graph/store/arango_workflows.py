"""Workflow lifecycle on ArangoDB: create (DDL, then the three global documents, their edges
and the owner record in one stream transaction; the DDL is compensated on failure), delete,
read.

DDL is not transactional in ArangoDB, so a workflow's collections, indexes and graph are made
first (:class:`~torc_graph.store.arango_layout.Layout`) and dropped again if the documents
cannot be written; only what this call created is dropped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from torc_graph import model
from torc_graph.errors import NotFound, StoreError
from torc_graph.store import arango_keys
from torc_graph.store.aql import SEQ_FIELD, STAGED_FIELD, Query, check_key
from torc_graph.store.arango_connection import translating
from torc_graph.store.arango_graph import clean
from torc_graph.store.arango_layout import GLOBAL_DOCS, GLOBAL_EDGES, check_workflow_key
from torc_graph.store.arango_staging import now_ms
from torc_graph.store.records import Document, WorkflowSpace

log = logging.getLogger(__name__)

_WF, _CONF, _STAT, _OWN = (c.value for c in (model.GlobalCollection.WORKFLOWS,
                                             model.GlobalCollection.WORKFLOW_CONFIGS,
                                             model.GlobalCollection.WORKFLOW_STATUSES,
                                             model.GlobalCollection.WORKFLOW_OWNERS))
_HAS_CONF = model.GlobalEdge.HAS_WORKFLOW_CONFIG.value
_HAS_STAT = model.GlobalEdge.HAS_WORKFLOW_STATUS.value


def _space_collections(q: Query) -> tuple[str, ...]:
    """Bind placeholders of workflows, configs, statuses and the two ``has_*`` edges."""
    return tuple(q.collection(n) for n in (_WF, _CONF, _STAT, _HAS_CONF, _HAS_STAT))


def missing_workflow(workflow: str) -> NotFound:
    return NotFound(f"Error: Document not found. Operation: Get workflow with key={workflow}")


class WorkflowOps:
    """Mixin of :class:`~torc_graph.store.arango.ArangoStore` (uses its ``_run``,
    ``_reserve``, ``_prepare``, ``_conn``, ``_layout`` and ``settings``)."""

    def _write_global(self, key: str, text: str, q: Query) -> Any:
        """Run one query in a stream transaction over the global collections only (workflow
        create/delete) and return its first row; aborts on any error."""
        what = f"workflow {key}"
        with translating(what):
            handle = self._conn.db().begin_transaction(
                write=list(GLOBAL_DOCS + GLOBAL_EDGES), lock_timeout=self.settings.lock_timeout)
        try:
            row = self._run(text, q, what, db=handle)[0]
            with translating(what):
                handle.commit_transaction()
            return row
        except BaseException:
            with contextlib.suppress(Exception):
                handle.abort_transaction()
            raise

    def create_workflow(self, workflow: Document, config: Document, status: Document,
                        owner: Mapping[str, Any] | None = None) -> WorkflowSpace:
        """Documents first (staged, invisible), then the DDL, then publish (one standalone
        query) unless this thread is in a staged creation (:mod:`.arango_staging`): a crash at
        any point leaves a staged document or nothing, which the sweep removes. Compensated on
        failure; raises UniqueConstraintViolated if the key exists."""
        self.maybe_sweep()
        db = self._conn.db()
        wf_doc = self._prepare(workflow, edge=False)
        conf_doc, stat_doc = self._prepare(config, False), self._prepare(status, False)
        for d in (conf_doc, stat_doc):
            d.pop("_key", None)
        key = wf_doc.get("_key")
        if key is not None:
            check_workflow_key(key)
        owner_doc = None if owner is None else self._prepare(owner, False)
        seqs = self._reserve(6, arango_keys.floor_of([key or ""]))
        if key is None:
            key = wf_doc["_key"] = str(seqs[0])
        for d, s in zip((wf_doc, conf_doc, stat_doc), seqs):
            d[SEQ_FIELD] = s
        wf_doc[STAGED_FIELD] = now_ms()
        if owner_doc is not None:
            owner_doc.update({"_key": key, SEQ_FIELD: seqs[5]})
        row = self._write_global(key, *self._insert_space(wf_doc, conf_doc, stat_doc, owner_doc, seqs))
        staging = self._staging()
        try:
            with translating(f"workflow {key}"):
                existing = {c["name"] for c in db.collections()}
                leftovers = [n for n in existing if n.partition("__")[2] == key]
                if leftovers:  # orphans of a crashed creation: the document above is ours now
                    self._layout.drop(db, key, leftovers)
                self._layout.create_workflow(db, key)
            if staging is None:
                self._publish([key])
            else:
                staging.add(key)
        except BaseException:
            # DDL is not transactional: undo the collections and the documents.
            with contextlib.suppress(Exception):
                self.purge_workflow(key)
            raise
        return WorkflowSpace(clean(row["w"]), clean(row["c"]), clean(row["s"]))

    @staticmethod
    def _insert_space(wf_doc, conf_doc, stat_doc, owner_doc, seqs) -> tuple[str, Query]:
        """The query inserting a workflow's global documents, edges and owner record; a
        duplicate key fails it whole (UniqueConstraintViolated)."""
        key = wf_doc["_key"]
        q = Query()
        w, c, s, hc, hs = _space_collections(q)
        own = q.collection(_OWN)
        # The owner record commits with the workflow; a stale record of this key (older
        # versions kept it after a delete) is replaced, or removed when there is no owner.
        owner_aql = (
            f"FOR r IN {q.value([owner_doc])} INSERT r INTO {own} "
            "OPTIONS {overwriteMode: 'replace'} RETURN 1"
            if owner_doc is not None else
            f"REMOVE {{_key: {q.value(key)}}} IN {own} OPTIONS {{ignoreErrors: true}} RETURN 1"
        )
        text = (
            f"LET w = FIRST((INSERT {q.value(wf_doc)} INTO {w} RETURN NEW)) "
            f"LET c = FIRST((INSERT {q.value(conf_doc)} INTO {c} RETURN NEW)) "
            f"LET s = FIRST((INSERT {q.value(stat_doc)} INTO {s} RETURN NEW)) "
            f"LET e1 = (INSERT {{_from: w._id, _to: c._id, {SEQ_FIELD}: {q.value(seqs[3])}}} "
            f"INTO {hc} RETURN 1) "
            f"LET e2 = (INSERT {{_from: w._id, _to: s._id, {SEQ_FIELD}: {q.value(seqs[4])}}} "
            f"INTO {hs} RETURN 1) "
            f"LET o = ({owner_aql}) "
            "RETURN {w: w, c: c, s: s, now: DATE_NOW()}"
        )
        return text, q

    def _exists(self, db: Any, name: str, key: str) -> bool:
        q = Query()
        c = q.collection(name)
        flt = " ".join(f"AND {x}" for x in self.visible(q, name))
        text = f"FOR d IN {c} FILTER d._key == {q.value(key)} {flt} LIMIT 1 RETURN 1"
        return bool(self._run(text, q, db=db))

    def delete_workflow(self, key: str) -> Document:
        """Graph and collections first, then the global documents (a crash in between leaves
        documents without collections: calling again finishes it). Raises NotFound."""
        check_key(key, "workflow key")
        self.workflow_space(key)
        doc = self.purge_workflow(key)
        if doc is None:
            raise missing_workflow(key)
        return clean(doc)

    def _remove_global(self, key: str) -> Any:
        """Remove the workflow document, its config and status, their edges and the owner
        record in one transaction; return the workflow document as it was (None if absent)."""
        q = Query()
        w, c, s, hc, hs = _space_collections(q)
        own = q.collection(_OWN)
        wid = q.value(f"{_WF}/{key}")
        text = (
            f"LET cs = (FOR e IN {hc} FILTER e._from == {wid} REMOVE e IN {hc} RETURN OLD._to) "
            f"LET ss = (FOR e IN {hs} FILTER e._from == {wid} REMOVE e IN {hs} RETURN OLD._to) "
            f"LET rc = (FOR i IN cs REMOVE PARSE_IDENTIFIER(i).key IN {c} "
            "OPTIONS {ignoreErrors: true} RETURN 1) "
            f"LET rs = (FOR i IN ss REMOVE PARSE_IDENTIFIER(i).key IN {s} "
            "OPTIONS {ignoreErrors: true} RETURN 1) "
            f"LET ro = (FOR o IN {own} FILTER o._key == {q.value(key)} REMOVE o IN {own} "
            "RETURN 1) "
            f"LET rw = (FOR x IN {w} FILTER x._key == {q.value(key)} REMOVE x IN {w} RETURN OLD) "
            "RETURN FIRST(rw)"
        )
        return self._write_global(key, text, q)

    def workflow_space(self, key: str) -> WorkflowSpace:
        check_key(key, "workflow key")
        q = Query()
        w, c, s, hc, hs = _space_collections(q)
        flt = " ".join(f"AND {x}" for x in self.visible(q, _WF, "w"))
        text = (
            f"FOR w IN {w} FILTER w._key == {q.value(key)} {flt} "
            f"LET c = FIRST((FOR e IN {hc} FILTER e._from == w._id "
            f"FOR x IN {c} FILTER x._id == e._to RETURN x)) "
            f"LET s = FIRST((FOR e IN {hs} FILTER e._from == w._id "
            f"FOR x IN {s} FILTER x._id == e._to RETURN x)) "
            "RETURN {w: w, c: c, s: s, now: DATE_NOW()}"
        )
        rows = self._run(text, q, f"workflow {key}")
        if not rows:
            raise missing_workflow(key)
        row = rows[0]
        self.check_guard(key, row["w"], int(row.get("now") or 0))
        if row["c"] is None or row["s"] is None:
            log.error("workflow %s lacks its config or status document", key)
            raise StoreError("storage error: workflow config or status missing")
        return WorkflowSpace(clean(row["w"]), clean(row["c"]), clean(row["s"]))

    def workflow_exists(self, key: str) -> bool:
        if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
            return False
        return self._exists(None, _WF, key)
