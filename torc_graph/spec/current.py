"""Current torc (v0.10) specifications → the torc v0.6.4 specification the engine creates.

:func:`convert` is a pure function (spec format §0 steps 1-4, with the [REC] fixes):

1. strict field checks (:mod:`torc_graph.spec.fields`), errors naming entry and field;
2. parameter expansion of jobs and files (§4), set-based: each templated field is compiled
   once and rendered per combination, each value formatted once; copies of one template that
   share a name are merged (union of their lists, in order; differing scalars are an error);
3. ``depends_on_regexes`` and the other ``*_regexes`` resolved against every declared name
   (each pattern must add a name; one search per distinct pattern, exact patterns looked up);
4. ``${files.input.NAME}`` / ``${files.output.NAME}`` / ``${user_data.input.NAME}`` /
   ``${user_data.output.NAME}`` substituted in ``command`` and ``invocation_script``; the name
   is added to the job's list (the union with its explicit list), which makes the implicit
   dependencies at ``initialize_jobs``;
5. the result: ``depends_on`` → ``blocked_by``, ``scheduler: NAME`` →
   ``slurm_schedulers/NAME``, workflow-level settings, ``failure_handlers`` and ``actions``
   → ``config`` (docs/execution-model.md §2).

References, duplicates and cycles are then checked by the engine exactly as for a v0.6.4
specification (one copy of those checks). Raises InvalidInput.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import regex

from torc_graph import collector
from torc_graph.errors import InvalidInput
from torc_graph.spec import fields as F
from torc_graph.spec import handlers
from torc_graph.spec.handlers import search_all
from torc_graph.spec.parameters import Template, combinations, format_table, parse_values

#: Job fields substituted with parameter values (spec format §4.6), besides the lists.
_JOB_TEMPLATED = ("name", "command", "invocation_script", "resource_requirements", "scheduler")
_FILE_TEMPLATED = ("name", "path")
_PLACEHOLDER = re.compile(r"\$\{(files|user_data)\.(input|output)\.([^}]*)\}")
_SORT_METHODS = ("none", "gpus_runtime_memory", "gpus_memory_runtime")
_FORBIDDEN_SLURM_DEFAULTS = frozenset(
    {"partition", "nodes", "walltime", "time", "mem", "gres", "name", "job-name"})
_CONFIG_SCALARS = ("compute_node_expiration_buffer_seconds",
                   "compute_node_wait_for_new_jobs_seconds",
                   "compute_node_ignore_workflow_completion",
                   "compute_node_wait_for_healthy_database_minutes", "use_pending_failed")


def convert(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The v0.6.4 specification (torc_graph form) equivalent to current-torc ``spec``.

    Pure; raises InvalidInput naming the entry and field of the first problem.
    """
    with collector.paused():
        return _convert(spec)


def _convert(spec: Mapping[str, Any]) -> dict[str, Any]:
    top = F.check(spec, F.TOP, "specification")
    shared = _parse_parameters(top.get("parameters") or {}, "parameters")
    files = _expand_files(top.get("files") or [], shared)
    user_data = _user_data(top.get("user_data") or [])
    jobs, origin = _expand_jobs(top.get("jobs"), shared)
    names = {"depends_on": list(jobs), "files": [f["name"] for f in files],
             "user_data": [u["name"] for u in user_data]}
    paths = {f["name"]: f["path"] for f in files}
    data = {u["name"]: u.get("data") for u in user_data}
    slurm = [_slurm_scheduler(s, i) for i, s in enumerate(top.get("slurm_schedulers") or [])]
    rrs = [F.check(r, F.RESOURCE_REQUIREMENTS, F.entry("resource_requirements", i))
           for i, r in enumerate(top.get("resource_requirements") or [])]
    config = _config(top)
    resolver = _Resolver(names)
    resolver.sets.update({
        "resource_requirements": {r["name"] for r in rrs} | {"default"},
        "scheduler": {s["name"] for s in slurm},
        "failure_handler": {h["name"] for h in config.get("failure_handlers", ())}})
    out_jobs = [_finish_job(job, origin[name], resolver, paths, data)
                for name, job in jobs.items()]
    return {"name": top["name"], "user": top.get("user", ""),
            "description": top.get("description", ""), "files": files, "user_data": user_data,
            "resource_requirements": rrs, "schedulers": {"slurm_schedulers": slurm},
            "jobs": out_jobs, "config": config}


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


