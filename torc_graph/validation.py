"""Request-body validation against the JSON Schemas in ``schemas/``, with defaults filled.

Every body that a typed route accepts is checked here against ``schemas/<name>.json`` (JSON
Schema draft 2020-12, the schema files are the single source of truth). Like torc's joi schemas,
unknown keys are rejected, integers must be JSON integers (``1.0``, ``"1"`` and ``true`` are not
integers, matching the client's StrictInt), and schema defaults are filled in, top level and in
nested objects, before the handler sees the body.

Why not run ``jsonschema`` per request: its Draft202012Validator takes seconds for a 10,000-job
bulk body. Instead each schema is compiled once (lazily, cached) into nested Python closures
that validate, copy and fill defaults in one pass. The compiler supports exactly the keywords the
schema files use (:data:`SUPPORTED_KEYWORDS`; ``tests/test_schemas_lint.py`` pins that no other
keyword appears), so validation stays complete; ``tests/test_validation.py`` cross-checks the
compiled validators against ``jsonschema`` on valid and invalid bodies.

Errors are :class:`~torc_graph.errors.InvalidInput` (400) with one plain-words message naming the
schema, the field path and the problem, e.g. ``job: 'num_cpus' must be an integer (got "4")``.
"""

from __future__ import annotations

import importlib.resources
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torc_graph import model, units
from torc_graph.errors import InvalidInput

#: The installed ``torc_graph.schemas`` package (``schemas/`` in the source tree).
SCHEMA_DIR = Path(str(importlib.resources.files("torc_graph.schemas")))
#: The file of shared ``$defs``; not a document type, so not in :func:`schema_names`.
COMMON = "common"

#: Keywords that constrain or shape a value; the compiler implements each of them.
VALIDATION_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "$ref", "default"}
)
#: Keywords that carry no validation meaning.
ANNOTATION_KEYWORDS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description"})
SUPPORTED_KEYWORDS = VALIDATION_KEYWORDS | ANNOTATION_KEYWORDS

#: Accepted on input (update responses echo it) and dropped from the validated body.
_IGNORED_FIELDS = frozenset({"_oldRev"})

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),  # type(True) is bool, so exact-type checks exclude booleans
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
    "object": "an object",
    "array": "an array",
}

_Check = Callable[[Any], Any]


class _Fail(Exception):
    """Raised inside compiled checks; the path is prepended while the stack unwinds, so the
    success path never builds path strings."""

    def __init__(self, kind: str, detail: Any = None, value: Any = None):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail
        self.value = value
        self.path: list[str | int] = []


#: Raised by the checks of :class:`ObjectShape` (no message: re-validate to get one).
Invalid = _Fail


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def validate(schema: str, body: Any) -> dict:
    """Validate ``body`` against ``schemas/<schema>.json`` and return a new dict with the schema
    defaults filled in (also inside nested objects that are present or defaulted). ``_oldRev`` is
    accepted and dropped. The input is not modified and shares no containers with the result.

    Raises InvalidInput naming the schema, the field path and the problem (first error only,
    deterministic: missing required fields first, then fields in body order). Raises ValueError
    if ``schema`` is not a known schema name (a programming error, not a client error).
    """
    check = _root_check(schema)
    try:
        return check(body)
    except _Fail as exc:
        raise InvalidInput(f"{schema}: {_describe(exc)}") from None


#: Unit-string fields per schema, checked after the schema (:func:`validate` checks exactly the
#: schema) by every write path of documents (a bad one would otherwise be stored and break
#: ``initialize_jobs`` for the whole workflow).
UNIT_FIELDS: dict[str, dict[str, Callable[[str], Any]]] = {
    "resource_requirements": {"memory": units.memory_bytes, "runtime": units.duration_seconds},
    "local_scheduler": {"memory": units.memory_bytes},
}


