"""The ArangoDB layout of torc_graph: collection and graph names, indexes, cluster placement.

Everything here is DDL, which ArangoDB does not run inside transactions. Every ``ensure_*``
function first lists what exists (one request) and creates only what is missing, so a user
without DDL rights works against a prepared database, and concurrent processes race safely
(a duplicate-name error from the loser is ignored).

Collections come from the :mod:`torc_graph.model` enums, so a collection added there is created
here without an edit: global ``GlobalCollection``/``GlobalEdge``, per workflow every
``Collection`` and ``Edge`` as ``<base>__<WF>`` plus the graph ``workflow_graph__<WF>``.

Deployments: a single server, or a cluster whose database is OneShard (created so by the
store: ``sharding: "single"``, ``replicationFactor`` >= 2) so that every query runs on one
DB-Server and nothing is lost with one server. In a cluster database that is not OneShard,
each collection is created with ``distributeShardsLike`` the ticks collection (one shard,
co-located) and a warning is logged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from arango import errno
from arango.exceptions import ArangoServerError

from torc_graph import model
from torc_graph.errors import InvalidInput
from torc_graph.store.aql import CLAIM_ORDERS, GLOBAL_EDGE_TARGETS, SEQ_FIELD
from torc_graph.store.arango_connection import Settings

log = logging.getLogger(__name__)

#: The global collection holding the sequence counter (:mod:`.arango_keys`).
TICKS = "torc_graph_ticks"
GLOBAL_GRAPH = "workflow_graph"
GLOBAL_DOCS = tuple(c.value for c in model.GlobalCollection)
GLOBAL_EDGES = tuple(e.value for e in model.GlobalEdge)
VERTEX_NAMES = frozenset(c.value for c in model.VERTEX_COLLECTIONS)

#: Collection names under the traditional naming convention: ``[A-Za-z0-9_-]``, <= 256 bytes;
#: the longest per-workflow name is ``scheduled_compute_nodes__<WF>`` (25 + len(WF)).
WORKFLOW_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,231}\Z")

def _claim_expression(fields: tuple[str, ...]) -> str:
    statuses = ", ".join(f"'{s}'" for s in model.CLAIMABLE_STATUSES)  # constants of the model
    values = ", ".join(f"@doc.{f}" for f in fields)
    return (f"RETURN @doc.status IN [{statuses}] ? [{values}, -@doc.{SEQ_FIELD}] : null")


#: ``computedValues`` of a jobs collection.
JOBS_COMPUTED = [
    {"name": name, "expression": _claim_expression(fields),
     "computeOn": ["insert", "update", "replace"], "overwrite": True, "keepNull": False,
     "failOnWarning": False}
    for name, fields in CLAIM_ORDERS.items()
]

#: Persistent indexes: (name, fields, sparse). Every collection is ordered by the sequence
#: attribute; jobs are also read by status in sequence order (is_complete, listings, claims
#: without a sort method) and in each claim order.
SEQ_INDEX = ("torc_seq", [SEQ_FIELD], False)
COLLECTION_INDEXES = {
    model.Collection.JOBS.value: [SEQ_INDEX, ("torc_status_seq", ["status", SEQ_FIELD], False)]
    + [(name.lstrip("_"), [name], True) for name in CLAIM_ORDERS],
}


def check_workflow_key(key: str) -> str:
    """A workflow key usable in collection names. Raises InvalidInput naming the rule."""
    if not isinstance(key, str) or not WORKFLOW_KEY_PATTERN.match(key):
        raise InvalidInput(
            f"invalid workflow key {key!r} for ArangoDB: use 1-231 characters from "
            "A-Z a-z 0-9 _ - (it becomes part of collection names)")
    return key


def workflow_names(wf: str) -> tuple[list[str], list[str], list[str]]:
    """(vertex, edge, plain) collection names of a workflow."""
    return (
        [model.collection_name(c.value, wf) for c in model.VERTEX_COLLECTIONS],
        [model.collection_name(e.value, wf) for e in model.Edge],
        [model.collection_name(c.value, wf) for c in model.PLAIN_COLLECTIONS],
    )


def graph_name(wf: str) -> str:
    return f"workflow_graph__{wf}"


def edge_definitions(wf: str | None) -> list[dict[str, Any]]:
    """Edge definitions of the global graph (``wf=None``) or of a workflow's graph."""
    if wf is None:
        return [
            {"edge_collection": e, "from_vertex_collections": ["workflows"],
             "to_vertex_collections": [GLOBAL_EDGE_TARGETS[e]]}
            for e in GLOBAL_EDGES if e in GLOBAL_EDGE_TARGETS
        ]
    return [
        {
            "edge_collection": model.collection_name(d.edge.value, wf),
            "from_vertex_collections": [model.collection_name(c.value, wf) for c in d.from_collections],
            "to_vertex_collections": [model.collection_name(c.value, wf) for c in d.to_collections],
        }
        for d in model.EDGE_DEFINITIONS.values()
    ]


