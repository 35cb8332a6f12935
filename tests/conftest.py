"""Session-wide isolation of the test run from the user's own torc_graph configuration.

`torc-graph serve` writes an admin token to the user's config directory and the client reads
a token from there: the tests (and every subprocess they start) get a private one instead.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_config_dir(tmp_path_factory):
    previous = os.environ.get("XDG_CONFIG_HOME")
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg_config"))
    yield
    if previous is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = previous
