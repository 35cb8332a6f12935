"""Settings, declared once as a table: name, environment variable, default, type, help.

The README's configuration table is checked against :data:`SETTINGS` by a test, so a setting
cannot exist without being documented.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from torc_graph.errors import InvalidInput

DEFAULT_DATABASE_URL = "sqlite:///torc_graph.db"


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str

    @property
    def env(self) -> str:
        return "TORC_GRAPH_" + self.name.upper()


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.upper()
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return v

    return parse


def _positive_int(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise ValueError("must be a positive integer")
    return n


def _positive_float(value: str) -> float:
    n = float(value)
    if n <= 0:
        raise ValueError("must be a positive number")
    return n


SETTINGS: tuple[Setting, ...] = (
    Setting("database", DEFAULT_DATABASE_URL,
            "Store URL: sqlite:///path/to/file.db (embedded, the default) or "
            "arangodb://user:password@host:8529/database."),
    Setting("max_body_bytes", 64 * 1024 * 1024,
            "Largest accepted request body in bytes; larger bodies get HTTP 413.", _positive_int),
    Setting("max_spec_bytes", 4 * 1024 ** 3,
            "Largest accepted POST /workflow_specifications body in bytes (spooled to a "
            "temporary file and read incrementally, never held in memory); larger: HTTP 413.",
            _positive_int),
    Setting("sqlite_synchronous", "FULL",
            "SQLite `synchronous` pragma: FULL (no committed write lost on power failure) or "
            "NORMAL (faster; the last commits may be lost on power failure, never corrupted).",
            _choice("FULL", "NORMAL")),
    Setting("sqlite_busy_timeout", 120.0,
            "Seconds a SQLite writer waits for the lock before the request fails with 503.",
            _positive_float),
    Setting("sqlite_cache_mib", 64,
            "SQLite page cache per connection in MiB (grows only as pages are used; each "
            "server thread has its own connection, so the bound is workers x threads x this).",
            _positive_int),
    Setting("host", "127.0.0.1", "Address `torc-graph serve` binds to."),
    Setting("port", 8529, "Port `torc-graph serve` listens on.", _positive_int),
    Setting("workers", min(4, max(2, os.cpu_count() or 2)),
            "gunicorn worker processes for `torc-graph serve`; default one per CPU, 2 to 4 (on "
            "2 CPUs, 2 workers completed 8-25 % more jobs per second than 4 in every "
            "same-run pair measured: completions of one process share a commit).",
            _positive_int),
    Setting("threads", 32,
            "Threads per gunicorn worker process of `torc-graph serve` (one per request in "
            "progress: workers x threads bounds the concurrent long polls of claim_jobs).",
            _positive_int),
    Setting("stream_connections", 8,
            "Open event streams (GET .../events/stream) per worker process; one more gets 503 "
            "with Retry-After. Keep it below threads so other requests always find a thread.",
            _positive_int),
    Setting("stream_heartbeat_seconds", 15.0,
            "Seconds between `: keepalive` comments on a quiet event stream.", _positive_float),
    Setting("stream_max_seconds", 3600.0,
            "An event stream ends after this long; clients reconnect with Last-Event-ID.",
            _positive_float),
    Setting("stream_poll_seconds", 0.5,
            "How often an open event stream reads the store for new events.", _positive_float),
    Setting("log_level", "info", "Server log level (debug, info, warning, error)."),
    Setting("url", None,
            "Server URL used by the CLI and runners (e.g. http://localhost:8529). Unset: the "
            "CLI works on the embedded store named by TORC_GRAPH_DATABASE."),
)



def _on_off(value: str) -> bool:
    v = value.strip().lower()
    if v in ("on", "true", "1", "yes"):
        return True
    if v in ("off", "false", "0", "no"):
        return False
    raise ValueError("must be on or off")


def config_dir(environ: Mapping[str, str] | None = None) -> str:
    """The user's torc_graph config directory (``$XDG_CONFIG_HOME/torc_graph``, default
    ``~/.config/torc_graph``)."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "torc_graph")


SETTINGS += (
    Setting("auth", True,
            "`torc-graph serve` requires a token on every request: on (default) or off "
            "(`--no-auth`; only for a private machine). The embedded store needs none.", _on_off),
    Setting("admin_token_file", None,
            "Where `torc-graph serve` writes the admin token it creates on first start "
            "(mode 0600). Default: token in the user's config directory "
            "(~/.config/torc_graph/token)."),
    Setting("allowed_hosts", "",
            "Extra host names accepted in the Host header, comma-separated (the bound "
            "address and localhost names always are; * accepts any)."),
    Setting("allowed_origins", "",
            "Browser origins allowed to call the API (CORS), comma-separated; none by "
            "default, so cross-origin requests get 403."),
    Setting("certfile", None, "TLS certificate (PEM) for `torc-graph serve`; with keyfile, "
            "the server speaks HTTPS only."),
    Setting("keyfile", None, "TLS private key (PEM) for `torc-graph serve`."),
    Setting("token", None,
            "API token sent by the CLI and runners (Authorization: Bearer). Unset: read from "
            "TORC_GRAPH_TOKEN_FILE, else ~/.config/torc_graph/token."),
    Setting("token_file", None, "File holding the API token (see TORC_GRAPH_TOKEN)."),
    Setting("dashboard_session_seconds", 43200.0,
            "Lifetime of a web dashboard session (its cookie) in seconds; a session also "
            "ends when its token is revoked or expires.", _positive_float),
    Setting("dashboard_dir", None,
            "Directory of the built web dashboard (index.html, assets/). Default: the one "
            "shipped in the package (torc_graph/web/dist)."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Settings from defaults, then the environment, then ``overrides`` (non-None values).

    Raises InvalidInput naming the variable if an environment value does not parse.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = environ.get(s.env)
        if raw is None or raw == "":
            values[s.name] = s.default
            continue
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            raise InvalidInput(f"{s.env}={raw!r}: {exc}") from None
    for name, value in overrides.items():
        if name not in _BY_NAME:
            raise InvalidInput(f"unknown setting {name!r}")
        if value is not None:
            values[name] = value
    return values
