"""Compile the store protocol's filters, sorts and patches into AQL text plus bind variables.

Pure functions, no driver: :class:`Query` collects bind variables while the caller assembles the
query text. The rules that keep user input out of the query text:

* values are always bind parameters (``@v0``);
* collection names come from :mod:`torc_graph.model` enums plus a workflow key matching
  :data:`~torc_graph.model.KEY_PATTERN`, and are bound as collection parameters (``@@c0``);
* field paths must match :data:`~torc_graph.model.FIELD_PATH_PATTERN` (or be ``_key``/``_id``)
  and each segment is bound as a string for bracket access (``d[@p1][@p2]`` with
  ``p1 = "internal"``, ``p2 = "num_cpus"``).

Missing fields read as ``null`` in AQL, and AQL orders ``null`` below every other value, so the
ordering operators are guarded with a type test: ``Lt(5)`` only matches numbers below 5, never a
missing field or a string. ``==``, ``IN``, ``!=`` and ``NOT IN`` are type-strict in AQL already.

Insertion order: every stored document carries its sequence number in :data:`SEQ_FIELD`
(indexed; see :mod:`torc_graph.store.arango_keys`), so every order ends with that plain
attribute and keyset paging compares against it (:meth:`Query.after`).

Clusters: a query that loads documents by a runtime id (``DOCUMENT(e._to)``) names their
collections in a leading ``WITH`` (:meth:`Query.declare`, :meth:`Query.finish`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torc_graph import model
from torc_graph.errors import InvalidInput
from torc_graph.store.filters import Ge, Gt, HasEdge, In, Le, Lt, Ne, NotIn

#: Hidden attribute holding the insertion sequence of documents with caller-supplied keys.
#: Stripped from every document the store returns, and from every insert and patch.
SEQ_FIELD = "_torc_seq"
#: Hidden attribute of a workflow document that is not published yet (epoch ms of the last sign
#: of life of its creation; :mod:`torc_graph.store.arango_staging`).
STAGED_FIELD = "_torc_staged"
#: Hidden attribute of a workflow document while a bulk transaction has it half-applied
#: (:mod:`torc_graph.store.arango_chunks`).
BULK_FIELD = "_torc_bulk"
#: Claim orders of jobs: hidden attribute -> the fields a claim sorts by, all descending, ties
#: in insertion order (engine.claims.SORT_METHODS). The server computes the attribute on every
#: insert and update of a job (collection ``computedValues``, ArangoDB 3.10+;
#: :mod:`torc_graph.store.arango_layout`): the array ``[f1, f2, f3, -_torc_seq]`` while the job
#: is claimable, absent otherwise. Sorting it descending IS the claim order (AQL compares
#: arrays element by element, null lowest as in SORT), in one direction, so a sparse
#: persistent index on it (claimable jobs only) serves ``SORT ... DESC LIMIT n``.
CLAIM_ORDERS: dict[str, tuple[str, ...]] = {
    "_torc_claim_grm": ("internal.num_gpus", "internal.runtime_seconds", "internal.memory_bytes"),
    "_torc_claim_gmr": ("internal.num_gpus", "internal.memory_bytes", "internal.runtime_seconds"),
}
#: Attributes the store keeps on documents and never returns nor accepts from callers.
HIDDEN_FIELDS = frozenset({SEQ_FIELD, STAGED_FIELD, BULK_FIELD, *CLAIM_ORDERS})
#: Fields a patch never writes (the store ignores them).
SYSTEM_FIELDS = frozenset({"_key", "_id", "_rev", "_from", "_to", "_oldRev"}) | HIDDEN_FIELDS
#: Targets of the global edges (all start at ``workflows``).
GLOBAL_EDGE_TARGETS = {"has_workflow_config": "workflow_configs",
                       "has_workflow_status": "workflow_statuses"}
#: AQL needs a count with an offset; this stands for "no limit".
NO_LIMIT = 2**53 - 1

_ORDERING = {Lt: "<", Le: "<=", Gt: ">", Ge: ">="}


def check_path(path: str) -> list[str]:
    """Validate a field path and return it as an attribute-path list. Raises InvalidInput."""
    if not isinstance(path, str) or not (
        path in ("_key", "_id") or model.FIELD_PATH_PATTERN.match(path)
    ):
        raise InvalidInput(f"invalid field path {path!r}")
    return path.split(".")


def check_key(key: Any, what: str = "key") -> str:
    """Validate a document or workflow key. Raises InvalidInput."""
    if not isinstance(key, str) or not model.KEY_PATTERN.match(key):
        raise InvalidInput(f"invalid {what} {key!r}")
    return key


def collection_name(name: str, workflow: str | None) -> str:
    """The physical collection name for a whitelisted base name. Raises InvalidInput."""
    name = str(name)
    if workflow is None:
        if name not in _GLOBAL_NAMES:
            raise InvalidInput(f"unknown global collection {name!r}")
        return name
    check_key(workflow, "workflow key")
    if not (model.is_collection(name) or model.is_edge(name)):
        raise InvalidInput(f"unknown collection {name!r}")
    return model.collection_name(name, workflow)


def edge_collection_name(edge: str, workflow: str | None) -> str:
    """The physical name of an edge collection: per-workflow edges need ``workflow``; the
    global ``has_*`` edges ignore it. Raises InvalidInput for any other name."""
    edge = str(edge)
    if edge in _GLOBAL_EDGES:
        return edge
    if not model.is_edge(edge) or workflow is None:
        raise InvalidInput(f"unknown edge collection {edge!r}")
    return collection_name(edge, workflow)


_GLOBAL_EDGES = frozenset(e.value for e in model.GlobalEdge)
_GLOBAL_NAMES = frozenset(c.value for c in model.GlobalCollection) | frozenset(
    e.value for e in model.GlobalEdge
)


class Query:
    """Bind-variable collector: every ``value``/``path``/``collection`` call returns the AQL
    placeholder and records the value under a fresh name."""

    def __init__(self) -> None:
        self.bind_vars: dict[str, Any] = {}
        self._n = 0
        self._with: dict[str, str] = {}

    def declare(self, physical_names: Sequence[str]) -> None:
        """Name collections read through runtime ids, for the query's leading ``WITH``."""
        for name in physical_names:
            if name not in self._with:
                self._with[name] = self.collection(name)

    def finish(self, text: str) -> str:
        """The complete query text: ``WITH`` the declared collections, then ``text``."""
        if not self._with:
            return text
        return f"WITH {', '.join(self._with.values())} {text}"

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def value(self, value: Any) -> str:
        name = self._name("v")
        self.bind_vars[name] = value
        return "@" + name

    def path(self, path: str) -> str:
        """Bracket access for a field path: ``[@p1][@p2]``, one string bind per segment.

        (``doc[@p]`` with a string is plain dynamic attribute access; a missing step yields
        null, like ``doc.a.b``.)"""
        return "".join(f"[{self.value_as('p', part)}]" for part in check_path(path))

    def value_as(self, prefix: str, value: Any) -> str:
        name = self._name(prefix)
        self.bind_vars[name] = value
        return "@" + name

    def collection(self, physical_name: str) -> str:
        name = self._name("c")
        self.bind_vars["@" + name] = physical_name
        return "@@" + name

    # -- filters ---------------------------------------------------------------------------

    def attr(self, var: str, path: str) -> str:
        """``var[@pN]...``: the value at ``path`` in the document bound to AQL variable ``var``."""
        return f"{var}{self.path(path)}"

    def conditions(self, where: Mapping[str, Any] | None, subject) -> list[str]:
        """AQL boolean expressions for ``where``; ``subject(path)`` gives the operand text."""
        if not where:
            return []
        out = []
        for path, cond in where.items():
            check_path(path)
            out.append(self.condition(subject(path), cond))
        return out

    def condition(self, expr: str, cond: Any) -> str:
        if isinstance(cond, In):
            return f"({expr} IN {self.value(list(cond.values))})"
        if isinstance(cond, NotIn):
            return f"({expr} NOT IN {self.value(list(cond.values))})"
        if isinstance(cond, Ne):
            return f"({expr} != {self.value(cond.value)})"
        op = _ORDERING.get(type(cond))
        if op is not None:
            return f"({_type_test(expr, cond.value)} AND {expr} {op} {self.value(cond.value)})"
        if isinstance(cond, HasEdge):
            raise InvalidInput("HasEdge belongs in edges=, not in where")
        return f"({expr} == {self.value(cond)})"

    def where(self, var: str, where: Mapping[str, Any] | None) -> list[str]:
        return self.conditions(where, lambda p: self.attr(var, p))

    def has_edge(self, var: str, pred: HasEdge, workflow: str | None) -> str:
        """``LENGTH((FOR e IN edges FILTER e._from == var._id ... LIMIT 1 RETURN 1)) > 0``."""
        if not isinstance(pred, HasEdge):
            raise InvalidInput("edges= takes HasEdge predicates")
        if pred.direction not in ("out", "in"):
            raise InvalidInput(f"invalid direction {pred.direction!r}")
        coll = self.collection(edge_collection_name(str(pred.edge), workflow))
        near, far = ("_from", "_to") if pred.direction == "out" else ("_to", "_from")
        e = self._name("e")
        parts = [f"FOR {e} IN {coll}", f"FILTER {e}.{near} == {var}._id"]
        where = pred.where or {}
        if where and set(where) <= {"_id", "_key"}:
            # Evaluated on the endpoint id alone: no document load, dangling ids qualify.
            def subject(path: str) -> str:
                return f"{e}.{far}" if path == "_id" else f"PARSE_IDENTIFIER({e}.{far}).key"

            conds = self.conditions(where, subject)
            parts.append("FILTER " + " AND ".join(conds))
        elif where:
            self.declare(endpoint_collections(str(pred.edge), workflow, pred.direction))
            o = self._name("o")
            parts.append(f"LET {o} = DOCUMENT({e}.{far})")
            conds = [f"{o} != null"] + self.where(o, where)
            parts.append("FILTER " + " AND ".join(conds))
        parts.append("LIMIT 1 RETURN 1")
        cmp = "> 0" if pred.exists else "== 0"
        return f"(LENGTH(({' '.join(parts)})) {cmp})"

    def filter(
        self,
        var: str,
        where: Mapping[str, Any] | None,
        edges: Sequence[HasEdge] = (),
        workflow: str | None = None,
    ) -> str:
        """A complete ``FILTER ...`` line (empty string when there is nothing to filter)."""
        conds = self.where(var, where) + [self.has_edge(var, h, workflow) for h in edges]
        return ("FILTER " + " AND ".join(conds)) if conds else ""

    # -- order -----------------------------------------------------------------------------

    def sort(self, var: str, order_by: Sequence[tuple[str, bool]] | None) -> str:
        """``SORT ...``: the requested fields, then insertion order (unique, indexed)."""
        terms = []
        for path, descending in order_by or ():
            terms.append(f"{self.attr(var, path)} {'DESC' if descending else 'ASC'}")
        terms.append(f"{seq_expr(var)} ASC")
        return "SORT " + ", ".join(terms)

    def after(self, var: str, order_by: Sequence[tuple[str, bool]] | None, last: Mapping[str, Any]) -> str:
        """``FILTER ...`` keeping the documents that :meth:`sort` puts after ``last`` (keyset
        paging: no re-sort of skipped rows, no row skipped when earlier rows change).

        AQL's comparison operators use the same total order as ``SORT`` (null < bool < number
        < string < array < object), and a missing field reads as null on both sides."""
        terms = [(self.attr(var, p), _value_at(last, p), d) for p, d in order_by or ()]
        terms.append((seq_expr(var), last[SEQ_FIELD], False))
        ors = []
        for i, (expr, value, descending) in enumerate(terms):
            ands = [f"{e} == {self.value(v)}" for e, v, _ in terms[:i]]
            ands.append(f"{expr} {'<' if descending else '>'} {self.value(value)}")
            ors.append("(" + " AND ".join(ands) + ")")
        return "FILTER " + " OR ".join(ors)

    # -- patches ---------------------------------------------------------------------------

    def patch(self, var: str, patch: Mapping[str, Any]) -> str:
        """An AQL object for ``UPDATE var WITH <object> ... OPTIONS {mergeObjects: false}``.

        A plain key sets the field (an object value replaces the stored one whole); a dotted
        key sets one nested field and keeps its siblings, creating missing parents. System
        fields are ignored. Raises InvalidInput for bad paths or overlapping keys.
        """
        tree: dict[str, Any] = {}
        for path, value in patch.items():
            parts = check_path(path)
            if parts[0] in SYSTEM_FIELDS:
                continue
            node = tree
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                if last:
                    if part in node:
                        raise InvalidInput(f"overlapping patch paths at {path!r}")
                    node[part] = _Leaf(value)
                else:
                    child = node.setdefault(part, {})
                    if isinstance(child, _Leaf):
                        raise InvalidInput(f"overlapping patch paths at {path!r}")
                    node = child
        return self._object(var, [], tree)

    def _object(self, var: str, prefix: list[str], node: dict[str, Any]) -> str:
        fields = []
        for name, child in node.items():
            key = self.value(name)
            if isinstance(child, _Leaf):
                fields.append(f"[{key}]: {self.value(child.value)}")
            else:
                sub = prefix + [name]
                old = var + self.path(".".join(sub))
                inner = self._object(var, sub, child)
                fields.append(f"[{key}]: MERGE(IS_OBJECT({old}) ? {old} : {{}}, {inner})")
        return "{" + ", ".join(fields) + "}"


