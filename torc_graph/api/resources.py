"""The generic resource serving every non-CRUD :class:`~torc_graph.api.route.Action` row.

One :class:`ActionResource` per path template; it dispatches by HTTP method to the Action rows
registered for that path (several actions may share a path). Each call: convert path params
(failure → 404 like Foxx), normalize key params (key or full id → key), convert declared query
params (failure → 400 naming the parameter), read and validate the body, call the handler,
send its result as JSON with HTTP 200. Errors are mapped by the app's error handlers.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import falcon

from torc_graph import validation
from torc_graph.api import auth, media, params
from torc_graph.api.route import Action
from torc_graph.engine.common import require_workflow, to_key
from torc_graph.engine.tasks import Accepted
from torc_graph.store.base import GraphStore


class ActionResource:
    """Serves the Action rows of one path template, one responder per method."""

    def __init__(self, store: GraphStore, max_body_bytes: int, actions: Iterable[Action],
                 max_spec_bytes: int | None = None):
        self.store = store
        self.max_body_bytes = max_body_bytes
        self.max_spec_bytes = max_spec_bytes or max_body_bytes
        self.actions: dict[str, Action] = {}
        for action in actions:
            method = action.method.upper()
            if method in self.actions:
                raise ValueError(
                    f"two actions for {method} {action.path}: "
                    f"{self.actions[method].operation_id} and {action.operation_id}"
                )
            self.actions[method] = action
            # Falcon finds responders as on_<method> attributes (instance attributes work).
            setattr(self, f"on_{method.lower()}", partial(self._respond, action))

    def _respond(self, action: Action, req: falcon.Request, resp: falcon.Response,
                 **path: str) -> None:
        kwargs = self.arguments(action, req, path)
        result = action.handler(self.store, **kwargs)
        if isinstance(result, Accepted):  # a background task was started
            resp.location = f"{req.path.rsplit('/', 1)[0]}/tasks/{result.body['_key']}"
            media.send_json(resp, result.body, 202)
            return
        media.send_json(resp, result)

    def arguments(self, action: Action, req: falcon.Request,
                  path: dict[str, str]) -> dict[str, Any]:
        """The handler's keyword arguments for this request (see the module docstring)."""
        kwargs: dict[str, Any] = {}
        for name, raw in path.items():
            type_ = action.path_types.get(name, str)
            kwargs[name] = params.path_value(name, raw, type_)
        if action.keys:
            workflow = kwargs.get("workflow")
            if workflow is not None:
                # A missing workflow is 404 on every route, before a bad key is 400.
                require_workflow(self.store, workflow)
            for name, collection in action.keys.items():
                kwargs[name] = to_key(kwargs[name], collection, workflow)
        kwargs.update(params.query_values(req, action.query))
        if action.reader is not None:
            kwargs["body"] = action.reader(req, self.max_spec_bytes)
        elif action.body is not None:
            body = media.read_body(req, self.max_body_bytes, required=action.body_required)
            if body is not None and not action.raw_body:
                body = validation.validate(action.body, body)
            kwargs["body"] = body
        if action.owner:
            kwargs["owner"] = auth.request_owner(req)
        return kwargs
