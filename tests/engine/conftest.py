"""Fixtures shared by the engine tests: a store of each contract-suite backend (SQLite always;
ArangoDB when $TORC_GRAPH_TEST_ARANGO_URL is set) and a workflow in it."""

import contextlib

import pytest

from torc_graph.engine import workflows
from torc_graph.errors import NotFound
from torc_graph.store import open_store
from torc_graph.testing import ARANGO_TEST_ENV, BACKENDS, backend_url


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    url = backend_url(request.param, tmp_path)
    if url is None:
        pytest.skip(f"{ARANGO_TEST_ENV} not set")
    s = open_store(url, synchronous="NORMAL")
    before = {w["_key"] for w in s.find("workflows", None)}
    yield s
    # A shared server keeps what a test created unless it is removed (a SQLite file is new).
    if request.param != "sqlite":
        for w in s.find("workflows", None):
            if w["_key"] not in before:
                with contextlib.suppress(NotFound):
                    s.delete_workflow(w["_key"])
    s.close()


@pytest.fixture
def wf(store):
    """A new workflow whose run_id is 1 (as after `workflows start`)."""
    key = workflows.create_workflow(store, {"user": "test", "name": "wf"})["_key"]
    status = store.workflow_space(key).status
    store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
    return key
