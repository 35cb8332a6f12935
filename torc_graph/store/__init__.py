"""Graph storage: the protocol (:mod:`.base`) and its backends, chosen by URL.

* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` -> :class:`.sqlite.SQLiteStore`
* ``arangodb://user:password@host:8529/database`` (``arangodbs://`` for TLS) ->
  :class:`.arango.ArangoStore`
"""

from __future__ import annotations

from urllib.parse import urlsplit

from torc_graph.errors import InvalidInput
from torc_graph.store.base import GraphStore

__all__ = ["GraphStore", "open_store"]


def open_store(url: str, **options) -> GraphStore:
    """Open the store named by ``url`` (no connection is made until first use)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from torc_graph.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **options)
    if scheme in ("arangodb", "arangodbs"):
        from torc_graph.store.arango import ArangoStore

        return ArangoStore.from_url(url, **options)
    raise InvalidInput(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or "
        "arangodb://user:password@host:8529/database"
    )
