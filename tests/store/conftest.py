"""Fixtures for the store tests: one ``store`` per backend (SQLite always, ArangoDB on demand)."""

from __future__ import annotations

import contextlib

import pytest

from torc_graph.errors import NotFound
from torc_graph.store import open_store
from torc_graph.testing import ARANGO_TEST_ENV, BACKENDS, backend_url


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    """A store of each backend. SQLite: a fresh file in tmp_path. ArangoDB: the server named by
    $TORC_GRAPH_TEST_ARANGO_URL (skipped when unset)."""
    url = backend_url(request.param, tmp_path)
    if url is None:
        pytest.skip(f"{ARANGO_TEST_ENV} not set")
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