def check_units(schema: str, doc: dict, label: str | None = None) -> None:
    """InvalidInput naming the field if a unit string of ``doc`` does not parse
    (:data:`UNIT_FIELDS`; ``null`` is left to the schema)."""
    for name, parse in UNIT_FIELDS.get(schema, {}).items():
        value = doc.get(name)
        if isinstance(value, str):
            try:
                parse(value)
            except InvalidInput as exc:
                raise InvalidInput(f"{label or schema}: '{name}': {exc.message}") from None


def validate_many(schema: str, bodies: Any, *, label: str | None = None) -> list[dict]:
    """Validate each element of ``bodies`` like :func:`validate`; the error message names the
    index, e.g. ``jobs[17]: 'num_cpus' must be an integer (got "4")``.

    ``label`` defaults to the collection name of the schema (``job`` → ``jobs``).
    Raises InvalidInput if ``bodies`` is not a list or an element is invalid.
    """
    check = _root_check(schema)
    label = label or _plural(schema)
    if type(bodies) is not list:
        raise InvalidInput(f"{label} must be a JSON array (got {_show(bodies)})")
    out = []
    append = out.append
    i = 0
    try:
        for i, body in enumerate(bodies):
            append(check(body))
    except _Fail as exc:
        raise InvalidInput(f"{label}[{i}]: {_describe(exc)}") from None
    return out


def validate_item(schema: str, body: Any, label: str, index: int) -> dict:
    """:func:`validate` for element ``index`` of a list: the message names it as
    :func:`validate_many` does (``jobs[17]: ...``)."""
    try:
        return _root_check(schema)(body)
    except _Fail as exc:
        raise InvalidInput(f"{label}[{index}]: {_describe(exc)}") from None


@dataclass(frozen=True)
class ObjectShape:
    """The compiled parts of an object schema, for callers that validate and build documents
    in one pass (bulk inserts). ``properties`` maps a field to its compiled check (returns the
    validated value, a copy for containers; raises :class:`Invalid`); ``defaults`` are
    ``(field, value, mutable)`` in schema order (copy a mutable value with :func:`copy_value`).
    A body is valid iff it is a dict holding every ``required`` field, only ``properties``
    fields (when not ``additional``) and each passes its check."""

    properties: dict[str, Callable[[Any], Any]]
    required: tuple[str, ...]
    additional: bool
    defaults: tuple[tuple[str, Any, bool], ...]


def object_shape(schema: str) -> ObjectShape:
    """The :class:`ObjectShape` of an object schema. Raises ValueError for an unknown schema
    or one that is not an object."""
    check = _root_check(schema)
    shape = getattr(check, "shape", None)
    if shape is None:
        raise ValueError(f"schema {schema!r} is not an object schema")
    return shape


def fields(schema: str) -> frozenset[str]:
    """Top-level property names of a schema (whitelist for sort/filter field names).

    Empty for free-form schemas (see :func:`is_free_form`). ``_oldRev`` is not included.
    """
    with _lock:
        cached = _fields_cache.get(schema)
    if cached is None:
        cached = frozenset(load(schema).get("properties", {})) - _IGNORED_FIELDS
        with _lock:
            _fields_cache[schema] = cached
    return cached


def is_free_form(schema: str) -> bool:
    """True if the schema accepts any top-level keys (``event``, ``join_filters``)."""
    return _raw(schema).get("additionalProperties") is True


def schema_names() -> tuple[str, ...]:
    """Names of all schemas (document types, edge and request bodies), sorted."""
    return tuple(
        sorted(p.stem for p in SCHEMA_DIR.glob("*.json") if p.stem != COMMON)
    )


def load(schema: str) -> dict:
    """The raw schema document (a fresh copy, safe to modify). ``common`` is loadable too.

    Raises ValueError if there is no such schema.
    """
    return json.loads(json.dumps(_raw(schema)))


# --------------------------------------------------------------------------------------------
# Loading and compiling
# --------------------------------------------------------------------------------------------

_lock = threading.RLock()
_raw_cache: dict[str, dict] = {}
_compiled: dict[tuple[str, str], _Check] = {}
_fields_cache: dict[str, frozenset[str]] = {}


