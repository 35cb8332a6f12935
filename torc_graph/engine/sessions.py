"""Web dashboard sessions: a cookie that stands for an API token, for safe reads only.

A browser's ``EventSource`` cannot send an ``Authorization`` header, so the dashboard logs in
once with a token (:func:`create`) and then sends a session cookie. The session id is 32 random
bytes (URL-safe base64); only its SHA-256 is stored, as the document key in the global
``dashboard_sessions`` collection, with the token's key and an expiry::

    {"token": <auth_tokens key>, "expires": epoch seconds, "created": iso}

:func:`verify` answers the token document the session stands for, or None when the session is
unknown or expired or its token is revoked or expired (a session never outlives its token).
What a session may do (GET/HEAD only) is decided in :mod:`torc_graph.api.auth`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from torc_graph import model
from torc_graph.engine import tokens
from torc_graph.engine.common import now_iso
from torc_graph.errors import NotFound, Unauthorized
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import Lt
from torc_graph.store.records import Document

SESSIONS = model.GlobalCollection.DASHBOARD_SESSIONS.value
#: Default session lifetime (the ``dashboard_session_seconds`` setting): 12 hours.
DEFAULT_SECONDS = 12 * 3600.0
#: Session ids are URL-safe base64 of this many random bytes.
_ID_BYTES = 32


def _storage_key(session_id: str) -> str:
    """The stored key of a session: ``s`` + hex SHA-256 of its id (never the id itself)."""
    return "s" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def create(store: GraphStore, token: str, *, seconds: float = DEFAULT_SECONDS
           ) -> tuple[str, Document]:
    """Log in with an API token: returns ``(session id, token document)``.

    Raises Unauthorized (401) when the token is unknown, revoked or expired. Also deletes
    the expired sessions (one set-based delete), so the collection does not grow without bound.
    Atomic: one insert.
    """
    doc = tokens.verify(store, token) if isinstance(token, str) else None
    if doc is None:
        raise Unauthorized("the token is unknown, revoked or expired")
    now = time.time()
    store.delete_many(SESSIONS, None, {"expires": Lt(now)})
    session_id = secrets.token_urlsafe(_ID_BYTES)
    store.insert(SESSIONS, None, {"_key": _storage_key(session_id), "token": doc["_key"],
                                  "expires": now + seconds, "created": now_iso()})
    return session_id, doc


def lookup(store: GraphStore, session_id: str) -> tuple[Document, Document] | None:
    """``(session document, token document)`` of a live session, else None (unknown or
    expired session; revoked, expired or deleted token)."""
    if not session_id or len(session_id) > 256:
        return None
    try:
        session = store.get(SESSIONS, None, _storage_key(session_id))
    except NotFound:
        return None
    if not isinstance(session.get("expires"), (int, float)) or session["expires"] <= time.time():
        return None
    token = tokens.by_key(store, str(session.get("token")))
    return None if token is None else (session, token)


def verify(store: GraphStore, session_id: str) -> Document | None:
    """The token document a live session stands for, else None (see :func:`lookup`)."""
    found = lookup(store, session_id)
    return None if found is None else found[1]


def delete(store: GraphStore, session_id: str) -> None:
    """Log out: delete the session (no error when it does not exist)."""
    if not session_id or len(session_id) > 256:
        return
    try:
        store.delete(SESSIONS, None, _storage_key(session_id))
    except NotFound:
        pass


def describe(session: Document | None, token: Document) -> dict[str, Any]:
    """What ``GET /dashboard/session`` answers for a session (or a bare token)."""
    return {"token_name": token.get("name"), "role": token.get("role"),
            "workflow": token.get("workflow"),
            "expires": None if session is None else session.get("expires")}
