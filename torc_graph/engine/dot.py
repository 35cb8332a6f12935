"""DOT (Graphviz) renderings of a workflow's dependency graphs (behavior doc §4.18).

The layout of the text follows torc v0.6.4 (``strict digraph``, one node line per vertex, one
edge line per edge labeled with the edge collection, the title last), with two changes:

* every id and label is a quoted, escaped DOT string, so any name (spaces, quotes, backslashes,
  newlines, unicode) yields valid DOT (the original left labels unquoted);
* job nodes are filled with a color for their status and carry the status in a tooltip; file
  and user-data nodes get their own shapes. These are plain attributes: the torc client's
  ``graphs plot`` renders the text with ``dot`` unchanged.
"""

from __future__ import annotations

from typing import Any

from torc_graph import model
from torc_graph.engine.common import require_workflow
from torc_graph.errors import InvalidInput
from torc_graph.store.base import Document, GraphStore

_C, _E = model.Collection, model.Edge

#: name -> (title, target collection or None, edges in output order)
GRAPHS: dict[str, tuple[str, model.Collection | None, tuple[model.Edge, ...]]] = {
    "job_job_dependencies": ("Job - Job Dependencies", None, (_E.BLOCKS,)),
    "job_file_dependencies": ("Job - File Dependencies", _C.FILES, (_E.PRODUCES, _E.NEEDS)),
    "job_user_data_dependencies": (
        "Job - User Data Dependencies",
        _C.USER_DATA,
        (_E.STORES, _E.CONSUMES),
    ),
}

#: Fill colors by job status (X11 color names Graphviz knows).
STATUS_COLORS: dict[str, str] = {
    "uninitialized": "white",
    "blocked": "lightgoldenrod1",
    "ready": "lightblue",
    "scheduled": "lightcyan",
    "submitted_pending": "lightskyblue",
    "submitted": "deepskyblue",
    "done": "palegreen",
    "canceled": "lightpink",
    "terminated": "salmon",
    "disabled": "gray80",
}
_UNKNOWN_STATUS_COLOR = "white"
_SHAPES = {_C.FILES: "note", _C.USER_DATA: "cylinder"}


def quote(text: Any) -> str:
    """``text`` as a double-quoted DOT string that Graphviz displays verbatim.

    Backslashes are doubled (Graphviz would otherwise read ``\\N``, ``\\l``... as escapes and a
    trailing backslash would swallow the closing quote), quotes are escaped, line breaks become
    the ``\\n`` escape, and other control characters (which DOT cannot carry) become spaces.
    """
    s = str(text)
    out = []
    for ch in s.replace("\r\n", "\n").replace("\r", "\n"):
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(" ")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _attrs(**attrs: Any) -> str:
    return "[" + ", ".join(f"{k}={quote(v)}" for k, v in attrs.items()) + "]"


def _label(doc: Document) -> str:
    name = doc.get("name")
    return name if isinstance(name, str) and name != "" else doc["_key"]


def get_dot_graph(store: GraphStore, workflow: str, name: str) -> dict[str, str]:
    """``{"graph": <DOT text>}`` for one of :data:`GRAPHS`.

    Raises InvalidInput (400) for an unknown graph name, NotFound for a missing workflow.
    """
    if name not in GRAPHS:
        raise InvalidInput(
            f"unknown graph name {name!r}; expected one of {', '.join(GRAPHS)}"
        )
    require_workflow(store, workflow)
    title, target, edges = GRAPHS[name]
    lines = [f"strict digraph {quote(name)} {{", 'node [label="\\N"];']

    for job in store.iter_find(_C.JOBS.value, workflow):
        status = job.get("status")
        lines.append(
            f"{quote(job['_id'])} "
            + _attrs(
                label=_label(job),
                style="filled",
                fillcolor=STATUS_COLORS.get(status, _UNKNOWN_STATUS_COLOR),
                tooltip=f"job {job['_key']}: {status}",
            )
        )

    hops = [(edge, store.neighbors(workflow, edge.value, "out")) for edge in edges]
    if target is not None:
        # Vertices of the target collection that some edge points to, each once, in first-seen
        # order (jobs are already listed above).
        seen: set[str] = set()
        for _edge, items in hops:
            for hop in items:
                v = hop.vertex
                if v is None or v["_id"] in seen or not v["_id"].startswith(target.value + "__"):
                    continue
                seen.add(v["_id"])
                lines.append(f"{quote(v['_id'])} " + _attrs(label=_label(v), shape=_SHAPES[target]))

    for edge, items in hops:
        for hop in items:
            e = hop.edge
            lines.append(f"{quote(e['_from'])} -> {quote(e['_to'])} " + _attrs(label=edge.value))

    lines.append('labelloc="t";')
    lines.append(f"label={quote(title)};")
    lines.append("}")
    return {"graph": "\n".join(lines)}
