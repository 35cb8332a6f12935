"""Action rows for the graph queries: downstream jobs, joins, per-job relation helpers, events
helpers, DOT graphs and auto-tune (behavior doc §4.11, §4.12, §4.15-§4.18, §4.20).

Paths, methods, query parameters and defaults follow torc v0.6.4's OpenAPI document (its
``/workflows/{key}/...`` paths are served as ``/workflows/{workflow}/...``). ``skip`` and
``limit`` are declared as numbers there, so ``10.0`` is accepted; the engine rejects fractions.
Bodies torc ignored (auto-tune, the resource-requirements PUT) are not read.
"""

from __future__ import annotations

from torc_graph import model
from torc_graph.api.route import Action, Param
from torc_graph.engine import autotune, dot, events, queries

WF = "/workflows/{workflow}"
JOB = WF + "/jobs/{key}"
_JOBS = model.Collection.JOBS.value
_JOB_KEY = {"key": _JOBS}
PAGE = (Param("skip", float, 0), Param("limit", float, None))

ACTIONS: list[Action] = [
    # Jobs, files and results (§4.20).
    Action("GET", WF + "/downstream_jobs/{key}", queries.list_downstream_jobs,
           "list_downstream_jobs", query=PAGE, keys=_JOB_KEY),
    Action("GET", WF + "/jobs/find_by_status/{status}", queries.list_jobs_by_status,
           "list_jobs_by_status", query=PAGE),
    Action("GET", WF + "/jobs/find_by_needs_file/{key}", queries.list_jobs_by_needs_file,
           "list_jobs_by_needs_file", query=PAGE,
           keys={"key": model.Collection.FILES.value}),
    Action("GET", WF + "/files/produced_by_job/{key}", queries.list_files_produced_by_job,
           "list_files_produced_by_job", query=PAGE, keys=_JOB_KEY),
    Action("GET", WF + "/results/find_by_job/{key}", queries.get_latest_job_result,
           "get_latest_job_result", keys=_JOB_KEY),
    # Resource requirements, stats and user data of a job (§4.11, §4.12).
    Action("GET", JOB + "/resource_requirements", queries.get_job_resource_requirements,
           "get_job_resource_requirements", keys=_JOB_KEY),
    Action("PUT", JOB + "/resource_requirements/{rr_key}",
           queries.modify_job_resource_requirements, "modify_job_resource_requirements",
           keys={"key": _JOBS, "rr_key": model.Collection.RESOURCE_REQUIREMENTS.value}),
    Action("GET", JOB + "/process_stats", queries.get_process_stats_for_job,
           "get_process_stats_for_job", keys=_JOB_KEY),
    Action("POST", JOB + "/user_data", queries.add_job_user_data, "add_job_user_data",
           keys=_JOB_KEY, body="user_data"),
    Action("GET", JOB + "/user_data_stores", queries.list_job_user_data_stores,
           "list_job_user_data_stores", keys=_JOB_KEY),
    Action("GET", JOB + "/user_data_consumes", queries.list_job_user_data_consumes,
           "list_job_user_data_consumes", keys=_JOB_KEY),
    # Joins (§4.16). collection_key/collection_name are declared by torc but unused: ignored.
    Action("POST", WF + "/join_by_outbound_edge/{collection}/{edge}",
           queries.join_by_outbound_edge, "join_collections_by_outbound_edge", query=PAGE,
           body="join_filters"),
    Action("POST", WF + "/join_by_inbound_edge/{collection}/{edge}",
           queries.join_by_inbound_edge, "join_collections_by_inbound_edge", query=PAGE,
           body="join_filters"),
    # Events (§4.17).
    Action("GET", WF + "/latest_event_timestamp", events.get_latest_event_timestamp,
           "get_latest_event_timestamp"),
    Action("GET", WF + "/events_after_timestamp/{timestamp}", events.get_events_after_timestamp,
           "get_events_after_timestamp",
           query=(Param("category", str, None),) + PAGE,
           path_types={"timestamp": float}),
    # DOT graphs (§4.18); torc_graph extensions: the graph name `all`, `?format=mermaid`.
    Action("GET", WF + "/dot_graph/{name}", dot.get_dot_graph, "get_dot_graph",
           query=(Param("format", str, "dot"),)),
    # Auto-tune (§4.15).
    Action("POST", WF + "/auto_tune_resource_requirements",
           autotune.auto_tune_resource_requirements, "auto_tune_resource_requirements"),
    Action("POST", WF + "/process_auto_tune_resource_requirements_results",
           autotune.process_auto_tune_resource_requirements_results,
           "process_auto_tune_resource_requirements_results"),
]
