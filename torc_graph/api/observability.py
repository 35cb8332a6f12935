"""Action rows for "why is my job not running?" and the critical path (issue 13 items 3, 4).

Both are torc_graph extensions (no torc v0.6.4 counterpart) and read only, so the reader role
may use them.
"""

from __future__ import annotations

from torc_graph import model
from torc_graph.api.route import Action
from torc_graph.engine import critical_path, explain

WF = "/workflows/{workflow}"

ACTIONS: list[Action] = [
    Action("GET", WF + "/jobs/{key}/explain", explain.explain, "explain_job",
           keys={"key": model.Collection.JOBS.value}),
    Action("GET", WF + "/critical_path", critical_path.critical_path, "get_critical_path"),
]
