"""HTTP error mapping, registered once on the app (datasette style: one body, one function).

* :class:`~torc_graph.errors.TorcGraphError` → its ``status`` and
  :func:`~torc_graph.errors.error_body`;
* ``falcon.HTTPError`` (unknown route 404, unsupported method 405, ...) → the same body;
* any other exception → 500 with a generic message; the traceback goes to the log, never to
  the client (no ``str(exc)`` of unexpected errors on the wire).
"""

from __future__ import annotations

import logging

import falcon

from torc_graph.api.media import send_json
from torc_graph.errors import TorcGraphError, error_body

log = logging.getLogger("torc_graph.api")

INTERNAL_ERROR_MESSAGE = "Internal server error; see the server log for details"


def register_error_handlers(app: falcon.App) -> None:
    """Install the three handlers (Falcon picks the most specific one by MRO)."""
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _handle_http_error)
    app.add_error_handler(TorcGraphError, _handle_torc_error)


def _handle_torc_error(req, resp, ex: TorcGraphError, params) -> None:
    if ex.status >= 500:
        log.error("%s %s failed: %s", req.method, req.path, ex.message, exc_info=ex)
    resp.set_headers(getattr(ex, "headers", None) or {})  # e.g. Retry-After of a 503
    send_json(resp, ex.body(), ex.status)


def _handle_http_error(req, resp, ex: falcon.HTTPError, params) -> None:
    status = ex.status_code
    if isinstance(ex, falcon.HTTPRouteNotFound):
        message = f"Unknown path: {req.method} {req.path}"
    elif isinstance(ex, falcon.HTTPMethodNotAllowed):
        message = f"Method {req.method} is not allowed on {req.path}"
    else:
        message = ex.description or ex.title or falcon.code_to_http_status(status)
    if ex.headers:
        resp.set_headers(ex.headers)
    send_json(resp, error_body(status, message), status)


def _handle_unexpected(req, resp, ex: Exception, params) -> None:
    log.exception("unexpected error in %s %s", req.method, req.path, exc_info=ex)
    send_json(resp, error_body(500, INTERNAL_ERROR_MESSAGE), 500)
