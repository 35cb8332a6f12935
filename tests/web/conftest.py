"""Fixtures of the dashboard's browser tests: a real gunicorn (LiveServer, auth on) serving the
committed build in torc_graph/web/dist, and a real headless Chromium (the system's, driven by
Playwright). Without Chromium or Playwright the tests skip, saying which is missing.

``TORC_GRAPH_SCREENSHOT_DIR=docs/images pytest tests/web -m ''`` saves the README screenshots
from these runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torc_graph import headless
from torc_graph.testing import LiveServer


@pytest.fixture(scope="module")
def chromium():
    reason = headless.skip_reason()
    if reason:
        pytest.skip(reason)
    with headless.Chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("web")
    with LiveServer(f"sqlite:///{d / 'db.sqlite'}", workers=2, cwd=d,
                    log_path=d / "server.log") as s:
        s.dir = d
        yield s


@pytest.fixture
def page(chromium, server):
    """A new tab, logged in to the dashboard with the admin token through the login form."""
    tab = chromium.new_page()
    headless.login(tab, server.base_url, server.token)
    yield tab
    tab.context.close()


@pytest.fixture
def screenshot():
    """``screenshot(page, name)`` saves ``<name>.png`` into $TORC_GRAPH_SCREENSHOT_DIR, if set."""
    target = os.environ.get("TORC_GRAPH_SCREENSHOT_DIR")

    def save(tab, name: str) -> None:
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)

    return save
