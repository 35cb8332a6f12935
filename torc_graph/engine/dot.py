"""Renderings of a workflow's dependency graphs: DOT (Graphviz, behavior doc §4.18) and Mermaid.

The layout of the DOT text follows torc v0.6.4 (``strict digraph``, one node line per vertex, one
edge line per edge labeled with the edge collection, the title last), with these changes:

* every id and label is a quoted, escaped DOT string, so any name (spaces, quotes, backslashes,
  newlines, unicode) yields valid DOT (the original left labels unquoted);
* job nodes are filled with a color for their status — ``failed`` (done with a non-zero return
  code in its latest result, docs/execution-model.md §1) in red — and carry it in a tooltip;
  file and user-data nodes get their own shapes;
* edges point in the direction data flows: blocker → blocked, job → file it produces → job that
  needs it, job → user data it stores → job that consumes it (the ``needs`` / ``consumes``
  edges are stored job → input and drawn reversed);
* nodes come in a stable order (jobs, then files, then user data, each by key) and edges too;
* the title names the workflow, and under it a legend shows the colors of the statuses present;
* the extra graph name ``all`` draws the three graphs as one.

These are plain DOT attributes: the torc client's ``graphs plot`` renders the text unchanged.
"""

from __future__ import annotations

import html
from typing import Any

from torc_graph import model
from torc_graph.engine.common import require_workflow
from torc_graph.errors import InvalidInput
from torc_graph.store.base import GraphStore
from torc_graph.store.records import Document

_C, _E = model.Collection, model.Edge

#: name -> (title, target collections, edges in output order)
GRAPHS: dict[str, tuple[str, tuple[model.Collection, ...], tuple[model.Edge, ...]]] = {
    "job_job_dependencies": ("Job - Job Dependencies", (), (_E.BLOCKS,)),
    "job_file_dependencies": ("Job - File Dependencies", (_C.FILES,), (_E.PRODUCES, _E.NEEDS)),
    "job_user_data_dependencies": (
        "Job - User Data Dependencies",
        (_C.USER_DATA,),
        (_E.STORES, _E.CONSUMES),
    ),
    "all": (
        "Job - File - User Data Dependencies",
        (_C.FILES, _C.USER_DATA),
        (_E.BLOCKS, _E.PRODUCES, _E.NEEDS, _E.STORES, _E.CONSUMES),
    ),
}
FORMATS = ("dot", "mermaid")

#: Edges stored from a job to its input: drawn the other way, in the direction data flows.
_REVERSED = frozenset({_E.NEEDS, _E.CONSUMES})

#: The derived display state of a done job whose latest result has a non-zero return code.
FAILED = "failed"

#: Fill colors by job status (X11 color names Graphviz knows), in legend order.
STATUS_COLORS: dict[str, str] = {
    "uninitialized": "white",
    "blocked": "lightgoldenrod1",
    "ready": "lightblue",
    "scheduled": "lightcyan",
    "submitted_pending": "lightskyblue",
    "submitted": "deepskyblue",
    "done": "palegreen",
    FAILED: "red",
    "canceled": "lightpink",
    "terminated": "salmon",
    "disabled": "gray80",
}
#: The same colors as hex for Mermaid (which does not know X11 names).
_HEX = {
    "white": "#ffffff", "lightgoldenrod1": "#ffec8b", "lightblue": "#add8e6",
    "lightcyan": "#e0ffff", "lightskyblue": "#87cefa", "deepskyblue": "#00bfff",
    "palegreen": "#98fb98", "red": "#ff0000", "lightpink": "#ffb6c1", "salmon": "#fa8072",
    "gray80": "#cccccc",
}
_UNKNOWN_STATUS_COLOR = "white"
_SHAPES = {_C.FILES: "note", _C.USER_DATA: "cylinder"}
_MERMAID_SHAPES = {_C.FILES: ('[/"', '"/]'), _C.USER_DATA: ('[("', '")]'), _C.JOBS: ('["', '"]')}


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


