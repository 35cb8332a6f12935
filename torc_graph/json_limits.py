"""Limits on JSON values from clients, shared by the API's body reader and the streamed
specification reader: nesting depth and lone UTF-16 surrogates.

Values nested deeper than :data:`MAX_DEPTH` would exhaust Python's recursion limit in the
schema validator or SQLite's JSON functions; a lone surrogate (which JSON text can spell as an
escape, ``"\\ud800"``) decodes to a string that cannot be encoded as UTF-8, so it could never be
stored or sent back.
"""

from __future__ import annotations

import re
from typing import Any

from torc_graph.errors import InvalidInput

#: Deepest nesting of arrays/objects accepted in a request body (torc documents are shallow;
#: free-form ``user_data.data`` gets generous room, far below the recursion limits).
MAX_DEPTH = 100

#: A lone surrogate in a decoded string, and its escape in JSON text.
SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def check_depth(value: Any, limit: int = MAX_DEPTH, *, surrogates: bool = True) -> None:
    """InvalidInput (400) if arrays/objects in ``value`` nest deeper than ``limit``, or (with
    ``surrogates``) if a string or key holds a lone UTF-16 surrogate.

    JSON text can spell a lone surrogate as an escape (``"\\ud800"``); Python decodes it into a
    string that cannot be encoded as UTF-8, so it could never be stored or sent back.
    Iterative, so it is safe on any value the parser produced; only containers are stacked,
    so the cost is one pass over the body's values."""
    if isinstance(value, str):
        _check_string(value, surrogates)
    if not isinstance(value, (dict, list)):
        return
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise InvalidInput(f"request body is nested deeper than {limit} levels")
        if isinstance(item, dict):
            if surrogates:
                for key in item:
                    _check_string(key, True)
            item = item.values()
        for child in item:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif surrogates and isinstance(child, str):
                _check_string(child, True)


def _check_string(text: str, surrogates: bool) -> None:
    if surrogates and SURROGATE.search(text):
        raise InvalidInput(
            "request body contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), "
            "which is not valid Unicode"
        )
