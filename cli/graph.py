"""``torc-graph graph``: a workflow's dependency graph as DOT, Mermaid, SVG or PNG.

The text comes from the server (``GET /workflows/{wf}/dot_graph/{name}``, ``?format=mermaid``):
job nodes colored by status (failed jobs red), a legend, arrows in the direction data flows
(``torc_graph.engine.dot``). SVG and PNG are rendered by Graphviz's ``dot`` executable.
"""

from __future__ import annotations

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
    "all": "all",
}


@click.command("graph")
@click.argument("workflow")
@click.option("--kind", type=click.Choice(list(GRAPH_NAMES)),
              default="jobs", show_default=True,
              help="Which dependencies: job→job, job→file, job→user data, or all three.")
@click.option("--format", "fmt", type=click.Choice(["dot", "mermaid", "svg", "png"]),
              default="dot", show_default=True,
              help="Output format: DOT text, Mermaid text (for Markdown, GitHub), or an image "
                   "(svg, png: need Graphviz's `dot`).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write to this file instead of stdout.")
@client_options
def graph(client: Client, workflow: str, kind: str, fmt: str, output: Path | None) -> None:
    """Export a workflow's dependency graph.

    Job nodes are colored by status (failed jobs red) with a legend under the title; arrows
    follow the data: producer → file → consumer, blocker → blocked job.

    \b
    Example:
        torc-graph graph diamond > jobs.dot
        torc-graph graph diamond --kind all --format svg -o workflow.svg
        torc-graph graph 12 --kind files --format mermaid -o files.mmd
    """
    text = client.get(f"/workflows/{seg(workflow)}/dot_graph/{GRAPH_NAMES[kind]}",
                      format="mermaid" if fmt == "mermaid" else "dot")["graph"]
    data = text.encode("utf-8") if fmt in ("dot", "mermaid") else render(text, fmt)
    if output is not None:
        output.write_bytes(data)
        click.echo(f"Wrote {output}", err=True)
    elif fmt in ("dot", "mermaid"):
        click.echo(text, nl=not text.endswith("\n"))
    else:
        click.echo(data, nl=False)  # bytes go to the binary stdout


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
