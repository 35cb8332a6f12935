"""Compilation of store filters (``where``, :class:`HasEdge`) and patches into SQLite SQL.

Only whitelisted text reaches the SQL: table names from the model enums, field paths matching
:data:`~torc_graph.model.FIELD_PATH_PATTERN` (used as literal JSON paths so that expression
indexes match), and operators from a fixed table. Every value is a named bind parameter.

Type strictness: ``json_extract`` maps JSON ``true`` to 1 and objects to text, so comparisons
also check ``json_type``, except equality and ``IN`` with values the SQL value decides alone
(:func:`_value_decides`): then the condition is the bare ``value = ?``, which an expression index
answers without reading the row. Positive conditions may evaluate to NULL (which WHERE treats
as false); negations wrap them in ``coalesce(..., 0)`` first so a missing field satisfies them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torc_graph import json_codec, model
from torc_graph.errors import InvalidInput
from torc_graph.store import sqlite_columns as cols
from torc_graph.store.filters import Ge, Gt, HasEdge, In, Le, Lt, Ne, NotIn
from torc_graph.store.sqlite_schema import doc_table, edge_table

_INT64 = (-(2**63), 2**63 - 1)
_ORDERING = {Lt: "<", Le: "<=", Gt: ">", Ge: ">="}
_NUMBER_TYPES = "('integer', 'real')"

#: The global graph: the two edges from a workflow to its config and status.
GLOBAL_EDGE_ENDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    model.GlobalEdge.HAS_WORKFLOW_CONFIG.value: (("workflows",), ("workflow_configs",)),
    model.GlobalEdge.HAS_WORKFLOW_STATUS.value: (("workflows",), ("workflow_statuses",)),
}


def dumps(value: Any) -> str:
    """Compact JSON text; ``InvalidInput`` for values JSON cannot represent."""
    try:
        return json_codec.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"value is not representable as JSON: {exc}") from None


def check_path(path: str) -> str:
    if not isinstance(path, str) or not model.FIELD_PATH_PATTERN.match(path):
        raise InvalidInput(f"invalid field path {path!r}")
    return path


def json_path(path: str) -> str:
    """The literal JSON path for a validated field path (safe to put into SQL text)."""
    return "'$." + check_path(path) + "'"


def other_end_collections(edge: str, direction: str) -> tuple[str, ...]:
    """Collections the *other* endpoint of an ``edge`` edge may live in."""
    if edge in GLOBAL_EDGE_ENDS:
        froms, tos = GLOBAL_EDGE_ENDS[edge]
    else:
        d = model.EDGE_DEFINITIONS[model.Edge(edge)]
        froms = tuple(c.value for c in d.from_collections)
        tos = tuple(c.value for c in d.to_collections)
    return tos if direction == "out" else froms


class Binder:
    """Collects named parameters; ``b(value)`` returns the placeholder text."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT64[0] <= value <= _INT64[1]:
                value = float(value)  # SQLite integers are 64-bit; compare as a number still
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name


@dataclass(frozen=True)
class Field:
    """A compiled field reference: ``value`` is the SQL value; ``type`` is the ``json_type``
    expression (None for text columns, which always exist and always hold strings)."""

    value: str
    type: str | None


def doc_field(alias: str, path: str, *, edge: bool, id_prefix: str, coll: str | None = None) -> Field:
    """Resolve a field path on a row of a document/edge table. ``id_prefix`` is the placeholder
    holding ``<collection>/`` so ``_id`` can be formed from the key; ``coll`` (the collection)
    maps column fields (:mod:`.sqlite_columns`) to their columns."""
    if path == "_key":
        return Field(f"{alias}.key", None)
    if path == "_id":
        return Field(f"({id_prefix} || {alias}.key)", None)
    if edge and path == "_from":
        return Field(f"{alias}.from_id", None)
    if edge and path == "_to":
        return Field(f"{alias}.to_id", None)
    p = json_path(path)
    if coll is not None:
        col = cols.field_sql(coll, alias, path)
        if col is not None:
            return Field(*col)
        if cols.is_column_parent(coll, path):
            doc = cols.read_expr(coll, alias)
            return Field(f"json_extract({doc}, {p})", f"json_type({doc}, {p})")
    return Field(f"json_extract({alias}.doc, {p})", f"json_type({alias}.doc, {p})")


