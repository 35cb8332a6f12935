"""Action rows for torc_graph's batched execution API (docs/execution-model.md §4):
``claim_jobs``, ``complete_jobs``, ``release_jobs`` and the compute node ``heartbeat``.

These are torc_graph's own endpoints (not in torc v0.6.4's OpenAPI document); bodies are
validated against ``schemas/claim_jobs.json``, ``complete_jobs.json``, ``release_jobs.json`` and
``heartbeat.json``.
"""

from __future__ import annotations

from torc_graph import model
from torc_graph.api.route import Action
from torc_graph.engine import execution

WF = "/workflows/{workflow}"

ACTIONS: list[Action] = [
    Action("POST", WF + "/claim_jobs", execution.claim_jobs, "claim_jobs", body="claim_jobs"),
    Action("POST", WF + "/complete_jobs", execution.complete_jobs, "complete_jobs",
           body="complete_jobs"),
    Action("POST", WF + "/release_jobs", execution.release_jobs, "release_jobs",
           body="release_jobs"),
    Action("POST", WF + "/compute_nodes/{key}/heartbeat", execution.heartbeat, "heartbeat",
           keys={"key": model.Collection.COMPUTE_NODES.value}, body="heartbeat",
           body_required=False),
]
