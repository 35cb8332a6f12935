"""Action rows for background tasks (:mod:`torc_graph.engine.tasks`)."""

from __future__ import annotations

from torc_graph.api.route import Action
from torc_graph.engine import tasks

WF = "/workflows/{workflow}"

ACTIONS: list[Action] = [
    Action("GET", WF + "/tasks", tasks.list_tasks, "list_tasks"),
    Action("GET", WF + "/tasks/{key}", tasks.get_task, "get_task"),
    Action("GET", "/tasks/{key}", tasks.get_any_task, "get_any_task"),
]