def _printable(text: str) -> str:
    return "".join(" " if ord(c) < 0x20 or c == "\x7f" else c for c in text)


def _attrs(**attrs: Any) -> str:
    return "[" + ", ".join(f"{k}={quote(v)}" for k, v in attrs.items()) + "]"


def _label(doc: Document) -> str:
    name = doc.get("name")
    return name if isinstance(name, str) and name != "" else doc["_key"]


def _by_key(doc: Document) -> tuple[int, str]:
    key = doc["_key"]
    return (int(key), key) if key.isdigit() else (0, key)


def latest_return_codes(store: GraphStore, workflow: str) -> dict[str, int]:
    """job key → the return code of its latest result (highest run_id, then the last stored)."""
    latest: dict[str, tuple[int, tuple[int, str], Any]] = {}
    for r in store.iter_find(_C.RESULTS.value, workflow):
        rank = (r.get("run_id") or 0, _by_key(r))
        prev = latest.get(r.get("job_key"))
        if prev is None or rank >= prev[:2]:
            latest[r.get("job_key")] = (*rank, r.get("return_code"))
    return {k: v[2] for k, v in latest.items() if isinstance(v[2], int)}


def display_status(job: Document, return_codes: dict[str, int]) -> str:
    """The job's status for display: ``failed`` for a done job whose latest result failed."""
    status = job.get("status")
    if status == "done" and return_codes.get(job["_key"], 0) != 0:
        return FAILED
    return str(status)


def _collect(store: GraphStore, workflow: str, name: str) -> dict[str, Any]:
    """The graph as data: title, job/other vertices and data-flow edges, all in stable order."""
    title, targets, edges = GRAPHS[name]
    wf_doc = store.get(model.GlobalCollection.WORKFLOWS.value, None, workflow)
    wf_name = wf_doc.get("name")
    heading = f"{wf_name} (workflow {workflow})" if wf_name else f"workflow {workflow}"
    codes = latest_return_codes(store, workflow)
    jobs = sorted(store.iter_find(_C.JOBS.value, workflow), key=_by_key)
    vertices: dict[str, tuple[model.Collection, Document]] = {}
    arrows = []
    for edge in edges:
        for hop in store.neighbors(workflow, edge.value, "out"):
            e, v = hop.edge, hop.vertex
            for target in targets:
                if v is not None and v["_id"].startswith(target.value + "__"):
                    vertices.setdefault(v["_id"], (target, v))
            src, dst = (e["_to"], e["_from"]) if edge in _REVERSED else (e["_from"], e["_to"])
            arrows.append((edge, src, dst))
    order = {c: i for i, c in enumerate(targets)}
    others = sorted(vertices.values(), key=lambda cv: (order[cv[0]], _by_key(cv[1])))
    rank = {j["_id"]: (0, _by_key(j)) for j in jobs}
    rank.update({d["_id"]: (1 + order[c], _by_key(d)) for c, d in others})
    arrows.sort(key=lambda a: (rank.get(a[1], (9, (0, a[1]))), rank.get(a[2], (9, (0, a[2])))))
    statuses = [display_status(j, codes) for j in jobs]
    return {"title": f"{heading}: {title}", "jobs": list(zip(jobs, statuses)),
            "others": others, "edges": arrows}


def _legend(statuses: list[str]) -> list[str]:
    present = set(statuses)
    return [s for s in STATUS_COLORS if s in present] + sorted(present - set(STATUS_COLORS))


