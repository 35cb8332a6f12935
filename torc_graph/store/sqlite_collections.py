"""The collections of the SQLite store: the whitelist of collection names, each with its
table and kind, and the checks and decoding shared by its operations (used by
:class:`~torc_graph.store.sqlite.SQLiteStore` and its mixins)."""

from __future__ import annotations

from typing import Any

from torc_graph import json_codec, model
from torc_graph.errors import InvalidInput
from torc_graph.store import sqlite_columns as cols
from torc_graph.store import sqlite_schema as schema
from torc_graph.store.records import Document

SYSTEM = frozenset(("_key", "_id", "_rev", "_from", "_to", "_oldRev"))


class Coll:
    """A whitelisted collection: its table and kind."""

    __slots__ = ("name", "edge", "is_global", "vertex", "table", "columns")

    def __init__(self, name: str, edge: bool, is_global: bool, vertex: bool):
        self.name, self.edge, self.is_global, self.vertex = name, edge, is_global, vertex
        self.table = schema.edge_table(name) if edge else schema.doc_table(name)
        self.columns = cols.columns(name)

    def doc(self, alias: str) -> str:
        """SQL for the whole stored document of row ``alias`` (columns overlaid)."""
        return cols.read_expr(self.name, alias)


COLLS: dict[str, Coll] = {}
for _c in model.Collection:
    COLLS[_c.value] = Coll(_c.value, False, False, _c in model.VERTEX_COLLECTIONS)
for _e in model.Edge:
    COLLS[_e.value] = Coll(_e.value, True, False, False)
for _g in model.GlobalCollection:
    COLLS[_g.value] = Coll(_g.value, False, True, True)
for _ge in model.GlobalEdge:
    COLLS[_ge.value] = Coll(_ge.value, True, True, False)


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
        raise InvalidInput(f"invalid document key {key!r}")
    return key


def loads(text: str) -> Document:
    return json_codec.loads(text)
