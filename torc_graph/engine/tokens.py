"""API tokens and workflow owners: creation, verification, revocation.

A token is ``tg_<key>_<secret>``: ``<key>`` names its document in the global ``auth_tokens``
collection, ``<secret>`` is 32 random bytes (URL-safe base64). Only the SHA-256 of the secret is
stored; verification fetches the document by key and compares the hashes with
:func:`hmac.compare_digest` (constant time), so neither the lookup nor the comparison depends on
the secret. A token document::

    {"name": str, "role": "reader"|"editor"|"executor"|"admin", "workflow": key | null,
     "expires": epoch seconds | null, "revoked": bool, "created": iso, "created_by": name,
     "secret_sha256": hex}

Roles (what each may do is decided in :mod:`torc_graph.api.auth`): ``reader`` reads every
workflow; ``editor`` also creates workflows and changes the ones it owns; ``executor`` runs the
jobs of ONE workflow (``workflow`` is required) and should expire; ``admin`` does everything,
including token management. The owner of a workflow is recorded in ``workflow_owners`` (document
key = workflow key, ``{"token": key, "name": name}``, :func:`owner_record`) by
``store.create_workflow``, in the same transaction as the workflow itself.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from typing import Any

from torc_graph import model
from torc_graph.engine.common import now_iso
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store.base import GraphStore
from torc_graph.store.records import Document

TOKENS = model.GlobalCollection.AUTH_TOKENS.value
OWNERS = model.GlobalCollection.WORKFLOW_OWNERS.value
PREFIX = "tg_"
#: Fields of a token document shown to clients (never the hash).
PUBLIC_FIELDS = ("_key", "name", "role", "workflow", "expires", "revoked", "created",
                 "created_by")


class Role(str, enum.Enum):
    READER = "reader"
    EDITOR = "editor"
    EXECUTOR = "executor"
    ADMIN = "admin"

    def __str__(self) -> str:
        return self.value


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def public(doc: Document) -> Document:
    """The token document without its hash."""
    return {k: doc.get(k) for k in PUBLIC_FIELDS}


def create(store: GraphStore, *, name: str, role: str, workflow: str | None = None,
           expires_in: float | None = None, created_by: str = "") -> tuple[str, Document]:
    """Create a token; returns ``(token, public document)``. The token is shown only here.

    Raises InvalidInput for an unknown role, an executor without a workflow (or another role
    with one), a non-positive ``expires_in``; NotFound for a missing workflow.
    """
    try:
        role = Role(role).value
    except ValueError:
        raise InvalidInput(f"role must be one of {', '.join(r.value for r in Role)}, "
                           f"not {role!r}") from None
    if role == Role.EXECUTOR.value and not workflow:
        raise InvalidInput("an executor token needs a workflow")
    if role != Role.EXECUTOR.value and workflow:
        raise InvalidInput("only executor tokens are scoped to a workflow")
    if workflow and not store.workflow_exists(workflow):
        raise NotFound(f"workflow {workflow} does not exist")
    if expires_in is not None and not expires_in > 0:
        raise InvalidInput("expires_in must be a positive number of seconds")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a token needs a name")
    secret = secrets.token_urlsafe(32)
    doc = store.insert(TOKENS, None, {
        "name": name, "role": role, "workflow": workflow or None,
        "expires": None if expires_in is None else time.time() + expires_in,
        "revoked": False, "created": now_iso(), "created_by": created_by,
        "secret_sha256": _digest(secret),
    })
    return f"{PREFIX}{doc['_key']}_{secret}", public(doc)


def verify(store: GraphStore, token: str) -> Document | None:
    """The token's document if ``token`` is valid now (known, not revoked, not expired), else
    None. Constant-time in the secret."""
    if not token.startswith(PREFIX):
        return None
    key, sep, secret = token[len(PREFIX):].partition("_")
    if not sep or not key.isdigit() or not secret:
        return None
    try:
        doc = store.get(TOKENS, None, key)
    except NotFound:
        return None
    if not hmac.compare_digest(_digest(secret), str(doc.get("secret_sha256", ""))):
        return None
    return doc if _usable(doc) else None


def _usable(doc: Document) -> bool:
    """Not revoked and not expired."""
    expires = doc.get("expires")
    return not doc.get("revoked") and (expires is None or expires > time.time())


def by_key(store: GraphStore, key: str) -> Document | None:
    """The document of the token ``key`` if that token is valid now (not revoked, not
    expired), else None (what a dashboard session checks on every request)."""
    try:
        doc = store.get(TOKENS, None, key)
    except (NotFound, InvalidInput):
        return None
    return doc if _usable(doc) else None


def list_tokens(store: GraphStore) -> list[Document]:
    """Every token (revoked ones too), without hashes, in creation order."""
    return [public(d) for d in store.find(TOKENS, None)]


def revoke(store: GraphStore, key: str) -> Document:
    """Mark the token ``key`` revoked (it stops working at once). Raises NotFound."""
    doc = store.update(TOKENS, None, key, {"revoked": True})
    return public(doc)


def create_executor(store: GraphStore, workflow: str, *, expires_in: float,
                    name: str | None = None, created_by: str = "") -> tuple[str, Document]:
    """An expiring executor token of ``workflow`` (what a compute node or a Slurm allocation
    gets); returns ``(token, public document)``. Raises like :func:`create`."""
    return create(store, name=name or f"executor-wf{workflow}", role=Role.EXECUTOR.value,
                  workflow=workflow, expires_in=expires_in, created_by=created_by)


def revoke_executor(store: GraphStore, workflow: str, key: str) -> Document:
    """Revoke the executor token ``key`` of ``workflow``. Raises NotFound when ``key`` is not
    an executor token of that workflow (so this never reaches another token)."""
    try:
        doc = store.get(TOKENS, None, key)
    except NotFound:
        doc = {}
    if doc.get("role") != Role.EXECUTOR.value or doc.get("workflow") != workflow:
        raise NotFound(f"workflow {workflow} has no executor token {key}")
    return revoke(store, key)


def has_admin(store: GraphStore) -> bool:
    """True if a usable admin token exists."""
    return any(_usable(d) for d in store.find(TOKENS, None, {"role": Role.ADMIN.value}))


def owner_record(token: Document) -> Document:
    """The owner record of workflows created with ``token`` (plain data for
    :func:`torc_graph.engine.workflows.create_workflow` and the specification endpoint, which
    store it in the transaction that creates the workflow)."""
    return {"token": token["_key"], "name": token.get("name")}


def owner(store: GraphStore, workflow: str) -> dict[str, Any] | None:
    """The owner record of ``workflow`` (None: created without authentication)."""
    try:
        return store.get(OWNERS, None, workflow)
    except NotFound:
        return None