def endpoint_field(id_expr: str, path: str) -> Field:
    """Resolve ``_id``/``_key`` of an edge endpoint from its id column alone."""
    if path == "_id":
        return Field(id_expr, None)
    if path == "_key":
        return Field(f"substr({id_expr}, instr({id_expr}, '/') + 1)", None)
    raise InvalidInput(f"field {path!r} needs the endpoint document")


def endpoint_only(where: Mapping[str, Any] | None) -> bool:
    return not where or all(k in ("_id", "_key") for k in where)


# -- conditions --------------------------------------------------------------------------------


def _value_decides(v: Any) -> bool:
    """Whether ``json_extract``'s SQL value equal to ``v`` (a string or a number) implies the
    JSON value is ``v`` with its JSON type, so no ``json_type`` check is needed (SQL compares
    text and numbers without affinity here: text never equals a number).

    The SQL value of a JSON field is text for a string and for an object or array (their JSON
    text, which starts with ``{`` or ``[``), a number for a number and for a boolean (1, 0). So
    a string not starting with ``{`` or ``[``, or a number other than 0 and 1, decides alone.
    Column fields (:mod:`.sqlite_columns`) have the same SQL values: ``coalesce(column,
    json_extract(...))``, where a non-NULL column holds a string or a number of the field."""
    if isinstance(v, str):
        return not v.startswith(("{", "["))
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v != 0 and v != 1


def _eq(f: Field, v: Any, b: Binder) -> str:
    if f.type is None:
        return f"{f.value} = {b(v)}" if isinstance(v, str) else "0"
    if v is None:
        return f"{f.value} IS NULL"
    if isinstance(v, bool):
        return f"{f.type} = '{'true' if v else 'false'}'"
    if _value_decides(v):
        return f"{f.value} = {b(v)}"
    if isinstance(v, (int, float)):
        return f"({f.value} = {b(v)} AND {f.type} IN {_NUMBER_TYPES})"
    if isinstance(v, str):
        return f"({f.value} = {b(v)} AND {f.type} = 'text')"
    if isinstance(v, (dict, list, tuple)):
        kind = "object" if isinstance(v, dict) else "array"
        return f"({f.type} = '{kind}' AND json({f.value}) = json({b(dumps(v))}))"
    raise InvalidInput(f"unsupported filter value of type {type(v).__name__}")


def _in(f: Field, values: Sequence[Any], b: Binder) -> str:
    strings = [v for v in values if isinstance(v, str)]
    if f.type is None:
        return f"{f.value} IN (SELECT value FROM json_each({b(dumps(strings))}))" if strings else "0"
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    parts = []
    decided = [v for v in strings + numbers if _value_decides(v)]
    if decided:
        parts.append(f"{f.value} IN (SELECT value FROM json_each({b(dumps(decided))}))")
        strings = [v for v in strings if not _value_decides(v)]
        numbers = [v for v in numbers if not _value_decides(v)]
    if strings:
        parts.append(
            f"({f.value} IN (SELECT value FROM json_each({b(dumps(strings))})) "
            f"AND {f.type} = 'text')"
        )
    if numbers:
        parts.append(
            f"({f.value} IN (SELECT value FROM json_each({b(dumps(numbers))})) "
            f"AND {f.type} IN {_NUMBER_TYPES})"
        )
    for v in values:
        if v is None or isinstance(v, (bool, dict, list, tuple)):
            parts.append(_eq(f, v, b))
        elif not isinstance(v, (str, int, float)):
            raise InvalidInput(f"unsupported filter value of type {type(v).__name__}")
    if not parts:
        return "0"
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _ordering(f: Field, op: str, v: Any, b: Binder) -> str:
    if f.type is None:
        return f"{f.value} {op} {b(v)}" if isinstance(v, str) else "0"
    if v is None:
        return "0"
    if isinstance(v, bool):
        return f"({f.type} IN ('true', 'false') AND {f.value} {op} {b(int(v))})"
    if isinstance(v, (int, float)):
        return f"({f.type} IN {_NUMBER_TYPES} AND {f.value} {op} {b(v)})"
    if isinstance(v, str):
        return f"({f.type} = 'text' AND {f.value} {op} {b(v)})"
    raise InvalidInput(f"unsupported comparison value of type {type(v).__name__}")


def _not(cond: str) -> str:
    return f"NOT coalesce({cond}, 0)"


def condition(f: Field, spec: Any, b: Binder) -> str:
    """SQL for one ``where`` entry on a resolved field."""
    if isinstance(spec, In):
        return _in(f, spec.values, b)
    if isinstance(spec, NotIn):
        return _not(_in(f, spec.values, b))
    if isinstance(spec, Ne):
        if spec.value is None:
            return "1" if f.type is None else f"{f.value} IS NOT NULL"
        return _not(_eq(f, spec.value, b))
    op = _ORDERING.get(type(spec))
    if op is not None:
        return _ordering(f, op, spec.value, b)
    return _eq(f, spec, b)


