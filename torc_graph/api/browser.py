"""Browser safety for a served API: Host and Origin allow-lists, JSON-only bodies, HEAD.

A web page in a browser on the same machine can send requests to ``127.0.0.1``: "simple"
cross-site POSTs (``Content-Type: text/plain``, no preflight) and, through DNS rebinding, any
request under a foreign host name. :class:`BrowserGuard` closes both doors before routing:

* ``Host`` must name an allowed host (default: the bound address and the localhost names;
  ``allowed_hosts`` adds more, ``*`` allows any) — else 403;
* a request carrying ``Origin`` is refused (403) unless that origin is the server's own
  (``<scheme>://<Host>``, the Host being allowed: the web dashboard's page, docs/dashboard.md)
  or is in ``allowed_origins`` (empty by default). Listed origins get CORS headers and their
  preflight (``OPTIONS``) is answered;
* a request with a body must declare ``application/json`` (or ``+json``) — else 415;
* ``HEAD`` is served by the ``GET`` responder, without the body.

Installed only on a served app (``torc-graph serve``), never on the in-process embedded one.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import falcon

from torc_graph.errors import Forbidden, UnsupportedMediaType

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})
_HEAD_META = "torc_graph.head"
CORS_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"


def split_list(value: str | Iterable[str] | None) -> list[str]:
    """A comma-separated setting (or a list of them) as a list of stripped, non-empty items."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def allowed_host_names(bound: str, extra: Iterable[str]) -> frozenset[str] | None:
    """Host names accepted in ``Host`` (lower case, no port); None means any.

    Bound to every address (``0.0.0.0``): the machine's own names are added as well.
    """
    names = {n.lower() for n in extra}
    if "*" in names:
        return None
    names |= LOCAL_NAMES
    names.add(bound.strip("[]").lower())
    if bound.strip("[]") in _ANY_ADDRESS:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


def _host_name(header: str) -> str:
    """``example.org:8529`` -> ``example.org``; ``[::1]:80`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def _is_own_origin(req: falcon.Request, origin: str, host: str) -> bool:
    """``origin`` is the server's own (``<scheme>://<Host>``): a page it served itself."""
    return bool(host) and origin.rstrip("/").lower() == f"{req.scheme}://{host.strip()}".lower()


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def _has_body(req: falcon.Request) -> bool:
    if req.content_length is not None:
        return req.content_length > 0
    return "chunked" in (req.get_header("Transfer-Encoding") or "").lower()


class BrowserGuard:
    """Falcon middleware; see the module docstring."""

    def __init__(self, hosts: frozenset[str] | None, origins: Iterable[str]):
        self.hosts = hosts
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        host = req.get_header("Host") or ""
        if self.hosts is not None and _host_name(host) not in self.hosts:
            raise Forbidden(f"Host {host!r} is not allowed; add it to TORC_GRAPH_ALLOWED_HOSTS "
                            "(torc-graph serve --allowed-host) if it names this server")
        origin = req.get_header("Origin")
        if origin is not None and not _is_own_origin(req, origin, host):
            if origin.rstrip("/").lower() not in self.origins:
                raise Forbidden(f"cross-origin request from {origin!r} refused; allow the "
                                "origin with TORC_GRAPH_ALLOWED_ORIGINS if it is trusted")
            resp.set_header("Access-Control-Allow-Origin", origin)
            resp.set_header("Vary", "Origin")
            if req.method == "OPTIONS" and req.get_header("Access-Control-Request-Method"):
                resp.set_header("Access-Control-Allow-Methods", CORS_METHODS)
                resp.set_header("Access-Control-Allow-Headers", CORS_HEADERS)
                resp.set_header("Access-Control-Max-Age", "600")
                resp.status = falcon.HTTP_204
                resp.complete = True
                return
        if req.method not in ("GET", "HEAD", "OPTIONS") and _has_body(req) \
                and not _is_json(req.content_type):
            raise UnsupportedMediaType(
                f"request bodies must be application/json, not {req.content_type or 'untyped'}")
        if req.method == "HEAD":
            req.context[_HEAD_META] = True
            req.method = "GET"

    def process_response(self, req, resp, resource, req_succeeded: bool) -> None:
        if req.context.get(_HEAD_META):
            req.method = "HEAD"
            body = resp.render_body() or b""
            resp.set_header("Content-Length", str(len(body)))
            resp.text = None
            resp.data = b""
