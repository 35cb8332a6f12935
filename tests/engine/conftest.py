"""Fixtures shared by the engine tests: a real SQLite store in tmp_path and a workflow in it."""

import pytest

from torc_graph.engine import workflows
from torc_graph.store import open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/torc.db", synchronous="NORMAL")
    yield s
    s.close()


@pytest.fixture
def wf(store):
    """A new workflow whose run_id is 1 (as after `workflows start`)."""
    key = workflows.create_workflow(store, {"user": "test", "name": "wf"})["_key"]
    status = store.workflow_space(key).status
    store.update("workflow_statuses", None, status["_key"], {"run_id": 1})
    return key