def _id_as_key(spec: Any, prefix: str) -> Any:
    """Rewrite an ``_id`` condition as the equivalent ``_key`` condition (which can use the
    (wf, key) index), or return None if it cannot be rewritten. An id of another collection maps
    to ``"/"``, which no key contains."""

    def key(v: Any) -> Any:
        if not isinstance(v, str):
            return v
        return v[len(prefix):] if v.startswith(prefix) and len(v) > len(prefix) else "/"

    if isinstance(spec, In):
        return In(key(v) for v in spec.values)
    if isinstance(spec, NotIn):
        return NotIn(key(v) for v in spec.values)
    if isinstance(spec, Ne):
        return Ne(key(spec.value))
    if type(spec) in _ORDERING:
        return None
    return key(spec)


def where_doc(
    where: Mapping[str, Any] | None, alias: str, b: Binder, *, edge: bool, prefix: str,
    coll: str | None = None,
) -> list[str]:
    """Conditions for a ``where`` on rows of a document or edge table (of collection ``coll``)
    whose ids are ``prefix + key``."""
    if not where:
        return []
    if not isinstance(where, Mapping):
        raise InvalidInput("where must be a mapping of field paths to values")
    conds = []
    for path, spec in where.items():
        if path == "_id":
            as_key = _id_as_key(spec, prefix)
            if as_key is not None:
                conds.append(condition(Field(f"{alias}.key", None), as_key, b))
                continue
        field = doc_field(alias, path, edge=edge, id_prefix=b(prefix), coll=coll)
        conds.append(condition(field, spec, b))
    return conds


def where_endpoint(where: Mapping[str, Any], id_expr: str, b: Binder) -> list[str]:
    return [condition(endpoint_field(id_expr, path), spec, b) for path, spec in where.items()]


def join_endpoint(alias: str, wf_param: str, id_expr: str, prefix: str, b: Binder) -> str:
    """Condition tying document row ``alias`` (whose ids are ``prefix + key``) to the endpoint
    id ``id_expr``: the key lookup uses the (wf, key) index, the equality on the full id rejects
    ids of other collections."""
    p = b(prefix)
    return (
        f"{alias}.wf = {wf_param} AND {alias}.key = substr({id_expr}, {b(len(prefix) + 1)}) "
        f"AND {id_expr} = {p} || {alias}.key"
    )


def other_vertex_exists(
    edge: str,
    direction: str,
    id_expr: str,
    where: Mapping[str, Any] | None,
    wf: str,
    b: Binder,
    depth: int = 0,
) -> str:
    """``(EXISTS ... OR ...)``: the endpoint ``id_expr`` is a document that matches ``where``."""
    colls = other_end_collections(edge, direction)
    wf_value = "" if edge in GLOBAL_EDGE_ENDS else wf
    wf_param = b(wf_value)
    parts = []
    for coll in colls:
        alias = f"o{depth}"
        prefix = model.make_id(coll, wf_value or None, "")
        conds = [join_endpoint(alias, wf_param, id_expr, prefix, b)]
        conds += where_doc(where, alias, b, edge=False, prefix=prefix, coll=coll)
        parts.append(f"EXISTS (SELECT 1 FROM {doc_table(coll)} {alias} WHERE {' AND '.join(conds)})")
    return "(" + " OR ".join(parts) + ")"


def has_edge(pred: HasEdge, alias: str, own_id: str, wf: str, b: Binder, depth: int = 0) -> str:
    """SQL for a :class:`HasEdge` on vertex row ``alias`` whose id expression is ``own_id``."""
    if not isinstance(pred, HasEdge):
        raise InvalidInput("edges must be HasEdge predicates")
    if pred.direction not in ("out", "in"):
        raise InvalidInput(f"invalid direction {pred.direction!r}")
    edge = edge_name(pred.edge)
    e = f"e{depth}"
    own, other = ("from_id", "to_id") if pred.direction == "out" else ("to_id", "from_id")
    wf_value = "" if edge in GLOBAL_EDGE_ENDS else wf
    conds = [f"{e}.wf = {b(wf_value)}", f"{e}.{own} = {own_id}"]
    if pred.where:
        if endpoint_only(pred.where):
            conds += where_endpoint(pred.where, f"{e}.{other}", b)
        else:
            conds.append(
                other_vertex_exists(edge, pred.direction, f"{e}.{other}", pred.where, wf, b, depth)
            )
    sql = f"EXISTS (SELECT 1 FROM {edge_table(edge)} {e} WHERE {' AND '.join(conds)})"
    return sql if pred.exists else f"NOT {sql}"


