"""Fast JSON text for documents: orjson where it gives the same result as the standard library.

Profiles of bulk creation showed ``json`` encoding and decoding as ~25 % of a ``bulk_jobs``
request (documents encoded for the store, responses encoded for the client). orjson is several
times faster, but differs from ``json`` at the edges, so each function here falls back to the
standard library exactly where it would:

* integers beyond 64 bits: orjson refuses to encode them and decodes them as floats; the
  standard library keeps them exact (a text with 19 or more consecutive digits takes that path);
* NaN/Infinity: orjson writes them as ``null``; the standard library (``allow_nan=False``)
  raises ValueError. Output containing ``null`` is re-encoded by the standard library;
* lone surrogates, non-string keys and other values orjson refuses: the standard library's
  result (or error).

Output is compact UTF-8 (``ensure_ascii=False``); number spelling may differ (``1e16`` rather
than ``1e+16``) but every value decodes to the same Python value.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_BIG_INT = re.compile(rb"\d{19}")
_BIG_INT_TEXT = re.compile(r"\d{19}")


def dumpb(value: Any) -> bytes:
    """Compact, strict JSON as UTF-8 bytes. Raises ValueError (NaN, Infinity) or TypeError
    (not JSON-serializable), as ``json.dumps(..., allow_nan=False)`` does."""
    try:
        out = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _STDLIB(value).encode("utf-8")
    if b"null" in out:
        _STDLIB(value)  # raises ValueError if a null came from a NaN or an infinity
    return out


def dumps(value: Any) -> str:
    """:func:`dumpb` as text."""
    try:
        out = orjson.dumps(value)
    except TypeError:
        return _STDLIB(value)
    if b"null" in out:
        return _STDLIB(value)
    return out.decode("utf-8")


def loads(text: str | bytes) -> Any:
    """Decode JSON text the store or this server wrote (valid JSON). Integers stay exact."""
    big = _BIG_INT.search(text) if isinstance(text, bytes) else _BIG_INT_TEXT.search(text)
    if big is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def loads_request(raw: bytes) -> tuple[bool, Any]:
    """Try the fast decoder on a request body: ``(True, value)``, or ``(False, None)`` when
    the caller must use its exact (standard library) path — malformed or unusual input
    (big integers, surrogate escapes, very deep nesting), so its error messages are kept."""
    if _BIG_INT.search(raw):
        return False, None
    try:
        return True, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, None
