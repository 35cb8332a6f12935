"""Generic CRUD semantics (engine.documents) on a real SQLite store."""

from __future__ import annotations

import json

import pytest

from torc_graph.engine import documents as d
from torc_graph.engine.common import envelope
from torc_graph.errors import InvalidInput, NotFound, RevisionConflict, UniqueConstraintViolated


def test_add_fills_defaults_and_get_accepts_key_or_id(store, wf):
    rr = d.add_document(store, wf, "resource_requirements", {"name": "r"})
    assert (rr["num_cpus"], rr["memory"], rr["runtime"]) == (1, "1m", "P0DT1M")
    assert d.get_document(store, wf, "resource_requirements", rr["_key"]) == rr
    assert d.get_document(store, wf, "resource_requirements", rr["_id"]) == rr
    with pytest.raises(InvalidInput):
        d.get_document(store, wf, "files", rr["_id"])


def test_list_filters_sort_and_paging(store, wf):
    for i, name in enumerate(["b", "a", "c", "a"]):
        d.add_document(store, wf, "files", {"name": name, "path": f"/{i}"})
    env = json.loads(d.list_documents(store, wf, "files", d.Listing(filters={"name": "a"})))
    assert [x["path"] for x in env["items"]] == ["/1", "/3"] and env["total_count"] == 2
    env = json.loads(d.list_documents(store, wf, "files", d.Listing(sort_by="name", skip=1, limit=2)))
    assert [x["path"] for x in env["items"]] == ["/3", "/0"]
    assert (env["skip"], env["count"], env["total_count"], env["has_more"]) == (1, 2, 4, True)
    env = json.loads(d.list_documents(store, wf, "files", d.Listing(sort_by="name", reverse_sort=True)))
    assert [x["name"] for x in env["items"]] == ["c", "b", "a", "a"]
    for bad in (d.Listing(skip=-1), d.Listing(limit=-5), d.Listing(sort_by="nope"),
                d.Listing(sort_by="name;drop"), d.Listing(filters={"hash": "x"})):
        with pytest.raises(InvalidInput):
            d.list_documents(store, wf, "files", bad)


def test_listings_splice_the_stored_json_into_the_envelope(store, wf):
    """The encoded page equals the envelope built from the store's decoded documents."""
    for i, name in enumerate(["b", "a", "c", "a", "é✓"]):
        d.add_document(store, wf, "files", {"name": name, "path": f"/{i}"})
    j = store.insert("jobs", wf, {"command": "c"})
    for f in store.find("files", wf):
        d.add_edge(store, wf, "needs", {"_from": j["_id"], "_to": f["_id"], "data": {"x": 1}})
    listings = [d.Listing(), d.Listing(filters={"name": "a"}), d.Listing(skip=1, limit=2),
                d.Listing(sort_by="name", skip=1, limit=2), d.Listing(skip=2),
                d.Listing(sort_by="name", reverse_sort=True), d.Listing(skip=9),
                d.Listing(limit=0), d.Listing(skip=0, limit=5), d.Listing(skip=4, limit=1)]

    def expected(collection, listing):
        order = [(listing.sort_by, listing.reverse_sort)] if listing.sort_by else None
        where = dict(listing.filters) or None
        page = store.page(collection, wf, where, skip=listing.skip,
                          limit=100_000 if listing.limit is None else listing.limit,
                          order_by=order)
        return envelope(page.items, listing.skip, page.total)

    for listing in listings:
        body = d.list_documents(store, wf, "files", listing)
        assert isinstance(body, bytes)
        assert json.loads(body) == expected("files", listing), listing
        edges = d.Listing(skip=listing.skip, limit=listing.limit,
                          sort_by=listing.sort_by and "_key", reverse_sort=listing.reverse_sort)
        assert json.loads(d.list_edges(store, wf, "needs", edges)) == expected("needs", edges)
    for bad in (d.Listing(skip=-1), d.Listing(limit=-5), d.Listing(sort_by="nope"),
                d.Listing(sort_by="name;drop"), d.Listing(filters={"hash": "x"})):
        with pytest.raises(InvalidInput):
            d.list_documents(store, wf, "files", bad)
    with pytest.raises(InvalidInput, match="unknown edge collection 'files'"):
        d.list_edges(store, wf, "files")
    for call in (lambda: d.list_documents(store, "999", "files"),
                 lambda: d.list_edges(store, "999", "blocks")):
        with pytest.raises(NotFound, match="Get workflow with key=999"):
            call()


