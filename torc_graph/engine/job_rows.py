"""Job bodies → documents to store and relation ids, validated in one pass (bulk inserts).

Relation fields of a job body are ids; they are removed from the stored document and become
edges: ``requires`` (resource_requirements), ``scheduled_bys`` (scheduler), ``needs``
(input_files), ``produces`` (output_files), ``consumes`` (input_user_data), ``stores``
(output_user_data), and ``blocks`` from each ``blocked_by`` job to the new job.

:func:`build_jobs` gives exactly what validating each body against ``schemas/job.json``
(:func:`torc_graph.validation.validate_many`) and then stripping it would, with the same
messages, at a fraction of the cost (profiled: validation with default copies, document
building and per-id regexes were ~45 % of a 10,000-job ``bulk_jobs`` request): each field is
checked by the schema's compiled check and written straight into the document; a relation id of
the common form (``<collection>__<wf>/<decimal key>``) is checked with two string tests. A body
the fast pass cannot take (any failed check, an unusual id) is redone by the exact path, which
raises the schema's or the relation's message naming its index.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torc_graph import json_codec, model, validation
from torc_graph.engine.documents import JOB_RELATION_FIELDS, SERVER_MANAGED
from torc_graph.errors import InvalidInput

_C = model.Collection
#: Validated, then not stored (the store or the server sets them).
_DROPPED = frozenset(("_id", "_rev", "_oldRev", *SERVER_MANAGED["jobs"]))
_UNINITIALIZED = model.JobStatus.UNINITIALIZED.value


@dataclass(frozen=True)
class Relation:
    field: str
    edge: str
    targets: tuple[str, ...]
    many: bool
    inbound: bool = False  # the edge points at the new job (blocked_by)


RELATIONS: tuple[Relation, ...] = (
    Relation("resource_requirements", "requires", (_C.RESOURCE_REQUIREMENTS.value,), False),
    Relation("scheduler", "scheduled_bys", tuple(c.value for c in model.SCHEDULER_COLLECTIONS),
             False),
    Relation("input_files", "needs", (_C.FILES.value,), True),
    Relation("output_files", "produces", (_C.FILES.value,), True),
    Relation("input_user_data", "consumes", (_C.USER_DATA.value,), True),
    Relation("output_user_data", "stores", (_C.USER_DATA.value,), True),
    Relation("blocked_by", "blocks", (_C.JOBS.value,), True, inbound=True),
)
_BY_FIELD = {rel.field: rel for rel in RELATIONS}


@dataclass
class JobRows:
    """Validated jobs: ``docs`` to store (input order), ``texts`` (each doc's JSON text, for
    :meth:`~torc_graph.store.base.GraphStore.insert_encoded`), ``links`` per job (relation
    field → ids) and ``wanted`` (collection → keys every link names, for one existence
    check)."""

    docs: list[dict[str, Any]]
    texts: list[str]
    links: list[dict[str, list[str]]]
    wanted: dict[str, set[str]]


def build_jobs(bodies: Any, workflow: str, *, label: str = "jobs") -> JobRows:
    """Validate job bodies against the job schema (defaults filled) and split each into its
    stored document and relation ids.

    Raises InvalidInput naming ``label[index]`` and the field, with the messages of
    :func:`torc_graph.validation.validate_many` and :func:`relation_ids`; nothing is stored.
    """
    if type(bodies) is not list:
        validation.validate_many("job", bodies, label=label)  # raises the schema's message
    shape = validation.object_shape("job")
    props, required = shape.properties, shape.required
    defaults = [(name, value, _copier(value) if mutable else None)
                for name, value, mutable in shape.defaults if name not in _BY_FIELD]
    # One id prefix per single-collection relation; ids of other forms take the exact path.
    prefixes = {rel.field: model.collection_name(rel.targets[0], workflow) + "/"
                for rel in RELATIONS if len(rel.targets) == 1}
    invalid = validation.Invalid
    docs: list[dict[str, Any]] = []
    links: list[dict[str, list[str]]] = []
    wanted: dict[str, set[str]] = defaultdict(set)
    for index, body in enumerate(bodies):
        doc: dict[str, Any] | None = {}
        link: dict[str, list[str]] = {}
        if type(body) is not dict:
            doc = None
        else:
            try:
                for name in required:
                    if name not in body:
                        raise KeyError(name)
                for k, x in body.items():
                    rel = _BY_FIELD.get(k)
                    if rel is not None:
                        ids = _fast_ids(rel, x, prefixes.get(k))
                        if ids is None:
                            raise invalid("slow")
                        if ids:
                            link[k] = ids
                        continue
                    x = props[k](x)
                    if k not in _DROPPED:
                        doc[k] = x
            except (invalid, KeyError):  # a failed check, an unknown or missing field
                doc = None
        if doc is None:
            job = validation.validate_item("job", body, label, index)
            doc, link = split_job(job, workflow, f"{label}[{index}]")
        else:
            for name, value, copier in defaults:
                if name not in doc:
                    doc[name] = copier(value) if copier else value
            if not doc.get("status"):
                doc["status"] = _UNINITIALIZED
        _want(wanted, link, prefixes)
        docs.append(doc)
        links.append(link)
    return JobRows(docs, encode(docs), links, wanted)


def single_job(job: Mapping[str, Any], workflow: str) -> JobRows:
    """:class:`JobRows` of one job already validated against the job schema (``POST jobs``);
    InvalidInput names ``job`` and the field of a bad relation id."""
    doc, link = split_job(job, workflow, "job")
    wanted: dict[str, set[str]] = defaultdict(set)
    _want(wanted, link, {})
    return JobRows([doc], encode([doc]), [link], wanted)


def encode(docs: list[dict[str, Any]]) -> list[str]:
    """Each document's JSON text, encoded once (the store splices it into the stored text and
    the response reuses that). Raises InvalidInput for a value JSON cannot hold (NaN, an
    object) with the store's message."""
    try:
        return json_codec.dumps_each(docs)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"value is not representable as JSON: {exc}") from None


