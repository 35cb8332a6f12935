"""Failure handlers and workflow actions: parsed, validated and normalized (spec format §7, §8;
docs/execution-model.md §2). Their runtime belongs to the runners; this module only makes sure
what is stored is well-formed and refers to things that exist.

:func:`failure_handlers` and :func:`actions` normalize the spec entries (defaults filled);
:func:`check_references` checks names against the jobs and schedulers of the workflow (called
by the engine for both spec dialects). Raise InvalidInput naming the entry and field.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

import regex

from torc_graph import units
from torc_graph.errors import InvalidInput
from torc_graph.spec import fields as F

TRIGGERS = ("on_workflow_start", "on_workflow_complete", "on_jobs_ready", "on_jobs_complete",
            "on_worker_start", "on_worker_complete")
JOB_TRIGGERS = ("on_jobs_ready", "on_jobs_complete")
ACTION_TYPES = ("run_commands", "schedule_nodes")
#: Time budget of one pattern searched over every name of a spec.
REGEX_SECONDS = 10.0
TIMED_NAMES = 1000
RULE_DEFAULTS = {"exit_codes": [], "match_all_exit_codes": False, "recovery_script": None,
                 "max_retries": 3, "memory_factor": None, "max_memory": None,
                 "runtime_factor": None, "max_runtime": None}
ACTION_DEFAULTS = {"jobs": [], "job_name_regexes": [], "commands": [], "scheduler": None,
                   "scheduler_type": None, "num_allocations": 1,
                   "start_one_worker_per_node": False, "max_parallel_jobs": None,
                   "persistent": False}


def failure_handlers(items: Sequence[Any], where: str = "failure_handlers") -> list[dict[str, Any]]:
    """Normalized handlers ``[{name, rules: [Rule]}]`` with rule defaults filled. Raises
    InvalidInput for a wrong type, a duplicate name, an empty rule list, a factor below 1 or a
    bad memory / duration string."""
    out, seen = [], set()
    for i, raw in enumerate(items):
        label = F.entry(where, i)
        h = F.check(raw, F.FAILURE_HANDLER, label)
        if h["name"] in seen:
            raise InvalidInput(f"{label}: duplicate failure handler name {F.show(h['name'])}")
        seen.add(h["name"])
        if not h["rules"]:
            raise InvalidInput(f"{label}.rules: needs at least one rule")
        rules = []
        for k, raw_rule in enumerate(h["rules"]):
            rlabel = f"{label}.rules[{k}]"
            rule = {**RULE_DEFAULTS, **F.check(raw_rule, F.RULE, rlabel)}
            for factor in ("memory_factor", "runtime_factor"):
                if rule[factor] is not None and not rule[factor] >= 1:
                    raise InvalidInput(f"{rlabel}.{factor}: must be at least 1 "
                                       f"(got {F.show(rule[factor])})")
            for field, parse in (("max_memory", units.memory_bytes),
                                 ("max_runtime", units.duration_seconds)):
                if rule[field] is not None:
                    try:
                        parse(rule[field])
                    except InvalidInput as exc:
                        raise InvalidInput(f"{rlabel}.{field}: {exc.message}") from None
            rules.append(rule)
        out.append({"name": h["name"], "rules": rules})
    return out


def actions(items: Sequence[Any], where: str = "actions") -> list[dict[str, Any]]:
    """Normalized actions with defaults filled. Raises InvalidInput for a wrong type, an
    unknown trigger or action type, a ``run_commands`` without commands, a ``schedule_nodes``
    without scheduler and scheduler_type, or an invalid ``job_name_regexes`` pattern."""
    out = []
    for i, raw in enumerate(items):
        label = F.entry(where, i)
        a = {**ACTION_DEFAULTS, **F.check(raw, F.ACTION, label)}
        if a["trigger_type"] not in TRIGGERS:
            raise InvalidInput(f"{label}.trigger_type: must be one of {', '.join(TRIGGERS)} "
                               f"(got {F.show(a['trigger_type'])})")
        if a["action_type"] not in ACTION_TYPES:
            raise InvalidInput(f"{label}.action_type: must be one of {', '.join(ACTION_TYPES)} "
                               f"(got {F.show(a['action_type'])})")
        if a["action_type"] == "run_commands" and not a["commands"]:
            raise InvalidInput(f"{label}.commands: run_commands needs at least one command")
        if a["action_type"] == "schedule_nodes":
            for field in ("scheduler", "scheduler_type"):
                if not a[field]:
                    raise InvalidInput(f"{label}.{field}: required for schedule_nodes")
        if a["num_allocations"] < 1:
            raise InvalidInput(f"{label}.num_allocations: must be at least 1")
        for k, pattern in enumerate(a["job_name_regexes"]):
            try:
                regex.compile(pattern)
            except regex.error as exc:
                raise InvalidInput(f"{label}.job_name_regexes[{k}]: invalid regular expression "
                                   f"{F.show(pattern)}: {exc}") from None
        out.append(a)
    return out


def check_references(config: dict[str, Any], job_names: Sequence[str],
                     slurm_names: Collection[str]) -> None:
    """Check the names in stored ``failure_handlers`` / ``actions`` (normalizing them in
    ``config`` first, so a v0.6.4-form spec gets the same checks): an action's ``jobs`` must
    exist, its jobs and patterns together must select a job, and a slurm ``schedule_nodes``
    must name a slurm scheduler. Raises InvalidInput."""
    if config.get("failure_handlers"):
        config["failure_handlers"] = failure_handlers(config["failure_handlers"])
    if not config.get("actions"):
        return
    config["actions"] = actions(config["actions"])
    known = set(job_names)
    for i, a in enumerate(config["actions"]):
        label = F.entry("actions", i)
        for k, name in enumerate(a["jobs"]):
            if name not in known:
                raise InvalidInput(f"{label}.jobs[{k}]: unknown job {F.show(name)}")
        if a["job_name_regexes"] and not a["jobs"]:
            if not any(search_all(p, job_names, f"{label}.job_name_regexes[{k}]", first=True)
                       for k, p in enumerate(a["job_name_regexes"])):
                raise InvalidInput(f"{label}.job_name_regexes: the patterns select no job")
        if (a["action_type"] == "schedule_nodes" and a["scheduler_type"] == "slurm"
                and a["scheduler"] not in slurm_names):
            raise InvalidInput(f"{label}.scheduler: unknown slurm scheduler "
                               f"{F.show(a['scheduler'])}")


def search_all(pattern: str, names: Sequence[str], where: str, *, first: bool = False
               ) -> list[str]:
    """The names in which ``pattern`` is found (an unanchored search, like Rust's
    ``Regex::is_match``); with ``first``, at most one. Python regexes backtrack (Rust's do
    not), so the whole search has a time budget of :data:`REGEX_SECONDS`, checked between
    names, and the first :data:`TIMED_NAMES` searches are each cut off at that budget (a
    per-call timeout costs ~20 µs, too much for every name of a 10^6-job spec; the names of a
    spec come from few templates, so a pathological pattern shows on the first ones). Raises
    InvalidInput for an invalid pattern or one that runs out of time."""
    try:
        search = regex.compile(pattern).search
    except regex.error as exc:
        raise InvalidInput(f"{where}: invalid regular expression {F.show(pattern)}: {exc}") from None
    deadline = time.monotonic() + REGEX_SECONDS
    out = []
    try:
        for i, n in enumerate(names):
            if search(n, timeout=REGEX_SECONDS) if i < TIMED_NAMES else search(n):
                out.append(n)
                if first:
                    break
            if not i % 1024 and time.monotonic() > deadline:
                raise TimeoutError
    except TimeoutError:
        raise InvalidInput(f"{where}: regular expression {F.show(pattern)} took more than "
                           f"{REGEX_SECONDS} s; simplify it") from None
    return out


def handler_names(config: dict[str, Any]) -> set[str]:
    """Names of the failure handlers in ``config``."""
    return {h["name"] for h in config.get("failure_handlers") or ()}
