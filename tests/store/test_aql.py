"""The AQL compiler: exact text and bind variables, name whitelisting, no values in query text."""

from __future__ import annotations

import re

import pytest

from torc_graph.errors import InvalidInput
from torc_graph.store.aql import NO_LIMIT, SEQ_FIELD, Query, check_key, collection_name, seq_expr
from torc_graph.store.base import Ge, Gt, HasEdge, In, Le, Lt, Ne, NotIn

HOSTILE = 'x" RETURN 1 //'


def placeholders(text: str) -> set[str]:
    """Bind parameter names used in the text (``@@c1`` -> ``@c1``, ``@v2`` -> ``v2``)."""
    return {m.group(1) + m.group(2) for m in re.finditer(r"@(@?)([A-Za-z_][A-Za-z0-9_]*)", text)}


def check(q: Query, text: str) -> None:
    """Every placeholder of the finished query is bound and every bind variable is used
    (ArangoDB rejects both)."""
    assert placeholders(q.finish(text)) == set(q.bind_vars)


F = "d[@p1][@p2]"


@pytest.mark.parametrize(
    "cond, text, bound",
    [
        ("ready", f"({F} == @v3)", "ready"),
        (3, f"({F} == @v3)", 3),
        (None, f"({F} == @v3)", None),
        ({"a": 1}, f"({F} == @v3)", {"a": 1}),
        (In(["a", "b"]), f"({F} IN @v3)", ["a", "b"]),
        (NotIn((1, 2)), f"({F} NOT IN @v3)", [1, 2]),
        (Ne(5), f"({F} != @v3)", 5),
        (Lt(5), f"(IS_NUMBER({F}) AND {F} < @v3)", 5),
        (Le(5.5), f"(IS_NUMBER({F}) AND {F} <= @v3)", 5.5),
        (Gt("m"), f"(IS_STRING({F}) AND {F} > @v3)", "m"),
        (Ge(True), f"(IS_BOOL({F}) AND {F} >= @v3)", True),
        (Lt([1]), f"(IS_ARRAY({F}) AND {F} < @v3)", [1]),
        (Gt({"a": 1}), f"(IS_OBJECT({F}) AND {F} > @v3)", {"a": 1}),
        (Le(None), f"({F} != null AND {F} <= @v3)", None),
    ],
)
def test_operators(cond, text, bound):
    q = Query()
    conds = q.where("d", {"internal.num_cpus": cond})
    # Ordering operators read the field twice; both reads use the same bound names.
    assert conds == [text]
    assert q.bind_vars == {"p1": "internal", "p2": "num_cpus", "v3": bound}
    check(q, conds[0])


def test_ordering_guard_rejects_missing_and_other_types():
    """Missing fields read as null, which AQL orders below everything: the guard excludes them."""
    q = Query()
    (text,) = q.where("d", {"x": Le(3)})
    assert text.startswith("(IS_NUMBER(d[@p1]) AND ")


def test_where_ands_entries_in_order():
    q = Query()
    text = q.filter("d", {"status": "ready", "_key": In(["1", "2"]), "_id": "jobs__1/2"})
    assert text == "FILTER (d[@p1] == @v2) AND (d[@p3] IN @v4) AND (d[@p5] == @v6)"
    assert (q.bind_vars["p1"], q.bind_vars["p3"], q.bind_vars["p5"]) == ("status", "_key", "_id")
    check(q, text)


def test_empty_filter_is_empty_text():
    q = Query()
    assert q.filter("d", None) == ""
    assert q.filter("d", {}) == ""
    assert q.bind_vars == {}


def test_has_edge_any_endpoint():
    q = Query()
    text = q.filter("d", None, [HasEdge("blocks", "in")], "12")
    assert text == (
        "FILTER (LENGTH((FOR e2 IN @@c1 FILTER e2._to == d._id LIMIT 1 RETURN 1)) > 0)"
    )
    assert q.bind_vars == {"@c1": "blocks__12"}
    check(q, text)


def test_has_edge_negated_outbound():
    q = Query()
    text = q.filter("d", None, [HasEdge("needs", "out", exists=False)], "12")
    assert "FILTER e2._from == d._id" in text
    assert text.endswith("== 0)")
    check(q, text)


def test_has_edge_on_endpoint_id_and_key_loads_no_document():
    q = Query()
    text = q.filter(
        "d", None, [HasEdge("blocks", "out", {"_id": "jobs__12/7", "_key": Ne("8")})], "12"
    )
    assert "DOCUMENT" not in text
    assert "(e2._to == @v3)" in text
    assert "(PARSE_IDENTIFIER(e2._to).key != @v4)" in text
    assert q.bind_vars["v3"] == "jobs__12/7" and q.bind_vars["v4"] == "8"
    check(q, text)


def test_has_edge_on_other_fields_requires_the_document():
    q = Query()
    text = q.filter(
        "d", {"status": "blocked"}, [HasEdge("blocks", "in", {"status": NotIn(["done"])})], "12"
    )
    assert text == (
        "FILTER (d[@p1] == @v2) AND (LENGTH((FOR e4 IN @@c3 FILTER e4._to == d._id "
        "LET o6 = DOCUMENT(e4._from) FILTER o6 != null AND (o6[@p7] NOT IN @v8) "
        "LIMIT 1 RETURN 1)) > 0)"
    )
    assert q.bind_vars["@c3"] == "blocks__12"
    assert q.bind_vars["v8"] == ["done"]
    # The loaded documents' collection is declared for clusters (defect 2).
    assert q.finish(text).startswith("WITH @@c5 FILTER")
    assert q.bind_vars["@c5"] == "jobs__12"
    check(q, text)


