"""Failures at the CLI edge: exception → one ``Error: ...`` line on stderr and an exit code.

Exit codes (httpie's convention, by HTTP class):

====  ==========================================================
0     success
1     a local failure (file not readable, Graphviz missing, ...)
2     usage error: bad arguments, a missing or invalid spec file, an ambiguous name
3     the server is unreachable
4     the server answered 4xx (not found, invalid input, conflict)
5     the server answered 5xx
====  ==========================================================

The mapping is done once, by :func:`handle_errors`, which the shared command options apply to
every command; commands never catch client exceptions themselves. With ``--debug`` the traceback
is printed too.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import click

from torc_graph.client import ApiError, ServerUnreachable
from torc_graph.errors import TorcGraphError

EXIT_LOCAL = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CLIENT_ERROR = 4
EXIT_SERVER_ERROR = 5

#: ``click.Context.meta`` key set by ``--debug`` (meta is shared by nested contexts).
DEBUG_META_KEY = "torc_graph.debug"
#: ``click.Context.meta`` key: the command talks to the embedded store, not to a server.
EMBEDDED_META_KEY = "torc_graph.embedded"

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A ClickException with a chosen exit code; click prints ``Error: <message>``."""

    def __init__(self, message: str, exit_code: int = EXIT_LOCAL):
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for_status(status: int) -> int:
    """4 for a 4xx reply, 5 for anything else the server failed with."""
    return EXIT_CLIENT_ERROR if 400 <= status < 500 else EXIT_SERVER_ERROR


def translate(exc: BaseException) -> CliError | None:
    """The CliError for a known failure, None for anything else (a bug: let it raise)."""
    if isinstance(exc, ServerUnreachable):
        return CliError(str(exc) or "the server is unreachable", EXIT_UNREACHABLE)
    if isinstance(exc, ApiError):
        # "(HTTP 404)" only when a server answered: the embedded store is no HTTP server.
        suffix = "" if embedded_store() else f" (HTTP {exc.status})"
        return CliError(f"{bare_message(exc.message)}{suffix}", exit_code_for_status(exc.status))
    if isinstance(exc, TorcGraphError):
        # Raised in-process before any request was served (e.g. an unsupported --database
        # URL); it carries the status the API would have answered with.
        return CliError(bare_message(exc.message), exit_code_for_status(exc.status))
    return None


def bare_message(message: str) -> str:
    """torc's messages often start with "Error: "; click adds its own."""
    return message[len("Error: "):] if message.startswith("Error: ") else message


def embedded_store() -> bool:
    """True while a command runs against the embedded store (set by the client options)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(EMBEDDED_META_KEY))


def debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(DEBUG_META_KEY))


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file descriptor (e.g. a test runner's buffer)


def handle_errors(func: F) -> F:
    """Decorate a command callback: known failures become CliError (one line, exit code)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except click.ClickException:
            raise
        except (ApiError, ServerUnreachable, TorcGraphError) as exc:
            if debug_enabled():
                traceback.print_exc(file=sys.stderr)
            raise translate(exc) from exc  # type: ignore[misc]
        except (click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader went away (`| head`): it had what it wanted, so this is a success
            # (exit 0, as `cat | head` would); stop quietly, and keep Python from failing
            # again when it flushes stdout at exit.
            _silence_stdout()
            raise click.exceptions.Exit(0) from None
        except Exception as exc:
            # Anything else is unexpected (a bug, a local I/O failure): still one line, with
            # the traceback kept for --debug.
            if debug_enabled():
                raise
            raise CliError(f"{type(exc).__name__}: {exc} (rerun with --debug for details)",
                           EXIT_LOCAL) from exc

    return wrapper  # type: ignore[return-value]
