"""Resources for the workflows collection, config/status, jobs bulk/keys and service routes
(behavior doc §4.10, §4.19, §4.20, §4.25, §4.27)."""

from __future__ import annotations

import falcon

from torc_graph import model
from torc_graph.api import auth, media
from torc_graph.api.crud import listing
from torc_graph.engine import jobs, workflows
from torc_graph.store.base import GraphStore


class _Resource:
    def __init__(self, store: GraphStore, max_body_bytes: int):
        self.store = store
        self.max_body_bytes = max_body_bytes

    def body(self, req: falcon.Request) -> dict:
        return media.read_object(req, self.max_body_bytes)


class WorkflowsResource(_Resource):
    """``/workflows``: list (filters name, user, description, is_archived) and add."""

    def on_get(self, req, resp) -> None:
        body = workflows.list_workflows(self.store, listing(req, workflows.FILTERS))
        media.send_json_bytes(resp, body)

    def on_post(self, req, resp) -> None:
        media.send_json(resp, workflows.create_workflow(self.store, self.body(req),
                                                        owner=auth.request_owner(req)))


class WorkflowResource(_Resource):
    """``/workflows/{workflow}``: get, modify, remove (full cascade)."""

    def on_get(self, req, resp, workflow: str) -> None:
        media.send_json(resp, workflows.get_workflow(self.store, workflow))

    def on_put(self, req, resp, workflow: str) -> None:
        media.send_json(resp, workflows.modify_workflow(self.store, workflow, self.body(req)))

    def on_delete(self, req, resp, workflow: str) -> None:
        media.send_json(resp, workflows.delete_workflow(self.store, workflow))


class ConfigResource(_Resource):
    """``/workflows/{workflow}/config``."""

    def on_get(self, req, resp, workflow: str) -> None:
        media.send_json(resp, workflows.get_config(self.store, workflow))

    def on_put(self, req, resp, workflow: str) -> None:
        media.send_json(resp, workflows.modify_config(self.store, workflow, self.body(req)))


class StatusResource(_Resource):
    """``/workflows/{workflow}/status``."""

    def on_get(self, req, resp, workflow: str) -> None:
        media.send_json(resp, workflows.get_status(self.store, workflow))

    def on_put(self, req, resp, workflow: str) -> None:
        media.send_json(resp, workflows.modify_status(self.store, workflow, self.body(req)))


class CollectionNamesResource(_Resource):
    """``/workflows/{workflow}/collection_names``."""

    def on_get(self, req, resp, workflow: str) -> None:
        media.send_json(resp, workflows.collection_names(self.store, workflow))


class BulkJobsResource(_Resource):
    """``/workflows/{workflow}/bulk_jobs``: atomic, set-based insert of many jobs."""

    def on_post(self, req, resp, workflow: str) -> None:
        media.send_json_bytes(resp, jobs.add_jobs_json(self.store, workflow, self.body(req)))


class JobKeysResource(_Resource):
    """``/workflows/{workflow}/job_keys``: ``{"items": [keys]}`` (not an envelope)."""

    def on_get(self, req, resp, workflow: str) -> None:
        media.send_json(resp, jobs.job_keys(self.store, workflow))


class PingResource:
    def on_get(self, req, resp) -> None:
        media.send_json(resp, {"message": "torc-service is running"})


class VersionResource:
    def on_get(self, req, resp) -> None:
        media.send_json(resp, {"version": model.SERVICE_VERSION})
