"""Action rows for API tokens (torc_graph extension, see :mod:`.auth`).

``POST /tokens`` (admin) answers the new token once (``{"token": ..., "document": ...}``); only
its hash is stored. ``DELETE /tokens/{key}`` (admin) revokes (the document stays, marked
``revoked``). ``POST /workflows/{workflow}/executor_tokens`` (``{"expires_in": s, "name": ...}``)
and ``DELETE /workflows/{workflow}/executor_tokens/{key}`` mint and revoke an expiring executor
token of one workflow: by rule they need ``edit`` on it (its owner or an admin), which is how
``torc-graph slurm schedule-nodes`` / ``run --slurm --url`` give allocations a credential.
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


def _create_executor(store: GraphStore, workflow: str, body: dict[str, Any]) -> dict[str, Any]:
    token, doc = tokens.create_executor(store, workflow, expires_in=body["expires_in"],
                                        name=body.get("name"))
    return {"token": token, "document": doc}


def _revoke_executor(store: GraphStore, workflow: str, key: str) -> dict[str, Any]:
    return tokens.revoke_executor(store, workflow, key)


ACTIONS: list[Action] = [
    Action("POST", "/tokens", _create, "create_token", body="token"),
    Action("GET", "/tokens", _list, "list_tokens"),
    Action("DELETE", "/tokens/{key}", _revoke, "revoke_token"),
    Action("POST", "/workflows/{workflow}/executor_tokens", _create_executor,
           "create_executor_token", body="executor_token"),
    Action("DELETE", "/workflows/{workflow}/executor_tokens/{key}", _revoke_executor,
           "revoke_executor_token"),
]
