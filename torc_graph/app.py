"""The Falcon application.

* :func:`create_app` is pure: it wires a given store and settings into a ``falcon.App`` (tests
  use it with a store on a temporary SQLite file).
* :func:`get_app` is what gunicorn runs (``gunicorn 'torc_graph.app:get_app()'``): it reads
  the settings from the environment and opens the configured store. The store connects
  lazily, so nothing is connected before gunicorn forks its workers.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from torc_graph.api.auth import AuthMiddleware
from torc_graph.api.browser import BrowserGuard, allowed_host_names, split_list
from torc_graph.api.errors import register_error_handlers
from torc_graph.api.middleware import RequestMiddleware
from torc_graph.api.routes import add_routes
from torc_graph.store.base import GraphStore


def create_app(store: GraphStore, settings: dict[str, Any], *, served: bool = False) -> falcon.App:
    """A WSGI app serving the torc v0.6.4 REST API on ``store``.

    ``served``: the app answers the network (``torc-graph serve``), so it guards browsers
    (:mod:`.api.browser`) and, unless ``settings["auth"]`` is off, requires tokens
    (:mod:`.api.auth`). The in-process embedded app of the CLI has neither.
    """
    app = falcon.App(
        middleware=[*guard_middleware(store, settings, served),
                    RequestMiddleware(settings["max_body_bytes"],
                                      settings.get("max_spec_bytes"))],
        # Bodies are read and parsed by torc_graph.api.media (size limit, torc error bodies).
        cors_enable=False,
    )
    app.req_options.strip_url_path_trailing_slash = True
    register_error_handlers(app)
    add_routes(app, store, settings)
    return app


def get_app() -> falcon.App:
    """The app for the environment's settings (``TORC_GRAPH_*``), on a lazily opened store."""
    from torc_graph.config import load_settings
    from torc_graph.store import open_store

    settings = load_settings()
    # Unexpected errors are logged with their traceback; make sure they reach gunicorn's
    # stderr (a no-op when the process already configured logging).
    logging.basicConfig(
        level=str(settings["log_level"]).upper(),
        format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
    )
    store = open_store(
        settings["database"],
        **store_options(settings),
    )
    # Each worker, at start (also a worker respawned after kill -9): remove the hidden remains
    # of creations whose process died (engine/staging.py; live ones are left alone).
    try:
        store.sweep_staged()
    except Exception as exc:  # noqa: BLE001  never keep the server from starting
        logging.getLogger(__name__).warning("sweep of abandoned creations failed: %s", exc)
    return create_app(store, settings, served=True)


def guard_middleware(store: GraphStore, settings: dict[str, Any], served: bool) -> list:
    """Browser guard and authentication for a served app (they run before path rewriting:
    the token may sit in the ``/_db/<token>/torc-service`` prefix)."""
    if not served:
        return []
    hosts = allowed_host_names(str(settings["host"]), split_list(settings["allowed_hosts"]))
    guards: list = [BrowserGuard(hosts, split_list(settings["allowed_origins"]))]
    if settings["auth"]:
        guards.append(AuthMiddleware(store))
    return guards


def store_options(settings: dict[str, Any]) -> dict[str, Any]:
    """Backend options derived from the settings (only the SQLite ones exist today)."""
    if str(settings["database"]).lower().startswith("sqlite:"):
        return {
            "synchronous": settings["sqlite_synchronous"],
            "busy_timeout": settings["sqlite_busy_timeout"],
            "cache_mib": settings["sqlite_cache_mib"],
        }
    return {}
