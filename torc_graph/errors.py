"""torc_graph's exception hierarchy and the one canonical error body.

Every layer raises these; nothing native (``sqlite3``, ``arango``) escapes the store. The API maps
them to HTTP exactly once (``torc_graph.api.errors``), using :attr:`TorcGraphError.status` and
:func:`error_body`. ``errorNum`` follows ArangoDB's numbers where torc clients may have seen them
(1202 document not found, 1200 conflict, 1210 unique constraint), and the HTTP status otherwise.
"""

from __future__ import annotations

from typing import Any


class TorcGraphError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status: int = 500
    error_num: int | None = None  # None: use the status

    def __init__(self, message: str, *, error_num: int | None = None):
        super().__init__(message)
        self.message = message
        if error_num is not None:
            self.error_num = error_num

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.error_num)


class BadRequest(TorcGraphError):
    """The request is malformed or invalid for the current state (400). Nothing was changed."""

    status = 400


class InvalidInput(BadRequest):
    """A value failed validation: wrong type, unknown field, bad id, bad unit string (400)."""


class Unauthorized(TorcGraphError):
    """No valid credential was sent (401). Nothing was changed."""

    status = 401


class Forbidden(TorcGraphError):
    """The credential is valid but its role may not do this here, or the request came from a
    host or origin that is not allowed (403). Nothing was changed."""

    status = 403


class UnsupportedMediaType(TorcGraphError):
    """A request body that is not ``application/json`` (415). Nothing was changed."""

    status = 415


class NotFound(TorcGraphError):
    """A workflow, document, edge or route target does not exist (404)."""

    status = 404
    error_num = 1202


class Conflict(TorcGraphError):
    """A write lost a race (409)."""

    status = 409
    error_num = 1200


class RevisionConflict(Conflict):
    """The `_rev` given does not match the document's current revision (409)."""


class UniqueConstraintViolated(Conflict):
    """A document with this `_key` already exists in the collection (409)."""

    error_num = 1210


class PayloadTooLarge(TorcGraphError):
    """The request body is over the configured limit (413)."""

    status = 413


class StoreUnavailable(TorcGraphError):
    """The storage backend cannot be reached or stayed busy past its timeout (503)."""

    status = 503


class StoreError(TorcGraphError):
    """An unexpected storage failure (500). The message is generic; details go to the log."""

    status = 500


def error_body(status: int, message: str, error_num: int | None = None) -> dict[str, Any]:
    """The torc v0.6.4 error body: ``{error, errorNum, errorMessage, code}``.

    Every error response of the API is built here (pinned by a test).
    """
    return {
        "error": True,
        "errorNum": error_num if error_num is not None else status,
        "errorMessage": message,
        "code": status,
    }
