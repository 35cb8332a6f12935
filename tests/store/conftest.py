"""Fixtures for the store tests: one ``store`` per backend (SQLite always, ArangoDB on demand)."""

from __future__ import annotations

import contextlib
import os

import pytest

from torc_graph.errors import NotFound
from torc_graph.store import open_store

ARANGO_ENV = "TORC_GRAPH_TEST_ARANGO_URL"


@pytest.fixture(params=["sqlite", "arango"])
def store(request, tmp_path):
    """A store of each backend. SQLite: a fresh file in tmp_path. ArangoDB: the server named by
    $TORC_GRAPH_TEST_ARANGO_URL (skipped when unset)."""
    if request.param == "sqlite":
        s = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        url = os.environ.get(ARANGO_ENV)
        if not url:
            pytest.skip(f"{ARANGO_ENV} not set")
        s = open_store(url)
    yield s
    s.close()


@pytest.fixture
def new_wf(store):
    """Factory: ``new_wf(**fields)`` creates a workflow and returns its key; every workflow
    created this way is deleted after the test."""
    created: list[str] = []

    def make(**fields) -> str:
        space = store.create_workflow({"name": "test", **fields},
                                      {"compute_node_wait_for_new_jobs_seconds": 0},
                                      {"run_id": 0, "is_canceled": False})
        created.append(space.workflow["_key"])
        return space.workflow["_key"]

    yield make
    for key in created:
        with contextlib.suppress(NotFound):
            store.delete_workflow(key)


@pytest.fixture
def wf(new_wf):
    """The key of one fresh workflow."""
    return new_wf()
