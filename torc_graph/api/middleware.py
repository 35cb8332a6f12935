"""Request middleware: the service prefix, ids inside key segments, and the body size limit.

Ids in key segments (behavior doc §0.1, §2.8): the torc client sends ``jobs__12/34`` as
``jobs__12%2F34`` in a key slot. WSGI servers decode ``PATH_INFO`` before Falcon routes, so the
router would see two segments. Before routing, each id is folded into ONE segment with
:data:`ID_SEPARATOR` standing in for its ``/``; after routing the separator is turned back
into ``/`` in the path parameters, and the resources' key normalization (``to_key``) accepts
the full id.

* When the server passes the raw request target (gunicorn's ``RAW_URI``, also set by uwsgi
  and waitress as ``REQUEST_URI``), the path is rebuilt from it, so an encoded slash stays in
  its segment whatever the id looks like.
* In any case, ``<base>__<WF>/<KEY>`` segment pairs whose base is a known collection or edge
  name and which match :data:`torc_graph.model.ID_PATTERN` are collapsed into one segment
  (this covers servers without a raw URI and clients that send the slash unencoded).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import falcon

from torc_graph import model
from torc_graph.errors import PayloadTooLarge

#: Stands for ``/`` inside a path segment between routing and the resource. A control
#: character: it cannot occur in a key, an id, or a decoded URL a client means literally.
ID_SEPARATOR = "\x1f"

_PREFIX = re.compile(r"^/_db/[^/]+/torc-service(?=/|$)")
_ID_COLLECTION = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)__([A-Za-z0-9_\-:.@()+,=;$!*'%]+)\Z")
_RAW_KEYS = ("RAW_URI", "REQUEST_URI")


class RequestMiddleware:
    """Rewrites ``req.path`` before routing and enforces the body size limit."""

    def __init__(self, max_body_bytes: int, max_spec_bytes: int | None = None):
        self.max_body_bytes = max_body_bytes
        self.max_spec_bytes = max_spec_bytes or max_body_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.path = rewrite_path(req.path, _raw_path(req))
        # A specification is spooled to a file (api/specifications.py): its own limit.
        limit = (self.max_spec_bytes if req.path == "/workflow_specifications"
                 else self.max_body_bytes)
        length = req.content_length
        if length is not None and length > limit:
            raise PayloadTooLarge(f"request body is larger than the limit of {limit} bytes")

    def process_resource(self, req, resp, resource, params: dict) -> None:
        for name, value in params.items():
            if isinstance(value, str) and ID_SEPARATOR in value:
                params[name] = value.replace(ID_SEPARATOR, "/")


def _raw_path(req: falcon.Request) -> str | None:
    """The still-encoded path of the request target, if the server provided it and it agrees
    with ``PATH_INFO`` (anything else, e.g. a proxy rewrite, falls back to collapsing)."""
    env = req.env
    for name in _RAW_KEYS:
        raw = env.get(name)
        if raw:
            break
    else:
        return None
    if raw.startswith(("http://", "https://")):
        raw = urlsplit(raw).path
    raw = raw.split("?", 1)[0]
    script = env.get("SCRIPT_NAME", "")
    decoded = unquote(raw, encoding="latin-1")
    path_info = env.get("PATH_INFO", "")
    if decoded != script + path_info:
        return None
    return raw[len(script):] if script and raw.startswith(script) else raw


def rewrite_path(path: str, raw_path: str | None = None) -> str:
    """The routable path: service prefix stripped, each id folded into one segment.

    ``raw_path`` is the undecoded path when known (``/workflows/1/files/files__1%2F5``).
    """
    if raw_path is not None:
        segments = [
            unquote(seg).replace("/", ID_SEPARATOR) for seg in raw_path.split("/")
        ]
        path = "/".join(segments)
    # Also fold ids sent with a literal slash (``/files/files__1/5``), raw or not.
    path = _collapse_ids(path)
    stripped = _PREFIX.sub("", path, count=1)
    return stripped or "/"


def _collapse_ids(path: str) -> str:
    segments = path.split("/")
    out: list[str] = []
    i = 0
    while i < len(segments):
        seg = segments[i]
        m = _ID_COLLECTION.match(seg)
        if (
            m
            and i + 1 < len(segments)
            and (model.is_collection(m.group(1)) or model.is_edge(m.group(1)))
            and model.ID_PATTERN.match(f"{seg}/{segments[i + 1]}")
        ):
            out.append(f"{seg}{ID_SEPARATOR}{segments[i + 1]}")
            i += 2
            continue
        out.append(seg)
        i += 1
    return "/".join(out)
