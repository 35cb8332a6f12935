"""Transports of :class:`torc_graph.client.Client`: one request in, one :class:`Reply` out.

* :class:`HTTPTransport` sends a request over urllib3's connection pool directly (keep-alive,
  the client's retry policy, timeouts). A request through ``requests.Session`` cost ~0.3 ms
  of client CPU in fixed overhead (hooks, cookie jar, environment merge, Response objects); a
  batched runner makes thousands of calls, so that was a real share of a job's cost. Proxies
  from the environment (``HTTP_PROXY`` …, minus ``NO_PROXY``) are honoured by not taking this
  path: :meth:`HTTPTransport.usable` says no and the client sends through its session.
* :class:`EmbeddedTransport` hands the request to the Falcon app in-process through WSGI,
  with the environ built as gunicorn builds it (``PATH_INFO`` percent-decoded, the raw path in
  ``RAW_URI``/``REQUEST_URI``), so ids with ``%2F`` take the same route as over the network.

Errors: a transport raises :class:`ServerUnreachable` when no answer came; HTTP statuses are
the client's business (:class:`ApiError`).
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote_to_bytes, urlsplit

import urllib3
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry

__all__ = ["ApiError", "EmbeddedTransport", "HTTPTransport", "Reply", "ServerUnreachable",
           "reason"]


class ApiError(Exception):
    """The server answered with a non-2xx status.

    ``status`` is the HTTP status, ``message`` the server's ``errorMessage`` (or the response text
    when the body is not a torc error body), ``body`` the decoded JSON body (or None).
    """

    def __init__(self, status: int, message: str, body: Any = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body


class ServerUnreachable(Exception):
    """No answer from the server at ``url`` (connection refused, DNS failure, timeout)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach the torc_graph server at {url}: {reason}")
        self.url = url
        self.reason = reason


class Reply(NamedTuple):
    """An HTTP answer: status code, reason phrase and the whole body."""

    status: int
    reason: str
    content: bytes


def retry_policy(retries: int, backoff: float) -> Retry:
    """Connection failures before a request was sent are retried for every method (nothing
    reached the server); failures after it was sent only for GET/HEAD (a PUT or POST may
    already have taken effect). Statuses are never retried here."""
    return Retry(total=None, connect=retries, read=retries, status=0, other=0,
                 backoff_factor=backoff, backoff_max=10,
                 allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False,
                 respect_retry_after_header=False)


def _ca_bundle() -> str:
    """The CA bundle ``requests`` would verify with: ``REQUESTS_CA_BUNDLE``, else
    ``CURL_CA_BUNDLE``, else certifi's."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            return os.environ[name]
    import certifi

    return certifi.where()


class HTTPTransport:
    """Requests to one server (``base`` is its URL, path prefix included) over a urllib3 pool.

    Thread-safe (the pool is); ``close()`` drops the idle connections."""

    def __init__(self, base: str, *, timeout: float, retries: int, backoff: float):
        parts = urlsplit(base)
        self.base = base
        self.prefix = parts.path.rstrip("/")
        self.retry = retry_policy(retries, backoff)
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._proxied = bool(get_environ_proxies(base))
        kwargs: dict[str, Any] = {"maxsize": 16, "block": False, "retries": self.retry,
                                  "timeout": self.timeout}
        if parts.scheme == "https":
            self.pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
                parts.hostname, parts.port or 443, cert_reqs="CERT_REQUIRED",
                ca_certs=_ca_bundle(), **kwargs)
        else:
            self.pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port or 80, **kwargs)

    @property
    def usable(self) -> bool:
        """False when a proxy from the environment applies (the session sends then)."""
        return not self._proxied

    def send(self, method: str, target: str, body: bytes | None,
             headers: Mapping[str, str]) -> Reply:
        """One request to ``target`` (path and query below the base URL).

        Raises ServerUnreachable (``location`` in its message) when no answer came."""
        try:
            resp = self.pool.urlopen(method, self.prefix + target, body=body,
                                     headers=headers, retries=self.retry,
                                     timeout=self.timeout, redirect=False,
                                     assert_same_host=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ServerUnreachable(self.base, reason(exc)) from None
        return Reply(resp.status, resp.reason or "", resp.data)

    def close(self) -> None:
        self.pool.close()


class EmbeddedTransport:
    """Requests served in-process by the WSGI app ``app_factory()`` (called once, on the first
    request; shared by every client of the same embedded store, thread-safe)."""

    def __init__(self, app_factory: Callable[[], Callable]):
        self._factory = app_factory
        self._app: Callable | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Callable:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    def send(self, method: str, target: str, body: Any,
             headers: Mapping[str, str]) -> Reply:
        """Serve one request (``body``: bytes, None or a seekable binary file)."""
        app = self.app
        raw_path, _, query = target.partition("?")
        if hasattr(body, "read"):  # a streamed file body (add_workflow_specification)
            body.seek(0, os.SEEK_END)
            length = body.tell()
            body.seek(0)
        else:
            body = body or b""
            length = len(body)
            body = io.BytesIO(body)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": target,
            "REQUEST_URI": target,
            "SERVER_NAME": "torc-graph.embedded",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": str(length),
            "CONTENT_TYPE": headers.get("Content-Type", ""),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ["HTTP_" + key] = value
        started: list[str] = []

        def start_response(status, response_headers, exc_info=None):
            started.append(status)

        result = app(environ, start_response)
        try:
            content = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        code, _, phrase = started[-1].partition(" ")
        return Reply(int(code), phrase, content)

    def close(self) -> None:
        pass


def reason(exc: Exception) -> str:
    """A one-line reason for a connection failure (no traceback text)."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out",
                   "No route to host", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(exc).__name__
