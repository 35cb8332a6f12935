"""``torc-graph``: the command-line entry point (a click group; commands live in sibling
modules and are registered here)."""

from __future__ import annotations

import os

import click

from torc_graph import __version__
from torc_graph.config import SETTINGS
from torc_graph.model import SERVICE_VERSION

_DEFAULTS = {s.name: s.default for s in SETTINGS}


@click.group(name="torc-graph")
@click.version_option(__version__, prog_name="torc-graph",
                      message=f"%(prog)s %(version)s (speaks the torc v{SERVICE_VERSION} "
                              "HTTP API)")
def cli() -> None:
    """torc_graph: a graph-database-backed workflow manager, wire-compatible with torc v0.6.4."""


@cli.command()
@click.option("--host", envvar="TORC_GRAPH_HOST", default=_DEFAULTS["host"], show_default=True,
              help="Address to bind to.")
@click.option("--port", envvar="TORC_GRAPH_PORT", type=click.IntRange(1, 65535),
              default=_DEFAULTS["port"], show_default=True, help="Port to listen on.")
@click.option("--workers", envvar="TORC_GRAPH_WORKERS", type=click.IntRange(1),
              default=_DEFAULTS["workers"], show_default=True,
              help="gunicorn worker processes.")
@click.option("--threads", envvar="TORC_GRAPH_THREADS", type=click.IntRange(1),
              default=_DEFAULTS["threads"], show_default=True,
              help="Threads per worker process (one per request in progress, waiting long "
                   "polls included).")
@click.option("--database", envvar="TORC_GRAPH_DATABASE", default=_DEFAULTS["database"],
              show_default=True,
              help="Store URL: sqlite:///path.db or arangodb://user:password@host:8529/db.")
@click.option("--log-level", envvar="TORC_GRAPH_LOG_LEVEL", default=_DEFAULTS["log_level"],
              show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="Server log level.")
@click.option("--no-auth", is_flag=True,
              help="Serve without authentication (also TORC_GRAPH_AUTH=off). Only on a machine "
                   "no one else can reach: every local user could then use the server.")
@click.option("--certfile", envvar="TORC_GRAPH_CERTFILE", type=click.Path(dir_okay=False),
              help="TLS certificate (PEM): serve HTTPS. Needs --keyfile.")
@click.option("--keyfile", envvar="TORC_GRAPH_KEYFILE", type=click.Path(dir_okay=False),
              help="TLS private key (PEM) of --certfile.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Also accept this name in the Host header (repeatable; the bound address "
                   "and localhost names always are) [env: TORC_GRAPH_ALLOWED_HOSTS].")
@click.option("--allowed-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="Allow cross-origin (CORS) requests from this browser origin, e.g. "
                   "https://dash.example.org (repeatable) [env: TORC_GRAPH_ALLOWED_ORIGINS].")
def serve(host: str, port: int, workers: int, threads: int, database: str,
          log_level: str, no_auth: bool,
          certfile: str | None, keyfile: str | None, allowed_hosts: tuple[str, ...],
          allowed_origins: tuple[str, ...]) -> None:
    """Run the REST server (gunicorn, Falcon) on the given store.

    Clients use http://HOST:PORT (or http://HOST:PORT/_db/<name>/torc-service, the torc
    v0.6.4 base URL) as their API URL. Authentication is on: the first start creates an admin
    token in ~/.config/torc_graph/token (mode 0600) and prints its path; see README "Security".

    Example:

        torc-graph serve --port 8529 --database sqlite:///work/torc.db
    """
    # Workers build their app from the environment (torc_graph.app.get_app), so the options
    # given here reach every worker, also after a worker restart.
    os.environ["TORC_GRAPH_DATABASE"] = database
    os.environ["TORC_GRAPH_LOG_LEVEL"] = log_level.lower()
    os.environ["TORC_GRAPH_HOST"] = host
    if no_auth:
        os.environ["TORC_GRAPH_AUTH"] = "off"
    for name, values in (("ALLOWED_HOSTS", allowed_hosts), ("ALLOWED_ORIGINS", allowed_origins)):
        if values:
            os.environ[f"TORC_GRAPH_{name}"] = ",".join(values)
    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    from torc_graph.config import load_settings
    from torc_graph.errors import TorcGraphError

    try:
        settings = load_settings()
        _prepare_store(settings)
    except TorcGraphError as exc:
        raise click.ClickException(exc.message) from None
    if not settings["auth"]:
        click.echo("WARNING: authentication is OFF: anyone who can reach "
                   f"{host}:{port} (every user of this machine) can read, change and run "
                   "every workflow.", err=True)
    scheme = "https" if certfile else "http"
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "") else host
    click.echo(f"Dashboard: {scheme}://{shown}:{port}/dashboard (log in with a token)", err=True)
    _run_gunicorn(f"{host}:{port}", workers, threads, log_level.lower(), certfile, keyfile)


def _prepare_store(settings: dict) -> None:
    """Create the schema once, in the master, so workers do not race to create it; create the
    admin token on first start; then close the connection before gunicorn forks."""
    from torc_graph.app import store_options
    from torc_graph.store import open_store

    store = open_store(settings["database"], **store_options(settings))
    try:
        store.info()
        if settings["auth"]:
            from torc_graph.cli.tokens import bootstrap_admin_token

            bootstrap_admin_token(store, settings)
    finally:
        store.close()


def _run_gunicorn(bind: str, workers: int, threads: int, log_level: str,
                  certfile: str | None = None, keyfile: str | None = None) -> None:
    from gunicorn.app.base import BaseApplication

    class TorcGraphServer(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": bind,
                "workers": workers,
                # Threads, so that long polls (claim_jobs wait_seconds, up to 60 s) do not pin
                # a worker process each: a waiting request holds a thread but no lock and
                # ~no CPU. workers x threads bounds the requests in progress.
                "worker_class": "gthread",
                "threads": threads,
                "loglevel": log_level,
                "accesslog": "-" if log_level == "debug" else None,
                # A 10,000-job bulk insert or a large initialize_jobs may take a while.
                "timeout": 300,
                "graceful_timeout": 30,
                "proc_name": "torc-graph",
                "certfile": certfile,
                "keyfile": keyfile,
            }
            # gunicorn's control socket has one default path per user: a second server
            # would unlink the first one's, and stopping either deletes it. Unused: off.
            if "control_socket_disable" in self.cfg.settings:
                options["control_socket_disable"] = True
            for name, value in options.items():
                if value is not None:
                    self.cfg.set(name, value)

        def load(self):
            from torc_graph.app import get_app

            return get_app()

    TorcGraphServer().run()


# Inspection commands and graph export (one registration per module; imported here, after
# `cli` exists, so that `serve` stays importable without them).
from torc_graph.cli.graph import graph  # noqa: E402
from torc_graph.cli.inspect import GROUPS as _INSPECT_GROUPS  # noqa: E402
from torc_graph.cli.jobs import jobs  # noqa: E402
from torc_graph.cli.workflows import workflows  # noqa: E402

for _command in (workflows, jobs, *_INSPECT_GROUPS, graph):
    cli.add_command(_command)

# `run` and the worker `jobs run` (attached to the `jobs` group by its module).
from torc_graph.cli.run import run  # noqa: E402

cli.add_command(run)

from torc_graph.cli.tokens import tokens  # noqa: E402

cli.add_command(tokens)

# Slurm: the `slurm` group (and `workflows sync`, attached to the `workflows` group).
from torc_graph.cli.slurm import slurm  # noqa: E402

cli.add_command(slurm)