def _parse_parameters(params: Mapping[str, str], where: str) -> dict[str, list]:
    out = {}
    for name, raw in params.items():
        try:
            out[name] = parse_values(raw)
        except ValueError as exc:
            raise InvalidInput(f"{where}.{name}: {exc}") from None
    return out


def _parameters_of(item: Mapping[str, Any], shared: Mapping[str, list], where: str
                   ) -> dict[str, list] | None:
    """The parameters an item expands over (spec format §4.1), or None: not parameterized."""
    if "parameters" in item:
        return _parse_parameters(item["parameters"], f"{where}.parameters")
    wanted = [n for n in item.get("use_parameters") or () if n in shared]
    return {n: shared[n] for n in wanted} if wanted else None


def _expand(items: Sequence[Any], table: Mapping[str, tuple[str, bool]], kind: str,
            scalars: Sequence[str], lists: Sequence[str], shared: Mapping[str, list]
            ) -> Iterable[tuple[int, dict[str, Any]]]:
    """(template index, copy) for every copy of every item, in order. A copy is a new dict;
    its untemplated values are shared with the input (never modified)."""
    for i, raw in enumerate(items):
        where = F.entry(kind, i)
        item = F.check(raw, table, where)
        params = _parameters_of(item, shared, where)
        base = {k: v for k, v in item.items()
                if k not in ("parameters", "parameter_mode", "use_parameters")}
        if params is None:
            yield i, base
            continue
        names = list(params)
        templates = {f: Template(item[f], names) for f in scalars if f in item}
        templates = {f: t for f, t in templates.items() if t.constant is None}
        list_templates = {f: [Template(v, names) for v in item[f]] for f in lists if f in item}
        every = list(templates.values()) + [t for ts in list_templates.values() for t in ts]
        table_ = format_table(params, every)
        renderers = [(f, t.renderer(table_)) for f, t in templates.items()]
        list_renderers = [(f, [t.renderer(table_) for t in ts]) for f, ts in list_templates.items()]
        try:
            combos = combinations(params, item.get("parameter_mode") == "zip")
        except ValueError as exc:
            raise InvalidInput(f"{where}.parameters: {exc}") from None
        for combo in combos:
            copy = base.copy()
            for f, render in renderers:
                copy[f] = render(combo)
            for f, rs in list_renderers:
                copy[f] = [r(combo) for r in rs]
            yield i, copy


