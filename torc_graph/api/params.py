"""Query and path parameter conversion (query and path values always arrive as strings).

Query parameters convert by declared type (``bool`` from true/false, ``int``/``float`` from
decimal strings; integers must fit in 64 bits and numbers must be finite, as nothing downstream
can store or compare anything else); a value that does not convert is InvalidInput (400)
naming the parameter.
Path parameters that do not convert are NotFound (404): Foxx treated such a route as unmatched.
Undeclared query parameters are ignored, as in Foxx.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import falcon

from torc_graph.api.route import REQUIRED, Param
from torc_graph.errors import InvalidInput, NotFound

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_TYPE_NAMES = {
    bool: "a boolean (true or false)",
    int: f"an integer between {INT64_MIN} and {INT64_MAX}",
    float: "a finite number",
    str: "a string",
}


def convert(raw: str, type_: type) -> Any:
    """Convert one string to ``type_``. Raises ValueError if it does not convert."""
    if type_ is str:
        return raw
    if type_ is bool:
        low = raw.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        raise ValueError(raw)
    if type_ is int:
        if _INT.match(raw.strip()) and INT64_MIN <= (value := int(raw)) <= INT64_MAX:
            return value
        raise ValueError(raw)
    if type_ is float:
        if _FLOAT.match(raw.strip()) and math.isfinite(value := float(raw)):
            return value
        raise ValueError(raw)
    raise TypeError(f"unsupported parameter type {type_!r}")


def query_value(req: falcon.Request, name: str, type_: type, default: Any = None) -> Any:
    """One query parameter converted to ``type_`` (the last one wins if repeated)."""
    raw = req.get_param(name)
    if raw is None:
        if default is REQUIRED:
            raise InvalidInput(f"query parameter {name!r} is required")
        return default
    try:
        return convert(raw, type_)
    except ValueError:
        raise InvalidInput(
            f"query parameter {name!r} must be {_TYPE_NAMES[type_]}, got {raw!r}"
        ) from None


def query_values(req: falcon.Request, params: Iterable[Param]) -> dict[str, Any]:
    """All declared query parameters of an Action, converted, keyed by name."""
    return {p.name: query_value(req, p.name, p.type, p.default) for p in params}


def present_filters(req: falcon.Request, types: Mapping[str, type]) -> dict[str, Any]:
    """The filter parameters present in the query, converted (absent ones are not filters)."""
    return {
        name: query_value(req, name, type_)
        for name, type_ in types.items()
        if req.get_param(name) is not None
    }


def path_value(name: str, raw: str, type_: type) -> Any:
    """A path parameter converted to ``type_``; NotFound (404) if it does not convert."""
    try:
        return convert(raw, type_)
    except ValueError:
        raise NotFound(
            f"Unknown path: parameter {name!r} must be {_TYPE_NAMES[type_]}, got {raw!r}"
        ) from None
