"""The HTTP client of the torc_graph REST API, used by the CLI and the runners.

``Client(url)`` talks HTTP to a server (``torc-graph serve`` or any torc v0.6.4 compatible one).
``Client()`` without a URL (and without ``TORC_GRAPH_URL``) works on the embedded store named by
``database`` (default ``TORC_GRAPH_DATABASE``, i.e. ``sqlite:///torc_graph.db``): requests are
served in-process by the same Falcon app through a WSGI transport adapter, so the embedded and the
remote paths share every byte of request handling (validation, errors, id decoding).

Paths are relative to the service base URL, e.g. ``/workflows/12/jobs``. Values put into path
segments must be quoted with :func:`seg` (a full id such as ``jobs__12/34`` becomes
``jobs__12%2F34``, as the torc client sends it).

Errors: a non-2xx answer raises :class:`ApiError` (status, the server's ``errorMessage``, the
body); a server that cannot be reached (after retries) raises :class:`ServerUnreachable`.
Retries: connection failures before a request was sent are retried for every method (nothing
reached the server); failures after it was sent are retried only for GET/HEAD, because a PUT or
POST may already have taken effect (e.g. ``start_job`` would then answer 409).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self
from urllib.parse import quote, urlencode

import requests
from requests.adapters import HTTPAdapter
from requests.utils import requote_uri

from torc_graph import json_codec
from torc_graph.client_transport import (
    ApiError,
    EmbeddedTransport,
    HTTPTransport,
    Reply,
    ServerUnreachable,
    reason,
    retry_policy,
)
from torc_graph.config import config_dir, load_settings

#: Base URL the embedded transport is mounted on (never resolved on the network).
EMBEDDED_BASE = "http://torc-graph.embedded"

__all__ = ["ApiError", "Client", "ServerUnreachable", "absolute_database_url", "seg"]


def seg(value: Any) -> str:
    """Quote one path segment; ``/`` becomes ``%2F`` (ids in key slots, behavior doc §2.8)."""
    return quote(str(value), safe="")


def absolute_database_url(database: str) -> str:
    """``sqlite:///rel.db`` -> ``sqlite:////abs/dir/rel.db`` so that a child process started in
    another directory opens the same file. Other URLs are returned unchanged."""
    prefix = "sqlite:///"
    if database.startswith(prefix) and not database.startswith(prefix + "/"):
        path = database[len(prefix):]
        if path and path != ":memory:":
            return prefix + os.path.abspath(path)
    return database


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class Client:
    """A torc_graph API client: HTTP when a URL is configured, else the embedded store.

    Resolution: an explicit ``url`` wins; else an explicit ``database`` selects the embedded
    store; else ``TORC_GRAPH_URL``; else the embedded store ``TORC_GRAPH_DATABASE`` (default
    ``sqlite:///torc_graph.db``). Use one client per thread (requests Sessions are not
    documented as thread-safe).

    Requests go through a lean transport (:mod:`torc_graph.client_transport`): urllib3's pool
    for a server, the in-process WSGI app for the embedded store. :attr:`session` (a
    ``requests.Session``) holds the default headers (``Authorization``) every request sends,
    and serves the event stream, file bodies and servers behind an environment proxy.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        database: str | None = None,
        timeout: float = 120,
        retries: int = 5,
        backoff: float = 0.5,
    ):
        settings = load_settings()
        if url is None and database is None:
            url = settings.get("url")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        self._store = None
        self.token: str | None = None
        #: Told every poll of a background task this client waits for (the CLI's display).
        self.on_task_progress: Callable[[dict[str, Any]], None] | None = None
        if url:
            self.url: str | None = url.rstrip("/")
            self.database: str | None = None
            self.base = self.url
            self.token = find_token(settings)
            if self.token:
                self.session.headers["Authorization"] = f"Bearer {self.token}"
            adapter = HTTPAdapter(max_retries=retry_policy(retries, backoff), pool_maxsize=16)
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)
            http = HTTPTransport(self.url, timeout=timeout, retries=retries, backoff=backoff)
            self.transport: HTTPTransport | EmbeddedTransport | None = (
                http if http.usable else None)
        else:
            self.url = None
            self.database = absolute_database_url(database or settings["database"])
            self.base = EMBEDDED_BASE
            self.session.trust_env = False  # nothing of the environment applies in-process
            self.transport = EmbeddedTransport(self._make_app)

    # ------------------------------------------------------------------ plumbing

    @property
    def is_embedded(self) -> bool:
        return self.url is None

    @property
    def location(self) -> str:
        """The server URL or the embedded database URL (for messages)."""
        return self.url or f"embedded store {self.database}"

    def another(self, *, retries: int = 5, timeout: float | None = None) -> Client:
        """A client of the same server (same token) or embedded store for another thread:
        its own session (sessions are not shared between threads); an embedded client shares
        this one's in-process app and store (closing it leaves them open)."""
        timeout = self.timeout if timeout is None else timeout
        if self.url:
            other = Client(self.url, retries=retries, timeout=timeout)
            other.token = self.token
            other.session.headers.pop("Authorization", None)
            if self.token:
                other.session.headers["Authorization"] = f"Bearer {self.token}"
            return other
        other = Client(database=self.database, timeout=timeout)
        other.transport = self.transport
        return other

    def _make_app(self):
        try:
            from torc_graph.app import create_app, store_options
            from torc_graph.store import open_store
        except ImportError as exc:  # the server package is part of torc_graph; say what broke
            raise RuntimeError(f"the embedded torc_graph server cannot be loaded: {exc}") from exc
        settings = load_settings(database=self.database)
        self._store = open_store(self.database, **store_options(settings))
        return create_app(self._store, settings)

    def env(self) -> dict[str, str]:
        """Environment variables that let a child process (a job script, another worker)
        reach the same server or embedded store with ``Client()``."""
        if self.url:
            env = {"TORC_GRAPH_URL": self.url}
            if self.token:
                env["TORC_GRAPH_TOKEN"] = self.token
            return env
        return {"TORC_GRAPH_DATABASE": self.database, "TORC_GRAPH_URL": ""}

    def close(self) -> None:
        self.session.close()
        if isinstance(self.transport, HTTPTransport):
            self.transport.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, body: Any = None, params: Mapping | None = None) -> Any:
        """Send one request; return the decoded JSON body (None when empty).

        Raises ApiError for a non-2xx status, ServerUnreachable when no answer came.
        """
        if not path.startswith("/"):
            path = "/" + path
        query = urlencode({k: _query_value(v) for k, v in (params or {}).items()
                           if v is not None}, doseq=True)
        if query:
            path += ("&" if "?" in path else "?") + query
        target = requote_uri(path)
        headers = dict(self.session.headers)
        data: Any = None
        if hasattr(body, "read"):  # a file of JSON, streamed
            data = body
            headers["Content-Type"] = "application/json"
        elif body is not None:
            data = _encode(body)
            headers["Content-Type"] = "application/json"
        if self.transport is None or (data is not None and not isinstance(data, bytes)
                                      and self.url):
            reply = self._send_by_session(method, target, data, headers)
        else:
            reply = self.transport.send(method, target, data, headers)
        content = reply.content
        try:
            decoded = json_codec.loads(content) if content else None
        except ValueError:
            decoded = None
        if not 200 <= reply.status < 300:
            if isinstance(decoded, dict) and "errorMessage" in decoded:
                message = str(decoded["errorMessage"])
            else:
                message = (_text(content) or reply.reason or "").strip()[:500] \
                    or f"HTTP {reply.status}"
            raise ApiError(reply.status, message, decoded)
        if decoded is None and content:
            return _text(content)
        return decoded

    def _send_by_session(self, method: str, target: str, data: Any,
                         headers: dict[str, str]) -> Reply:
        """Send through :attr:`session` (a streamed file body; an environment proxy).

        Raises ServerUnreachable when no answer came."""
        try:
            resp = self.session.request(method, self.base + target, data=data,
                                        headers=headers, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServerUnreachable(self.location, reason(exc)) from None
        return Reply(resp.status_code, resp.reason or "", resp.content)

    def get(self, path: str, **params) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params) -> Any:
        return self.request("POST", path, body, params)

    def put(self, path: str, body: Any = None, **params) -> Any:
        return self.request("PUT", path, body, params)

    def delete(self, path: str, **params) -> Any:
        return self.request("DELETE", path, params=params)

    def stream_events(self, wf: str, last_event_id: str | None = None, *,
                      category: str | None = None, job: str | None = None,
                      read_timeout: float = 120.0) -> Iterator[dict[str, Any]]:
        """Yield the events of ``GET /workflows/{wf}/events/stream`` (Server-Sent Events) after
        ``last_event_id`` until the server ends the stream (max duration, workflow deleted).
        Heartbeat comments are skipped. Served API only (the embedded client cannot stream).

        Raises ApiError for a non-2xx answer, ServerUnreachable when the connection fails or
        drops (resume with the ``_key`` of the last event received).
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        query = {k: v for k, v in (("category", category), ("job", job)) if v is not None}
        try:
            resp = self.session.get(f"{self.base}/workflows/{seg(wf)}/events/stream",
                                    params=query, headers=headers, stream=True,
                                    timeout=(self.timeout, read_timeout))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServerUnreachable(self.location, reason(exc)) from None
        with resp:
            if not 200 <= resp.status_code < 300:
                try:
                    message = str(resp.json()["errorMessage"])
                except (ValueError, KeyError, TypeError):
                    message = resp.text.strip()[:500] or f"HTTP {resp.status_code}"
                raise ApiError(resp.status_code, message, None)
            data: list[str] = []
            try:
                for line in resp.iter_lines(chunk_size=None, decode_unicode=True):
                    if line is None:
                        continue
                    if line == "":
                        if data:
                            yield json.loads("\n".join(data))
                        data = []
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                raise ServerUnreachable(self.location, reason(exc)) from None

    def iter_items(self, path: str, **params) -> Iterator[dict[str, Any]]:
        """Yield every item of a list endpoint, paging with ``skip`` while ``has_more``."""
        skip = int(params.pop("skip", 0) or 0)
        while True:
            page = self.get(path, skip=skip, **params)
            items = page.get("items", [])
            yield from items
            if not page.get("has_more") or not items:
                return
            skip += len(items)

    # ------------------------------------------------------------------ conveniences

    def ping(self) -> dict[str, Any]:
        return self.get("/ping")

    def version(self) -> str:
        return self.get("/version")["version"]

    def add_workflow_specification(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """POST /workflow_specifications as a background task (``?async=true``), waited for
        (:meth:`wait_task`, progress to :attr:`on_task_progress`); returns the workflow.

        The body is encoded piece by piece into a temporary file and streamed from it, so a
        10^6-job specification is not held a second time as one JSON text; the server reads
        it incrementally too (docs: README "Background tasks")."""
        with tempfile.TemporaryFile() as f:
            encoder = json.JSONEncoder(separators=(",", ":"))
            writer = io.TextIOWrapper(f, encoding="utf-8", write_through=False)
            for piece in encoder.iterencode(dict(spec)):
                writer.write(piece)
            writer.flush()
            writer.detach()
            f.seek(0)
            task = self.post("/workflow_specifications", f, **{"async": True})
        return self.wait_task(None, task, self.on_task_progress)["result"]

    def get_workflow(self, wf: str) -> dict[str, Any]:
        return self.get(f"/workflows/{seg(wf)}")

    def get_status(self, wf: str) -> dict[str, Any]:
        return self.get(f"/workflows/{seg(wf)}/status")

    def get_config(self, wf: str) -> dict[str, Any]:
        return self.get(f"/workflows/{seg(wf)}/config")

    def bump_run_id(self, wf: str) -> int:
        """Increment the workflow's run_id as torc's client does (GET + PUT status)."""
        status = self.get_status(wf)
        status["run_id"] = int(status.get("run_id", 0)) + 1
        self.put(f"/workflows/{seg(wf)}/status", status)
        return status["run_id"]

    def reset_status(self, wf: str) -> None:
        self.post(f"/workflows/{seg(wf)}/reset_status")

    def reset_job_status(self, wf: str, failed_only: bool = False) -> None:
        self.post(f"/workflows/{seg(wf)}/reset_job_status", failed_only=failed_only)

    def initialize_jobs(self, wf: str, only_uninitialized: bool = False,
                        clear_ephemeral_user_data: bool = True,
                        progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Initialize as a background task (``?async=true``) and wait for it, so no request
        outlasts a timeout however large the workflow; ``progress(task)`` sees each poll."""
        task = self.post(f"/workflows/{seg(wf)}/initialize_jobs", None,
                         only_uninitialized=only_uninitialized,
                         clear_ephemeral_user_data=clear_ephemeral_user_data, **{"async": True})
        self.wait_task(wf, task, progress or self.on_task_progress)

    def wait_task(self, wf: str | None, task: dict[str, Any],
                  progress: Callable[[dict[str, Any]], None] | None = None,
                  interval: float = 0.02, max_interval: float = 1.0) -> dict[str, Any]:
        """Poll a background task until it ends; return it when it succeeded.

        Raises ApiError with the task's own error (status and message) when it failed."""
        while task.get("state") == "running":
            if progress is not None:
                progress(task)
            time.sleep(interval)
            interval = min(max_interval, interval * 2)
            where = f"/workflows/{seg(wf)}" if wf is not None else ""
            task = self.get(f"{where}/tasks/{seg(task['_key'])}")
        if progress is not None:
            progress(task)
        if task.get("state") != "succeeded":
            error = task.get("error") or {}
            raise ApiError(int(error.get("code") or 500),
                           str(error.get("errorMessage") or "background task failed"), error)
        return task

    def is_complete(self, wf: str) -> dict[str, Any]:
        """``{is_canceled, is_complete, needs_to_run_completion_script}``."""
        return self.get(f"/workflows/{seg(wf)}/is_complete")

    def cancel_workflow(self, wf: str) -> None:
        self.put(f"/workflows/{seg(wf)}/cancel")

    def prepare_jobs_for_submission(self, wf: str, resources: Mapping[str, Any], *,
                                    sort_method: str | None = None,
                                    limit: int | None = None) -> list[dict[str, Any]]:
        """Claim jobs that fit ``resources``; returns them (status submitted_pending)."""
        resp = self.post(f"/workflows/{seg(wf)}/prepare_jobs_for_submission", dict(resources),
                         sort_method=sort_method, limit=limit)
        return resp.get("jobs", [])

    def get_job(self, wf: str, key: str) -> dict[str, Any]:
        return self.get(f"/workflows/{seg(wf)}/jobs/{seg(key)}")

    def start_job(self, wf: str, job_key: str, rev: str, run_id: int,
                  compute_node: str) -> dict[str, Any]:
        """PUT start_job; ``compute_node`` is a key or an id. Returns the job (new _rev)."""
        return self.put(
            f"/workflows/{seg(wf)}/jobs/{seg(job_key)}/start_job/{seg(rev)}/{int(run_id)}/"
            f"{seg(compute_node)}"
        )

    def complete_job(self, wf: str, job_key: str, status: str, rev: str, run_id: int,
                     compute_node: str, result: Mapping[str, Any]) -> dict[str, Any]:
        """POST complete_job with a result document; returns the final job."""
        return self.post(
            f"/workflows/{seg(wf)}/jobs/{seg(job_key)}/complete_job/{seg(status)}/{seg(rev)}/"
            f"{int(run_id)}/{seg(compute_node)}",
            dict(result),
        )

    def add_document(self, wf: str, collection: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """POST /workflows/{wf}/{collection}; returns the stored document."""
        return self.post(f"/workflows/{seg(wf)}/{seg(collection)}", dict(doc))

    def update_document(self, wf: str, collection: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """PUT /workflows/{wf}/{collection}/{doc._key} (merge; ``_rev`` required)."""
        return self.put(f"/workflows/{seg(wf)}/{seg(collection)}/{seg(doc['_key'])}", dict(doc))

    def add_edge(self, wf: str, name: str, from_id: str, to_id: str,
                 data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"_from": from_id, "_to": to_id}
        if data is not None:
            body["data"] = dict(data)
        return self.post(f"/workflows/{seg(wf)}/edges/{seg(name)}", body)

    def add_event(self, wf: str, event: Mapping[str, Any]) -> dict[str, Any]:
        return self.add_document(wf, "events", event)

    def list_jobs(self, wf: str, **filters) -> list[dict[str, Any]]:
        return list(self.iter_items(f"/workflows/{seg(wf)}/jobs", **filters))

    # ------------------------------------------------------------------ batched execution API
    # docs/execution-model.md §4. Completions and releases are idempotent per attempt, so a
    # caller may resend them after a ServerUnreachable.

    def claim_jobs(self, wf: str, compute_node_key: str, resources: Mapping[str, Any], *,
                   limit: int = 100, sort_method: str | None = None,
                   scheduler_config_id: str | None = None,
                   wait_seconds: float = 0) -> dict[str, Any]:
        """Claim and start up to ``limit`` jobs fitting ``resources`` (``num_cpus``,
        ``memory_gb``, ``num_gpus``, ``num_nodes``, ``time_limit``), waiting up to
        ``wait_seconds`` when none is ready. Returns ``{jobs, run_id, heartbeat_seconds,
        lease_seconds, is_complete, is_canceled, reason}``; each job carries
        ``execution.attempt_id``. ApiError 409: the node lost its lease."""
        return self.post(f"/workflows/{seg(wf)}/claim_jobs", _claim_body(
            resources, limit, sort_method, scheduler_config_id, wait_seconds,
            compute_node_key=compute_node_key))

    def complete_jobs(self, wf: str, compute_node_key: str, run_id: int,
                      completions: list[Mapping[str, Any]], *,
                      claim: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Report finished attempts: each ``{job_key, attempt_id, status, cause, result:
        {return_code, exec_time_minutes, completion_time}, process_stats}``. ``claim``
        (``{resources, limit, sort_method, scheduler_config_id, wait_seconds}``) claims more in
        the same transaction. Returns ``{items: [{job_key, attempt_id, outcome, status, code,
        message, recovery_script}], is_complete, claimed}``."""
        body: dict[str, Any] = {"compute_node_key": compute_node_key, "run_id": int(run_id),
                                "completions": [dict(c) for c in completions]}
        if claim is not None:
            body["claim"] = {k: v for k, v in claim.items() if v is not None}
        return self.post(f"/workflows/{seg(wf)}/complete_jobs", body)

    def heartbeat(self, wf: str, compute_node_key: str, *, lease_seconds: int | None = None,
                  job_keys: list[str] | None = None) -> dict[str, Any]:
        """Renew the node's lease (one request for all its jobs). Returns ``{lease_expires,
        heartbeat_seconds, lease_seconds, is_canceled, is_complete, lost_jobs}``; ``lost_jobs``
        are the ``job_keys`` the node no longer holds. ApiError 409: the lease expired."""
        body: dict[str, Any] = {}
        if lease_seconds is not None:
            body["lease_seconds"] = int(lease_seconds)
        if job_keys:
            body["job_keys"] = list(job_keys)
        return self.post(
            f"/workflows/{seg(wf)}/compute_nodes/{seg(compute_node_key)}/heartbeat", body)

    def release_jobs(self, wf: str, compute_node_key: str,
                     releases: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Give held jobs back to ``ready`` without a result: each ``{job_key, attempt_id,
        cause: "interrupted"}``. Returns ``{items: [...]}`` (outcome released/duplicate/stale)."""
        return self.post(f"/workflows/{seg(wf)}/release_jobs", {
            "compute_node_key": compute_node_key, "releases": [dict(r) for r in releases]})


def _claim_body(resources: Mapping[str, Any], limit: int, sort_method: str | None,
                scheduler_config_id: str | None, wait_seconds: float,
                **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {**extra, "resources": dict(resources), "limit": int(limit),
                            "wait_seconds": wait_seconds}
    if sort_method is not None:
        body["sort_method"] = sort_method
    if scheduler_config_id is not None:
        body["scheduler_config_id"] = scheduler_config_id
    return body


def find_token(settings: Mapping[str, Any]) -> str | None:
    """The API token (docs/execution-model.md §6): ``TORC_GRAPH_TOKEN``, else the file named by
    ``TORC_GRAPH_TOKEN_FILE``, else ``token`` in the user's config directory; None if none.
    Never a command-line argument (visible in ``ps``)."""
    if settings.get("token"):
        return str(settings["token"]).strip()
    path = settings.get("token_file") or os.path.join(config_dir(), "token")
    try:
        with open(os.path.expanduser(path)) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _encode(body: Any) -> bytes:
    """A request body as compact JSON (orjson where exact). A value the strict encoder
    refuses for NaN/Infinity is sent as the standard library writes it, for the server to
    answer (400), as before."""
    try:
        return json_codec.dumpb(body)
    except ValueError:
        return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _text(content: bytes) -> str:
    return content.decode("utf-8", "replace")