def _expand_jobs(items: Any, shared: Mapping[str, list]
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Expanded jobs by name, in order, and the template index of each name. Copies of one
    template with the same name merge into one job (union of list fields, in order); any other
    name collision is an error."""
    jobs: dict[str, dict[str, Any]] = {}
    origin: dict[str, int] = {}
    unions: dict[str, dict[str, dict[str, None]]] = {}  # name -> list field -> ordered set
    for i, job in _expand(items, F.JOB, "jobs", _JOB_TEMPLATED, F.JOB_LISTS, shared):
        name = job["name"]
        seen = jobs.get(name)
        if seen is None:
            jobs[name] = job
            origin[name] = i
            continue
        where = F.entry("jobs", i, name)
        if origin[name] != i:
            raise InvalidInput(f"{where}: duplicate job name; jobs[{origin[name]}] expands to the "
                               "same name (job names must be unique)")
        _merge(seen, job, unions.setdefault(name, {}), where)
    for name, fields in unions.items():
        jobs[name].update({key: list(names) for key, names in fields.items()})
    return jobs, origin


def _merge(into: Mapping[str, Any], other: Mapping[str, Any],
           union: dict[str, dict[str, None]], where: str) -> None:
    """Merge a same-name copy: its list fields join ``union`` (ordered sets, linear in the
    total number of names), its other fields must equal ``into``'s."""
    for key, value in other.items():
        if key in F.JOB_LISTS:
            acc = union.get(key)
            if acc is None:
                acc = union[key] = dict.fromkeys(into.get(key, ()))
            acc.update(dict.fromkeys(value))
        elif into.get(key) != value:
            raise InvalidInput(
                f"{where}.{key}: copies with the same name differ ({F.show(into.get(key))} vs "
                f"{F.show(value)}); use the parameter in the name or make the field equal")


def _expand_files(items: Any, shared: Mapping[str, list]) -> list[dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    origin: dict[str, int] = {}
    for i, f in _expand(items, F.FILE, "files", _FILE_TEMPLATED, (), shared):
        seen = files.get(f["name"])
        if seen is not None and (origin[f["name"]] != i or seen["path"] != f["path"]):
            raise InvalidInput(f"{F.entry('files', i, f['name'])}: duplicate file name; "
                               f"files[{origin[f['name']]}] has the same name")
        files.setdefault(f["name"], f)
        origin.setdefault(f["name"], i)
    return list(files.values())


def _user_data(items: Any) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(items):
        where = F.entry("user_data", i)
        u = F.check(raw, F.USER_DATA, where)
        if u["name"] in out:
            raise InvalidInput(f"{where}: duplicate user_data name {F.show(u['name'])}")
        data = u.get("data", {})
        if type(data) is not dict:
            raise InvalidInput(f"{where}.data: torc_graph stores user data as a JSON object "
                               f"(got {F.show(data)}); wrap the value, e.g. {{\"value\": ...}}")
        out[u["name"]] = {"name": u["name"], "data": data,
                          "is_ephemeral": u.get("is_ephemeral", False)}
    return list(out.values())


# ----------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------

#: job list field -> (kind of names it selects, target list)
_REGEX_TARGETS = {
    "depends_on_regexes": ("depends_on", "depends_on"),
    "input_file_regexes": ("files", "input_files"),
    "output_file_regexes": ("files", "output_files"),
    "input_user_data_regexes": ("user_data", "input_user_data"),
    "output_user_data_regexes": ("user_data", "output_user_data"),
}


class _Resolver:
    """Regex patterns resolved against every declared name of a kind, once per pattern."""

    def __init__(self, names: Mapping[str, list[str]]):
        self.names = names
        self.sets = {k: set(v) for k, v in names.items()}
        self.cache: dict[tuple[str, str], list[str]] = {}

    def matches(self, kind: str, pattern: str, where: str) -> list[str]:
        key = (kind, pattern)
        hit = self.cache.get(key)
        if hit is None:
            literal = pattern.removeprefix("^").removesuffix("$")
            if pattern.startswith("^") and pattern.endswith("$") and regex.escape(literal) == literal:
                hit = [literal] if literal in self.sets[kind] else []
            else:
                hit = search_all(pattern, self.names[kind], where)
            self.cache[key] = hit
        return hit


_TARGETS = {"depends_on": "blocked_by", "input_files": "input_files",
            "output_files": "output_files", "input_user_data": "input_user_data",
            "output_user_data": "output_user_data"}
#: Jobs with only these fields need no resolving (the fast path of :func:`_finish_job`).
_PLAIN = frozenset({"name", "command", "invocation_script", "resource_requirements",
                    "failure_handler", "cancel_on_blocking_job_failure", "supports_termination"})
_OPTIONAL = ("invocation_script", "resource_requirements", "failure_handler",
             "cancel_on_blocking_job_failure", "supports_termination")
_REFERENCES = {"depends_on": ("depends_on", "job"), "input_files": ("files", "file"),
               "output_files": ("files", "file"), "input_user_data": ("user_data", "user_data"),
               "output_user_data": ("user_data", "user_data")}


def _finish_job(job: dict[str, Any], index: int, resolver: _Resolver,
                paths: Mapping[str, str], data: Mapping[str, Any]) -> dict[str, Any]:
    """The v0.6.4 job of an expanded job: regexes resolved, templates substituted, names
    checked; empty lists are left out (validation fills them). Lists are copied before they
    change (the input spec is never modified); the error label is built only on error (this
    runs once per job of a 10^6-job sweep, so the common case takes the first return)."""
    if job.keys() <= _PLAIN and "${" not in job["command"] and \
            "${" not in job.get("invocation_script", ""):
        for field in ("resource_requirements", "failure_handler"):
            if field in job and job[field] not in resolver.sets[field]:
                break
        else:
            return job

    def where() -> str:
        return F.entry("jobs", index, job["name"])

    lists = {t: job[t] for t in _TARGETS if t in job}
    for field, (kind, target) in _REGEX_TARGETS.items():
        for k, pattern in enumerate(job.get(field, ())):
            names = lists[target] = list(lists.get(target, ()))
            current = set(names)
            new = [n for n in resolver.matches(kind, pattern, f"{where()}.{field}[{k}]")
                   if n not in current]
            if not new:
                raise InvalidInput(f"{where()}.{field}[{k}]: pattern {F.show(pattern)} did not "
                                   f"match any {kind.replace('depends_on', 'job')} not already listed")
            names.extend(new)
    out = {"name": job["name"], "command": job["command"]}
    for key in _OPTIONAL:
        if key in job:
            out[key] = job[key]
    for field in ("command", "invocation_script"):
        text = out.get(field)
        if text is not None and "${" in text:
            out[field] = _substitute(text, lambda f=field: f"{where()}.{f}", paths, data, lists)
    _check_names(job, lists, resolver.sets, where)
    if "scheduler" in job:
        out["scheduler"] = f"slurm_schedulers/{job['scheduler']}"
    for target, key in _TARGETS.items():
        names = lists.get(target)
        if names:
            out[key] = list(dict.fromkeys(names)) if len(names) > 1 else list(names)
    return out


def _check_names(job: Mapping[str, Any], lists: Mapping[str, list[str]],
                 known: Mapping[str, set[str]], where: Callable[[], str]) -> None:
    """Every name a job refers to exists (the message names the current-torc field)."""
    for field, names in lists.items():
        kind, what = _REFERENCES[field]
        names_known = known[kind]
        for name in names:
            if name not in names_known:
                raise InvalidInput(f"{where()}.{field}: unknown {what} {F.show(name)}")
    for field in ("resource_requirements", "scheduler", "failure_handler"):
        if field in job and job[field] not in known[field]:
            raise InvalidInput(f"{where()}.{field}: unknown {field.replace('_', ' ')} "
                               f"{F.show(job[field])}")


def _substitute(text: str, where: Callable[[], str], paths: Mapping[str, str],
                data: Mapping[str, Any], lists: dict[str, list[str]]) -> str:
    """Replace ``${files|user_data.input|output.NAME}``; add NAME to the job's list (a copy)."""

    def one(m: re.Match) -> str:
        kind, direction, name = m.groups()
        table = paths if kind == "files" else data
        if name not in table:
            what = "file" if kind == "files" else "user_data entry"
            raise InvalidInput(f"{where()}: {m.group(0)} names no declared {what} {F.show(name)}")
        target = f"{direction}_{kind}"
        lists[target] = [*lists.get(target, ()), name]
        if kind == "files":
            return paths[name]
        value = data[name]
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False) \
            if value else name

    return _PLACEHOLDER.sub(one, text)


# ----------------------------------------------------------------------------------------------
# Schedulers and workflow settings
# ----------------------------------------------------------------------------------------------


def _slurm_scheduler(raw: Any, i: int) -> dict[str, Any]:
    s = F.check(raw, F.SLURM_SCHEDULER, F.entry("slurm_schedulers", i))
    return {"nodes": 1, "walltime": "01:00:00", **s}


def _config(top: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {k: top[k] for k in _CONFIG_SCALARS if k in top}
    method = top.get("jobs_sort_method")
    if method is not None:
        if method not in _SORT_METHODS:
            raise InvalidInput(f"specification.jobs_sort_method: must be one of "
                               f"{', '.join(_SORT_METHODS)} (got {F.show(method)})")
        config["prepare_jobs_sort_method"] = method
    if "resource_monitor" in top:
        m = F.check(top["resource_monitor"], F.RESOURCE_MONITOR, "resource_monitor",
                    ignore_unknown=True)
        granularity = m.get("granularity", "summary")
        if granularity not in ("summary", "time_series"):
            raise InvalidInput("resource_monitor.granularity: must be \"summary\" or "
                               f"\"time_series\" (got {F.show(granularity)})")
        enabled = m.get("enabled", False)
        config["compute_node_resource_stats"] = {
            "cpu": enabled, "memory": enabled, "process": enabled,
            "interval": m.get("sample_interval_seconds", 5),
            "monitor_type": "aggregation" if granularity == "summary" else "periodic",
            "make_plots": m.get("generate_plots", False)}
    if "slurm_defaults" in top:
        defaults = {}
        for key, value in top["slurm_defaults"].items():
            if key.lower() in _FORBIDDEN_SLURM_DEFAULTS:
                raise InvalidInput(f"slurm_defaults.{key}: set it on the scheduler, not in "
                                   "slurm_defaults")
            if value is None:
                continue
            if type(value) not in (str, int, float, bool):
                raise InvalidInput(f"slurm_defaults.{key}: must be a string, number or boolean "
                                   f"(got {F.show(value)})")
            defaults[key] = value
        config["slurm_defaults"] = defaults
    if "failure_handlers" in top:
        config["failure_handlers"] = handlers.failure_handlers(top["failure_handlers"])
    if "actions" in top:
        config["actions"] = handlers.actions(top["actions"])
    return config
