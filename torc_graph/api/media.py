"""JSON on the wire: the one encoder, the bounded body reader and the response writer.

Integers stay JSON integers (the torc client's pydantic models use ``StrictInt``), output is
compact, and NaN/Infinity are never produced or accepted (they are not JSON).
"""

from __future__ import annotations

import json
from typing import Any

import falcon

from torc_graph.errors import InvalidInput, PayloadTooLarge


def dumps(value: Any) -> str:
    """Compact, strict JSON (``allow_nan=False``: a NaN is a bug, not a value to send)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def send_json(resp: falcon.Response, value: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = dumps(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_body(req: falcon.Request, max_bytes: int, *, required: bool = True) -> Any:
    """Parse the request body as JSON.

    An absent or blank body is ``None`` when ``required`` is False and a 400 otherwise. A body
    over ``max_bytes`` is PayloadTooLarge (413) without reading more than ``max_bytes + 1``
    bytes (the middleware already rejected a declared Content-Length over the limit; this
    covers chunked bodies). Raises InvalidInput (400) for malformed JSON.
    """
    if req.content_length is None and req.env.get("wsgi.input_terminated"):
        # A chunked body: the server (gunicorn) marks its input as ending at the body's end.
        raw = req.stream.read(max_bytes + 1)
    else:
        raw = req.bounded_stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than the limit of {max_bytes} bytes")
    if not raw.strip():
        if required:
            raise InvalidInput("request body is required (a JSON object)")
        return None
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


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
