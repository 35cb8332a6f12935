"""``torc-graph jobs``: list, show, read logs of, and reset jobs.

This module defines the one ``jobs`` group; the runner's ``jobs run`` command is attached to it
(in ``torc_graph.cli.run``), so all job commands show up together in ``--help``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import click

from torc_graph.cli.errors import CliError
from torc_graph.cli.inspect import RESULT_COLUMNS
from torc_graph.cli.options import client_options, json_option, paging_options
from torc_graph.cli.outcomes import (FAILED, STATUS_CHOICES, display_status, latest_of,
                                     latest_results, results_of, with_outcomes)
from torc_graph.cli.output import (Column, emit_json, emit_table, render_record, render_table,
                                   section)
from torc_graph.cli.workflows import fetch_items
from torc_graph.client import Client, seg
from torc_graph.model import COMPLETE_STATUSES, JobStatus
from torc_graph.runner.process import stdio_paths

JOB_COLUMNS = (
    Column("KEY", "_key"),
    Column("NAME", "name"),
    Column("STATUS", "display_status"),
    Column("RC", "return_code"),
    Column("COMMAND", "command", wide=True),
)
JOB_FIELDS = ("_key", "_id", "name", "status", "command", "invocation_script",
              "cancel_on_blocking_job_failure", "supports_termination", "schedule_compute_nodes",
              "internal")
#: A job's own results: every attempt, with its cause (docs/execution-model.md §3).
ATTEMPT_COLUMNS = tuple(c for c in RESULT_COLUMNS if c.header not in ("JOB_KEY", "JOB")) + (
    Column("ATTEMPT", "attempt_id"), Column("CAUSE", "cause"))
SLURM_STEP_COLUMNS = tuple(Column(f.upper(), f) for f in (
    "run_id", "slurm_job_id", "step_id", "node", "state", "exit_code", "max_rss_bytes",
    "elapsed_seconds"))
RELATED_JOB_COLUMNS = (Column("KEY", "_key"), Column("NAME", "name"), Column("STATUS", "status"))
RELATED_FILE_COLUMNS = (Column("KEY", "_key"), Column("NAME", "name"),
                        Column("PATH", "path", wide=True))


@click.group()
def jobs() -> None:
    """Inspect, reset and run the jobs of a workflow.

    \b
    Example:
        torc-graph jobs list 12 --status ready
        torc-graph jobs show 12 345
    """


@jobs.command("list")
@click.argument("workflow")
@click.option("--status", type=click.Choice(STATUS_CHOICES),
              help="Only jobs in this status; `failed` = done with a non-zero return code.")
@click.option("--name", help="Only jobs with this name.")
@paging_options
@json_option
@client_options
def list_jobs(client: Client, as_json: bool, limit: int | None, skip: int, workflow: str,
              status: str | None, name: str | None) -> None:
    """List the jobs of a workflow in creation order, with the return code of each job's
    latest result. A done job whose latest result has a non-zero return code shows as
    `failed`.

    \b
    Example:
        torc-graph jobs list sweep
        torc-graph jobs list sweep --status failed
        torc-graph jobs list 12 --status done --limit 50 --skip 100
        torc-graph jobs list 12 --name postprocess --json
    """
    path = f"/workflows/{seg(workflow)}/jobs"
    if status == FAILED:
        results = latest_results(client, workflow)
        filters = {"status": JobStatus.DONE.value, **({"name": name} if name else {})}
        done = client.iter_items(path, **filters)
        failed = (j for j in done if display_status(j, results.get(j["_key"])) == FAILED)
        docs = list(itertools.islice(failed, skip, None if limit is None else skip + limit))
    else:
        docs = fetch_items(client, path, limit, skip, status=status, name=name)
    if as_json:
        emit_json(docs)
        return
    if status != FAILED:
        results = results_of(client, workflow, (d["_key"] for d in docs))
    emit_table(with_outcomes(docs, results), JOB_COLUMNS, False, empty="No jobs.")


@jobs.command("show")
@click.argument("workflow")
@click.argument("job")
@json_option
@client_options
def show(client: Client, as_json: bool, workflow: str, job: str) -> None:
    """Show one job with its relations: resource requirements, blocking jobs, jobs it blocks,
    input and output files, and its results.

    \b
    Example:
        torc-graph jobs show 12 345
        torc-graph jobs show 12 345 --json
    """
    details = job_details(client, workflow, job)
    if as_json:
        emit_json(details)
        return
    doc = details["job"]
    latest = latest_of(details["results"])
    status = display_status(doc, latest)
    shown = {**doc, "status": f"{FAILED} (done, return code {latest['return_code']})"
             if status == FAILED and latest else status}
    click.echo(render_record(shown, [f for f in JOB_FIELDS if f in doc]))
    click.echo(section("Resource requirements"))
    click.echo(render_record({k: v for k, v in details["resource_requirements"].items()
                              if not k.startswith("_") or k == "_key"}))
    for title, name, columns in (("Blocked by", "blocked_by", RELATED_JOB_COLUMNS),
                                 ("Blocks", "blocks", RELATED_JOB_COLUMNS),
                                 ("Input files", "input_files", RELATED_FILE_COLUMNS),
                                 ("Output files", "output_files", RELATED_FILE_COLUMNS)):
        click.echo(section(title))
        click.echo(render_table(details[name], columns) if details[name] else "(none)")
    click.echo(section("Results"))
    click.echo(render_table(details["results"], ATTEMPT_COLUMNS) if details["results"]
               else "(none)")
    slurm_rows = [{"run_id": r.get("run_id"), **r["slurm"]} for r in details["results"]
                  if r.get("slurm")]  # sacct figures of Slurm job steps (torc_graph.slurm)
    if slurm_rows:
        click.echo(section("Slurm job steps (sacct)"))
        click.echo(render_table(slurm_rows, SLURM_STEP_COLUMNS))


@jobs.command("logs")
@click.argument("workflow")
@click.argument("job")
@click.option("--run-id", type=click.IntRange(min=1),
              help="The run whose logs to print. Default: the job's latest run.")
@click.option("--stream", type=click.Choice(["stdout", "stderr", "both"]), default="both",
              show_default=True, help="Which captured output to print.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The runner's output directory. Default: the one the worker that ran the "
                   "job recorded in its compute node.")
@json_option
@client_options
def logs(client: Client, as_json: bool, workflow: str, job: str, run_id: int | None,
         stream: str, output_dir: Path | None) -> None:
    """Print the stdout and stderr a job's process wrote.

    The runner captures them as ``<output-dir>/job-stdio/<job key>_<run id>.o`` and ``.e``;
    the worker that ran the job recorded its output directory on the server, so the files are
    found from any directory (on a machine that sees that directory).

    \b
    Example:
        torc-graph jobs logs 12 345
        torc-graph jobs logs 12 345 --run-id 2 --stream stderr
    """
    doc = client.get_job(workflow, job)
    key = doc["_key"]
    runs = executions(client, workflow, key)
    if run_id is None:
        if not runs:
            raise CliError(f"job {key} has not run yet")
        run_id = max(runs)
    if output_dir is None:
        node = runs.get(run_id)
        output_dir_text = ((node or {}).get("scheduler") or {}).get("output_dir")
        if not output_dir_text:
            raise CliError(f"no record of where run {run_id} of job {key} wrote its output; "
                           "give --output-dir")
        output_dir = Path(output_dir_text)
    paths = dict(zip(("stdout", "stderr"), stdio_paths(output_dir, key, run_id)))
    wanted = ["stdout", "stderr"] if stream == "both" else [stream]
    missing = [str(paths[name]) for name in wanted if not paths[name].is_file()]
    if missing:
        raise CliError(f"log file(s) of job {key} run {run_id} not found: {', '.join(missing)}")
    texts = {name: paths[name].read_text(encoding="utf-8", errors="replace") for name in wanted}
    if as_json:
        emit_json({"job_key": key, "run_id": run_id,
                   **{f"{n}_path": str(paths[n]) for n in wanted}, **texts})
        return
    for name in wanted:
        if len(wanted) > 1:
            click.echo(f"==> {paths[name]} ({name}) <==")
        click.echo(texts[name], nl=not texts[name].endswith("\n") and bool(texts[name]))


@jobs.command("reset")
@click.argument("workflow")
@click.argument("job_keys", metavar="JOB...", nargs=-1, required=True)
@json_option
@client_options
def reset(client: Client, as_json: bool, workflow: str, job_keys: tuple[str, ...]) -> None:
    """Reset jobs to uninitialized so that the next run executes them again.

    A done, canceled or terminated job is reset through the server's status-change action,
    which also resets every job downstream of it; other jobs are simply set to uninitialized.
    Run the workflow again (or initialize its jobs) afterwards.

    \b
    Example:
        torc-graph jobs reset 12 345 346
    """
    run_id = int(client.get_status(workflow)["run_id"])
    done = []
    for key in job_keys:
        job = client.get_job(workflow, key)
        old = job.get("status")
        if old in COMPLETE_STATUSES:
            job = client.put(
                f"/workflows/{seg(workflow)}/jobs/{seg(job['_key'])}/manage_status_change/"
                f"{JobStatus.UNINITIALIZED.value}/{seg(job['_rev'])}/{run_id}"
            )
        elif old != JobStatus.UNINITIALIZED.value:
            # A generic PUT replaces `internal` when it is missing, so send the whole document.
            job = client.update_document(workflow, "jobs",
                                         {**job, "status": JobStatus.UNINITIALIZED.value})
        done.append({"_key": job["_key"], "name": job.get("name"), "old_status": old,
                     "status": JobStatus.UNINITIALIZED.value})
    if as_json:
        emit_json(done)
    else:
        for item in done:
            click.echo(f"Reset job {item['_key']} ({item['name']}): "
                       f"{item['old_status']} -> uninitialized")


# ------------------------------------------------------------------------------------------


def job_details(client: Client, workflow: str, job: str) -> dict[str, Any]:
    """The job document and its relations, each read with one graph query."""
    wf = seg(workflow)
    doc = client.get_job(workflow, job)
    key = doc["_key"]
    by_key = {"_key": key}
    rr = client.get(f"/workflows/{wf}/jobs/{seg(key)}/resource_requirements")

    def joined(direction: str, edge: str, side: str) -> list[dict[str, Any]]:
        page = client.post(f"/workflows/{wf}/join_by_{direction}_edge/jobs/{edge}", by_key)
        return [row[side] for row in page.get("items", [])]

    return {
        "job": doc,
        "resource_requirements": rr,
        "blocked_by": joined("inbound", "blocks", "from"),
        "blocks": joined("outbound", "blocks", "to"),
        "input_files": joined("outbound", "needs", "to"),
        "output_files": joined("outbound", "produces", "to"),
        "results": list(client.iter_items(f"/workflows/{wf}/results", job_key=key)),
    }


def executions(client: Client, workflow: str, key: str) -> dict[int, dict[str, Any]]:
    """run_id → the compute node that executed the job in that run (``executed`` edges)."""
    page = client.post(f"/workflows/{seg(workflow)}/join_by_inbound_edge/jobs/executed",
                       {"_key": key})
    runs: dict[int, dict[str, Any]] = {}
    for row in page.get("items", []):
        run = ((row.get("edge") or {}).get("data") or {}).get("run_id")
        if isinstance(run, int):
            runs[run] = row["from"]
    return runs



CHAIN_COLUMNS = (Column("KEY", "key"), Column("NAME", "name"), Column("STATUS", "status"),
                 Column("DEPTH", "depth"), Column("BLOCKS", lambda c: " ".join(c["blocks"]),
                                                  wide=True))
#: How the end of a blocker chain is described (``state`` of the explain answer).
STATE_TEXT = {"waiting": "can run: waits for a worker", "running": "running",
              "failed": "failed", "disabled": "disabled (never runs)",
              "uninitialized": "not initialized"}
#: Chain rows printed at most (the JSON has them all).
MAX_CHAIN_ROWS = 20


@jobs.command("why")
@click.argument("workflow")
@click.argument("job")
@json_option
@client_options
def why(client: Client, as_json: bool, workflow: str, job: str) -> None:
    """Explain why a job is not running (or what it is doing): its state, the chain of
    unfinished blockers up to the first ones that can run or have failed, missing input files
    or user data, resources no active compute node has, a scheduler without allocation, or a
    lease held by a dead compute node.

    \b
    Example:
        torc-graph jobs why diamond postprocess
        torc-graph jobs why 12 345 --json
    """
    answer = client.get(f"/workflows/{seg(workflow)}/jobs/{seg(job)}/explain")
    if as_json:
        emit_json(answer)
        return
    click.echo(render_explanation(answer))


def render_explanation(answer: dict[str, Any]) -> str:
    """The readable form of ``GET .../jobs/{key}/explain``: one bullet per reason, the blocker
    chain as a table and its ends with their own reasons."""
    head = answer["job"]
    lines = [f"Job {head['key']} ({head['name']}): {head['status']}"]
    for item in answer["reasons"]:
        lines.append(f"* [{item['reason']}] {item['message']}")
        details = item.get("details") or {}
        if item["reason"] != "blocked":
            continue
        chain = details.get("chain") or []
        lines.append(section("Unfinished blockers").replace("\n", "\n  "))
        lines.append("  " + render_table(chain[:MAX_CHAIN_ROWS], CHAIN_COLUMNS)
                     .replace("\n", "\n  "))
        if len(chain) > MAX_CHAIN_ROWS:
            lines.append(f"  ... and {len(chain) - MAX_CHAIN_ROWS} more (--json lists all)")
        lines.append(section("Where the chain ends").replace("\n", "\n  "))
        for end in details.get("ends") or []:
            state = STATE_TEXT.get(end["state"], end["state"])
            lines.append(f"  {end['key']} ({end['name']}): {end['status']}, {state}")
            lines.extend(f"    * [{r['reason']}] {r['message']}" for r in end.get("reasons", []))
    return "\n".join(lines)