def edge_name(name: str) -> str:
    if model.is_edge(name) or name in GLOBAL_EDGE_ENDS:
        return name
    raise InvalidInput(f"unknown edge collection {name!r}")


# -- graph statements ----------------------------------------------------------------------


def other_joins(edge: str, direction: str, id_expr: str, wf: str,
                 where: Mapping[str, Any] | None, b: Binder) -> tuple[str, str, str]:
    """LEFT JOINs of the candidate collections of the other endpoint; returns (joins,
    coalesced doc expression, condition that ``where`` holds on the one found)."""
    colls = other_end_collections(edge, direction)
    wf_value = "" if edge in GLOBAL_EDGE_ENDS else wf
    wf_param = b(wf_value)
    joins, docs, conds = [], [], []
    for i, coll in enumerate(colls):
        a = f"v{i}"
        prefix = model.make_id(coll, wf_value or None, "")
        joins.append(f"LEFT JOIN {doc_table(coll)} {a} ON "
                     + join_endpoint(a, wf_param, id_expr, prefix, b))
        docs.append(cols.read_expr(coll, a))
        if where:
            parts = [f"{a}.seq IS NOT NULL"]
            parts += where_doc(where, a, b, edge=False, prefix=prefix, coll=coll)
            conds.append("(" + " AND ".join(parts) + ")")
    doc_expr = docs[0] if len(docs) == 1 else f"coalesce({', '.join(docs)})"
    cond = "(" + " OR ".join(conds) + ")" if conds else "1"
    return " ".join(joins), doc_expr, cond


def reach_cte(table: str, wf_param: str, start_sql: str, through: str) -> str:
    """``r(id)``: ids reachable over ``table`` outbound from ``start_sql`` ids. UNION (not
    UNION ALL) keeps each id once, so cycles terminate; the FIFO queue makes the row order
    breadth-first, edges of one vertex in insertion order."""
    t1 = f" AND {through}" if through else ""
    return (
        f"r(id) AS (SELECT id FROM (SELECT e.to_id AS id FROM {table} e WHERE e.wf = {wf_param} "
        f"AND e.from_id IN ({start_sql}){t1} ORDER BY e.seq) "
        f"UNION SELECT e.to_id FROM r JOIN {table} e ON e.wf = {wf_param} AND e.from_id = r.id{t1})"
    )


def derive_edges_sql(out_table: str, producer_table: str, consumer_table: str) -> str:
    """One INSERT ... SELECT adding ``out`` edges P->C for every vertex X with a producer edge
    P->X and a consumer edge C->X, unless P->C exists. Parameters: ``wf``, ``prefix`` (the out
    collection's id prefix) and ``base`` (the key counter; new keys are base+1, base+2, ... in
    the order of the producer and consumer edges)."""
    order = "row_number() OVER (ORDER BY min(p.seq), min(c.seq))"
    return (
        f"INSERT INTO {out_table} (wf, key, from_id, to_id, doc) "
        "SELECT :wf, k, pf, cf, json_object('_key', k, '_id', :prefix || k, '_from', pf, "
        "'_to', cf, '_rev', lower(hex(randomblob(8)))) FROM ("
        f"SELECT CAST(:base + {order} AS TEXT) AS k, {order} AS n, p.from_id AS pf, c.from_id AS cf "
        f"FROM {producer_table} p JOIN {consumer_table} c ON c.wf = :wf AND c.to_id = p.to_id "
        f"WHERE p.wf = :wf AND NOT EXISTS (SELECT 1 FROM {out_table} o WHERE o.wf = :wf "
        "AND o.from_id = p.from_id AND o.to_id = c.from_id) "
        "GROUP BY p.from_id, c.from_id) ORDER BY n"
    )


# -- patches -----------------------------------------------------------------------------------


