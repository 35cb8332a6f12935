"""Action rows for the job lifecycle: initialization, claims, start/complete, status changes
and the workflow-level status endpoints (behavior doc §4.1–§4.10, §4.13, §4.14).

Paths, methods, query parameters and defaults follow torc v0.6.4's OpenAPI document. Bodies
that torc ignored (``initialize_jobs``, ``cancel``, ...) are not read. The engine functions take
the path and query parameters under their wire names, so most rows point at them directly.
"""

from __future__ import annotations

from typing import Any

from torc_graph import model
from torc_graph.api.route import Action, Param
from torc_graph.engine import claims, initialize, lifecycle
from torc_graph.store.base import GraphStore

WF = "/workflows/{workflow}"
JOB = WF + "/jobs/{key}"
_JOB_KEYS = {"key": model.Collection.JOBS.value}
_NODE_KEYS = {**_JOB_KEYS, "compute_node_key": model.Collection.COMPUTE_NODES.value}
_RUN_ID = {"run_id": int}


def _prepare_jobs_for_submission(store: GraphStore, workflow: str, sort_method: str,
                                 limit: float, body: dict[str, Any]) -> Any:
    return claims.prepare_jobs_for_submission(
        store, workflow, body, sort_method=sort_method, limit=limit
    )


def _complete_job(store: GraphStore, workflow: str, key: str, status: str, rev: str,
                  run_id: int, compute_node_key: str, body: dict[str, Any]) -> Any:
    return lifecycle.complete_job(
        store, workflow, key, status, rev, run_id, compute_node_key, body
    )


ACTIONS: list[Action] = [
    Action("POST", WF + "/initialize_jobs", initialize.initialize_jobs_action, "initialize_jobs",
           query=(Param("only_uninitialized", bool, False),
                  Param("clear_ephemeral_user_data", bool, True),
                  Param("async", bool, False))),
    Action("POST", WF + "/process_changed_job_inputs", initialize.process_changed_job_inputs,
           "process_changed_job_inputs", query=(Param("dry_run", bool, False),)),
    Action("GET", WF + "/missing_user_data", initialize.missing_user_data,
           "list_missing_user_data"),
    Action("GET", WF + "/required_existing_files", initialize.required_existing_files,
           "list_required_existing_files"),
    Action("POST", WF + "/prepare_jobs_for_submission", _prepare_jobs_for_submission,
           "prepare_jobs_for_submission",
           query=(Param("sort_method", str, "gpus_runtime_memory"),
                  Param("limit", float, float(model.MAX_TRANSFER_RECORDS))),
           body="compute_node_resources"),
    Action("POST", WF + "/prepare_next_jobs_for_submission",
           claims.prepare_next_jobs_for_submission, "prepare_next_jobs_for_submission",
           query=(Param("limit", float, 1.0),)),
    Action("POST", WF + "/prepare_jobs_for_scheduling", claims.prepare_jobs_for_scheduling,
           "prepare_jobs_for_scheduling"),
    Action("GET", WF + "/ready_job_requirements", claims.ready_job_requirements,
           "get_ready_job_requirements", query=(Param("scheduler_config_id", str, None),)),
    Action("PUT", JOB + "/start_job/{rev}/{run_id}/{compute_node_key}", lifecycle.start_job,
           "start_job", path_types=_RUN_ID, keys=_NODE_KEYS),
    Action("POST", JOB + "/complete_job/{status}/{rev}/{run_id}/{compute_node_key}",
           _complete_job, "complete_job", path_types=_RUN_ID, keys=_NODE_KEYS, body="result"),
    Action("PUT", JOB + "/manage_status_change/{status}/{rev}/{run_id}",
           lifecycle.manage_status_change, "manage_status_change", path_types=_RUN_ID,
           keys=_JOB_KEYS),
    Action("POST", WF + "/reset_status", lifecycle.reset_status, "reset_workflow_status"),
    Action("POST", WF + "/reset_job_status", lifecycle.reset_job_status, "reset_job_status",
           query=(Param("failed_only", bool, False),)),
    Action("PUT", WF + "/cancel", lifecycle.cancel, "cancel_workflow"),
    Action("GET", WF + "/is_complete", lifecycle.is_complete, "is_workflow_complete"),
]
