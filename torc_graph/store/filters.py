"""The filter values of the graph store: ``where`` mappings and their operators (:class:`In`,
:class:`NotIn`, :class:`Ne`, :class:`Lt`, :class:`Le`, :class:`Gt`, :class:`Ge`), the
:class:`HasEdge` graph predicate, ``order_by`` and traversal directions. Their semantics are
part of the contract in :mod:`.base`, which re-exports them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Where = Mapping[str, Any]
#: ``[(field_path, descending), ...]``
OrderBy = Sequence[tuple[str, bool]]
Direction = Literal["out", "in"]


@dataclass(frozen=True)
class In:
    """The field's value is one of ``values`` (type-strict)."""

    values: tuple[Any, ...]

    def __init__(self, values: Iterable[Any]):
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class NotIn:
    """The field's value is none of ``values`` (a missing field qualifies)."""

    values: tuple[Any, ...]

    def __init__(self, values: Iterable[Any]):
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Ne:
    """The field's value differs from ``value`` (a missing field qualifies)."""

    value: Any


@dataclass(frozen=True)
class Lt:
    value: Any


@dataclass(frozen=True)
class Le:
    value: Any


@dataclass(frozen=True)
class Gt:
    value: Any


@dataclass(frozen=True)
class Ge:
    value: Any


@dataclass(frozen=True)
class HasEdge:
    """Graph predicate on a vertex document.

    True when the document has at least one ``edge`` edge in ``direction`` (``"out"``: the
    document is the edge's ``_from``; ``"in"``: it is the ``_to``) whose *other* endpoint matches
    ``where``. ``where=None`` matches any other endpoint, even a dangling id. A ``where`` that
    names only ``_id`` and/or ``_key`` is evaluated on the edge's endpoint id without loading
    the other document; any other field requires the other document to exist.
    With ``exists=False`` the predicate is negated: no such edge exists.
    """

    edge: str
    direction: Direction
    where: Where | None = None
    exists: bool = True
