"""JSON on the wire: the one encoder, the bounded body reader and the response writer.

Integers stay JSON integers (the torc client's pydantic models use ``StrictInt``), output is
compact, and NaN/Infinity are never produced or accepted (they are not JSON; nor is a number
like ``1e400`` that only a float infinity could hold). Request bodies
nested deeper than :data:`MAX_DEPTH` are rejected: deeper values would exhaust Python's
recursion limit in the parser, the schema validator or SQLite's JSON functions.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any

import falcon

from torc_graph import json_codec
from torc_graph.json_limits import MAX_DEPTH, check_depth
from torc_graph.json_limits import SURROGATE_ESCAPE as _SURROGATE_ESCAPE
from torc_graph.errors import InvalidInput, PayloadTooLarge

try:
    # gunicorn parses chunked framing lazily, while the app reads the body: a bad chunk is
    # the client's malformed request, not a server failure.
    from gunicorn.http.errors import ParseException as _ServerParseError
except ImportError:  # another WSGI server: its read errors are OSErrors
    _ServerParseError = OSError

#: Errors of the WSGI input stream that mean the client sent a broken or truncated body.
_BODY_READ_ERRORS = (OSError, _ServerParseError)



def dumps(value: Any) -> str:
    """Compact, strict JSON (``allow_nan=False``: a NaN is a bug, not a value to send)."""
    return json_codec.dumps(value)


def send_json(resp: falcon.Response, value: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json_codec.dumpb(value)


def send_json_bytes(resp: falcon.Response, data: bytes, status: int = 200) -> None:
    """Send an already encoded JSON body (UTF-8 bytes, e.g. a spliced list page)."""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # Python reads 1e400 as infinity, which no store can hold and no JSON can carry back.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def read_body(req: falcon.Request, max_bytes: int, *, required: bool = True) -> Any:
    """Parse the request body as JSON.

    An absent, blank or ``null`` body is ``None`` when ``required`` is False and a 400
    otherwise; arrays/objects nested deeper than :data:`MAX_DEPTH` and strings with lone
    surrogates are a 400. A body
    over ``max_bytes`` is PayloadTooLarge (413) without reading more than ``max_bytes + 1``
    bytes (the middleware already rejected a declared Content-Length over the limit; this
    covers chunked bodies). Raises InvalidInput (400) for malformed JSON.
    """
    try:
        if req.content_length is None and req.env.get("wsgi.input_terminated"):
            # A chunked body: the server (gunicorn) marks its input as ending at the body's end.
            raw = req.stream.read(max_bytes + 1)
        else:
            raw = req.bounded_stream.read(max_bytes + 1)
    except _BODY_READ_ERRORS:
        raise InvalidInput(
            "request body could not be read: malformed chunked encoding or truncated body"
        ) from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    if req.content_length is not None and len(raw) < req.content_length:
        # The client closed the connection early: a partial body must not be acted upon.
        raise InvalidInput(f"request body is truncated: {len(raw)} of the "
                           f"{req.content_length} bytes declared by Content-Length arrived")
    return parse_body(raw, required=required)


def spool_body(req: falcon.Request, max_bytes: int) -> str:
    """Copy the request body to a new private temporary file in pieces of 1 MiB and return its
    path (the caller deletes it); :func:`read_body`'s size and truncation rules. Raises
    PayloadTooLarge (413) or InvalidInput (400); no file is left behind then."""
    chunked = req.content_length is None and req.env.get("wsgi.input_terminated")
    stream = req.stream if chunked else req.bounded_stream
    f = tempfile.NamedTemporaryFile(prefix="torc-graph-body-", suffix=".json", delete=False)
    try:
        with f:
            size = 0
            while True:
                try:
                    piece = stream.read(1 << 20)
                except _BODY_READ_ERRORS:
                    raise InvalidInput("request body could not be read: malformed chunked "
                                       "encoding or truncated body") from None
                if not piece:
                    break
                size += len(piece)
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"request body is larger than the limit of {max_bytes} bytes")
                f.write(piece)
        if req.content_length is not None and size < req.content_length:
            raise InvalidInput(f"request body is truncated: {size} of the "
                               f"{req.content_length} bytes declared by Content-Length arrived")
    except BaseException:
        os.unlink(f.name)
        raise
    return f.name


def parse_body(raw: bytes, *, required: bool = True) -> Any:
    """The JSON value of a request body already read (:func:`read_body`'s rules and messages).
    Raises InvalidInput (400)."""
    if not raw.strip():
        if required:
            raise InvalidInput("request body is required (a JSON object)")
        return None
    fast, value = json_codec.loads_request(raw)
    if not fast:  # the standard library's exact path and error messages
        try:
            text = raw.decode("utf-8")
            value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidInput(f"request body is nested deeper than {MAX_DEPTH} levels") from None
    if value is None and required:
        # JSON null is no body: without this, handlers would see an absent body and skip
        # validation.
        raise InvalidInput("request body is required (a JSON object), not null")
    # Only an escape can produce a surrogate (raw UTF-8 ones fail to decode above), and orjson
    # refuses lone ones itself.
    if fast:
        if not _depth_within(raw, value, MAX_DEPTH):
            raise InvalidInput(f"request body is nested deeper than {MAX_DEPTH} levels")
    else:
        check_depth(value, surrogates=_SURROGATE_ESCAPE.search(raw) is not None)
    return value


#: Maps ``{``/``}`` to ``[``/``]``; with :data:`_OTHER_BYTES` deleted, only brackets and
#: quotes remain.
_BRACKET_MAP = bytes.maketrans(b"{}", b"[]")
_OTHER_BYTES = bytes(i for i in range(256) if i not in b'[]{}"')


def _depth_within(raw: bytes, value: Any, limit: int) -> bool:
    """Whether arrays/objects in ``value``, parsed from the valid JSON text ``raw``, nest at
    most ``limit`` deep (:func:`check_depth` without surrogates). Without a backslash in
    ``raw`` no string holds an escaped quote, so the brackets between string quotes are found
    by a split, and they are reduced in C: each round removes the innermost ``[]``
    pairs, so a container of height h is gone after h rounds (profiled: the walk over every
    parsed value cost ~1.3x the parse of a 10^4-job bulk body, this ~0.45x). Otherwise the walk
    decides."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return True
    if b"\\" in raw:
        try:
            check_depth(value, limit, surrogates=False)
        except InvalidInput:
            return False
        return True
    brackets = b"".join(raw.translate(_BRACKET_MAP, _OTHER_BYTES).split(b'"')[::2])
    for _ in range(limit):
        if not brackets:
            return True
        brackets = brackets.replace(b"[]", b"")
    return not brackets


def read_object(req: falcon.Request, max_bytes: int, *, required: bool = True) -> dict | None:
    """:func:`read_body`, requiring a JSON object (400 for an array, string, number...)."""
    body = read_body(req, max_bytes, required=required)
    if body is not None and not isinstance(body, dict):
        raise InvalidInput(f"request body must be a JSON object, not {_json_type(body)}")
    return body


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "null"
