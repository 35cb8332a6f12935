"""Workflow, config and status semantics (engine.workflows) on a real SQLite store."""

from __future__ import annotations

import json

import pytest

from torc_graph import model, validation
from torc_graph.engine import workflows as w
from torc_graph.errors import InvalidInput, NotFound, RevisionConflict


def test_create_defaults(store):
    wf = w.create_workflow(store, {"user": "u"})
    assert wf["name"] == "" and wf["is_archived"] is False and wf["timestamp"].endswith("Z")
    config = w.get_config(store, wf["_key"])
    expected = validation.validate("workflow_config", {})
    assert {k: v for k, v in config.items() if not k.startswith("_")} == expected
    status = w.get_status(store, wf["_key"])
    assert {k: v for k, v in status.items() if not k.startswith("_")} == w.initial_status()


def test_create_with_an_owner_and_a_taken_key_writes_no_owner(store):
    wf = w.create_workflow(store, {"user": "u", "_key": "mine"},
                           owner={"token": "3", "name": "alice"})["_key"]
    owner = store.get("workflow_owners", None, wf)
    assert (owner["_key"], owner["token"], owner["name"]) == ("mine", "3", "alice")
    with pytest.raises(InvalidInput):
        w.create_workflow(store, {"_key": "mine"}, owner={"token": "4", "name": "mallory"})
    assert store.get("workflow_owners", None, "mine")["name"] == "alice"
    assert w.create_workflow(store, {"user": "u"})["_key"] not in {
        o["_key"] for o in store.find("workflow_owners", None)}


def test_custom_key_and_duplicate(store):
    assert w.create_workflow(store, {"user": "u", "_key": "abc"})["_key"] == "abc"
    with pytest.raises(InvalidInput, match="already exists"):
        w.create_workflow(store, {"user": "u", "_key": "abc"})


def test_modify_order_of_checks(store):
    wf = w.create_workflow(store, {"user": "u"})
    key = wf["_key"]
    with pytest.raises(InvalidInput, match="does not match"):  # key mismatch first
        w.modify_workflow(store, key, {"user": "x", "_key": "other"})
    with pytest.raises(InvalidInput, match="requires the existing revision"):
        w.modify_workflow(store, key, {"user": "x"})
    new = w.modify_workflow(store, key, {**wf, "name": "n"})
    assert new["name"] == "n" and new["_rev"] != wf["_rev"]
    with pytest.raises(RevisionConflict):
        w.modify_workflow(store, key, {**wf, "name": "m"})
    with pytest.raises(NotFound):
        w.modify_workflow(store, "999", {**wf, "_key": "999"})


def test_config_status_put(store):
    key = w.create_workflow(store, {"user": "u"})["_key"]
    st = w.get_status(store, key)
    new = w.modify_status(store, key, {**st, "run_id": 3})
    assert new["run_id"] == 3 and new["_rev"] != st["_rev"]
    assert w.get_status(store, key)["_rev"] == new["_rev"]  # the NEW rev is returned
    with pytest.raises(RevisionConflict):
        w.modify_status(store, key, {**st, "run_id": 4})
    other = w.create_workflow(store, {"user": "u"})["_key"]
    with pytest.raises(InvalidInput, match="is not the status"):
        w.modify_status(store, key, {**w.get_status(store, other)})
    cfg = w.get_config(store, key)
    with pytest.raises(InvalidInput):
        w.modify_config(store, key, {"compute_node_wait_for_new_jobs_seconds": 1.5})
    new = w.modify_config(store, key, {"compute_node_wait_for_new_jobs_seconds": 7})
    assert new["compute_node_wait_for_new_jobs_seconds"] == 7 and new["_key"] == cfg["_key"]


def test_list_delete_and_names(store):
    a = w.create_workflow(store, {"user": "a"})["_key"]
    b = w.create_workflow(store, {"user": "b"})["_key"]
    from torc_graph.engine.documents import Listing

    assert [x["_key"] for x in json.loads(w.list_workflows(store, Listing(filters={"user": "b"})))["items"]] == [b]
    assert w.collection_names(store, a)["names"][0] == f"events__{a}"
    assert len(w.collection_names(store, a)["names"]) == len(model.COLLECTION_NAMES_ORDER)
    store.insert("files", a, {"path": "/p"})
    assert w.delete_workflow(store, a)["_key"] == a
    with pytest.raises(NotFound):
        w.get_workflow(store, a)
    with pytest.raises(NotFound):
        w.delete_workflow(store, a)
    with pytest.raises(NotFound):
        w.collection_names(store, a)
    assert json.loads(w.list_workflows(store))["total_count"] == 1
