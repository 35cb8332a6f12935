"""``torc-graph graph``: a workflow's dependency graph as DOT, SVG or PNG.

The DOT text comes from the server (``GET /workflows/{wf}/dot_graph/{name}``); the server fills job
nodes with a color for their status (``torc_graph.engine.dot``); ``--kind all`` merges the three
graphs into one; SVG and PNG are rendered by Graphviz's ``dot`` executable.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click

from torc_graph.cli.errors import CliError
from torc_graph.cli.options import client_options
from torc_graph.client import Client, seg

#: ``--kind`` → the server's graph name.
GRAPH_NAMES = {
    "jobs": "job_job_dependencies",
    "files": "job_file_dependencies",
    "user-data": "job_user_data_dependencies",
}
ALL_TITLE = "Job - File - User Data Dependencies"

_GRAPH_ATTR = re.compile(r"^\s*(label|labelloc)\s*=")
_NODE_DEFAULTS = re.compile(r"^\s*node\s*\[")


@click.command("graph")
@click.argument("workflow")
@click.option("--kind", type=click.Choice(["jobs", "files", "user-data", "all"]),
              default="jobs", show_default=True,
              help="Which dependencies: job→job, job→file, job→user data, or all three.")
@click.option("--format", "fmt", type=click.Choice(["dot", "svg", "png"]), default="dot",
              show_default=True, help="Output format; svg and png need Graphviz's `dot`.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write to this file instead of stdout.")
@client_options
def graph(client: Client, workflow: str, kind: str, fmt: str, output: Path | None) -> None:
    """Export a workflow's dependency graph (job nodes colored by status).

    \b
    Example:
        torc-graph graph 12 > jobs.dot
        torc-graph graph 12 --kind all --format svg -o workflow.svg
        torc-graph graph 12 --kind files --format png -o files.png
    """
    wf = seg(workflow)
    names = list(GRAPH_NAMES.values()) if kind == "all" else [GRAPH_NAMES[kind]]
    texts = [client.get(f"/workflows/{wf}/dot_graph/{name}")["graph"] for name in names]
    text = texts[0] if len(texts) == 1 else merge_dot(texts, "all", ALL_TITLE)
    data = text.encode("utf-8") if fmt == "dot" else render(text, fmt)
    if output is not None:
        output.write_bytes(data)
        click.echo(f"Wrote {output}", err=True)
    elif fmt == "dot":
        click.echo(text, nl=not text.endswith("\n"))
    else:
        click.echo(data, nl=False)  # bytes go to the binary stdout


def dot_body(text: str) -> list[str]:
    """The statements of a DOT graph, one per line, without the graph-level label attributes
    and node defaults (the merged graph sets its own)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise CliError("the server returned a graph that is not DOT text", 5)
    lines = []
    for line in text[start + 1:end].splitlines():
        if not line.strip() or _GRAPH_ATTR.match(line) or _NODE_DEFAULTS.match(line):
            continue
        lines.append(line.strip())
    return lines


def merge_dot(texts: list[str], name: str, title: str) -> str:
    """One strict digraph holding every node and edge of ``texts`` (duplicates once)."""
    seen: set[str] = set()
    body: list[str] = []
    for text in texts:
        for line in dot_body(text):
            if line not in seen:
                seen.add(line)
                body.append(line)
    return "\n".join([f'strict digraph "{name}" {{', 'node [label="\\N"];', *body,
                      'labelloc="t";', f'label="{title}";', "}"]) + "\n"


def render(text: str, fmt: str) -> bytes:
    """Render DOT text with Graphviz. Raises CliError (exit 1) if `dot` is missing or fails."""
    exe = shutil.which("dot")
    if exe is None:
        raise CliError("Graphviz's `dot` executable was not found on PATH: install Graphviz "
                       "(e.g. `apt-get install graphviz`) or use --format dot")
    proc = subprocess.run([exe, f"-T{fmt}"], input=text.encode("utf-8"), capture_output=True,
                          timeout=600)
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CliError(f"dot failed (exit {proc.returncode}): {reason[0] if reason else ''}")
    return proc.stdout
