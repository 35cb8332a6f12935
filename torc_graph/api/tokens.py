"""Action rows for API tokens (torc_graph extension; admin only, see :mod:`.auth`).

``POST /tokens`` answers the new token once (``{"token": ..., "document": ...}``); only its hash
is stored. ``DELETE /tokens/{key}`` revokes (the document stays, marked ``revoked``).
"""

from __future__ import annotations

from typing import Any

from torc_graph.api.route import Action
from torc_graph.engine import tokens
from torc_graph.store.base import GraphStore


def _create(store: GraphStore, body: dict[str, Any]) -> dict[str, Any]:
    token, doc = tokens.create(store, name=body["name"], role=body["role"],
                               workflow=body.get("workflow"), expires_in=body.get("expires_in"))
    return {"token": token, "document": doc}


def _list(store: GraphStore) -> dict[str, Any]:
    items = tokens.list_tokens(store)
    return {"items": items, "skip": 0, "max_limit": len(items), "count": len(items),
            "total_count": len(items), "has_more": False}


def _revoke(store: GraphStore, key: str) -> dict[str, Any]:
    return tokens.revoke(store, key)


ACTIONS: list[Action] = [
    Action("POST", "/tokens", _create, "create_token", body="token"),
    Action("GET", "/tokens", _list, "list_tokens"),
    Action("DELETE", "/tokens/{key}", _revoke, "revoke_token"),
]
