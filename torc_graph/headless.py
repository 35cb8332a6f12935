"""Headless Chromium driving the web dashboard, for tests (tests/web) and the benchmark.

Uses the system's Chromium (Debian ``chromium``) through Playwright's Python driver; Playwright's
own browser downloads are never used. ``skip_reason()`` says why a machine cannot run it::

    with LiveServer(db) as server, Chromium() as chromium:
        page = chromium.new_page()
        login(page, server.base_url, server.token)
        ms = open_workflow(page, server.base_url, wf)    # ms until the summary view rendered

The large workflow of the tests and the benchmark is ``torc_graph.testing.staged_workflow``.
"""

from __future__ import annotations

import os
import shutil

#: The system Chromium; ``TORC_GRAPH_CHROMIUM`` overrides.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run")
#: Selector present once the workflow view has rendered its summary.
SUMMARY_READY = "[data-summary-ready]"


def chromium_path() -> str | None:
    """Path of the system Chromium, or None."""
    env = os.environ.get("TORC_GRAPH_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def skip_reason() -> str | None:
    """Why the dashboard cannot be driven here (no Chromium, no Playwright), else None."""
    if chromium_path() is None:
        return "no Chromium (apt-get install chromium; .ci/run installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright (pip install -e '.[dev]')"
    return None


class Chromium:
    """A headless Chromium; each :meth:`new_page` is a tab in its own fresh context (its own
    cookies). Playwright starts the browser with a temporary profile directory (its
    ``--user-data-dir``) and removes it when the browser closes."""

    def __init__(self, viewport: tuple[int, int] = (1400, 1000)):
        self.viewport = viewport
        self._pw = None
        self.browser = None

    def __enter__(self) -> "Chromium":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        try:
            self.browser = self._pw.chromium.launch(
                executable_path=chromium_path(), headless=True, args=list(ARGS))
        except BaseException:
            self.__exit__()
            raise
        return self

    def new_page(self):
        """A tab in a new context; uncaught script errors and console errors are collected in
        ``page.errors`` (not the browser's own notes of non-2xx answers, such as the 401 of
        ``GET /dashboard/session`` before login). Close it with ``page.context.close()``."""
        context = self.browser.new_context(
            viewport={"width": self.viewport[0], "height": self.viewport[1]})
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error"
                and not msg.text.startswith("Failed to load resource")
                and page.errors.append(msg.text))
        return page

    def __exit__(self, *exc) -> None:
        if self.browser is not None:
            self.browser.close()
        if self._pw is not None:
            self._pw.stop()


def login(page, base_url: str, token: str, timeout_ms: float = 30_000) -> None:
    """Open the dashboard, sign in with ``token`` through the login form, wait for the list."""
    page.goto(base_url + "/dashboard#/")
    page.fill("input[name=token]", token, timeout=timeout_ms)
    page.click("button[type=submit]")
    page.wait_for_selector(".workflows-page", timeout=timeout_ms)


def open_workflow(page, base_url: str, wf: str, timeout_ms: float = 60_000) -> float:
    """Load the workflow view of ``wf`` in a fresh navigation; milliseconds from the start of
    the navigation until the page had rendered the summary (the page's own performance mark)."""
    page.goto("about:blank")  # a new document even if only the fragment differs
    page.goto(f"{base_url}/dashboard#/workflows/{wf}")
    page.wait_for_selector(SUMMARY_READY, timeout=timeout_ms)
    return page.evaluate("performance.getEntriesByName('summary-rendered')[0].startTime")


def count(page, status: str) -> int | None:
    """The number the workflow view shows for ``status`` (``total``, ``done``, ``failed``,
    ...), None when it shows none."""
    loc = page.locator(f".chips [data-count='{status}']")
    return int(loc.inner_text()) if loc.count() else None
