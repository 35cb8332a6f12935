"""Names for keys: every CLI argument that takes a workflow, job or user-data key also takes its
name. One resolver, applied by :func:`torc_graph.cli.options.client_options` to the arguments
named in :data:`DOCUMENT_PARAMS`, so every command resolves names the same way.

A value that is the key (or ``_id``) of an existing document is that document; otherwise it is
looked up by name: exactly one match is that document, none is "not found" (exit 4, like the
server's 404), several is a usage error (exit 2) that lists the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torc_graph.cli.errors import EXIT_CLIENT_ERROR, EXIT_USAGE, CliError
from torc_graph.client import ApiError, Client, seg

#: At most this many candidates are listed in an ambiguity error.
MAX_CANDIDATES = 10

#: Command parameter → the collection it names (``None``: workflows).
WORKFLOW_PARAMS = ("workflow", "workflow_key", "workflows_")
DOCUMENT_PARAMS = {"job": "jobs", "job_key": "jobs", "job_keys": "jobs",
                   "user_data_key": "user_data"}
_NOUN = {None: "workflow", "jobs": "job", "user_data": "user data"}


def _lookup(client: Client, path: str, text: str) -> dict[str, Any] | None:
    """The document at ``path/text`` if ``text`` looks like a key or id and it exists."""
    if not (text.isdigit() or "/" in text):
        return None
    try:
        return client.get(f"{path}/{seg(text)}")
    except ApiError as exc:
        if exc.status in (400, 404):
            return None
        raise


def resolve(client: Client, text: str, collection: str | None = None,
            workflow: str | None = None) -> str:
    """The key of the workflow (``collection=None``) or of the document of ``collection`` in
    ``workflow`` that ``text`` names (key, id or name).

    Raises CliError: exit 4 if nothing has that key or name, exit 2 if the name is ambiguous.
    """
    path = "/workflows" if collection is None else f"/workflows/{seg(workflow)}/{collection}"
    noun = _NOUN.get(collection, collection)
    doc = _lookup(client, path, text)
    if doc is not None:
        return doc["_key"]
    matches = list(client.iter_items(path, name=text))
    if len(matches) == 1:
        return matches[0]["_key"]
    where = "" if collection is None else f" in workflow {workflow}"
    if not matches:
        raise CliError(f"no {noun} with key or name {text!r}{where}", EXIT_CLIENT_ERROR)
    listed = ", ".join(_candidate(m, collection) for m in matches[:MAX_CANDIDATES])
    more = f" and {len(matches) - MAX_CANDIDATES} more" if len(matches) > MAX_CANDIDATES else ""
    raise CliError(f"{len(matches)} {noun}s are named {text!r}{where}: {listed}{more}; "
                   "give the key instead", EXIT_USAGE)


def _candidate(doc: Mapping[str, Any], collection: str | None) -> str:
    if collection is None:
        details = [str(doc[f]) for f in ("timestamp", "user") if doc.get(f)]
    else:
        details = [str(doc["status"])] if doc.get("status") else []
    return f"{doc['_key']} ({', '.join(details)})" if details else str(doc["_key"])


def resolve_arguments(client: Client, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` of a command with every workflow / job / user-data name replaced by its key
    (see :data:`WORKFLOW_PARAMS`, :data:`DOCUMENT_PARAMS`). Raises CliError like
    :func:`resolve`."""
    out = dict(kwargs)

    def each(value: Any, collection: str | None, workflow: str | None) -> Any:
        if isinstance(value, tuple):
            return tuple(resolve(client, v, collection, workflow) for v in value)
        return None if value is None else resolve(client, value, collection, workflow)

    for name in WORKFLOW_PARAMS:
        if name in out:
            out[name] = each(out[name], None, None)
    workflow = out.get("workflow") or out.get("workflow_key")
    if workflow is not None:
        for name, collection in DOCUMENT_PARAMS.items():
            if name in out:
                out[name] = each(out[name], collection, workflow)
    return out
