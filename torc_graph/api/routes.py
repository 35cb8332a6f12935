"""THE route table: every path the service answers, and the resource serving it.

* Generic CRUD for the 13 per-workflow collections (table-driven, :mod:`.crud`);
* the 11 edge collections under ``/workflows/{workflow}/edges/{name}``;
* workflows, config, status, collection names, bulk jobs, job keys, ping, version
  (:mod:`.workflows`);
* the live event stream ``/workflows/{workflow}/events/stream`` (:mod:`.stream`);
* the web dashboard's page, assets and session endpoints (:mod:`.dashboard`);
* every non-CRUD endpoint, as :class:`~torc_graph.api.route.Action` rows collected from the
  ``ACTIONS`` lists of :data:`ACTION_MODULES` and served by
  :class:`~torc_graph.api.resources.ActionResource`.

Template rules (Falcon's compiled router): the segment after ``/workflows/`` is always
``{workflow}``; the segment after ``/workflows/{workflow}/<collection>/`` is always ``{key}``;
static segments win over fields, so ``jobs/find_by_status/{status}`` coexists with
``jobs/{key}``. An Action may not reuse a path served by a CRUD resource.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import falcon

from torc_graph import model
from torc_graph.api import crud, dashboard, stream, workflows
from torc_graph.api.resources import ActionResource
from torc_graph.api.route import Action
from torc_graph.store.base import GraphStore

#: Modules whose ``ACTIONS`` lists are registered (each owned by the engineer of that area).
ACTION_MODULES: tuple[str, ...] = (
    "torc_graph.api.lifecycle",
    "torc_graph.api.queries",
    "torc_graph.api.specifications",
    "torc_graph.api.execution",
    "torc_graph.api.tokens",
    "torc_graph.api.observability",
    "torc_graph.api.dashboard",
    "torc_graph.api.tasks",
)

WF = "/workflows/{workflow}"


@dataclass(frozen=True)
class Route:
    path: str
    resource: Any


def actions() -> list[Action]:
    """Every Action row of :data:`ACTION_MODULES`, in module order."""
    rows: list[Action] = []
    for name in ACTION_MODULES:
        rows.extend(importlib.import_module(name).ACTIONS)
    return rows


def route_table(store: GraphStore, settings: dict[str, Any]) -> list[Route]:
    """All routes, resources bound to ``store``. Raises ValueError on a duplicate path."""
    max_body = settings["max_body_bytes"]
    routes: list[Route] = list(_fixed_routes(store, max_body))
    routes.append(Route(stream.PATH, stream.EventStreamResource(store, settings)))
    routes.extend(Route(p, r) for p, r in dashboard.resources(store, settings))
    by_path: dict[str, list[Action]] = defaultdict(list)
    for action in actions():
        by_path[action.path].append(action)
    for path, rows in by_path.items():
        routes.append(Route(path, ActionResource(store, max_body, rows,
                                                 settings.get("max_spec_bytes"))))
    seen: set[str] = set()
    for route in routes:
        if route.path in seen:
            raise ValueError(f"two resources for the path {route.path}")
        seen.add(route.path)
    return routes


def _fixed_routes(store: GraphStore, max_body: int) -> Iterator[Route]:
    for collection in model.Collection:
        c = collection.value
        yield Route(f"{WF}/{c}", crud.CollectionResource(store, max_body, c))
        yield Route(f"{WF}/{c}/{{key}}", crud.DocumentResource(store, max_body, c))
    yield Route(f"{WF}/edges/{{name}}", crud.EdgeCollectionResource(store, max_body))
    yield Route(f"{WF}/edges/{{name}}/{{key}}", crud.EdgeResource(store, max_body))
    yield Route("/workflows", workflows.WorkflowsResource(store, max_body))
    yield Route(WF, workflows.WorkflowResource(store, max_body))
    yield Route(f"{WF}/config", workflows.ConfigResource(store, max_body))
    yield Route(f"{WF}/status", workflows.StatusResource(store, max_body))
    yield Route(f"{WF}/collection_names", workflows.CollectionNamesResource(store, max_body))
    yield Route(f"{WF}/bulk_jobs", workflows.BulkJobsResource(store, max_body))
    yield Route(f"{WF}/job_keys", workflows.JobKeysResource(store, max_body))
    yield Route("/ping", workflows.PingResource())
    yield Route("/version", workflows.VersionResource())


def add_routes(app: falcon.App, store: GraphStore, settings: dict[str, Any]) -> None:
    """Register the whole table on ``app``."""
    for route in route_table(store, settings):
        app.add_route(route.path, route.resource)
