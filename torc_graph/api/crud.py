"""Table-driven resources for the generic per-workflow collection and edge routes
(behavior doc §2.5, §4.26). One class per route shape, one instance per collection."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import falcon

from torc_graph.api import media, params
from torc_graph.engine import documents, jobs
from torc_graph.store.base import GraphStore

#: Query parameters shared by every list endpoint.
LIST_PARAMS: dict[str, type] = {"skip": int, "limit": int, "sort_by": str, "reverse_sort": bool}

#: POST handlers that replace the generic insert (jobs turn relation ids into edges, §4.20).
POST_OVERRIDES: dict[str, Callable[..., Any]] = {"jobs": jobs.add_job}


def listing(req: falcon.Request, filters: Mapping[str, type]) -> documents.Listing:
    """Paging, sorting and typed filters of a list request (400 naming a bad parameter)."""
    return documents.Listing(
        skip=params.query_value(req, "skip", int, 0),
        limit=params.query_value(req, "limit", int, None),
        sort_by=params.query_value(req, "sort_by", str, None),
        reverse_sort=params.query_value(req, "reverse_sort", bool, False),
        filters=params.present_filters(req, filters),
    )


class _Resource:
    def __init__(self, store: GraphStore, max_body_bytes: int, name: str | None = None):
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.name = name

    def body(self, req: falcon.Request) -> dict:
        return media.read_object(req, self.max_body_bytes)


class CollectionResource(_Resource):
    """``/workflows/{workflow}/<C>``: list (GET), add (POST), delete all (DELETE)."""

    def on_get(self, req, resp, workflow: str) -> None:
        spec = documents.collection_spec(self.name)
        body = documents.list_documents(
            self.store, workflow, self.name, listing(req, spec.filters)
        )
        media.send_json_bytes(resp, body)

    def on_post(self, req, resp, workflow: str) -> None:
        add = POST_OVERRIDES.get(self.name)
        body = self.body(req)
        if add is not None:
            result = add(self.store, workflow, body)
        else:
            result = documents.add_document(self.store, workflow, self.name, body)
        media.send_json(resp, result)

    def on_delete(self, req, resp, workflow: str) -> None:
        media.send_json(resp, documents.delete_documents(self.store, workflow, self.name))


class DocumentResource(_Resource):
    """``/workflows/{workflow}/<C>/{key}``: get, modify (PUT), remove (DELETE)."""

    def on_get(self, req, resp, workflow: str, key: str) -> None:
        media.send_json(resp, documents.get_document(self.store, workflow, self.name, key))

    def on_put(self, req, resp, workflow: str, key: str) -> None:
        result = documents.modify_document(self.store, workflow, self.name, key, self.body(req))
        media.send_json(resp, result)

    def on_delete(self, req, resp, workflow: str, key: str) -> None:
        media.send_json(resp, documents.remove_document(self.store, workflow, self.name, key))


class EdgeCollectionResource(_Resource):
    """``/workflows/{workflow}/edges/{name}``: list, add, delete all."""

    def on_get(self, req, resp, workflow: str, name: str) -> None:
        body = documents.list_edges(self.store, workflow, name, listing(req, {"_key": str}))
        media.send_json_bytes(resp, body)

    def on_post(self, req, resp, workflow: str, name: str) -> None:
        result = documents.add_edge(self.store, workflow, name, self.body(req))
        media.send_json(resp, result)

    def on_delete(self, req, resp, workflow: str, name: str) -> None:
        media.send_json(resp, documents.delete_edges(self.store, workflow, name))


class EdgeResource(_Resource):
    """``/workflows/{workflow}/edges/{name}/{key}``: get, remove (no PUT, as in torc)."""

    def on_get(self, req, resp, workflow: str, name: str, key: str) -> None:
        media.send_json(resp, documents.get_edge(self.store, workflow, name, key))

    def on_delete(self, req, resp, workflow: str, name: str, key: str) -> None:
        media.send_json(resp, documents.remove_edge(self.store, workflow, name, key))
