"""ArangoDB connection settings and error translation (one place for every errno the store sees).

:func:`parse_url` turns ``arangodb[s]://user:password@host:port/database?option=value`` into
:class:`Settings`; :class:`Connection` holds one python-arango client per process (a store
created before a gunicorn fork never shares sockets with its parent); :func:`translate` maps
driver errors to :mod:`torc_graph.errors` without copying driver text into messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from arango import ArangoClient, errno
from arango.exceptions import ArangoClientError, ArangoServerError
from arango.http import DefaultHTTPClient

from torc_graph.errors import (
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StoreError,
    StoreUnavailable,
    TorcGraphError,
    UniqueConstraintViolated,
)

log = logging.getLogger(__name__)

PASSWORD_ENV = "TORC_GRAPH_ARANGO_PASSWORD"
MIB = 1024 * 1024


class TransactionTooLarge(PayloadTooLarge):
    """One call would write more than the ArangoDB transaction size cap (413); nothing written."""


@dataclass(frozen=True)
class Settings:
    """How to reach the server and how to lay out and bound what the store creates.

    ``max_transaction_bytes``: the cap the store declares on every stream transaction and
    standalone query (``maxTransactionSize``) and checks before inserting; keep it at or below
    the server's stream-transaction cap (128 MiB on 3.11 and 3.12.0-3.12.3; from 3.12.4
    ``--transaction.streaming-max-transaction-size``, default 512 MiB).
    ``replication_factor`` / ``write_concern``: used when the store creates the database
    (OneShard) or a collection in a cluster; ignored by a single server.
    ``staging_grace``: seconds after the last sign of life of a staged (unpublished) workflow
    before the sweep removes it (:mod:`.arango_staging`).
    ``bulk_lease``: seconds a chunked bulk operation's guard stays valid after its last chunk
    commit; after that the next caller takes it over (:mod:`.arango_chunks`).
    """

    host: str
    database: str
    username: str = "root"
    password: str = ""
    request_timeout: float = 60.0
    lock_timeout: int = 30
    verify: bool | str | None = None
    max_transaction_bytes: int = 120 * MIB
    replication_factor: int = 2
    write_concern: int = 1
    staging_grace: float = 600.0
    bulk_lease: float = 300.0

    @property
    def query_runtime(self) -> float:
        """Server-side ``maxRuntime`` of every query: the server stops a query before the
        client's request timeout would report a failure while the server keeps working."""
        return max(1.0, self.request_timeout - 5.0)