class _Leaf:
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def seq_expr(var: str) -> str:
    """The insertion sequence of a document: a plain indexed attribute, so that an index
    serves ``FILTER ... SORT seq LIMIT n`` without sorting the matches."""
    return f"{var}.{SEQ_FIELD}"


def endpoint_collections(edge: str, workflow: str | None, direction: str = "out") -> list[str]:
    """Physical names of the collections at the far end of ``edge`` in ``direction``."""
    if edge in _GLOBAL_EDGES:
        if direction == "in":
            return [model.GlobalCollection.WORKFLOWS.value]
        target = GLOBAL_EDGE_TARGETS.get(edge)
        return [target] if target else [c.value for c in model.GlobalCollection]
    definition = model.EDGE_DEFINITIONS[model.Edge(edge)]
    ends = definition.to_collections if direction == "out" else definition.from_collections
    return [collection_name(c.value, workflow) for c in ends]


def _value_at(doc: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a document (None when missing, like AQL)."""
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _type_test(expr: str, value: Any) -> str:
    """Guard for ordering operators: the field must hold a value of the operand's JSON type."""
    if isinstance(value, bool):
        return f"IS_BOOL({expr})"
    if isinstance(value, (int, float)):
        return f"IS_NUMBER({expr})"
    if isinstance(value, str):
        return f"IS_STRING({expr})"
    if isinstance(value, (list, tuple)):
        return f"IS_ARRAY({expr})"
    if isinstance(value, Mapping):
        return f"IS_OBJECT({expr})"
    return f"{expr} != null"