def test_typed_filters_are_type_strict(store, wf):
    d.add_document(store, wf, "resource_requirements", {"name": "r", "num_cpus": 2})
    assert json.loads(d.list_documents(store, wf, "resource_requirements",
                            d.Listing(filters={"num_cpus": 2})))["count"] == 1
    assert json.loads(d.list_documents(store, wf, "resource_requirements",
                            d.Listing(filters={"num_cpus": "2"})))["count"] == 0


def test_modify_rules(store, wf):
    f = d.add_document(store, wf, "files", {"name": "n", "path": "/p"})
    with pytest.raises(InvalidInput, match="requires the existing revision"):
        d.modify_document(store, wf, "files", f["_key"], {"path": "/q"})
    with pytest.raises(InvalidInput, match=f"key={f['_key']} does not match zz"):
        d.modify_document(store, wf, "files", f["_key"], {**f, "_key": "zz"})
    new = d.modify_document(store, wf, "files", f["_key"], {"path": "/q", "_rev": f["_rev"]})
    assert new["name"] == "n" and new["path"] == "/q" and new["_oldRev"] == f["_rev"]
    with pytest.raises(RevisionConflict, match="Conflicting revision"):
        d.modify_document(store, wf, "files", f["_key"], {"path": "/r", "_rev": f["_rev"]})
    assert d.get_document(store, wf, "files", f["_key"])["path"] == "/q"
    with pytest.raises(NotFound):
        d.modify_document(store, wf, "files", "424242", {"path": "/r", "_rev": "x"})


def test_remove_and_delete_all(store, wf):
    f = d.add_document(store, wf, "files", {"path": "/p"})
    j = store.insert("jobs", wf, {"command": "c"})
    d.add_edge(store, wf, "needs", {"_from": j["_id"], "_to": f["_id"]})
    assert d.remove_document(store, wf, "files", f["_id"]) == f
    assert json.loads(d.list_edges(store, wf, "needs"))["count"] == 0
    with pytest.raises(NotFound, match="Error: Document not found"):
        d.remove_document(store, wf, "files", f["_key"])
    d.add_document(store, wf, "events", {"category": "x"})
    msg = d.delete_documents(store, wf, "events")
    assert msg == {"message": f'Deleted all documents in the "events" collection for workflow {wf}'}
    assert json.loads(d.list_documents(store, wf, "events"))["count"] == 0


def test_events_get_server_timestamp(store, wf):
    ev = d.add_document(store, wf, "events", {"category": "x", "timestamp": 1, "free": [1]})
    assert ev["timestamp"] > 1 and ev["free"] == [1]


def test_custom_key_duplicate_is_409(store, wf):
    d.add_document(store, wf, "files", {"path": "/p", "_key": "k1"})
    with pytest.raises(UniqueConstraintViolated):
        d.add_document(store, wf, "files", {"path": "/p", "_key": "k1"})


def test_edges(store, wf):
    with pytest.raises(InvalidInput, match="unknown edge collection 'files'"):
        d.list_edges(store, wf, "files")
    with pytest.raises(InvalidInput, match="_from"):
        d.add_edge(store, wf, "blocks", {"_from": "jobs", "_to": f"jobs__{wf}/1"})
    with pytest.raises(InvalidInput, match="no document"):  # ends must exist (issue 10)
        d.add_edge(store, wf, "blocks", {"_from": f"jobs__{wf}/1", "_to": f"jobs__{wf}/2"})
    j1, j2 = (store.insert("jobs", wf, {"command": "c"})["_id"] for _ in range(2))
    e = d.add_edge(store, wf, "blocks", {"_from": j1, "_to": j2})
    assert d.get_edge(store, wf, "blocks", e["_id"]) == e
    assert d.remove_edge(store, wf, "blocks", e["_key"]) == e
    with pytest.raises(NotFound):
        d.get_edge(store, wf, "blocks", e["_key"])
    assert d.delete_edges(store, wf, "blocks") == {
        "message": f'Deleted all edges in the "blocks__{wf}" collection'}


def test_missing_workflow(store):
    for call in (lambda: d.list_documents(store, "999", "files"),
                 lambda: d.add_document(store, "999", "files", {"path": "/p"}),
                 lambda: d.get_document(store, "999", "files", "1"),
                 lambda: d.remove_document(store, "999", "files", "1"),
                 lambda: d.delete_documents(store, "999", "files"),
                 lambda: d.list_edges(store, "999", "blocks")):
        with pytest.raises(NotFound, match="Get workflow with key=999"):
            call()


def test_collection_table_covers_every_collection():
    from torc_graph import model, validation

    assert set(d.COLLECTIONS) == {c.value for c in model.Collection}
    for name, spec in d.COLLECTIONS.items():
        assert model.is_collection(name)
        fields = validation.fields(spec.schema)
        for f in spec.filters:
            assert f == "_key" or f in fields or spec.free_form, (name, f)