def patch_expr(doc: str, patch: Mapping[str, Any], b: Binder, *, system: frozenset[str],
               rev: bool = True) -> str:
    """A ``json_set`` expression applying a field-path patch and (with ``rev``) a fresh ``_rev``
    to ``doc``.

    ``json_set`` creates missing parent objects of a dotted path but leaves the document alone
    when a parent holds a non-object (``null``, a number...), so such parents are removed first
    (``json_remove`` with a path that cannot exist, ``$[0]`` on an object, is a no-op otherwise).
    Within one ``json_set`` call a path cannot descend into a value set by an earlier argument,
    so a path under one already set (``{"a": {...}, "a.b": 1}``) starts a nested call.
    """
    if not isinstance(patch, Mapping):
        raise InvalidInput("patch must be a mapping")
    groups: list[list[str]] = [[]]
    in_group: set[str] = set()
    removes: list[str] = []
    parents: set[str] = set()
    for path, value in patch.items():
        check_path(path)
        if path in system:
            continue
        parts = path.split(".")
        ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
        for parent in ancestors:
            if parent not in parents:
                parents.add(parent)
                jp = json_path(parent)
                removes.append(
                    f"CASE WHEN json_type({doc}, {jp}) <> 'object' THEN {jp} ELSE '$[0]' END")
        if any(a in in_group for a in ancestors):
            groups.append([])
            in_group = set()
        in_group.add(path)
        groups[-1].append(f"{json_path(path)}, json({b(dumps(value))})")
    if rev:
        groups[-1].append(f"'$._rev', {cols.NEW_REV}")
    expr = f"json_remove({doc}, {', '.join(removes)})" if removes else doc
    for args in groups:
        if args:
            expr = f"json_set({expr}, {', '.join(args)})"
    return expr


def set_clause(collection: str, patch: Mapping[str, Any], b: Binder, *,
               system: frozenset[str]) -> str:
    """The SET list of an UPDATE (table aliased ``t``) applying a field-path patch and a new
    ``_rev``. Column fields (:mod:`.sqlite_columns`) are set as columns; ``doc`` is rewritten
    only for the rest."""
    if not isinstance(patch, Mapping):
        raise InvalidInput("patch must be a mapping")
    if not cols.columns(collection):
        return f"doc = {patch_expr('doc', patch, b, system=system)}"
    for path in patch:
        check_path(path)
    split = cols.split_patch(collection, patch, system)
    sets = [f"rev = {cols.new_rev_sql(b)}"]
    if split.doc_patch:
        base = cols.refresh_expr("t.doc", "t", split.refresh)
        sets.append(f"doc = {patch_expr(base, split.doc_patch, b, system=system, rev=False)}")
    # Every SET expression reads the row as it was before this statement, so the refresh
    # above copies the columns' old values whatever the order of the assignments.
    sets += [f"{col.name} = {b(v)}" for col, v in split.columns.items()]
    return ", ".join(sets)


def order_clause(
    order_by: Sequence[tuple[str, bool]] | None, alias: str, id_prefix: str, *, edge: bool,
    coll: str | None = None,
) -> str:
    """``ORDER BY`` text: the requested fields, then insertion order."""
    terms = []
    for item in order_by or ():
        try:
            path, desc = item
        except (TypeError, ValueError):
            raise InvalidInput("order_by must be a sequence of (field, descending) pairs") from None
        f = doc_field(alias, check_path(path), edge=edge, id_prefix=id_prefix, coll=coll)
        terms.append(f"{f.value}{' DESC' if desc else ''}")
    terms.append(f"{alias}.seq")
    return "ORDER BY " + ", ".join(terms)


# -- dependency order ------------------------------------------------------------------------


def id_order_sql(a: str, b: str) -> str:
    """SQL true iff id ``a`` comes before id ``b`` in the order (length, text): a strict total
    order (for ids with one prefix, the numeric order of canonical decimal keys)."""
    return f"(length({a}) < length({b}) OR (length({a}) = length({b}) AND {a} < {b}))"


def id_order_violation_sql(table: str, consumer_table: str | None) -> str:
    """A query returning a row iff some dependency is against :func:`id_order_sql` (parameter
    ``wf``): an edge ``from -> to`` of ``table``, or with ``consumer_table`` a producer edge
    P->X of ``table`` and a consumer edge C->X (the dependency P -> C)."""
    if consumer_table is None:
        return (f"SELECT 1 FROM {table} e WHERE e.wf = :wf "
                f"AND NOT {id_order_sql('e.from_id', 'e.to_id')} LIMIT 1")
    return (f"SELECT 1 FROM {table} p JOIN {consumer_table} c ON c.wf = :wf AND c.to_id = p.to_id "
            f"WHERE p.wf = :wf AND NOT {id_order_sql('p.from_id', 'c.from_id')} LIMIT 1")