def test_has_edge_on_global_edges():
    q = Query()
    text = q.filter("w", None, [HasEdge("has_workflow_config", "out")], None)
    assert q.bind_vars == {"@c1": "has_workflow_config"}
    check(q, text)


def test_order_by_with_tie_break():
    q = Query()
    text = q.sort("d", [("status", True), ("internal.num_cpus", False)])
    assert text == (
        f"SORT d[@p1] DESC, d[@p2][@p3] ASC, {seq_expr('d')} ASC"
    )
    assert q.bind_vars == {"p1": "status", "p2": "internal", "p3": "num_cpus"}


def test_default_order_is_insertion_order():
    q = Query()
    """Defect 5: insertion order is a plain attribute an index can serve (it was a computed
    ``IS_NUMBER(..) ? .. : TO_NUMBER(d._key)`` that forced a full sort of every match)."""
    assert q.sort("d", None) == f"SORT d.{SEQ_FIELD} ASC"
    assert seq_expr("d") == f"d.{SEQ_FIELD}"


def test_plain_patch_replaces_nested_objects_whole():
    q = Query()
    text = q.patch("d", {"status": "ready", "internal": {"a": 1}, "x": None})
    assert text == "{[@v1]: @v2, [@v3]: @v4, [@v5]: @v6}"
    assert [q.bind_vars[f"v{i}"] for i in range(1, 7)] == [
        "status", "ready", "internal", {"a": 1}, "x", None]
    check(q, text)


def test_dotted_patch_merges_into_existing_object():
    q = Query()
    text = q.patch("d", {"internal.num_cpus": 4, "internal.hash.x": "y", "status": "done"})
    assert text == (
        "{[@v1]: MERGE(IS_OBJECT(d[@p2]) ? d[@p2] : {}, {[@v3]: @v4, "
        "[@v5]: MERGE(IS_OBJECT(d[@p6][@p7]) ? d[@p6][@p7] : {}, {[@v8]: @v9})}), [@v10]: @v11}"
    )
    assert [q.bind_vars[k] for k in ("v1", "p2", "v3", "v4", "v5", "p6", "p7", "v8", "v9")] == [
        "internal", "internal", "num_cpus", 4, "hash", "internal", "hash", "x", "y"]
    assert (q.bind_vars["v10"], q.bind_vars["v11"]) == ("status", "done")
    check(q, text)


def test_patch_ignores_system_fields():
    q = Query()
    text = q.patch("d", {"_key": "9", "_rev": "r", "_id": "x/1", SEQ_FIELD: 1, "a": 1})
    assert text == "{[@v1]: @v2}"
    assert q.bind_vars == {"v1": "a", "v2": 1}


@pytest.mark.parametrize("patch", [{"a": 1, "a.b": 2}, {"a.b": 2, "a": 1}, {"a.b": 1, "a.b.c": 2}])
def test_overlapping_patch_paths_are_invalid(patch):
    with pytest.raises(InvalidInput):
        Query().patch("d", patch)


@pytest.mark.parametrize(
    "path", ["", "a..b", "1a", "a.1", "a b", "a-b", 'x"', "a.`b`", "d) RETURN 1", None, 3]
)
def test_invalid_paths_raise_before_any_query(path):
    q = Query()
    with pytest.raises(InvalidInput):
        q.where("d", {path: 1})
    with pytest.raises(InvalidInput):
        q.sort("d", [(path, False)])
    with pytest.raises(InvalidInput):
        q.patch("d", {path: 1})


@pytest.mark.parametrize(
    "name, workflow",
    [("jobz", "1"), ("workflows", "1"), ("jobs", None), ("jobs", "1/2"), ("jobs", "a b"),
     ("has_workflow_config", "1"), ("sqlite_master", None), ("jobs", "")],
)
def test_collection_names_are_whitelisted(name, workflow):
    with pytest.raises(InvalidInput):
        collection_name(name, workflow)


def test_collection_names():
    assert collection_name("jobs", "12") == "jobs__12"
    assert collection_name("blocks", "12") == "blocks__12"
    assert collection_name("workflows", None) == "workflows"
    assert collection_name("has_workflow_status", None) == "has_workflow_status"


def test_has_edge_validates_edge_and_direction():
    with pytest.raises(InvalidInput):
        Query().filter("d", None, [HasEdge("jobs", "out")], "1")
    with pytest.raises(InvalidInput):
        Query().filter("d", None, [HasEdge("blocks", "up")], "1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Query().filter("d", None, [HasEdge("blocks", "out", {"bad path": 1})], "1")
    with pytest.raises(InvalidInput):
        Query().filter("d", {"x": HasEdge("blocks", "out")})


@pytest.mark.parametrize("key", ["", "a/b", "a b", "x" * 255, None, 5, 'k"'])
def test_bad_keys(key):
    with pytest.raises(InvalidInput):
        check_key(key)


def test_hostile_values_stay_out_of_the_text():
    q = Query()
    parts = [
        q.filter(
            "d",
            {"a": HOSTILE, "b": In([HOSTILE]), "c": Ne(HOSTILE), "e": Lt(HOSTILE)},
            [HasEdge("blocks", "in", {"status": HOSTILE}), HasEdge("needs", "out", {"_key": HOSTILE})],
            "12",
        ),
        q.sort("d", [("a", False)]),
        q.patch("d", {"a": HOSTILE, "b.c": HOSTILE}),
    ]
    text = " ".join(parts)
    assert HOSTILE not in text
    assert "RETURN 1 //" not in text
    assert '"' not in text
    assert HOSTILE in q.bind_vars.values()
    check(q, text)


def test_no_limit_is_a_safe_integer():
    assert NO_LIMIT == 2**53 - 1
