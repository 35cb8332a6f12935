"""``torc-graph workflows``: list, inspect, create, reset, cancel and delete workflows."""

from __future__ import annotations

import getpass
import itertools
import sys
from pathlib import Path
from typing import Any

import click

from torc_graph.cli.options import client_options, json_option, paging_options
from torc_graph.cli.outcomes import count_failed
from torc_graph.cli.plan import create_from_spec, read_spec, spec_digest
from torc_graph.cli.output import (Column, emit_json, emit_table, render_record, render_table,
                                   section)
from torc_graph.cli.tasks import TaskLine
from torc_graph.client import Client, seg
from torc_graph.model import FINISHED_STATUSES, MAX_TRANSFER_RECORDS, JobStatus

WORKFLOW_COLUMNS = (
    Column("KEY", "_key"),
    Column("NAME", "name"),
    Column("USER", "user"),
    Column("DESCRIPTION", "description", wide=True),
    Column("ARCHIVED", "is_archived"),
    Column("CREATED", "timestamp"),
)
WORKFLOW_FIELDS = ("_key", "name", "user", "description", "is_archived", "timestamp")


@click.group()
def workflows() -> None:
    """Create, inspect and manage workflows.

    \b
    Example:
        torc-graph workflows create workflow.yaml
        torc-graph workflows list
        torc-graph workflows status 12
    """


@workflows.command("list")
@click.option("--user", help="Only workflows of this user.")
@click.option("--name", help="Only workflows with this name.")
@click.option("--archived/--not-archived", default=None,
              help="Only archived (or only non-archived) workflows. Default: both.")
@paging_options
@json_option
@client_options
def list_workflows(client: Client, as_json: bool, limit: int | None, skip: int,
                   user: str | None, name: str | None, archived: bool | None) -> None:
    """List workflows, oldest first.

    \b
    Example:
        torc-graph workflows list --user alice --limit 20
        torc-graph workflows list --json
    """
    docs = fetch_items(client, "/workflows", limit, skip, user=user, name=name,
                       is_archived=archived)
    emit_table(docs, WORKFLOW_COLUMNS, as_json, empty="No workflows.")


@workflows.command("show")
@click.argument("workflow")
@json_option
@client_options
def show(client: Client, as_json: bool, workflow: str) -> None:
    """Show a workflow, its configuration and the number of jobs in each status.

    \b
    Example:
        torc-graph workflows show 12
        torc-graph workflows show 12 --json | jq .config
    """
    doc = client.get_workflow(workflow)
    config = client.get_config(workflow)
    counts = job_status_counts(client, workflow)
    if as_json:
        emit_json({"workflow": doc, "config": config, "job_counts": counts})
        return
    click.echo(render_record(doc, [f for f in WORKFLOW_FIELDS if f in doc]))
    click.echo(section("Configuration"))
    click.echo(render_record({k: v for k, v in config.items() if not k.startswith("_")}))
    click.echo(section("Jobs by status"))
    click.echo(render_counts(counts))


@workflows.command("status")
@click.argument("workflow")
@json_option
@client_options
def status(client: Client, as_json: bool, workflow: str) -> None:
    """Show a workflow's run status: run id, canceled flag, job counts, completeness, and how
    many done jobs failed (non-zero return code).

    The workflow is complete when every job is done, canceled, terminated or disabled (an empty
    workflow is complete). This command only reads: unlike the server's ``is_complete``
    endpoint, it never claims the workflow-completion script.

    \b
    Example:
        torc-graph workflows status 12
        torc-graph workflows status 12 --json
    """
    doc = client.get_status(workflow)
    counts = job_status_counts(client, workflow)
    unfinished = sum(n for s, n in counts.items() if s not in FINISHED_STATUSES)
    summary = {
        "workflow": workflow,
        "run_id": doc.get("run_id"),
        "is_canceled": bool(doc.get("is_canceled")),
        "is_complete": unfinished == 0,
        "num_jobs": sum(counts.values()),
        "num_failed": count_failed(client, workflow) if counts.get("done") else 0,
        "job_counts": counts,
    }
    if as_json:
        emit_json(summary)
        return
    click.echo(render_record({k: v for k, v in summary.items() if k != "job_counts"}))
    click.echo(section("Jobs by status"))
    click.echo(render_counts(counts))