def indexes_of(name: str) -> list[tuple[str, list[str], bool]]:
    """The persistent indexes of a physical collection name."""
    return COLLECTION_INDEXES.get(name.split("__", 1)[0], [SEQ_INDEX])


class Layout:
    """Creates what is missing; remembers per process what it has verified."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.cluster = False
        self.one_shard = True
        self.checked: set[str] = set()

    # -- global -------------------------------------------------------------------------------

    def ensure_global(self, client: Any, db: Any) -> None:
        """Create the database (OneShard) and the global collections and graph if missing."""
        try:
            existing = {c["name"] for c in db.collections()}
        except ArangoServerError as exc:
            if exc.error_code != errno.DATABASE_NOT_FOUND:
                raise
            self._create_database(client)
            existing = {c["name"] for c in db.collections()}
        self._detect_deployment(db)
        wanted = [(TICKS, False)] + [(n, False) for n in GLOBAL_DOCS] + [(n, True) for n in GLOBAL_EDGES]
        self._ensure_collections(db, existing, wanted)
        if GLOBAL_GRAPH not in {g["name"] for g in db.graphs()}:
            self._create_graph(db, GLOBAL_GRAPH, edge_definitions(None))
        self.checked = set()

    def _create_database(self, client: Any) -> None:
        s = self.settings
        sys_db = client.db("_system", username=s.username, password=s.password)
        try:
            sys_db.create_database(s.database, replication_factor=s.replication_factor,
                                   write_concern=s.write_concern, sharding="single")
        except ArangoServerError as exc:
            if exc.error_code != errno.DUPLICATE_NAME:
                raise

    def _detect_deployment(self, db: Any) -> None:
        self.cluster = db.role() == "COORDINATOR"
        self.one_shard = True
        if self.cluster:
            props = db.properties()
            self.one_shard = props.get("sharding") == "single"
            if not self.one_shard:
                log.warning("ArangoDB database %s is not OneShard: torc_graph co-locates its "
                            "collections with %s (distributeShardsLike)", self.settings.database,
                            TICKS)
            if int(props.get("replication_factor") or 1) < 2:
                log.warning("ArangoDB database %s has replication factor < 2: a DB-Server "
                            "failure loses data", self.settings.database)

    # -- per workflow -------------------------------------------------------------------------

    def create_workflow(self, db: Any, wf: str) -> list[str]:
        """Create a new workflow's collections, indexes and graph; return what was created
        (for compensation). Raises UniqueConstraintViolated (via DUPLICATE_NAME) if any exists."""
        vertex, edges, plain = workflow_names(wf)
        created: list[str] = []
        try:
            for name in vertex + plain + edges:
                self._create_collection(db, name, edge=name in edges, strict=True)
                created.append(name)
                self._create_indexes(db, name)
            self._create_graph(db, graph_name(wf), edge_definitions(wf), strict=True)
        except BaseException:
            self.drop(db, wf, created, graph=False)
            raise
        self.checked.add(wf)
        return created

    def ensure_workflow(self, db: Any, wf: str) -> bool:
        """Add indexes missing on an existing workflow's jobs collection (e.g. one created by
        torc v0.6.4 or before the claim orders), once per process; return True when the claim
        orders' computed values were added (the caller then recomputes them on the claimable
        jobs). Without index rights: logged, not fatal."""
        if wf in self.checked:
            return False
        jobs = model.collection_name(model.Collection.JOBS.value, wf)
        upgraded = False
        try:
            have = {tuple(i.get("fields", ())) for i in db.collection(jobs).indexes()}
            for name, fields, sparse in indexes_of(jobs):
                if tuple(fields) not in have:
                    if fields[0] in CLAIM_ORDERS and not upgraded:
                        db.collection(jobs).configure(computed_values=JOBS_COMPUTED)
                        upgraded = True
                    db.collection(jobs).add_index(
                        {"type": "persistent", "fields": fields, "name": name,
                         "sparse": sparse, "inBackground": True})
        except ArangoServerError as exc:
            if exc.error_code in (errno.DATA_SOURCE_NOT_FOUND, errno.FORBIDDEN):
                if exc.error_code == errno.FORBIDDEN:
                    log.warning("cannot create indexes on %s (no permission)", jobs)
                return False
            raise
        self.checked.add(wf)
        return upgraded

    def drop(self, db: Any, wf: str, names: list[str] | None = None, graph: bool = True) -> None:
        """Drop a workflow's graph and collections (``names``: only those)."""
        if graph:
            db.delete_graph(graph_name(wf), ignore_missing=True, drop_collections=False)
        if names is None:
            vertex, edges, plain = workflow_names(wf)
            names = vertex + edges + plain
        for name in names:
            db.delete_collection(name, ignore_missing=True)
        self.checked.discard(wf)

    # -- DDL primitives -----------------------------------------------------------------------

    def _ensure_collections(self, db: Any, existing: set[str], wanted) -> None:
        for name, edge in wanted:
            if name not in existing:
                self._create_collection(db, name, edge)
                self._create_indexes(db, name)

    def _create_collection(self, db: Any, name: str, edge: bool = False, strict: bool = False) -> None:
        """Create a collection; an existing one is an error only when ``strict``.

        Single server and OneShard database: no placement options (a OneShard database places
        every collection with its own replication settings). A sharded cluster database: the
        ticks collection gets one shard with the store's replication settings, every other
        collection ``distributeShardsLike`` it (which takes the prototype's sharding)."""
        s = self.settings
        options: dict[str, Any] = {}
        if self.cluster and not self.one_shard:
            if name == TICKS:
                options = {"shard_count": 1, "replication_factor": s.replication_factor,
                           "write_concern": s.write_concern}
            else:
                options = {"shard_like": TICKS}
        if name.partition("__")[0] == model.Collection.JOBS.value and name != TICKS:
            options["computedValues"] = JOBS_COMPUTED
        try:
            db.create_collection(name, edge=edge, key_generator="traditional", user_keys=True,
                                 **options)
        except ArangoServerError as exc:
            if strict or exc.error_code != errno.DUPLICATE_NAME:
                raise

    @staticmethod
    def _create_indexes(db: Any, name: str) -> None:
        for index_name, fields, sparse in indexes_of(name):
            db.collection(name).add_index(
                {"type": "persistent", "fields": fields, "name": index_name, "sparse": sparse})

    @staticmethod
    def _create_graph(db: Any, name: str, definitions: list[dict[str, Any]], strict: bool = False) -> None:
        try:
            db.create_graph(name, edge_definitions=definitions)
        except ArangoServerError as exc:
            if strict or exc.error_code != errno.GRAPH_DUPLICATE:
                raise
