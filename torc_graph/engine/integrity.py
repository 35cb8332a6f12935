"""Relation integrity and dependency cycles, checked on every write path.

* :func:`check_edge` — an edge's ``_from``/``_to`` must be ids of THIS workflow, of the
  collections the edge definition allows (:data:`torc_graph.model.EDGE_DEFINITIONS`), and exist;
  a ``blocks`` edge may not join a job to itself (400 naming the end and the problem).
* :func:`find_cycle` — the job dependency graph is the union of explicit ``blocks`` edges and
  the edges implied by data: a job that ``produces`` a file another job ``needs`` runs before
  it, and likewise ``stores``/``consumes`` for user data. :func:`check_no_cycle` raises a 400
  naming one cycle: ``cycle: a -> b -> a (b needs file f produced by a)``.

Called by job insertion (single and bulk), ``POST edges/<name>``, workflow specifications and
``initialize_jobs``, inside the caller's transaction, so a rejected write changes nothing.
Cost: first a proof by key order: generated keys increase with insertion and ``blocked_by``
names existing jobs, so dependencies nearly always go from a smaller key to a larger one, which
excludes a cycle. The store checks that set-based (:meth:`GraphStore.dependencies_in_id_order`,
one indexed query per relation, no edge decoded in Python), and :func:`check_new_jobs` checks
only a bulk insert's own edges. Only when that proof fails: one query per dependency edge
collection (five) and a linear-time search (Kahn's algorithm, then a walk inside the remaining
strongly connected part to name a cycle).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence

from torc_graph import model
from torc_graph.errors import InvalidInput, NotFound
from torc_graph.store.base import GraphStore
from torc_graph.store.filters import In

_E = model.Edge
JOBS = model.Collection.JOBS.value
#: (producer edge, consumer edge, what the shared vertex is called).
DATA_RELATIONS = ((_E.PRODUCES.value, _E.NEEDS.value, "file", "needs", "produced by"),
                  (_E.STORES.value, _E.CONSUMES.value, "user data", "consumes", "stored by"))
#: The dependency relations for :meth:`GraphStore.dependencies_in_id_order`.
ORDER_RELATIONS = ((_E.BLOCKS.value, None), (_E.PRODUCES.value, _E.NEEDS.value),
                   (_E.STORES.value, _E.CONSUMES.value))
#: Chunk size of the neighbor queries of :func:`check_new_jobs`.
_CHUNK = 5000
#: Edges whose insertion can close a dependency cycle.
DEPENDENCY_EDGES = frozenset({_E.BLOCKS.value, _E.PRODUCES.value, _E.NEEDS.value,
                              _E.STORES.value, _E.CONSUMES.value})


def check_edge(store: GraphStore, workflow: str, name: str, doc: dict) -> None:
    """InvalidInput unless both ends of edge ``name`` exist in ``workflow`` and belong to the
    collections its definition allows; a ``blocks`` self-loop is refused too."""
    definition = model.EDGE_DEFINITIONS[model.Edge(name)]
    for end, allowed in (("_from", definition.from_collections),
                         ("_to", definition.to_collections)):
        value = doc[end]
        base, wf, key = model.split_id(value)
        names = " or ".join(model.collection_name(c.value, workflow) for c in allowed)
        if wf != workflow:
            raise InvalidInput(f"{name} edge {end}: {value} is not in workflow {workflow} "
                               f"(expected an id in {names})")
        if base not in {c.value for c in allowed}:
            raise InvalidInput(f"{name} edge {end}: {value} is not an id in {names}")
        try:
            store.get(base, workflow, key)
        except NotFound:
            raise InvalidInput(f"{name} edge {end}: no document {value} exists") from None
    if name == _E.BLOCKS.value and doc["_from"] == doc["_to"]:
        raise InvalidInput(f"blocks edge: job {doc['_from']} cannot block itself")


def check_no_cycle(store: GraphStore, workflow: str) -> None:
    """InvalidInput naming a dependency cycle of ``workflow``, if there is one.

    Set-based when every dependency is in key order (the common case); otherwise a full search.
    """
    if store.dependencies_in_id_order(workflow, ORDER_RELATIONS):
        return
    message = find_cycle(store, workflow)
    if message is not None:
        raise InvalidInput(message)


def check_new_jobs(store: GraphStore, workflow: str, new_ids: Iterable[str],
                   edges: Mapping[str, Sequence[Mapping[str, str]]], generated_keys: bool) -> None:
    """InvalidInput naming a dependency cycle closed by jobs just inserted (in the caller's
    transaction) with their ``edges`` (edge name -> ``[{_from, _to}]``).

    The rest of the workflow had no cycle (every write checks), so a new cycle goes through a
    new job. If the new jobs' keys were generated (larger than every key before them) and every
    dependency touching them, explicit or through a file or user data, goes from a smaller to a
    larger key, none can lead back from a new job: proven with the batch's own edges and one
    query per chunk of the files and user data they produce or need. Otherwise the whole
    workflow is searched (:func:`check_no_cycle`).
    """
    if generated_keys and _new_edges_in_key_order(store, workflow, set(new_ids), edges):
        return
    check_no_cycle(store, workflow)


def _key_rank(doc_id: str) -> tuple[int, str] | None:
    """The numeric order of a canonical decimal key (shorter is smaller), or None.

    At most 18 digits: generated keys exceed every such key inserted before them (the store's
    key counter is raised past custom numeric keys only up to about 9.2e18), which the proof of
    :func:`check_new_jobs` relies on."""
    key = doc_id.rpartition("/")[2]
    if key.isdigit() and key.isascii() and len(key) <= 18 and (key == "0" or key[0] != "0"):
        return len(key), key
    return None


def _before(a: str, b: str) -> bool:
    """Whether both ids have keys :func:`_key_rank` ranks and ``a``'s ranks below ``b``'s.
    Inlined (it runs for every edge end of a bulk creation; ~4.7 % of a bulk_jobs request in
    an earlier profile): no rank tuples are built."""
    ka, kb = a[a.rfind("/") + 1:], b[b.rfind("/") + 1:]
    la, lb = len(ka), len(kb)
    if (la > lb or la > 18 or lb > 18 or not (ka.isdigit() and kb.isdigit())
            or not (ka.isascii() and kb.isascii())):
        return False
    if (la > 1 and ka[0] == "0") or (lb > 1 and kb[0] == "0"):
        return False
    return la < lb or ka < kb


def _new_edges_in_key_order(store: GraphStore, workflow: str, new_ids: set[str],
                            edges: Mapping[str, Sequence[Mapping[str, str]]]) -> bool:
    if not all(_before(e["_from"], e["_to"]) for e in edges.get(_E.BLOCKS.value, ())):
        return False
    for producer_edge, consumer_edge, *_ in DATA_RELATIONS:
        # A new producer runs before every consumer of what it produces; a new consumer after
        # every producer of what it needs.
        for mine, other, new_first in ((producer_edge, consumer_edge, True),
                                       (consumer_edge, producer_edge, False)):
            by_vertex: dict[str, list[str]] = defaultdict(list)
            for e in edges.get(mine, ()):
                if e["_from"] in new_ids:
                    by_vertex[e["_to"]].append(e["_from"])
            vertices = list(by_vertex)
            for i in range(0, len(vertices), _CHUNK):
                chunk = vertices[i:i + _CHUNK]
                for e in store.find(other, workflow, {"_to": In(chunk)}):
                    for job in by_vertex[e["_to"]]:
                        pair = (job, e["_from"]) if new_first else (e["_from"], job)
                        if not _before(*pair):
                            return False
    return True


def find_cycle(store: GraphStore, workflow: str) -> str | None:
    """A description of one dependency cycle among the jobs of ``workflow``, or None."""
    succ: dict[str, dict[str, str | None]] = defaultdict(dict)  # job id -> {job id: why}
    for e in store.find(_E.BLOCKS.value, workflow):
        succ[e["_from"]].setdefault(e["_to"], None)
    for producer_edge, consumer_edge, what, verb, by in DATA_RELATIONS:
        producers: dict[str, list[str]] = defaultdict(list)
        for e in store.find(producer_edge, workflow):
            producers[e["_to"]].append(e["_from"])
        if not producers:
            continue
        for e in store.find(consumer_edge, workflow):
            for p in producers.get(e["_to"], ()):
                succ[p].setdefault(e["_from"], (verb, what, e["_to"], by))
    cycle = _cycle(succ)
    if cycle is None:
        return None
    return _describe(store, workflow, cycle, succ)


def _cycle(succ: dict[str, dict[str, object]]) -> list[str] | None:
    """A list of vertices ``[a, b, ..., a]`` forming a cycle, or None (Kahn, then a walk)."""
    indegree: dict[str, int] = defaultdict(int)
    for u, vs in succ.items():
        indegree.setdefault(u, 0)
        for v in vs:
            indegree[v] += 1
    queue = deque(v for v, d in indegree.items() if d == 0)
    while queue:
        u = queue.popleft()
        for v in succ.get(u, ()):
            indegree[v] -= 1
            if indegree[v] == 0:
                queue.append(v)
    remaining = {v for v, d in indegree.items() if d > 0}
    if not remaining:
        return None
    # Every remaining vertex has a remaining predecessor, so walking predecessors must repeat.
    pred: dict[str, str] = {}
    for u, vs in succ.items():
        if u in remaining:
            for v in vs:
                if v in remaining:
                    pred.setdefault(v, u)
    start = min(remaining)
    seen: dict[str, int] = {}
    path: list[str] = []
    v = start
    while v not in seen:
        seen[v] = len(path)
        path.append(v)
        v = pred[v]
    loop = path[seen[v]:]
    loop.reverse()  # predecessor walk -> forward order
    return [*loop, loop[0]]


def _describe(store: GraphStore, workflow: str, cycle: list[str],
              succ: dict[str, dict[str, object]]) -> str:
    names = _names(store, workflow, JOBS, cycle)
    reasons = []
    for a, b in zip(cycle, cycle[1:]):
        why = succ[a][b]
        if why is not None:
            verb, what, vertex, by = why  # type: ignore[misc]
            base = model.split_id(vertex)[0]
            label = _names(store, workflow, base, [vertex])[vertex]
            reasons.append(f"{names[b]} {verb} {what} {label} {by} {names[a]}")
    text = "cycle: " + " -> ".join(names[v] for v in cycle)
    return text + (f" ({'; '.join(reasons)})" if reasons else "")


def _names(store: GraphStore, workflow: str, base: str, ids: Iterable[str]) -> dict[str, str]:
    """id -> the document's name (its key when it has none)."""
    ids = list(dict.fromkeys(ids))
    keys = {model.split_id(i)[2]: i for i in ids}
    out = {i: model.split_id(i)[2] for i in ids}
    for doc in store.find(base, workflow, {"_key": In(list(keys))}):
        if doc.get("name"):
            out[keys[doc["_key"]]] = str(doc["name"])
    return out
