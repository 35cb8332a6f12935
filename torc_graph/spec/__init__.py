"""Workflow specifications in both dialects: torc v0.6.4 and current torc (v0.10).

* :func:`read_file` reads a YAML, JSON, JSON5 or KDL file into a JSON value
  (:mod:`torc_graph.spec.formats`);
* :func:`dialect` tells which dialect a value is written in (spec format §11 [REC]);
* :func:`normalize` returns the v0.6.4 specification (torc_graph form) the engine creates:
  current-torc values are converted (:mod:`torc_graph.spec.current`: parameter expansion,
  ``depends_on``/regexes, file and user-data templates, failure handlers, actions), v0.6.4
  values are returned as they are.

A pure library: no I/O besides :func:`read_file`, no store, no HTTP. Raises InvalidInput.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torc_graph.errors import InvalidInput
from torc_graph.spec.formats import FORMATS, SpecFileError, read_file

__all__ = ["FORMATS", "SpecFileError", "read_file", "dialect", "normalize"]

V064, CURRENT = "v0.6.4", "current"

_V064_TOP = frozenset({"schedulers", "config", "key", "_key", "is_archived"})
_CURRENT_TOP = frozenset({
    "parameters", "failure_handlers", "actions", "slurm_schedulers", "slurm_defaults",
    "resource_monitor", "use_pending_failed", "jobs_sort_method",
    "compute_node_expiration_buffer_seconds", "compute_node_wait_for_new_jobs_seconds",
    "compute_node_ignore_workflow_completion", "compute_node_wait_for_healthy_database_minutes",
})
_V064_JOB = frozenset({"blocked_by", "schedule_compute_nodes", "key", "_key"})
_CURRENT_JOB = frozenset({
    "depends_on", "depends_on_regexes", "input_file_regexes", "output_file_regexes",
    "input_user_data_regexes", "output_user_data_regexes", "parameters", "parameter_mode",
    "use_parameters",
})
_CURRENT_FILE = frozenset({"parameters", "parameter_mode", "use_parameters"})
_TEMPLATES = ("${files.", "${user_data.")


def _markers(spec: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(first v0.6.4 marker, first current-torc marker), each as ``where: key`` or None."""
    old = next((k for k in spec if k in _V064_TOP), None)
    new = next((k for k in spec if k in _CURRENT_TOP), None)
    for kind, old_keys, new_keys in (("jobs", _V064_JOB, _CURRENT_JOB),
                                     ("files", frozenset({"st_mtime"}), _CURRENT_FILE)):
        items = spec.get(kind)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if old and new:
                break
            if not isinstance(item, dict):
                continue
            keys = item.keys()
            if old is None and not old_keys.isdisjoint(keys):
                old = f"{kind}[{i}].{next(k for k in keys if k in old_keys)}"
            if new is None:
                if not new_keys.isdisjoint(keys):
                    new = f"{kind}[{i}].{next(k for k in keys if k in new_keys)}"
                elif kind == "jobs" and any(t in str(item.get("command", "")) for t in _TEMPLATES):
                    new = f"jobs[{i}].command (a ${{files...}}/${{user_data...}} template)"
            if old is None and kind == "jobs" and "/" in str(item.get("scheduler") or ""):
                old = f"jobs[{i}].scheduler"
    return old, new


def dialect(spec: Mapping[str, Any]) -> str:
    """:data:`V064` or :data:`CURRENT`. A spec with keys of neither (plain jobs and files) is
    v0.6.4, which reads it the same way. Raises InvalidInput if it mixes both."""
    old, new = _markers(spec)
    if old and new:
        raise InvalidInput(
            f"the specification mixes torc v0.6.4 keys ({old}) with current torc keys ({new}); "
            "write it in one dialect (e.g. depends_on instead of blocked_by)")
    return CURRENT if new else V064


def normalize(spec: Any) -> dict[str, Any]:
    """The v0.6.4 specification (torc_graph form) for ``spec`` in either dialect; the engine
    validates and creates it. Raises InvalidInput."""
    if not isinstance(spec, dict):
        raise InvalidInput("a workflow specification must be a JSON object")
    if dialect(spec) == V064:
        return spec
    from torc_graph.spec import current

    return current.convert(spec)
