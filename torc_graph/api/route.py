"""The declarative route table's vocabulary.

Every non-CRUD endpoint is one :class:`Action` row: method, path template, the engine function to
call, and how to convert its inputs. :class:`torc_graph.api.resources.ActionResource` serves every
row the same way (parse, validate, call, serialize); errors are mapped once by the app's error
handler. Generic collection CRUD is served by its own table-driven resources.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """A query parameter: converted to ``type`` (bool from true/false, int/float from decimal
    strings); a value that does not convert is a 400 naming the parameter. Missing: ``default``
    (``REQUIRED`` makes it a 400)."""

    name: str
    type: type = str
    default: Any = None


@dataclass(frozen=True)
class Action:
    """One endpoint.

    * ``path``: Falcon template; the workflow segment is always ``{workflow}``.
    * ``handler(store, **kwargs)``: kwargs are the path params (converted by ``path_types``; a
      path value that does not convert gives 404 like Foxx), the query params, and ``body``
      (validated against schema ``body`` with defaults filled; ``None`` when the action takes no
      body). Returns a JSON-able value, sent with HTTP 200.
    * ``keys``: path params that name documents, mapped to their collection: the value may be a
      bare key or a full id (``jobs__12/34``), and the handler receives the bare key.
    * ``body_required``: False lets an empty body through as ``None`` (ignored bodies).
    * ``raw_body``: the handler validates the body itself (``body`` still names the schema the
      API documents); used where the body has more than one accepted form.
    * ``reader``: reads the body itself, ``reader(req, limit)`` (e.g. spools it to a file;
      ``limit`` is the ``max_spec_bytes`` setting); the handler validates it.
    * ``owner``: the action creates a workflow; the handler also receives ``owner``, the
      authenticated token's owner record (:func:`torc_graph.api.auth.request_owner`; None
      without authentication), to store in the creating transaction.
    """

    method: str
    path: str
    handler: Callable[..., Any]
    operation_id: str
    query: tuple[Param, ...] = ()
    path_types: Mapping[str, type] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    body_required: bool = True
    raw_body: bool = False
    reader: Callable[..., Any] | None = None
    owner: bool = False
