"""``torc-graph``: the command-line entry point (a click group; commands live in sibling
modules and are registered here)."""

from __future__ import annotations

import os

import click

from torc_graph.config import SETTINGS

_DEFAULTS = {s.name: s.default for s in SETTINGS}


@click.group(name="torc-graph")
@click.version_option(package_name="torc-graph", prog_name="torc-graph")
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
@click.option("--database", envvar="TORC_GRAPH_DATABASE", default=_DEFAULTS["database"],
              show_default=True,
              help="Store URL: sqlite:///path.db or arangodb://user:password@host:8529/db.")
@click.option("--log-level", envvar="TORC_GRAPH_LOG_LEVEL", default=_DEFAULTS["log_level"],
              show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="Server log level.")
def serve(host: str, port: int, workers: int, database: str, log_level: str) -> None:
    """Run the REST server (gunicorn, Falcon) on the given store.

    Clients use http://HOST:PORT (or http://HOST:PORT/_db/<name>/torc-service, the torc
    v0.6.4 base URL) as their API URL.

    Example:

        torc-graph serve --port 8529 --database sqlite:///work/torc.db
    """
    # Workers build their app from the environment (torc_graph.app.get_app), so the options
    # given here reach every worker, also after a worker restart.
    os.environ["TORC_GRAPH_DATABASE"] = database
    os.environ["TORC_GRAPH_LOG_LEVEL"] = log_level.lower()
    from torc_graph.config import load_settings
    from torc_graph.errors import TorcGraphError

    try:
        settings = load_settings()
        _prepare_store(settings)
    except TorcGraphError as exc:
        raise click.ClickException(exc.message) from None
    _run_gunicorn(f"{host}:{port}", workers, log_level.lower())


def _prepare_store(settings: dict) -> None:
    """Create the schema once, in the master, so workers do not race to create it; then
    close the connection before gunicorn forks."""
    from torc_graph.app import store_options
    from torc_graph.store import open_store

    store = open_store(settings["database"], **store_options(settings))
    try:
        store.info()
    finally:
        store.close()


#: gunicorn threads per worker process (``gthread``; see _run_gunicorn).
THREADS_PER_WORKER = 8


def _run_gunicorn(bind: str, workers: int, log_level: str) -> None:
    from gunicorn.app.base import BaseApplication

    class TorcGraphServer(BaseApplication):
        def load_config(self) -> None:
            options = {
                "bind": bind,
                "workers": workers,
                # Threads, so that long polls (claim_jobs wait_seconds, up to 60 s) do not pin
                # a worker process each: a waiting request holds no lock and ~no CPU.
                "worker_class": "gthread",
                "threads": THREADS_PER_WORKER,
                "loglevel": log_level,
                "accesslog": "-" if log_level == "debug" else None,
                # A 10,000-job bulk insert or a large initialize_jobs may take a while.
                "timeout": 300,
                "graceful_timeout": 30,
                "proc_name": "torc-graph",
            }
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

# Slurm: the `slurm` group (and `workflows sync`, attached to the `workflows` group).
from torc_graph.cli.slurm import slurm  # noqa: E402

cli.add_command(slurm)
