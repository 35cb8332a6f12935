"""Action rows for workflow specifications and job specifications (behavior doc §4.21-§4.24).

``/workflow_specifications/example`` and ``/template`` are static routes, which Falcon matches
before the ``/workflow_specifications/{key}`` template. ``POST /workflow_specifications``
spools its body to a temporary file (never held in memory) and creates the workflow from it
incrementally (:mod:`torc_graph.engine.staging`).
"""

from __future__ import annotations

import falcon

from torc_graph import model
from torc_graph.api import media
from torc_graph.api.route import Action, Param
from torc_graph.engine import specifications as specs
from torc_graph.engine.staging import SpooledSpec


def spool(req: falcon.Request, limit: int) -> SpooledSpec:
    """The request body in a temporary file; ``load()`` parses it whole with the API's rules
    (the in-memory path's exact messages). The engine deletes the file when done."""
    path = media.spool_body(req, limit)

    def load():
        with open(path, "rb") as f:
            return media.parse_body(f.read())
    return SpooledSpec(path, load)


SPECS = "/workflow_specifications"
WF = "/workflows/{workflow}"

ACTIONS: list[Action] = [
    # Either dialect (torc v0.6.4 or current torc): the engine converts and validates.
    Action("POST", SPECS, specs.create_action, "add_workflow_specification",
           body="workflow_specification", raw_body=True, owner=True, reader=spool,
           query=(Param("async", bool, False),)),
    Action("GET", SPECS + "/example", specs.get_workflow_specification_example,
           "get_workflow_specification_example"),
    Action("GET", SPECS + "/template", specs.get_workflow_specification_template,
           "get_workflow_specification_template"),
    Action("GET", SPECS + "/{key}", specs.get_workflow_specification,
           "get_workflow_specification",
           keys={"key": model.GlobalCollection.WORKFLOWS.value}),
    Action("GET", WF + "/job_specifications", specs.list_job_specifications,
           "list_job_specifications", query=(Param("skip", float, 0), Param("limit", float, None))),
    Action("GET", WF + "/job_specifications/{key}", specs.get_job_specification,
           "get_job_specification", keys={"key": model.Collection.JOBS.value}),
]
