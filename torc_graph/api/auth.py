"""Authentication and roles for a served API, decided once per request from the route table.

Credentials (any one; see README "Security"):

* ``Authorization: Bearer <token>`` — torc_graph's client, CLI and runner (docs §6);
* ``Authorization: Basic`` with the token as password (or as user name with an empty password):
  ``curl -u :TOKEN``, ``requests`` with ``http://:TOKEN@host``;
* the database segment of torc v0.6.4's base URL, ``/_db/<token>/torc-service``: the published
  torc-client 0.6.4 declares no security scheme (its ``Configuration.auth_settings()`` is empty,
  so ``access_token``/``api_key``/``username`` are ignored, and urllib3 drops ``user:pass@`` from
  URLs): the base URL is the only thing its CLI and job runner pass along.

Permissions: :func:`permission` maps (method, route template) to one of ``read``, ``execute``,
``edit``, ``create``, ``admin`` by rule, so that every route, including Actions added later,
gets one; a new non-GET route is ``edit`` (owner or admin) unless it is named in
:data:`EXECUTE_ACTIONS`. :func:`allows` decides for a token document:

=========  ========================================================================
reader     ``read`` on every workflow
editor     ``read``; ``create``; ``edit``/``execute`` on workflows it owns (``edit``
           includes minting/revoking the workflow's executor tokens,
           ``/workflows/{workflow}/executor_tokens``)
executor   ``read``/``execute`` on its one workflow (plus ``/ping``, ``/version``):
           the execution actions, its compute nodes, events, results, statistics, user
           data, its Slurm allocations (``scheduled_compute_nodes``: a worker marks its own
           allocation active/complete and submits more just in time), ``node_used``/
           ``process_used`` edges and files' ``st_mtime`` (PUT)
admin      everything
=========  ========================================================================

Web dashboard (docs/dashboard.md): the page, its assets and the session endpoints
(:data:`PUBLIC_PATHS`, :data:`PUBLIC_PREFIXES`) need no credential; a ``torc_graph_session``
cookie (:mod:`torc_graph.engine.sessions`) authenticates GET/HEAD requests only, with its
token's permissions, so a forged cross-site POST/PUT/DELETE carrying only the cookie is 401.

401: no credential, or an unknown, revoked or expired one. 403: a valid token whose role does
not allow the request. Every request that changes state is logged on ``torc_graph.audit``
(token key and name, role, method, path, status).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

import falcon

from torc_graph.engine import sessions, tokens
from torc_graph.engine.tokens import Role
from torc_graph.errors import Forbidden, Unauthorized
from torc_graph.store.base import GraphStore

audit = logging.getLogger("torc_graph.audit")

_CONTEXT = "torc_graph.token"
_DB_SEGMENT = re.compile(r"^/_db/([^/]+)/torc-service(?=/|$)")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Methods a dashboard session cookie authenticates (never a state change: no CSRF).
_COOKIE_METHODS = frozenset({"GET", "HEAD"})
#: The dashboard session cookie's name.
SESSION_COOKIE = "torc_graph_session"
#: Paths served without a credential: the dashboard page and its session endpoints (which
#: check credentials themselves), and (:data:`PUBLIC_PREFIXES`) its static assets.
PUBLIC_PATHS = frozenset({"/dashboard", "/dashboard/session"})
PUBLIC_PREFIXES = ("/dashboard/assets/",)

#: Static path segments of the actions an executor may call (claim, start, complete, ...).
EXECUTE_ACTIONS = frozenset({
    "claim_jobs", "complete_jobs", "release_jobs", "heartbeat",
    "prepare_jobs_for_submission", "prepare_next_jobs_for_submission", "prepare_jobs_for_scheduling",
    "start_job", "complete_job", "manage_status_change", "user_data",
})
#: Collections a job runner writes (POST/PUT; never DELETE): its node, events, results, stats,
#: and (a Slurm worker) its allocation documents.
EXECUTE_COLLECTIONS = frozenset({
    "compute_nodes", "compute_node_stats", "events", "job_process_stats", "results",
    "user_data", "scheduled_compute_nodes",
})
#: Edges a job runner links its statistics with (``POST edges/{name}``).
EXECUTE_EDGES = frozenset({"node_used", "process_used"})
#: Collections whose documents a runner updates (``PUT``): produced files' ``st_mtime``.
EXECUTE_UPDATES = frozenset({"files"})
#: Routes that create a workflow (the token becomes its owner: their handlers pass
#: :func:`request_owner` down to the store, which records it in the creating transaction).
CREATE_ROUTES = frozenset({"/workflows", "/workflow_specifications"})
#: Routes without a workflow an executor may read.
EXECUTOR_GLOBAL_READS = frozenset({"/ping", "/version"})


def permission(method: str, template: str, params: dict[str, Any] | None = None) -> str:
    """The permission a request needs: ``read``, ``execute``, ``edit``, ``create`` or
    ``admin``, by rule from the route template and its path ``params`` (see the module
    docstring)."""
    if template.startswith("/tokens"):
        return "admin"
    if method.upper() in _READ_METHODS:
        return "read"
    if template in CREATE_ROUTES and method.upper() == "POST":
        return "create"
    parts = template.strip("/").split("/")
    if parts[:2] == ["workflows", "{workflow}"] and method.upper() != "DELETE":
        statics = {p for p in parts[2:] if not p.startswith("{")}
        if statics & EXECUTE_ACTIONS:
            return "execute"
        if len(parts) in (3, 4) and parts[2] in EXECUTE_COLLECTIONS:
            return "execute"
        if len(parts) == 4 and parts[2] in EXECUTE_UPDATES and method.upper() == "PUT":
            return "execute"
        if parts[2:] == ["edges", "{name}"] and method.upper() == "POST" \
                and (params or {}).get("name") in EXECUTE_EDGES:
            return "execute"
    return "edit"


def workflow_of(template: str, params: dict[str, Any]) -> str | None:
    """The workflow key a request addresses (None for global routes)."""
    value = params.get("workflow")
    if value is None and template.startswith("/workflow_specifications/{key}"):
        value = params.get("key")
    if value is None:
        return None
    value = str(value)
    return value.split("/", 1)[1] if value.startswith("workflows/") else value


def allows(token: dict[str, Any], perm: str, template: str, workflow: str | None,
           owner: dict[str, Any] | None) -> bool:
    """True if ``token`` may do ``perm`` on ``template`` / ``workflow`` (owned by ``owner``)."""
    role = token.get("role")
    if role == Role.ADMIN.value:
        return True
    if perm == "admin":
        return False
    if role == Role.EXECUTOR.value:
        if workflow is None:
            return perm == "read" and template in EXECUTOR_GLOBAL_READS
        return workflow == token.get("workflow") and perm in ("read", "execute")
    if perm == "read":
        return role in (Role.READER.value, Role.EDITOR.value)
    if role != Role.EDITOR.value:
        return False
    if perm == "create":
        return True
    return workflow is not None and owner is not None and owner.get("token") == token["_key"]


def credential(req: falcon.Request) -> str | None:
    """The token sent with ``req`` (see the module docstring), or None."""
    header = req.get_header("Authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            return value or None
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).decode(
                    "utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return password or user or None
        return None
    m = _DB_SEGMENT.match(req.path)
    if m and m.group(1).startswith(tokens.PREFIX):
        return m.group(1)
    return None


def is_public(path: str) -> bool:
    """Whether ``path`` is served without a credential (see :data:`PUBLIC_PATHS`)."""
    path = path.rstrip("/") or "/"
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def session_id(req: falcon.Request) -> str | None:
    """The dashboard session id of the request's cookie, or None."""
    values = req.get_cookie_values(SESSION_COOKIE)
    return values[0] if values else None


