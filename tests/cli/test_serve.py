"""``torc-graph serve``: options, the embedded SQLite default in the cwd, schema created before
the workers fork, a clean error for a bad database URL, and a real gunicorn answering."""

from __future__ import annotations

import subprocess

import pytest
import requests
from click.testing import CliRunner

from torc_graph.cli.main import cli
from torc_graph.testing import LiveServer, clean_env, cli_argv


def test_serve_help_lists_options():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--database", "--log-level", "Example:"):
        assert option in result.output
    assert "sqlite:///torc_graph.db" in result.output


def test_serve_rejects_a_bad_database_url(tmp_path):
    proc = subprocess.run(
        cli_argv("serve", "--database", "postgres://nope", "--port", "1"),
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "unsupported database URL" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_serve_default_database_in_cwd(tmp_path):
    """No --database: ``sqlite:///torc_graph.db`` relative to the cwd, created before fork."""
    log = tmp_path / "server.log"
    with LiveServer(None, workers=2, cwd=tmp_path, log_path=log) as server:
        base = server.url
        assert (tmp_path / "torc_graph.db").exists()
        # Both workers serve requests against the same file.
        keys = {requests.post(f"{base}/workflows", json={"user": "u"}).json()["_key"]
                for _ in range(10)}
        assert len(keys) == 10
        assert requests.get(f"{base}/workflows").json()["total_count"] == 10
    assert "Traceback" not in log.read_text()