_INT_OPTIONS = {"lock_timeout", "replication_factor", "write_concern"}
_FLOAT_OPTIONS = {"request_timeout", "staging_grace", "bulk_lease"}


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def parse_url(url: str) -> dict[str, Any]:
    """Split ``arangodb[s]://user:password@host:port/database`` into client settings.

    Query options: ``request_timeout`` (s), ``lock_timeout`` (s), ``max_transaction_mib``,
    ``replication_factor``, ``write_concern``, ``staging_grace`` (s), ``bulk_lease`` (s). Raises InvalidInput for
    another scheme, a missing host or a bad option. The password comes from the URL, else from
    ``TORC_GRAPH_ARANGO_PASSWORD``, else is empty; the user defaults to ``root`` and the
    database to ``_system``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("arangodb", "arangodbs") or not parts.hostname:
        raise InvalidInput(f"not an ArangoDB URL: {mask_url(url)!r}")
    try:
        port = parts.port or 8529
    except ValueError:
        raise InvalidInput(f"invalid port in {mask_url(url)!r}") from None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:
        password = os.environ.get(PASSWORD_ENV, "")
    database = unquote(parts.path.strip("/")) or "_system"
    if "/" in database:
        raise InvalidInput(f"invalid database name in {mask_url(url)!r}")
    out: dict[str, Any] = {
        "host": f"{'https' if scheme == 'arangodbs' else 'http'}://{host}:{port}",
        "username": unquote(parts.username) if parts.username else "root",
        "password": password,
        "database": database,
    }
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        out.update(_option(name, value))
    return out


def _option(name: str, value: Any) -> dict[str, Any]:
    """One validated store option (URL query or ``from_url`` keyword). Raises InvalidInput."""
    try:
        if name == "max_transaction_mib":
            number = float(value)
            if not 1 <= number <= 64 * 1024:
                raise ValueError
            return {"max_transaction_bytes": int(number * MIB)}
        if name in _INT_OPTIONS:
            number = int(value)
            if number < (0 if name == "lock_timeout" else 1):
                raise ValueError
            return {name: number}
        if name in _FLOAT_OPTIONS:
            number = float(value)
            if not number > 0:
                raise ValueError
            return {name: number}
        if name == "verify":
            return {name: value}
    except (TypeError, ValueError):
        raise InvalidInput(f"invalid ArangoDB option {name}={value!r}") from None
    raise InvalidInput(f"unknown ArangoDB option {name!r}")


def settings_from_url(url: str, options: dict[str, Any]) -> Settings:
    """Settings from a URL plus keyword options (those meant for other backends are ignored)."""
    fields = parse_url(url)
    for name, value in options.items():
        if name in _INT_OPTIONS | _FLOAT_OPTIONS | {"max_transaction_mib", "verify"}:
            fields.update(_option(name, value))
        elif name == "max_transaction_bytes":
            fields[name] = int(value)
    return Settings(**fields)


# -- error translation ---------------------------------------------------------------------------

_NOT_FOUND = {errno.DOCUMENT_NOT_FOUND, errno.DATA_SOURCE_NOT_FOUND, errno.GRAPH_NOT_FOUND}
_DUPLICATE = {errno.UNIQUE_CONSTRAINT_VIOLATED, errno.DUPLICATE_NAME, errno.GRAPH_DUPLICATE}
_INVALID = {
    errno.DOCUMENT_KEY_BAD,
    errno.DOCUMENT_HANDLE_BAD,
    errno.INVALID_EDGE_ATTRIBUTE,
    errno.DOCUMENT_TYPE_INVALID,
    errno.ILLEGAL_NAME,
    errno.HTTP_CORRUPTED_JSON,
}
#: errno -> the message a client sees with 503 (retrying later can succeed).
_UNAVAILABLE = {
    errno.CONFLICT: "a concurrent write held the same document (write-write conflict); retry",
    errno.TRANSACTION_NOT_FOUND: "the ArangoDB stream transaction expired or was aborted; retry",
    errno.QUERY_KILLED: "the ArangoDB query ran past its time limit and was stopped",
    errno.FORBIDDEN: "the ArangoDB user lacks a permission this operation needs",
}
_BUSY = {
    errno.LOCK_TIMEOUT,
    errno.LOCKED,
    errno.DEADLOCK,
    errno.SHUTTING_DOWN,
    errno.HTTP_UNAUTHORIZED,
    errno.HTTP_SERVICE_UNAVAILABLE,
    errno.HTTP_GATEWAY_TIMEOUT,
    errno.CLUSTER_TIMEOUT,
    errno.CLUSTER_BACKEND_UNAVAILABLE,
    errno.DATABASE_NOT_FOUND,
}


def translate(exc: BaseException, what: str = "document", cap: int | None = None) -> TorcGraphError:
    """Map a python-arango (or socket) exception to a torc_graph error; log the details.

    ``what`` names the target in messages (no driver text is copied); ``cap`` is the
    transaction size cap named by a resource-limit error.
    """
    if isinstance(exc, TorcGraphError):
        return exc
    if isinstance(exc, ArangoServerError):
        code = exc.error_code
        if code in _NOT_FOUND:
            return NotFound(f"{what} not found")
        if code in _DUPLICATE:
            return UniqueConstraintViolated(f"unique constraint violated: {what} already exists")
        if code in _INVALID:
            return InvalidInput(f"invalid key, id, name or document for {what}")
        if code == errno.RESOURCE_LIMIT:
            limit = f"{cap // MIB} MiB" if cap else "the server's limit"
            return TransactionTooLarge(
                f"this call writes more than one ArangoDB transaction may hold ({limit}); "
                "nothing was written: split the request (e.g. bulk_jobs in batches)")
        if code in _UNAVAILABLE:
            log.warning("ArangoDB refused %s: %s", what, exc)
            return StoreUnavailable(_UNAVAILABLE[code])
        if code in _BUSY or exc.http_code in (401, 503, 504):
            log.warning("ArangoDB unavailable: %s", exc)
            return StoreUnavailable("the ArangoDB server is unavailable or busy")
        if code == errno.QUERY_COLLECTION_LOCK_FAILED:
            log.error("ArangoDB: collection not declared in WITH (%s): %s", what, exc)
        else:
            log.error("ArangoDB error on %s: %s", what, exc)
        return StoreError("storage error")
    if isinstance(exc, OSError):  # ConnectionAbortedError, requests.RequestException
        log.warning("cannot reach ArangoDB: %s", exc)
        return StoreUnavailable("cannot connect to the ArangoDB server")
    log.error("ArangoDB driver error on %s: %r", what, exc)
    return StoreError("storage error")


@contextlib.contextmanager
def translating(what: str = "document", cap: int | None = None) -> Iterator[None]:
    """Re-raise driver and socket exceptions as torc_graph errors."""
    try:
        yield
    except (ArangoServerError, ArangoClientError, OSError) as exc:
        raise translate(exc, what, cap) from None
    except (TypeError, ValueError) as exc:  # the JSON serializer refused a value
        log.info("cannot serialize a value for %s: %s", what, exc)
        raise InvalidInput(f"a value for {what} is not JSON-serializable") from None


def dumps(value: Any) -> str:
    """Strict JSON: NaN and infinities are refused (ValueError -> InvalidInput) instead of
    being sent as tokens the server rejects."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


