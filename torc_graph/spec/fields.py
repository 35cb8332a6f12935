"""Strict field checking for current-torc spec objects (spec format §0 step 1).

Each object kind is a table ``field -> (kind, required)``. Types are JSON-strict (``"4"`` is
not an int, ``true`` is not an int, ``4`` is not a string); an optional key set to ``null`` is
the same as an absent one; unknown keys are errors. Every error names the entry and the field,
e.g. ``jobs[3].parameters.i: must be a string (got 5)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from torc_graph.errors import InvalidInput

STR, INT, BOOL, NUM, STRS, INTS, STRMAP, LIST, OBJ, ANY = (
    "a string", "an integer", "a boolean", "a number", "a list of strings",
    "a list of integers", "a map of strings", "a list", "an object", "any")

_NAME_LISTS = ("depends_on", "input_files", "output_files", "input_user_data", "output_user_data")
#: Job name lists and their regex lists (templated, spec format §2).
JOB_LISTS = _NAME_LISTS + tuple(
    f"{n[:-1]}_regexes" if n.endswith("files") else f"{n}_regexes" for n in _NAME_LISTS)
_PARAMS = {"parameters": (STRMAP, False), "parameter_mode": (STR, False),
           "use_parameters": (STRS, False)}

TOP = {
    "name": (STR, True), "user": (STR, False), "description": (STR, False),
    "parameters": (STRMAP, False), "jobs": (LIST, True), "files": (LIST, False),
    "user_data": (LIST, False), "resource_requirements": (LIST, False),
    "failure_handlers": (LIST, False), "slurm_schedulers": (LIST, False),
    "slurm_defaults": (OBJ, False), "resource_monitor": (OBJ, False), "actions": (LIST, False),
    "use_pending_failed": (BOOL, False),
    "compute_node_expiration_buffer_seconds": (INT, False),
    "compute_node_wait_for_new_jobs_seconds": (INT, False),
    "compute_node_ignore_workflow_completion": (BOOL, False),
    "compute_node_wait_for_healthy_database_minutes": (INT, False),
    "jobs_sort_method": (STR, False),
}
JOB = {
    "name": (STR, True), "command": (STR, True), "invocation_script": (STR, False),
    "resource_requirements": (STR, False), "failure_handler": (STR, False),
    "scheduler": (STR, False), "cancel_on_blocking_job_failure": (BOOL, False),
    "supports_termination": (BOOL, False), **{n: (STRS, False) for n in JOB_LISTS}, **_PARAMS,
}
FILE = {"name": (STR, True), "path": (STR, True), **_PARAMS}
USER_DATA = {"name": (STR, True), "data": (ANY, False), "is_ephemeral": (BOOL, False)}
RESOURCE_REQUIREMENTS = {
    "name": (STR, True), "num_cpus": (INT, True), "memory": (STR, True),
    "num_gpus": (INT, False), "num_nodes": (INT, False), "runtime": (STR, False),
}
FAILURE_HANDLER = {"name": (STR, True), "rules": (LIST, True)}
RULE = {
    "exit_codes": (INTS, False), "match_all_exit_codes": (BOOL, False),
    "recovery_script": (STR, False), "max_retries": (INT, False),
    # torc_graph extensions (docs/execution-model.md §2)
    "memory_factor": (NUM, False), "max_memory": (STR, False),
    "runtime_factor": (NUM, False), "max_runtime": (STR, False),
}
SLURM_SCHEDULER = {
    "name": (STR, True), "account": (STR, True), "partition": (STR, False), "qos": (STR, False),
    "gres": (STR, False), "mem": (STR, False), "tmp": (STR, False), "extra": (STR, False),
    "nodes": (INT, False), "ntasks_per_node": (INT, False), "walltime": (STR, False),
}
ACTION = {
    "trigger_type": (STR, True), "action_type": (STR, True), "jobs": (STRS, False),
    "job_name_regexes": (STRS, False), "commands": (STRS, False), "scheduler": (STR, False),
    "scheduler_type": (STR, False), "num_allocations": (INT, False),
    "start_one_worker_per_node": (BOOL, False), "max_parallel_jobs": (INT, False),
    "persistent": (BOOL, False),
}
RESOURCE_MONITOR = {
    "enabled": (BOOL, False), "granularity": (STR, False),
    "sample_interval_seconds": (INT, False), "generate_plots": (BOOL, False),
}


def show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a value for error messages."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is(kind: str, v: Any) -> bool:
    t = type(v)
    if kind == STR:
        return t is str
    if kind == INT:
        return t is int
    if kind == BOOL:
        return t is bool
    if kind == NUM:
        return t in (int, float)
    if kind == STRS:
        return t is list and all(type(x) is str for x in v)
    if kind == INTS:
        return t is list and all(type(x) is int for x in v)
    if kind == STRMAP:
        return t is dict and all(type(x) is str for x in v.values())
    if kind == LIST:
        return t is list
    if kind == OBJ:
        return t is dict
    return True


def check(obj: Any, table: Mapping[str, tuple[str, bool]], where: str, *,
          ignore_unknown: bool = False) -> dict[str, Any]:
    """The present, non-null fields of ``obj`` after strict checking.

    Raises InvalidInput naming ``where`` and the field: not an object, unknown field,
    missing required field, wrong type (for maps of strings, the offending key).
    """
    if type(obj) is not dict:
        raise InvalidInput(f"{where}: must be an object (got {show(obj)})")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        spec = table.get(key)
        if spec is None:
            if ignore_unknown:
                continue
            raise InvalidInput(f"{where}: unknown field {show(key)} "
                               f"(allowed: {', '.join(table)})")
        if value is None:
            continue
        kind = spec[0]
        if not _is(kind, value):
            if kind == STRMAP and type(value) is dict:
                bad = next(k for k, x in value.items() if type(x) is not str)
                raise InvalidInput(f"{where}.{key}.{bad}: must be a string "
                                   f"(got {show(value[bad])}), e.g. \"1:10\" or \"[1, 2]\"")
            raise InvalidInput(f"{where}.{key}: must be {kind} (got {show(value)})")
        out[key] = value
    for key, (_kind, required) in table.items():
        if required and key not in out:
            raise InvalidInput(f"{where}.{key}: required")
    return out


def entry(kind: str, index: int, name: Any = None) -> str:
    """``jobs[3]`` or, when the expanded name differs from the template, ``jobs[3] ("work_7")``."""
    return f"{kind}[{index}]" if name is None else f"{kind}[{index}] ({show(name)})"