def _dot(name: str, g: dict[str, Any]) -> str:
    lines = [f"strict digraph {quote(name)} {{", 'node [label="\\N"];']
    for job, status in g["jobs"]:
        lines.append(f"{quote(job['_id'])} " + _attrs(
            label=_label(job), style="filled",
            fillcolor=STATUS_COLORS.get(status, _UNKNOWN_STATUS_COLOR),
            tooltip=f"job {job['_key']}: {status}"))
    for target, doc in g["others"]:
        lines.append(f"{quote(doc['_id'])} " + _attrs(label=_label(doc), shape=_SHAPES[target]))
    for edge, src, dst in g["edges"]:
        lines.append(f"{quote(src)} -> {quote(dst)} " + _attrs(label=edge.value))
    # The title and, under it, the legend: one HTML-like label (escaped), so that the legend
    # adds no nodes to the graph.
    cells = "".join(
        f'<TD BGCOLOR="{STATUS_COLORS.get(s, _UNKNOWN_STATUS_COLOR)}">{html.escape(s)}</TD>'
        for s in _legend([s for _, s in g["jobs"]]))
    title = html.escape(_printable(g["title"]), quote=True)
    legend = f'<TR><TD BORDER="0">{title}</TD></TR>'
    if cells:
        legend += (f'<TR><TD BORDER="0"><TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0">'
                   f"<TR>{cells}</TR></TABLE></TD></TR>")
    lines.append('labelloc="t";')
    lines.append(f'label=<<TABLE BORDER="0" CELLSPACING="2">{legend}</TABLE>>;')
    lines.append("}")
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    """A label inside Mermaid's double quotes: entity codes for what would end or break it."""
    text = _printable(str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\n", " "))
    for ch, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(ch, code)
    return text


def _mermaid(g: dict[str, Any]) -> str:
    ids: dict[str, str] = {}

    def node_id(doc_id: str) -> str:
        return ids.setdefault(doc_id, f"n{len(ids)}")

    lines = ["---", f"title: {_mermaid_text(g['title'])}", "---", "flowchart TD"]
    for job, status in g["jobs"]:
        opening, closing = _MERMAID_SHAPES[_C.JOBS]
        lines.append(f"  {node_id(job['_id'])}{opening}{_mermaid_text(_label(job))}{closing}"
                     f":::{_css(status)}")
    for target, doc in g["others"]:
        opening, closing = _MERMAID_SHAPES[target]
        lines.append(f"  {node_id(doc['_id'])}{opening}{_mermaid_text(_label(doc))}{closing}")
    for edge, src, dst in g["edges"]:
        lines.append(f"  {node_id(src)} -->|{edge.value}| {node_id(dst)}")
    legend = _legend([s for _, s in g["jobs"]])
    if legend:
        lines.append("  subgraph legend [Legend]")
        lines.extend(f'    legend_{_css(s)}["{_mermaid_text(s)}"]:::{_css(s)}' for s in legend)
        lines.append("  end")
    for s in legend:
        color = _HEX.get(STATUS_COLORS.get(s, _UNKNOWN_STATUS_COLOR), "#ffffff")
        lines.append(f"  classDef {_css(s)} fill:{color},stroke:#333")
    return "\n".join(lines) + "\n"


def _css(status: str) -> str:
    """A status as a Mermaid class name (letters, digits and underscores only)."""
    return "s_" + "".join(c if c.isalnum() else "_" for c in status)


def get_dot_graph(store: GraphStore, workflow: str, name: str,
                  format: str = "dot") -> dict[str, str]:  # noqa: A002 - the query parameter
    """``{"graph": <text>}`` for one of :data:`GRAPHS`, as DOT or (``format=mermaid``) Mermaid.

    Raises InvalidInput (400) for an unknown graph name or format, NotFound for a missing
    workflow. Reads only.
    """
    if name not in GRAPHS:
        raise InvalidInput(
            f"unknown graph name {name!r}; expected one of {', '.join(GRAPHS)}"
        )
    if format not in FORMATS:
        raise InvalidInput(f"unknown graph format {format!r}; expected one of "
                           f"{', '.join(FORMATS)}")
    require_workflow(store, workflow)
    g = _collect(store, workflow, name)
    return {"graph": _dot(name, g) if format == "dot" else _mermaid(g)}