# -- per-process client --------------------------------------------------------------------------


class Connection:
    """The client and database handle of the current process, created on first use.

    ``os.getpid()`` is checked on every use; ``on_connect(client, db)`` runs once per process
    (the store ensures its global layout there). ``http_client`` replaces the default HTTP
    client (tests pass a stub that answers like a server).
    """

    def __init__(self, settings: Settings, on_connect, http_client: Any = None):
        self.settings = settings
        self._on_connect = on_connect
        self._http_client = http_client
        self._pid: int | None = None
        self._client: Any = None
        self._db: Any = None
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()

    def db(self) -> Any:
        """This process's database handle (connects on first use)."""
        pid = os.getpid()
        if self._pid == pid:
            return self._db
        if self._lock_pid != pid:  # a lock copied by fork may be held by a vanished thread
            self._lock, self._lock_pid = threading.Lock(), pid
        with self._lock:
            if self._pid != pid:
                s = self.settings
                # The driver's default (3 tries x 3 urllib3 retries with backoff) makes an
                # unreachable server take ~18 s to report; fail within a couple of seconds.
                http = self._http_client or DefaultHTTPClient(
                    request_timeout=s.request_timeout, retry_attempts=1, backoff_factor=0.2,
                    pool_maxsize=32,
                )
                client = ArangoClient(
                    hosts=s.host, http_client=http, resolver_max_tries=2,
                    verify_override=s.verify, serializer=dumps,
                )
                db = client.db(s.database, username=s.username, password=s.password)
                with translating("database"):
                    self._on_connect(client, db)
                self._client, self._db, self._pid = client, db, pid
            return self._db

    def close(self) -> None:
        client, pid = self._client, self._pid
        self._client = self._db = self._pid = None
        if client is not None and pid == os.getpid():
            with contextlib.suppress(Exception):
                client.close()
