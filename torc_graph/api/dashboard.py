"""The web dashboard's routes (docs/dashboard.md): the page, its assets, the session
endpoints, and the data Actions.

* ``GET /dashboard`` and ``GET /dashboard/assets/{path}``: static files of the built page
  (``settings["dashboard_dir"]``, default the package's ``torc_graph/web/dist``), no credential
  (they hold no data). Assets are resolved inside ``assets/`` only: a path with an empty,
  ``.``/``..`` or hidden segment, a NUL, or one that resolves (symbolic links included) outside
  the directory is 404.
* ``POST/GET/DELETE /dashboard/session``: log in with a token (sets the ``torc_graph_session``
  cookie), who am I, log out (:mod:`torc_graph.engine.sessions`; what the cookie may do is
  decided in :mod:`.auth`).
* Data (``read`` permission, like every GET): ``GET /dashboard/workflows``,
  ``GET /workflows/{wf}/dashboard/summary``, ``GET /workflows/{wf}/dashboard/stages/{stage}/
  jobs`` (:mod:`torc_graph.engine.dashboard`).
"""

from __future__ import annotations

import datetime as _dt
import importlib.resources
import mimetypes
import os
import re
from pathlib import Path
from typing import Any

import falcon

from torc_graph.api import auth, media
from torc_graph.api.route import Action, Param
from torc_graph.engine import dashboard, sessions
from torc_graph.errors import InvalidInput, NotFound, Unauthorized
from torc_graph.store.base import GraphStore

WF = "/workflows/{workflow}"
#: The built page shipped with the package.
DEFAULT_DIST = Path(str(importlib.resources.files("torc_graph").joinpath("web", "dist")))

#: Content types by extension (the platform's mimetypes table varies; these must not).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml",
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".ico": "image/x-icon", ".woff": "font/woff", ".woff2": "font/woff2",
    ".ttf": "font/ttf", ".txt": "text/plain; charset=utf-8", ".wasm": "application/wasm",
}
#: A bundler's content-hashed file name, cached for a year: after a ``-`` or ``.``, 8+
#: upper-case letters and digits (esbuild: ``main-ENVPUXEI.css``) or 8+ URL-safe characters
#: with a digit (Vite: ``index-B3x_9aQz.js``). ``third-party-licenses.txt`` is not one.
_HASHED = re.compile(r"[-.](?:[A-Z0-9]{8,}|(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{8,})"
                     r"\.[A-Za-z0-9]+$")
#: A cookie expiring then is deleted by the browser (logout).
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
IMMUTABLE = "public, max-age=31536000, immutable"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
       "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")


def dist_dir(settings: dict[str, Any]) -> Path:
    """The directory of the built page."""
    configured = settings.get("dashboard_dir")
    return Path(configured) if configured else DEFAULT_DIST


def _send_file(resp: falcon.Response, path: Path, cache: str) -> None:
    """Raises NotFound when ``path`` is not a readable regular file."""
    try:
        data = path.read_bytes()
    except OSError:
        raise NotFound(f"no dashboard file {path.name}") from None
    resp.content_type = CONTENT_TYPES.get(path.suffix.lower()) \
        or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    resp.set_header("Cache-Control", cache)
    resp.set_header("X-Content-Type-Options", "nosniff")
    resp.data = data


class PageResource:
    """``GET /dashboard``: the page."""

    def __init__(self, settings: dict[str, Any]):
        self.root = dist_dir(settings)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Raises NotFound when the page is not built."""
        page = self.root / "index.html"
        if not page.is_file():
            raise NotFound(f"the dashboard is not built (no {page}); build it with the "
                           "front-end sources (see docs/dashboard.md)")
        _send_file(resp, page, "no-cache")
        resp.set_header("Content-Security-Policy", CSP)
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.set_header("X-Frame-Options", "DENY")


class AssetResource:
    """``GET /dashboard/assets/{path}``: a file of the page's ``assets/`` directory."""

    def __init__(self, settings: dict[str, Any]):
        self.root = dist_dir(settings) / "assets"

    def on_get(self, req: falcon.Request, resp: falcon.Response, path: str) -> None:
        """Raises NotFound for anything but a regular file inside ``assets/``."""
        parts = path.split("/")
        if "\x00" in path or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise NotFound(f"no dashboard asset {path!r}")
        root = os.path.realpath(self.root)
        target = os.path.realpath(os.path.join(root, *parts))
        if os.path.commonpath([root, target]) != root or not os.path.isfile(target):
            raise NotFound(f"no dashboard asset {path!r}")
        _send_file(resp, Path(target), IMMUTABLE if _HASHED.search(parts[-1]) else "no-cache")


class SessionResource:
    """``/dashboard/session``: log in (POST), who am I (GET), log out (DELETE)."""

    def __init__(self, store: GraphStore, settings: dict[str, Any]):
        self.store = store
        self.max_body = settings["max_body_bytes"]
        self.seconds = float(settings.get("dashboard_session_seconds")
                             or sessions.DEFAULT_SECONDS)
        self.auth = bool(settings.get("auth", True))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Raises InvalidInput (body not ``{"token": str}``), Unauthorized (bad token)."""
        body = media.read_object(req, self.max_body)
        token = body.get("token")
        if not isinstance(token, str) or not token or set(body) - {"token"}:
            raise InvalidInput('the body must be {"token": "<API token>"}')
        resp.status = falcon.HTTP_204
        resp.set_header("X-Content-Type-Options", "nosniff")
        if not self.auth:
            return  # no tokens to check: the dashboard needs no cookie
        session_id, doc = sessions.create(self.store, token, seconds=self.seconds)
        auth.set_request_token(req, doc)  # audit log: who logged in
        resp.set_cookie(auth.SESSION_COOKIE, session_id, max_age=int(self.seconds), path="/",
                        secure=req.scheme == "https", http_only=True, same_site="Strict")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Raises Unauthorized without a live session (or token)."""
        if not self.auth:
            media.send_json(resp, {"token_name": None, "role": "admin", "workflow": None,
                                   "expires": None})
            return
        session = None
        if auth.credential(req) is None and auth.session_id(req):
            found = sessions.lookup(self.store, auth.session_id(req))
            session, token = found if found else (None, None)
        else:
            token = auth.authenticate(self.store, req)
        if token is None:
            raise Unauthorized("no dashboard session: log in (POST /dashboard/session)")
        media.send_json(resp, sessions.describe(session, token))

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Never raises: logging out twice is fine."""
        cookie = auth.session_id(req)
        if cookie:
            sessions.delete(self.store, cookie)
        resp.set_cookie(auth.SESSION_COOKIE, "", expires=_EPOCH, path="/",
                        secure=req.scheme == "https", http_only=True, same_site="Strict")
        resp.status = falcon.HTTP_204


def resources(store: GraphStore, settings: dict[str, Any]) -> list[tuple[str, Any]]:
    """(path, resource) of the page, asset and session routes."""
    return [("/dashboard", PageResource(settings)),
            ("/dashboard/assets/{path:path}", AssetResource(settings)),
            ("/dashboard/session", SessionResource(store, settings))]


ACTIONS: list[Action] = [
    Action("GET", "/dashboard/workflows", dashboard.workflows, "dashboard_workflows"),
    Action("GET", WF + "/dashboard/summary", dashboard.summary, "dashboard_summary"),
    Action("GET", WF + "/dashboard/stages/{stage}/jobs", dashboard.stage_jobs,
           "dashboard_stage_jobs",
           query=(Param("skip", int, 0), Param("limit", int, 100), Param("status", str))),
]
