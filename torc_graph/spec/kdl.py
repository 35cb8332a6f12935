"""KDL v2 workflow specifications → the JSON value the other formats give (spec format §10).

Parsing is ckdl's (a C KDL v2 parser); this module maps the node tree. Deviations from torc,
all recommended by the spec format ([REC]): repeatable children (``depends_on``,
``depends_on_regexes``, ``input_file``, ...) take every argument, not only the first; the
aliases ``depends_on_job``, ``input_files`` and ``output_files`` are accepted; an unknown node
is an error naming it (torc ignores it and silently loses the edge).

Raises InvalidInput.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import ckdl

from torc_graph.errors import InvalidInput
from torc_graph.spec import fields as F

_TOP_SCALARS = ("name", "user", "description", "use_pending_failed", "jobs_sort_method",
                "compute_node_expiration_buffer_seconds", "compute_node_wait_for_new_jobs_seconds",
                "compute_node_ignore_workflow_completion",
                "compute_node_wait_for_healthy_database_minutes")
_JOB_SCALARS = ("command", "invocation_script", "resource_requirements", "failure_handler",
                "scheduler", "cancel_on_blocking_job_failure", "supports_termination",
                "parameter_mode")
#: repeatable job children -> the list field they extend
_JOB_LISTS = {
    "depends_on": "depends_on", "depends_on_job": "depends_on",
    "depends_on_regexes": "depends_on_regexes", "input_file": "input_files",
    "input_files": "input_files", "output_file": "output_files", "output_files": "output_files",
    "input_user_data": "input_user_data", "output_user_data": "output_user_data",
    "use_parameters": "use_parameters",
}
_ACTION_LISTS = {"job": "jobs", "jobs": "jobs", "job_name_regexes": "job_name_regexes",
                 "command": "commands", "commands": "commands"}


def loads(text: str) -> dict[str, Any]:
    """The spec value of a KDL document. Raises InvalidInput (syntax errors included)."""
    try:
        doc = ckdl.parse(text, version=2)
    except ckdl.ParseError as exc:
        raise InvalidInput(f"invalid KDL: {exc}") from None
    out: dict[str, Any] = {}
    for node in doc.nodes:
        name = node.name
        where = f"{name} {F.show(node.args[0]) if node.args else ''}".strip()
        if name in _TOP_SCALARS:
            out[name] = _first(node, where)
        elif name == "parameters":
            out["parameters"] = _map(node)
        elif name == "slurm_defaults":
            out["slurm_defaults"] = _map(node)
        elif name == "resource_monitor":
            out["resource_monitor"] = _scalars(node, where)
        elif name in _ENTRIES:
            key, build = _ENTRIES[name]
            out.setdefault(key, []).append(build(node, where))
        else:
            raise InvalidInput(f"KDL node {F.show(name)}: unknown top-level node")
    out.setdefault("jobs", [])
    return out


def _first(node: Any, where: str) -> Any:
    if not node.args:
        raise InvalidInput(f"KDL {where}: {node.name} needs a value")
    return node.args[0]


def _map(node: Any) -> dict[str, Any]:
    return {c.name: (c.args[0] if c.args else None) for c in node.children}


def _scalars(node: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = dict(node.properties)
    for child in node.children:
        out[child.name] = _first(child, f"{where} {child.name}")
    return out


def _named(node: Any, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _first(node, where)} if node.args else {}
    out.update(node.properties)
    return out


def _templated(kind: str, scalars: tuple[str, ...], lists: dict[str, str]
               ) -> Callable[[Any, str], dict[str, Any]]:
    """The reader of a job or file node: scalar children take their first argument, list
    children extend their field with every argument, ``parameters`` is a map."""

    def read(node: Any, where: str) -> dict[str, Any]:
        out = _named(node, where)
        for child in node.children:
            cname = child.name
            if cname in scalars:
                out[cname] = _first(child, f"{where} {cname}")
            elif cname in lists:
                out.setdefault(lists[cname], []).extend(child.args)
            elif cname == "parameters":
                out["parameters"] = _map(child)
            else:
                raise InvalidInput(f"KDL {where}: unknown {kind} child {F.show(cname)}")
        return out

    return read


def _user_data(node: Any, where: str) -> dict[str, Any]:
    u = _named(node, where)
    for child in node.children:
        if child.name == "is_ephemeral":
            u["is_ephemeral"] = _first(child, f"{where} is_ephemeral")
        elif child.name == "data":
            text = _first(child, f"{where} data")
            try:
                u["data"] = json.loads(text) if isinstance(text, str) else text
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"KDL {where} data: invalid JSON: {exc}") from None
        else:
            raise InvalidInput(f"KDL {where}: unknown user_data child {F.show(child.name)}")
    if "data" not in u:
        raise InvalidInput(f"KDL {where}: user_data needs a data child (JSON text)")
    return u


def _failure_handler(node: Any, where: str) -> dict[str, Any]:
    h = _named(node, where)
    rules = []
    for child in node.children:
        if child.name != "rule":
            raise InvalidInput(f"KDL {where}: unknown failure_handler child {F.show(child.name)}")
        rule: dict[str, Any] = {}
        for r in child.children:
            rule[r.name] = list(r.args) if r.name == "exit_codes" else _first(r, f"{where} rule")
        rules.append(rule)
    h["rules"] = rules
    return h


def _action(node: Any, where: str) -> dict[str, Any]:
    a: dict[str, Any] = dict(node.properties)
    for child in node.children:
        if child.name in _ACTION_LISTS:
            a.setdefault(_ACTION_LISTS[child.name], []).extend(child.args)
        else:
            a[child.name] = _first(child, f"{where} {child.name}")
    return a


def _record(node: Any, where: str) -> dict[str, Any]:
    out = _named(node, where)
    out.update(_scalars(node, where))
    return out


_ENTRIES: dict[str, tuple[str, Callable[[Any, str], dict[str, Any]]]] = {
    "job": ("jobs", _templated("job", _JOB_SCALARS, _JOB_LISTS)),
    "file": ("files", _templated("file", ("path", "parameter_mode"),
                                 {"use_parameters": "use_parameters"})),
    "user_data": ("user_data", _user_data),
    "resource_requirements": ("resource_requirements", _record),
    "failure_handler": ("failure_handlers", _failure_handler),
    "slurm_scheduler": ("slurm_schedulers", _record),
    "action": ("actions", _action),
}
