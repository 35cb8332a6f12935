"""Fast JSON text for documents: orjson where it gives the same result as the standard library.

Profiles of bulk creation showed ``json`` encoding and decoding as ~25 % of a ``bulk_jobs``
request (documents encoded for the store, responses encoded for the client). orjson is several
times faster, but differs from ``json`` at the edges, so each function here falls back to the
standard library exactly where it would:

* integers beyond 64 bits: orjson refuses to encode them and decodes them as floats; the
  standard library keeps them exact (a text with 19 or more consecutive digits takes that path);
* NaN/Infinity: orjson writes them as ``null``; the standard library (``allow_nan=False``)
  raises ValueError. Output containing ``null`` that does not decode back to the value is
  re-encoded by the standard library;
* lone surrogates, non-string keys and other values orjson refuses: the standard library's
  result (or error).

Output is compact UTF-8 (``ensure_ascii=False``); number spelling may differ (``1e16`` rather
than ``1e+16``) but every value decodes to the same Python value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_STDLIB = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
#: Maps ASCII digits to ``0`` and every other byte to a space: a text holds 19 consecutive
#: digits iff its translation holds :data:`_DIGITS_19`. Two C loops; a regex ``\d{19}`` cost
#: ~30 us per 500-byte document (profiled: 6 % of a batched completion), this ~1.5 us.
_DIGIT_MAP = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_DIGITS_19 = b"0" * 19


def _has_19_digits(text: str | bytes) -> bool:
    """Whether ``text`` has 19 consecutive ASCII digits (a number orjson may not decode
    exactly; digits inside strings only cost the exact path)."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    return _DIGITS_19 in text.translate(_DIGIT_MAP)


def dumpb(value: Any) -> bytes:
    """Compact, strict JSON as UTF-8 bytes. Raises ValueError (NaN, Infinity) or TypeError
    (not JSON-serializable), as ``json.dumps(..., allow_nan=False)`` does."""
    try:
        out = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _STDLIB(value).encode("utf-8")
    if b"null" in out and not _same(out, value):
        _STDLIB(value)  # raises ValueError if a null came from a NaN or an infinity
    return out


def dumps(value: Any) -> str:
    """:func:`dumpb` as text."""
    try:
        out = orjson.dumps(value)
    except TypeError:
        return _STDLIB(value)
    if b"null" in out and not _same(out, value):
        return _STDLIB(value)
    return out.decode("utf-8")


def dumps_each(values: list[Any]) -> list[str]:
    """``[dumps(v) for v in values]`` in one loop (bulk creation encodes 10^6 documents this
    way: no call per document). Raises as :func:`dumps`."""
    fast, out = orjson.dumps, []
    append = out.append
    for value in values:
        try:
            text = fast(value)
        except TypeError:
            append(_STDLIB(value))
            continue
        if b"null" in text and not _same(text, value):
            append(_STDLIB(value))
        else:
            append(text.decode("utf-8"))
    return out


def _same(out: bytes, value: Any) -> bool:
    """Whether ``out`` (orjson's text of ``value``, which holds a ``null``) decodes back to
    ``value``: then every null was a None, not a NaN or an infinity (orjson writes those as
    null, which the standard library refuses). A decode and a C-level comparison cost a
    fraction of re-encoding with the standard library (documents with nulls are common: every
    job's ``execution`` has some). Tuples compare unequal to lists: they take the slow path."""
    try:
        return orjson.loads(out) == value
    except orjson.JSONDecodeError:
        return False


def loads(text: str | bytes) -> Any:
    """Decode JSON text the store or this server wrote (valid JSON). Integers stay exact."""
    if not _has_19_digits(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def loads_request(raw: bytes) -> tuple[bool, Any]:
    """Try the fast decoder on a request body: ``(True, value)``, or ``(False, None)`` when
    the caller must use its exact (standard library) path — malformed or unusual input
    (big integers, surrogate escapes, very deep nesting), so its error messages are kept."""
    if _has_19_digits(raw):
        return False, None
    try:
        return True, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False, None
