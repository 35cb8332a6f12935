"""Names of the torc data model: collections, edges, statuses, and the `_id` format.

Everything that names a collection, an edge or a status lives here, as `str` enums, so that the
store, the engine, the schemas and the API share one list. A name that is not in these enums is
never used to address storage (the whitelist that keeps user strings out of SQL and AQL).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Collection(str, enum.Enum):
    """Per-workflow document collections, stored as ``<name>__<WF>``."""

    AWS_SCHEDULERS = "aws_schedulers"
    COMPUTE_NODES = "compute_nodes"
    COMPUTE_NODE_STATS = "compute_node_stats"
    EVENTS = "events"
    FILES = "files"
    JOB_PROCESS_STATS = "job_process_stats"
    JOBS = "jobs"
    LOCAL_SCHEDULERS = "local_schedulers"
    RESOURCE_REQUIREMENTS = "resource_requirements"
    RESULTS = "results"
    SCHEDULED_COMPUTE_NODES = "scheduled_compute_nodes"
    SLURM_SCHEDULERS = "slurm_schedulers"
    USER_DATA = "user_data"

    def __str__(self) -> str:
        return self.value


class Edge(str, enum.Enum):
    """Per-workflow edge collections, stored as ``<name>__<WF>``."""

    BLOCKS = "blocks"
    CONSUMES = "consumes"
    EXECUTED = "executed"
    NEEDS = "needs"
    NODE_USED = "node_used"
    PROCESS_USED = "process_used"
    PRODUCES = "produces"
    REQUIRES = "requires"
    RETURNED = "returned"
    SCHEDULED_BYS = "scheduled_bys"
    STORES = "stores"

    def __str__(self) -> str:
        return self.value


class GlobalCollection(str, enum.Enum):
    """Collections shared by all workflows (``_id`` = ``<name>/<KEY>``)."""

    WORKFLOWS = "workflows"
    WORKFLOW_CONFIGS = "workflow_configs"
    WORKFLOW_STATUSES = "workflow_statuses"
    #: API tokens (hashed) and workflow owners (torc_graph.engine.tokens).
    AUTH_TOKENS = "auth_tokens"
    WORKFLOW_OWNERS = "workflow_owners"
    #: Web dashboard sessions (hashed ids; torc_graph.engine.sessions).
    DASHBOARD_SESSIONS = "dashboard_sessions"
    #: Background tasks (torc_graph.engine.tasks).
    TASKS = "tasks"

    def __str__(self) -> str:
        return self.value


class GlobalEdge(str, enum.Enum):
    HAS_WORKFLOW_CONFIG = "has_workflow_config"
    HAS_WORKFLOW_STATUS = "has_workflow_status"

    def __str__(self) -> str:
        return self.value


class JobStatus(str, enum.Enum):
    UNINITIALIZED = "uninitialized"
    BLOCKED = "blocked"
    READY = "ready"
    SCHEDULED = "scheduled"
    SUBMITTED_PENDING = "submitted_pending"
    SUBMITTED = "submitted"
    DONE = "done"
    CANCELED = "canceled"
    TERMINATED = "terminated"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


#: Statuses that count as complete for blocking (behavior doc §3.1).
COMPLETE_STATUSES = (JobStatus.DONE.value, JobStatus.CANCELED.value, JobStatus.TERMINATED.value)
#: Statuses that count as finished for ``is_complete``.
FINISHED_STATUSES = COMPLETE_STATUSES + (JobStatus.DISABLED.value,)
#: Statuses a worker may claim.
CLAIMABLE_STATUSES = (JobStatus.READY.value, JobStatus.SCHEDULED.value)

#: Vertex collections (part of the per-workflow graph); deleting one of their documents deletes
#: its incident edges.
VERTEX_COLLECTIONS = tuple(
    c for c in Collection if c not in (Collection.EVENTS, Collection.SCHEDULED_COMPUTE_NODES)
)
#: Plain per-workflow collections, not part of any graph.
PLAIN_COLLECTIONS = (Collection.EVENTS, Collection.SCHEDULED_COMPUTE_NODES)

SCHEDULER_COLLECTIONS = (
    Collection.AWS_SCHEDULERS,
    Collection.LOCAL_SCHEDULERS,
    Collection.SLURM_SCHEDULERS,
)


@dataclass(frozen=True)
class EdgeDefinition:
    edge: Edge
    from_collections: tuple[Collection, ...]
    to_collections: tuple[Collection, ...]


#: The per-workflow named graph (behavior doc §1.6).
EDGE_DEFINITIONS: dict[Edge, EdgeDefinition] = {
    d.edge: d
    for d in (
        EdgeDefinition(Edge.BLOCKS, (Collection.JOBS,), (Collection.JOBS,)),
        EdgeDefinition(Edge.CONSUMES, (Collection.JOBS,), (Collection.USER_DATA,)),
        EdgeDefinition(Edge.EXECUTED, (Collection.COMPUTE_NODES,), (Collection.JOBS,)),
        EdgeDefinition(Edge.NEEDS, (Collection.JOBS,), (Collection.FILES,)),
        EdgeDefinition(Edge.NODE_USED, (Collection.COMPUTE_NODES,), (Collection.COMPUTE_NODE_STATS,)),
        EdgeDefinition(Edge.PROCESS_USED, (Collection.JOBS,), (Collection.JOB_PROCESS_STATS,)),
        EdgeDefinition(Edge.PRODUCES, (Collection.JOBS,), (Collection.FILES,)),
        EdgeDefinition(Edge.REQUIRES, (Collection.JOBS,), (Collection.RESOURCE_REQUIREMENTS,)),
        EdgeDefinition(Edge.RETURNED, (Collection.JOBS,), (Collection.RESULTS,)),
        EdgeDefinition(Edge.SCHEDULED_BYS, (Collection.JOBS,), SCHEDULER_COLLECTIONS),
        EdgeDefinition(Edge.STORES, (Collection.JOBS,), (Collection.USER_DATA,)),
    )
}

#: Order of ``GET /workflows/{wf}/collection_names`` (behavior doc §4.19).
COLLECTION_NAMES_ORDER: tuple[str, ...] = (
    ("events", "scheduled_compute_nodes")
    + tuple(c.value for c in VERTEX_COLLECTIONS)
    + tuple(e.value for e in Edge)
)

#: The implicit resource requirements of a job without a ``requires`` edge (behavior doc §1.4).
DEFAULT_RESOURCE_REQUIREMENTS = {
    "name": "default",
    "num_cpus": 1,
    "num_gpus": 0,
    "num_nodes": 1,
    "memory": "1m",
    "runtime": "P0DT1M",
}

MAX_TRANSFER_RECORDS = 100_000
SERVICE_VERSION = "0.6.4"

# --------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------

#: A legal document key (ArangoDB's rule): 1-254 characters from this set.
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-:.@()+,=;$!*'%]{1,254}\Z")
#: A document id: ``<collection>/<key>``, where collection may carry ``__<WF>``.
ID_PATTERN = re.compile(r"^([A-Za-z][A-Za-z0-9_\-]*)/([A-Za-z0-9_\-:.@()+,=;$!*'%]{1,254})\Z")
#: A field path usable in a filter or sort: dotted identifiers.
FIELD_PATH_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def collection_name(base: str, workflow: str | None) -> str:
    """The external collection name: ``jobs__12`` for per-workflow, ``workflows`` for global."""
    return base if workflow is None else f"{base}__{workflow}"


def make_id(base: str, workflow: str | None, key: str) -> str:
    """The external `_id` of a document: ``jobs__12/34`` or ``workflows/12``."""
    return f"{collection_name(base, workflow)}/{key}"


def split_id(doc_id: str) -> tuple[str, str | None, str]:
    """Split ``jobs__12/34`` into ``("jobs", "12", "34")`` and ``workflows/5`` into
    ``("workflows", None, "5")``.

    Raises ValueError if the string is not a well-formed id.
    """
    m = ID_PATTERN.match(doc_id)
    if not m:
        raise ValueError(f"not a document id: {doc_id!r}")
    coll, key = m.group(1), m.group(2)
    base, sep, wf = coll.partition("__")
    if sep and not wf:
        raise ValueError(f"not a document id: {doc_id!r}")
    return base, (wf if sep else None), key


def is_edge(name: str) -> bool:
    return name in _EDGE_NAMES


def is_collection(name: str) -> bool:
    return name in _COLLECTION_NAMES


_EDGE_NAMES = frozenset(e.value for e in Edge)
_COLLECTION_NAMES = frozenset(c.value for c in Collection)
