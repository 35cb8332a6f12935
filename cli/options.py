"""Options shared by the ``torc-graph`` commands, written once as decorators.

* :func:`client_options` — ``--url``, ``--database``, ``--debug``. The command receives a
  ready ``client`` (:class:`torc_graph.client.Client`, closed when the command ends), its
  workflow / job / user-data arguments resolved from names to keys (:mod:`.names`), and its
  failures are turned into one ``Error: ...`` line and an exit code (:mod:`.errors`).
* :func:`json_option` — ``--json``: machine output; the command receives ``as_json``.
* :func:`paging_options` — ``--limit`` / ``--skip``: the command receives ``limit`` (None =
  everything) and ``skip``.

Where the CLI connects: ``--url`` (a server); else ``--database`` (the embedded store, served
in-process); else ``TORC_GRAPH_URL``; else the embedded store ``TORC_GRAPH_DATABASE`` (default
``sqlite:///torc_graph.db``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from torc_graph.cli.errors import DEBUG_META_KEY, EMBEDDED_META_KEY, handle_errors
from torc_graph.cli.names import resolve_arguments
from torc_graph.client import Client

F = TypeVar("F", bound=Callable[..., Any])

#: Interactive commands give up on an unreachable server after a few seconds; a worker, which
#: must survive a server restart, configures its own client with longer retries.
CLI_RETRIES = 2
CLI_BACKOFF = 0.2


def database_url(value: str) -> str:
    """A ``--database`` value as a store URL: a plain path means a SQLite file."""
    if "://" in value:
        return value
    return "sqlite:///" + os.path.abspath(value)


def make_client(url: str | None, database: str | None) -> Client:
    """The client for the given ``--url`` / ``--database`` (environment as fallback)."""
    return Client(url or None, database=database_url(database) if database else None,
                  retries=CLI_RETRIES, backoff=CLI_BACKOFF)


def _enable_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[DEBUG_META_KEY] = True
    return value


def client_options(func: F) -> F:
    """Add ``--url``, ``--database`` and ``--debug``; pass ``client``; translate failures."""

    @click.option("--url", metavar="URL",
                  help="Server URL, e.g. http://localhost:8529 [env: TORC_GRAPH_URL]. "
                       "Default: the embedded store (--database).")
    @click.option("--database", metavar="URL|PATH",
                  help="Embedded store: sqlite:///path.db, a SQLite file path, or an "
                       "arangodb:// URL [env: TORC_GRAPH_DATABASE; default: "
                       "sqlite:///torc_graph.db].")
    @click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
                  callback=_enable_debug, help="Show tracebacks on errors.")
    @functools.wraps(func)
    @handle_errors
    def wrapper(*args: Any, url: str | None, database: str | None, **kwargs: Any) -> Any:
        client = make_client(url, database)
        ctx = click.get_current_context()
        ctx.call_on_close(client.close)
        ctx.meta[EMBEDDED_META_KEY] = client.is_embedded
        return func(*args, client=client, **resolve_arguments(client, kwargs))

    return wrapper  # type: ignore[return-value]


def json_option(func: F) -> F:
    """Add ``--json`` (passed as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (the server's documents) instead of a table.")(func)


def paging_options(func: F) -> F:
    """Add ``--limit`` and ``--skip``."""
    func = click.option("--skip", type=click.IntRange(min=0), default=0, show_default=True,
                        help="Skip this many items.")(func)
    return click.option("--limit", type=click.IntRange(min=1),
                        help="Show at most this many items (default: all).")(func)