def _raw(name: str) -> dict:
    with _lock:
        doc = _raw_cache.get(name)
        if doc is None:
            # The name must be a plain file stem: never let a caller-supplied string walk the
            # filesystem.
            if not model.FIELD_PATH_PATTERN.match(name) or "." in name:
                raise ValueError(f"unknown schema {name!r}")
            path = SCHEMA_DIR / f"{name}.json"
            if not path.is_file():
                raise ValueError(f"unknown schema {name!r}")
            doc = json.loads(path.read_text(encoding="utf-8"))
            _raw_cache[name] = doc
        return doc


def _root_check(schema: str) -> _Check:
    if schema == COMMON:
        raise ValueError("'common' holds shared definitions, not a schema to validate against")
    with _lock:
        check = _compiled.get((schema, ""))
        if check is None:
            check = _compile_ref(f"{schema}.json", schema)
        return check


def _resolve(ref: str, current: str) -> tuple[str, str, Any]:
    """Resolve ``other.json#/json/pointer`` or ``#/pointer`` relative to file ``current``."""
    file_part, _, pointer = ref.partition("#")
    name = current
    if file_part:
        if not file_part.endswith(".json") or "/" in file_part:
            raise ValueError(f"unsupported $ref {ref!r} in {current}")
        name = file_part[: -len(".json")]
    node: Any = _raw(name)
    if pointer:
        if not pointer.startswith("/"):
            raise ValueError(f"unsupported $ref {ref!r} in {current}")
        for token in pointer[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(token)] if isinstance(node, list) else node[token]
            except (KeyError, IndexError, ValueError):
                raise ValueError(f"unresolvable $ref {ref!r} in {current}") from None
    return name, pointer, node


def _compile_ref(ref: str, current: str) -> _Check:
    name, pointer, node = _resolve(ref, current)
    key = (name, pointer)
    check = _compiled.get(key)
    if check is None:
        # Placeholder for (unused but harmless) recursive references.
        cell: list[_Check] = []
        _compiled[key] = lambda v: cell[0](v)
        check = _compile(node, name)
        cell.append(check)
        _compiled[key] = check
    return check


def _compile(node: dict, file: str) -> _Check:
    unsupported = set(node) - SUPPORTED_KEYWORDS
    if unsupported:
        raise ValueError(f"schema {file}: unsupported keywords {sorted(unsupported)}")
    if "$ref" in node:
        if set(node) & (VALIDATION_KEYWORDS - {"$ref", "default"}):
            raise ValueError(f"schema {file}: $ref must not have validating siblings")
        return _compile_ref(node["$ref"], file)
    declared = node.get("type")
    types = (declared,) if isinstance(declared, str) else tuple(declared or ())
    if "object" in types:
        check = _compile_object(node, file)
    elif "array" in types:
        check = _compile_array(node, file)
    elif types:
        check = _compile_scalar(types)
    else:
        check = _copy  # no type: any JSON value
    if "enum" in node:
        check = _with_enum(check, node["enum"])
    others = tuple(t for t in types if t not in ("object", "array"))
    if ("object" in types or "array" in types) and others:
        check = _with_scalars(check, types, others)
    return check


def _type_error(types: tuple[str, ...], value: Any) -> _Fail:
    return _Fail("type", types, value)


def _compile_scalar(types: tuple[str, ...]) -> _Check:
    allowed = frozenset(t for name in types for t in _PY_TYPES[name])

    def check(v: Any) -> Any:
        if type(v) in allowed:
            return v
        raise _type_error(types, v)

    return check


def _with_scalars(container: _Check, types: tuple[str, ...], scalars: tuple[str, ...]) -> _Check:
    """A union such as ``["object", "null"]``: scalars pass through, containers are checked."""
    allowed = frozenset(t for name in scalars for t in _PY_TYPES[name])

    def check(v: Any) -> Any:
        if type(v) in allowed:
            return v
        try:
            return container(v)
        except _Fail as exc:
            if exc.kind == "type" and not exc.path:
                exc.detail = types
            raise

    return check