def _want(wanted: dict[str, set[str]], link: Mapping[str, list[str]],
          prefixes: Mapping[str, str]) -> None:
    """Add the (collection, key) of every id of ``link`` to ``wanted``."""
    for field, ids in link.items():
        prefix = prefixes.get(field)
        keys = wanted[_BY_FIELD[field].targets[0]] if prefix else None
        for doc_id in ids:
            if keys is not None and doc_id.startswith(prefix):
                keys.add(doc_id[len(prefix):])
            else:
                base, _wf, key = model.split_id(doc_id)
                wanted[base].add(key)


def _copier(value: Any):
    """How to copy a default container: ``dict.copy``/``list.copy`` when it holds no
    containers (``internal``: one C call instead of a recursive copy), else a deep copy."""
    if isinstance(value, (dict, list)) and not any(
            isinstance(v, (dict, list)) for v in (value.values() if isinstance(value, dict)
                                                  else value)):
        return type(value).copy
    return validation.copy_value


def _fast_ids(rel: Relation, value: Any, prefix: str | None) -> list[str] | None:
    """The ids of a relation value if they pass the schema and have the common form (this
    workflow's collection, a decimal key), else None (the exact path decides)."""
    if prefix is None:
        return None
    if rel.many:
        if type(value) is not list:
            return None
        ids = value
    elif type(value) is str:
        ids = [value]
    else:
        return None
    plen = len(prefix)
    for doc_id in ids:
        if not (type(doc_id) is str and doc_id.startswith(prefix)):
            return None
        key = doc_id[plen:]
        if not (key.isdigit() and key.isascii() and len(key) <= 254):
            return None
    return list(ids)


def split_job(job: Mapping[str, Any], workflow: str,
              where: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A validated job's document to store and its relation ids (:func:`relation_ids`)."""
    doc = {k: v for k, v in job.items() if k not in JOB_RELATION_FIELDS and k not in _DROPPED}
    if not doc.get("status"):
        doc["status"] = _UNINITIALIZED
    return doc, relation_ids(job, workflow, where)


def relation_ids(job: Mapping[str, Any], workflow: str, where: str) -> dict[str, list[str]]:
    """The relation ids of one validated job, checked for form, collection and workflow.

    Raises InvalidInput naming ``where``, the field and the id."""
    out: dict[str, list[str]] = {}
    for rel in RELATIONS:
        value = job.get(rel.field)
        if value is None or value == []:
            continue
        ids = value if rel.many else [value]
        for doc_id in ids:
            try:
                base, wf, _key = model.split_id(doc_id)
            except (ValueError, TypeError):
                raise InvalidInput(
                    f"{where}.{rel.field}: {doc_id!r} is not a document id"
                ) from None
            if base not in rel.targets or wf != workflow:
                expected = " or ".join(model.collection_name(t, workflow) for t in rel.targets)
                raise InvalidInput(
                    f"{where}.{rel.field}: {doc_id!r} is not an id in {expected}"
                )
        out[rel.field] = list(ids)
    return out