def authenticate(store: GraphStore, req: falcon.Request) -> dict[str, Any] | None:
    """The token document ``req`` authenticates as, or None: its token if it sends one
    (:func:`credential`), else, for GET/HEAD only, its dashboard session cookie."""
    value = credential(req)
    if value is not None:
        return tokens.verify(store, value)
    cookie = session_id(req)
    if cookie and req.method in _COOKIE_METHODS:
        return sessions.verify(store, cookie)
    return None


def request_owner(req: falcon.Request) -> dict[str, Any] | None:
    """The owner record of a workflow created by ``req``: its authenticated token's
    (:func:`torc_graph.engine.tokens.owner_record`), or None when authentication is off."""
    token = req.context.get(_CONTEXT)
    return None if token is None else tokens.owner_record(token)


def set_request_token(req: falcon.Request, token: dict[str, Any]) -> None:
    """Record the token a public route authenticated itself (for the audit log)."""
    req.context[_CONTEXT] = token


class AuthMiddleware:
    """Falcon middleware: 401 before routing, 403 after it, audit log."""

    def __init__(self, store: GraphStore):
        self.store = store

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if resp.complete or is_public(req.path):  # an answered CORS preflight; the dashboard
            return
        token = authenticate(self.store, req)
        if token is None:
            resp.set_header("WWW-Authenticate", 'Bearer realm="torc_graph"')
            if credential(req) is not None:
                message = "the token is unknown, revoked or expired"
            elif session_id(req) and req.method not in _COOKIE_METHODS:
                message = (f"a dashboard session authenticates only GET and HEAD, not "
                           f"{req.method}: send a token (Authorization: Bearer TOKEN)")
            elif session_id(req):
                message = "the dashboard session is unknown or expired, or its token was " \
                          "revoked: log in again (POST /dashboard/session)"
            else:
                message = "authentication required: send a valid token (Authorization: " \
                          "Bearer TOKEN)"
            raise Unauthorized(message)
        req.context[_CONTEXT] = token

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource,
                         params: dict) -> None:
        token = req.context.get(_CONTEXT)
        if token is None or resource is None:
            return
        template = req.uri_template or req.path
        perm = permission(req.method, template, params)
        workflow = workflow_of(template, params)
        owner = None
        if token["role"] == Role.EDITOR.value and perm in ("edit", "execute") and workflow:
            owner = tokens.owner(self.store, workflow)
        if not allows(token, perm, template, workflow, owner):
            raise Forbidden(f"token {token['name']!r} (role {token['role']}) may not "
                            f"{req.method} {template}"
                            + (f" of workflow {workflow}" if workflow else ""))

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource,
                         req_succeeded: bool) -> None:
        token = req.context.get(_CONTEXT)
        if token is None or req.method in _READ_METHODS:
            return
        status = resp.status_code if hasattr(resp, "status_code") else resp.status
        audit.info("token=%s name=%s role=%s %s %s -> %s", token["_key"], token["name"],
                   token["role"], req.method, req.path, status)