def _with_enum(inner: _Check, values: list) -> _Check:
    # Compare (type, value) pairs so that 1, 1.0 and True are different members.
    members = frozenset((type(x), x) for x in values if not isinstance(x, (dict, list)))

    def check(v: Any) -> Any:
        v = inner(v)
        if isinstance(v, (dict, list)) or (type(v), v) not in members:
            raise _Fail("enum", values, v)
        return v

    return check


def _compile_array(node: dict, file: str) -> _Check:
    item = _compile(node["items"], file) if "items" in node else _copy

    def check(v: Any) -> Any:
        if type(v) is not list:
            raise _type_error(("array",), v)
        out = []
        append = out.append
        i = 0
        try:
            for i, x in enumerate(v):
                append(item(x))
        except _Fail as exc:
            exc.path.insert(0, i)
            raise
        return out

    return check


def _compile_object(node: dict, file: str) -> _Check:
    props: dict[str, _Check] = {
        name: _compile(sub, file) for name, sub in node.get("properties", {}).items()
    }
    required = tuple(node.get("required", ()))
    additional = node.get("additionalProperties", True)
    if additional not in (True, False):
        raise ValueError(f"schema {file}: additionalProperties must be true or false")
    drop = _IGNORED_FIELDS & props.keys()
    # Defaults are validated and filled once, here; at run time they are only copied.
    defaults: list[tuple[str, Any, bool]] = []
    for name, sub in node.get("properties", {}).items():
        if "default" in sub:
            try:
                filled = props[name](sub["default"])
            except _Fail as exc:
                raise ValueError(f"schema {file}: invalid default for {name!r}") from exc
            defaults.append((name, filled, isinstance(filled, (dict, list))))

    def check(v: Any) -> Any:
        if type(v) is not dict:
            raise _type_error(("object",), v)
        for name in required:
            if name not in v:
                exc = _Fail("missing")
                exc.path.append(name)
                raise exc
        out = {}
        for k, x in v.items():
            sub = props.get(k)
            if sub is None:
                if additional:
                    out[k] = _copy(x)
                    continue
                exc = _Fail("unknown")
                exc.path.append(k)
                raise exc
            try:
                x = sub(x)
            except _Fail as exc:
                exc.path.insert(0, k)
                raise
            if k not in drop:
                out[k] = x
        for name, value, mutable in defaults:
            if name not in out:
                out[name] = _copy(value) if mutable else value
        return out

    check.shape = ObjectShape(props, required, bool(additional), tuple(defaults))
    return check


def copy_value(v: Any) -> Any:
    """Copy a JSON value (much faster than copy.deepcopy for plain JSON)."""
    t = type(v)
    if t is dict:
        return {k: _copy(x) for k, x in v.items()}
    if t is list:
        return [_copy(x) for x in v]
    return v


_copy = copy_value


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def _path(parts: list[str | int]) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else p)
    return text


def _show(value: Any, limit: int = 60) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: _Fail) -> str:
    where = _path(exc.path)
    if exc.kind == "missing":
        return f"missing required field '{where}'"
    if exc.kind == "unknown":
        return f"unknown field '{where}'"
    if exc.kind == "enum":
        allowed = ", ".join(_show(x) for x in exc.detail)
        problem = f"must be one of {allowed} (got {_show(exc.value)})"
    else:
        words = [_TYPE_WORDS[t] for t in exc.detail]
        if not where and exc.detail == ("object",):
            return f"body must be a JSON object (got {_show(exc.value)})"
        problem = f"must be {' or '.join(words)} (got {_show(exc.value)})"
    return f"'{where}' {problem}" if where else f"body {problem}"


def _plural(schema: str) -> str:
    for candidate in (schema + "s", schema):
        if model.is_collection(candidate):
            return candidate
    return schema