@workflows.command("create")
@click.argument("spec_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="Workflow name (overrides the spec file's).")
@click.option("--description", help="Workflow description (overrides the spec file's).")
@click.option("--user", help="Owner. Default: the spec file's user, else the current user.")
@json_option
@client_options
def create(client: Client, as_json: bool, spec_file: Path | None, name: str | None,
           description: str | None, user: str | None) -> None:
    """Create a workflow from a specification file (JSON, JSON5 or YAML) or an empty one.

    The file holds a torc workflow specification: files, user_data, resource_requirements,
    schedulers, jobs (references by name) and config. Without a file, --name creates an empty
    workflow to fill with the API.

    \b
    Example:
        torc-graph workflows create examples/diamond.yaml
        torc-graph workflows create --name scratch --description "empty workflow"
    """
    if spec_file is None and name is None:
        raise click.UsageError("give a SPEC_FILE or --name")
    if spec_file is not None:
        client.on_task_progress = TaskLine(sys.stderr)  # a live line on a terminal only
        spec = read_spec(spec_file)
        for field, value in (("name", name), ("description", description), ("user", user)):
            if value is not None:
                spec[field] = value
        doc = client.get_workflow(create_from_spec(client, spec, spec_file, spec_digest(spec)))
    else:
        body = {"name": name, "description": description or "",
                "user": user or getpass.getuser()}
        doc = client.post("/workflows", body)
    if as_json:
        emit_json(doc)
    else:
        click.echo(f"Created workflow {doc['_key']} ({doc.get('name') or 'unnamed'})")


@workflows.command("delete")
@click.argument("workflows_", metavar="WORKFLOW...", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@client_options
def delete(client: Client, as_json: bool, workflows_: tuple[str, ...], yes: bool) -> None:
    """Delete workflows and everything in them (jobs, files, results, events...).

    \b
    Example:
        torc-graph workflows delete 12 13 --yes
    """
    if not yes:
        click.confirm(f"Delete workflow(s) {', '.join(workflows_)} and all their data?",
                      abort=True, err=True)
    deleted = [client.delete(f"/workflows/{seg(wf)}") for wf in workflows_]
    if as_json:
        emit_json(deleted)
    else:
        for doc in deleted:
            click.echo(f"Deleted workflow {doc['_key']}")


@workflows.command("reset")
@click.argument("workflow")
@click.option("--failed-only", is_flag=True,
              help="Reset only jobs that failed in the current run (and their downstream jobs).")
@client_options
def reset(client: Client, workflow: str, failed_only: bool) -> None:
    """Reset the workflow status (canceled flag, auto-tune) and its jobs to uninitialized.

    \b
    Example:
        torc-graph workflows reset 12
        torc-graph workflows reset 12 --failed-only
    """
    client.reset_status(workflow)
    client.reset_job_status(workflow, failed_only=failed_only)
    which = "failed jobs" if failed_only else "all jobs"
    click.echo(f"Reset workflow {workflow} status and {which} to uninitialized")


@workflows.command("cancel")
@click.argument("workflow")
@client_options
def cancel(client: Client, workflow: str) -> None:
    """Cancel a workflow: running and claimed jobs become canceled, workers stop, and its
    Slurm allocations are scancel'ed.

    \b
    Example:
        torc-graph workflows cancel 12
    """
    client.cancel_workflow(workflow)
    click.echo(f"Canceled workflow {workflow}")
    from torc_graph.cli.slurm import cancel_allocations  # Slurm hook: scancel its allocations

    cancel_allocations(client, workflow)


PATH_COLUMNS = (
    Column("KEY", "key"),
    Column("NAME", "name", wide=True),
    Column("STATUS", "status"),
    Column("DURATION_S", lambda r: round(r["duration_seconds"], 1)),
    Column("SOURCE", "source"),
    Column("REMAINING_S", lambda r: round(r["remaining_seconds"], 1)),
)


@workflows.command("critical-path")
@click.argument("workflow")
@json_option
@client_options
def critical_path(client: Client, as_json: bool, workflow: str) -> None:
    """Show the critical path (the longest chain of blocking jobs, weighted by duration) and
    the estimated remaining makespan.

    A job's duration is recorded (its latest done attempt's exec_time_minutes) or, if it has
    not run, declared (its resource requirements' runtime). The remaining makespan counts
    unfinished jobs only, running jobs minus the time they have already run.

    \b
    Example:
        torc-graph workflows critical-path diamond
        torc-graph workflows critical-path 12 --json
    """
    answer = client.get(f"/workflows/{seg(workflow)}/critical_path")
    if as_json:
        emit_json(answer)
        return
    path, left = answer["critical_path"], answer["remaining"]
    click.echo(section(f"Critical path ({len(path['jobs'])} jobs)").lstrip("\n"))
    click.echo(render_table(path["jobs"], PATH_COLUMNS) if path["jobs"] else "(no jobs)")
    recorded = sum(r["duration_seconds"] for r in path["jobs"] if r["source"] == "recorded")
    click.echo(f"\nLength: {_hms(path['length_seconds'])} "
               f"({_hms(recorded)} recorded, {_hms(path['length_seconds'] - recorded)} "
               "declared or unknown)")
    click.echo(section(f"Remaining critical path ({len(left['jobs'])} unfinished jobs)"))
    click.echo(render_table(left["jobs"], PATH_COLUMNS) if left["jobs"]
               else "(nothing left to run)")
    click.echo(f"\nEstimated remaining makespan: {_hms(left['makespan_seconds'])} "
               f"({answer['num_jobs']} jobs, {answer['num_edges']} blocking edges)")


def _hms(seconds: float) -> str:
    """``3725.0`` → ``1:02:05``."""
    total = int(round(seconds))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


# ------------------------------------------------------------------------------------------
# Helpers shared with the other inspection commands
# ------------------------------------------------------------------------------------------


def fetch_items(client: Client, path: str, limit: int | None, skip: int, /,
                **filters: Any) -> list[dict[str, Any]]:
    """The items of a list endpoint from ``skip``: at most ``limit`` (None: all), paging with
    ``has_more`` past the server's page size. None-valued filters are dropped."""
    filters = {k: v for k, v in filters.items() if v is not None}
    if limit is not None:
        filters["limit"] = min(limit, MAX_TRANSFER_RECORDS)
    return list(itertools.islice(client.iter_items(path, skip=skip, **filters), limit))


def job_status_counts(client: Client, workflow: str) -> dict[str, int]:
    """Number of jobs per status (every status listed, zeros included).

    One request per status (``limit=1``, reading ``total_count``), so the cost does not grow
    with the size of the workflow.
    """
    path = f"/workflows/{seg(workflow)}/jobs"
    return {s.value: int(client.get(path, status=s.value, limit=1)["total_count"])
            for s in JobStatus}


def render_counts(counts: dict[str, int]) -> str:
    rows = [{"status": s, "count": n} for s, n in counts.items()]
    rows.append({"status": "total", "count": sum(counts.values())})
    return render_table(rows, (Column("STATUS", "status"), Column("JOBS", "count")))

