"""Reading specification files: YAML, JSON, JSON5 or KDL, by extension (spec format §10).

``.json`` strict JSON, ``.json5`` JSON5, ``.yaml``/``.yml`` YAML 1.2 (ruamel.yaml's safe
loader: ``1:10``, ``01:00:00`` and ``yes`` stay strings, as in torc; PyYAML would read
``1:10`` as 70), ``.kdl`` KDL v2 (ckdl). Any other extension tries JSON, then JSON5, then
YAML, then KDL, and takes the first that gives an object. Every format gives the same JSON
value for the same spec.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from torc_graph.errors import InvalidInput

#: Spec file extensions and their format names.
FORMATS = {".json": "json", ".json5": "json5", ".yaml": "yaml", ".yml": "yaml", ".kdl": "kdl"}
FALLBACK_ORDER = ("json", "json5", "yaml", "kdl")


class SpecFileError(InvalidInput):
    """A specification file cannot be read or parsed; the message names the file and where."""


def loads(text: str, fmt: str) -> Any:
    """Parse ``text`` in format ``fmt`` (a value of :data:`FORMATS`). Raises InvalidInput
    with the parser's message (line and column where it gives them)."""
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                               f"{exc.msg}") from None
    if fmt == "json5":
        import json5

        try:
            return json5.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"invalid JSON5: {' '.join(str(exc).split())}") from None
    if fmt == "yaml":
        from ruamel.yaml import YAML
        from ruamel.yaml.error import YAMLError

        try:
            return _json_value(YAML(typ="safe", pure=True).load(text))
        except YAMLError as exc:
            raise InvalidInput(f"invalid YAML: {' '.join(str(exc).split())}") from None
    if fmt == "kdl":
        from torc_graph.spec import kdl

        return kdl.loads(text)
    raise ValueError(f"unknown format {fmt!r}")


def _json_value(value: Any) -> Any:
    """A YAML value as JSON: timestamps become their ISO text (YAML 1.2's core schema, which
    torc uses, has no timestamp type); binary data, sets and non-string keys are errors."""
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise InvalidInput(f"YAML mapping key {k!r} must be a string")
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise InvalidInput(f"YAML value {str(value)[:40]!r} of type {type(value).__name__} has no "
                       "JSON equivalent")


def read_file(path: str | os.PathLike) -> dict[str, Any]:
    """The specification object in ``path``. Raises SpecFileError naming the file: unreadable,
    not parseable in its format (or in any, for an unknown extension), or not an object."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecFileError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    fmt = FORMATS.get(path.suffix.lower())
    errors = []
    for candidate in (fmt,) if fmt else FALLBACK_ORDER:
        try:
            value = loads(text, candidate)
        except InvalidInput as exc:
            errors.append(exc.message)
            continue
        if isinstance(value, dict):
            return value
        errors.append(f"a workflow specification must be an object/mapping, not "
                      f"{type(value).__name__}")
    if fmt:
        raise SpecFileError(f"{path}: {errors[0]}")
    raise SpecFileError(f"{path}: not a JSON, JSON5, YAML or KDL specification "
                        f"({'; '.join(f'{f}: {e}' for f, e in zip(FALLBACK_ORDER, errors))}); "
                        f"name it with one of {', '.join(FORMATS)}")
