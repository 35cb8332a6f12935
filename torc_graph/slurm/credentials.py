"""The credential of a workflow's Slurm allocations (docs/execution-model.md §6).

An allocation gets an **executor token of its one workflow, with an expiry**, in a file only
the user can read (mode 0600) in the shared output directory; the batch script names the file
in ``TORC_GRAPH_TOKEN_FILE`` — the token is never in the script body, on a command line (``ps``)
or in the server URL the allocation uses. Jobs started by the worker inherit it through the
environment, and allocations the worker submits just in time reuse the same file.

Where the token comes from:

* ``torc-graph run --slurm`` on the embedded store (:class:`ServedCredentials`): the submit host
  creates it directly in the SQLite store (an engine call, before the server starts), together
  with an expiring admin token for its own follower process (which the served server also
  takes as its admin token file, so it creates none); both are revoked when the run ends.
* against a server (``--url``; :func:`mint`): the CLI, holding the user's token, asks
  ``POST /workflows/{wf}/executor_tokens`` (the workflow's owner or an admin may); ``run
  --slurm --url`` revokes it at the end, ``slurm schedule-nodes`` leaves it to expire.

Lifetime: ``TORC_GRAPH_SLURM_TOKEN_LIFETIME`` seconds (default :data:`DEFAULT_LIFETIME`, 7 days:
allocations may wait in the queue before they run).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from torc_graph.client import ApiError, Client, seg

#: Environment variable: lifetime in seconds of the tokens minted for allocations.
LIFETIME_ENV = "TORC_GRAPH_SLURM_TOKEN_LIFETIME"
DEFAULT_LIFETIME = 7 * 24 * 3600
_DB_TOKEN = re.compile(r"/_db/tg_[^/]*/torc-service/?$")


class CredentialError(Exception):
    """No credential could be made for the allocations."""


def lifetime() -> float:
    """Seconds the allocations' tokens live. Raises CredentialError for a bad setting."""
    value = os.environ.get(LIFETIME_ENV)
    if not value:
        return float(DEFAULT_LIFETIME)
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise CredentialError(f"{LIFETIME_ENV} must be a positive number of seconds: {value!r}")
    return seconds


def allocation_url(url: str) -> str:
    """``url`` without a token in torc v0.6.4's database segment (``/_db/<token>/torc-service``):
    the URL goes into the batch script and the worker's argv, the token does not."""
    return _DB_TOKEN.sub("", url.rstrip("/"))


def token_key(token: str) -> str:
    """The document key of a ``tg_<key>_<secret>`` token."""
    return token[len("tg_"):].split("_", 1)[0]


def write_token_file(directory: Path, workflow: str, token: str, kind: str = "worker") -> str:
    """Write ``token`` to a new file readable only by the user (0600, created so: never
    world-readable for an instant); one file per token, so concurrent runs sharing the
    directory do not overwrite each other's. Returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".torc_graph_{kind}_token_wf{workflow}_{token_key(token)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return str(path)


def mint(client: Client, workflow: str, directory: Path) -> tuple[str, str]:
    """Ask the server for an expiring executor token of ``workflow`` and write it to a 0600
    file; returns ``(path, token key)``. Raises CredentialError (e.g. 403: the user's token
    does not own the workflow)."""
    try:
        answer = client.post(f"/workflows/{seg(workflow)}/executor_tokens",
                             {"expires_in": lifetime(), "name": f"slurm-wf{workflow}"})
    except ApiError as exc:
        raise CredentialError(f"cannot get an executor token of workflow {workflow} for the "
                              f"allocations ({exc.status}: {exc}); its owner or an admin "
                              "can") from None
    token = answer["token"]
    return write_token_file(directory, workflow, token), token_key(token)


def revoke(client: Client, workflow: str, key: str) -> None:
    """Revoke the executor token ``key`` of ``workflow``. Raises ApiError."""
    client.delete(f"/workflows/{seg(workflow)}/executor_tokens/{seg(key)}")


class ServedCredentials:
    """The tokens of a ``run --slurm`` on the embedded store ``database`` (a context manager):
    an executor token of ``workflow`` for the allocations (:attr:`worker_file`) and an admin
    token for the submit host's follower (:attr:`follower_token`, :attr:`admin_file`), created
    in the store on enter, revoked and their files removed on exit."""

    def __init__(self, database: str, workflow: str, directory: Path):
        self.database = database
        self.workflow = workflow
        self.directory = directory
        self.worker_file = ""
        self.admin_file = ""
        self.follower_token = ""
        self._keys: list[str] = []

    def _store(self):
        from torc_graph.app import store_options
        from torc_graph.config import load_settings
        from torc_graph.store import open_store

        return open_store(self.database, **store_options(load_settings(database=self.database)))

    def __enter__(self) -> ServedCredentials:
        """Create both tokens (expiring after :func:`lifetime`) and their files."""
        from torc_graph.engine import tokens

        seconds = lifetime()
        store = self._store()
        try:
            worker, _ = tokens.create_executor(store, self.workflow, expires_in=seconds,
                                               name=f"slurm-wf{self.workflow}",
                                               created_by="run --slurm")
            self._keys.append(token_key(worker))
            self.follower_token, _ = tokens.create(
                store, name=f"run-slurm-wf{self.workflow}", role="admin", expires_in=seconds,
                created_by="run --slurm")
            self._keys.append(token_key(self.follower_token))
        finally:
            store.close()
        self.worker_file = write_token_file(self.directory, self.workflow, worker)
        self.admin_file = write_token_file(self.directory, self.workflow, self.follower_token,
                                           "run")
        return self

    def __exit__(self, *exc: object) -> None:
        """Revoke the tokens (they stop working at once) and remove their files."""
        from torc_graph.engine import tokens

        store = self._store()
        try:
            for key in self._keys:
                tokens.revoke(store, key)
        finally:
            store.close()
        for path in (self.worker_file, self.admin_file):
            if path:
                Path(path).unlink(missing_ok=True)
