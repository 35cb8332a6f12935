"""``torc-graph slurm``: Slurm schedulers, allocations and the worker inside an allocation;
``torc-graph workflows sync`` (reconcile with Slurm); the ``run --slurm`` path.

Allocations are submitted against a server URL that the compute nodes reach: ``--url``, or,
for ``torc-graph run --slurm`` on the embedded store, a ``torc-graph serve`` started for the
run's duration (:mod:`torc_graph.slurm.served`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from torc_graph.cli.errors import CliError
from torc_graph.cli.options import client_options, json_option
from torc_graph.cli.output import Column, emit_json, emit_table, render_record
from torc_graph.cli.workflows import workflows
from torc_graph.client import ApiError, Client, seg
from torc_graph.runner.local import RunnerError, RunnerOptions
from torc_graph.runner.slurm import Allocation, SlurmRunner
from torc_graph.runner.slurm_run import SlurmRun
from torc_graph.slurm import allocations as alloc_mod
from torc_graph.slurm import commands, credentials
from torc_graph.slurm.commands import SlurmError
from torc_graph.slurm.reconcile import reconcile
from torc_graph.slurm.credentials import CredentialError
from torc_graph.slurm.served import ServedStore, ServeError

F = TypeVar("F", bound=Callable[..., Any])

SCHEDULER_FIELDS = ("_key", "name", "account", "partition", "qos", "walltime", "nodes", "mem",
                    "gres", "tmp", "ntasks_per_node", "extra")
SCHEDULER_COLUMNS = (Column("KEY", "_key"), Column("NAME", "name"),
                     Column("ACCOUNT", "account"), Column("PARTITION", "partition"),
                     Column("WALLTIME", "walltime"), Column("NODES", "nodes"),
                     Column("MEM", "mem"), Column("EXTRA", "extra", wide=True))
STATUS_COLUMNS = (Column("KEY", "_key"), Column("SLURM_JOB", "scheduler_id"),
                  Column("STATUS", "status"), Column("SLURM_STATE", "slurm_state"),
                  Column("NODES", "nodes"), Column("RUNNING", "running"),
                  Column("SCHEDULER", "scheduler_config_id", wide=True))


def slurm_errors(func: F) -> F:
    """Slurm, allocation and serving failures → one ``Error:`` line, exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SlurmError, alloc_mod.AllocationError, ServeError, RunnerError,
                CredentialError) as exc:
            raise CliError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


@click.group()
def slurm() -> None:
    """Run workflows on Slurm: schedulers, allocations, status.

    \b
    Example:
        torc-graph slurm schedulers add 12 --name short --account proj --walltime 1:00:00
        torc-graph slurm schedule-nodes 12 --scheduler short --num-allocations 4 --url URL
        torc-graph slurm status 12 --url URL
    """


@slurm.group()
def schedulers() -> None:
    """Slurm scheduler configurations (sbatch options) of a workflow.

    \b
    Example:
        torc-graph slurm schedulers add 12 --name short --walltime 1:00:00
        torc-graph slurm schedulers list 12
    """


@schedulers.command("add")
@click.argument("workflow")
@click.option("--name", required=True, help="Name the scheduler is referred to by.")
@click.option("--account", default="", help="sbatch --account (none if empty).")
@click.option("--partition", help="sbatch --partition.")
@click.option("--qos", help="sbatch --qos.")
@click.option("--walltime", help="sbatch --time, e.g. 04:00:00 or 1-00:00:00.")
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Nodes per allocation (one worker runs on each).")
@click.option("--mem", help="sbatch --mem, e.g. 64G.")
@click.option("--gres", help="sbatch --gres, e.g. gpu:2.")
@click.option("--tmp", help="sbatch --tmp.")
@click.option("--ntasks-per-node", type=click.IntRange(min=1), help="sbatch --ntasks-per-node.")
@click.option("--extra", help="More sbatch arguments, e.g. '--cpus-per-task=8 --exclusive'.")
@json_option
@client_options
@slurm_errors
def add_scheduler(client: Client, as_json: bool, workflow: str, **fields: Any) -> None:
    """Add a Slurm scheduler to WORKFLOW (a slurm_schedulers document).

    \b
    Example:
        torc-graph slurm schedulers add 12 --name short --account proj --walltime 1:00:00 \\
            --extra '--cpus-per-task=8'
    """
    doc = {k: v for k, v in fields.items() if v is not None}
    from torc_graph.slurm.script import SchedulerError, sbatch_options

    try:
        sbatch_options(doc, workflow, Path("."))
    except SchedulerError as exc:
        raise CliError(str(exc)) from None
    stored = client.add_document(workflow, alloc_mod.SCHEDULERS, doc)
    if as_json:
        emit_json(stored)
    else:
        click.echo(f"Added Slurm scheduler {stored['_key']} ({stored.get('name')})")


@schedulers.command("list")
@click.argument("workflow")
@json_option
@client_options
def list_schedulers(client: Client, as_json: bool, workflow: str) -> None:
    """List WORKFLOW's Slurm schedulers.

    \b
    Example:
        torc-graph slurm schedulers list 12 --json
    """
    docs = list(client.iter_items(f"/workflows/{seg(workflow)}/{alloc_mod.SCHEDULERS}"))
    emit_table(docs, SCHEDULER_COLUMNS, as_json, empty="No Slurm schedulers.")


@schedulers.command("show")
@click.argument("workflow")
@click.argument("scheduler")
@json_option
@client_options
@slurm_errors
def show_scheduler(client: Client, as_json: bool, workflow: str, scheduler: str) -> None:
    """Show one Slurm scheduler (by key or name).

    \b
    Example:
        torc-graph slurm schedulers show 12 short
    """
    doc = alloc_mod.find_scheduler(client, workflow, scheduler)
    if as_json:
        emit_json(doc)
    else:
        click.echo(render_record(doc, [f for f in SCHEDULER_FIELDS if f in doc]))


@schedulers.command("delete")
@click.argument("workflow")
@click.argument("scheduler")
@client_options
@slurm_errors
def delete_scheduler(client: Client, workflow: str, scheduler: str) -> None:
    """Delete one Slurm scheduler (by key or name).

    \b
    Example:
        torc-graph slurm schedulers delete 12 short
    """
    doc = alloc_mod.find_scheduler(client, workflow, scheduler)
    client.delete(f"/workflows/{seg(workflow)}/{alloc_mod.SCHEDULERS}/{seg(doc['_key'])}")
    click.echo(f"Deleted Slurm scheduler {doc['_key']} ({doc.get('name')})")


def submission_options(func: F) -> F:
    """``--output`` and ``--max-allocations``, shared by the commands that submit."""
    func = click.option("--max-allocations", type=click.IntRange(min=1),
                        help="At most this many live allocations of the workflow when more are "
                             "submitted just in time [default: --num-allocations].")(func)
    return click.option("--output", "output_dir", type=click.Path(file_okay=False),
                        default="output", show_default=True,
                        help="Directory (shared with the compute nodes) for job output, worker "
                             "logs and slurm-<id>.out.")(func)


@slurm.command("schedule-nodes")
@click.argument("workflow")
@click.option("--scheduler", required=True, help="Slurm scheduler (key or name).")
@click.option("--num-allocations", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many allocations (sbatch jobs) to submit.")
@submission_options
@client_options
@slurm_errors
def schedule_nodes(client: Client, workflow: str, scheduler: str, num_allocations: int,
                   output_dir: str, max_allocations: int | None) -> None:
    """Submit allocations that run WORKFLOW's jobs (the workflow must be started).

    Needs --url: the compute nodes talk to that server (`torc-graph run --slurm` serves the
    embedded store itself).

    \b
    Example:
        torc-graph slurm schedule-nodes 12 --scheduler short --num-allocations 4 \\
            --url http://submit-host:8529
    """
    if client.url is None:
        raise CliError("schedule-nodes needs --url (a server the compute nodes reach); "
                       "`torc-graph run SPEC --slurm` serves the embedded store itself")
    doc = alloc_mod.find_scheduler(client, workflow, scheduler)
    token_file, _ = credentials.mint(client, workflow, Path(output_dir).absolute())
    where = _submission(client.url, output_dir, max_allocations or num_allocations,
                        doc["_key"], token_file=token_file)
    ids = alloc_mod.submit(client, workflow, doc, num_allocations, where)
    click.echo(f"Submitted Slurm allocation(s) {', '.join(ids)} for workflow {workflow}")


@slurm.command("status")
@click.argument("workflow")
@json_option
@client_options
@slurm_errors
def status(client: Client, as_json: bool, workflow: str) -> None:
    """WORKFLOW's allocations with their Slurm state and the jobs running in each.

    \b
    Example:
        torc-graph slurm status 12 --url http://submit-host:8529
    """
    docs = alloc_mod.allocations(client, workflow)
    ids = [d["scheduler_id"] for d in docs if d.get("scheduler_id")]
    queue = commands.queue(ids) if ids else {}
    running: dict[str, int] = {}
    nodes = {n["_id"]: str((n.get("scheduler") or {}).get("slurm_job_id") or "")
             for n in client.iter_items(f"/workflows/{seg(workflow)}/compute_nodes")}
    submitted = {j["_id"] for j in client.iter_items(f"/workflows/{seg(workflow)}/jobs",
                                                     status="submitted")}
    if submitted:
        for edge in client.iter_items(f"/workflows/{seg(workflow)}/edges/executed"):
            if edge["_to"] in submitted and nodes.get(edge["_from"]):
                running[nodes[edge["_from"]]] = running.get(nodes[edge["_from"]], 0) + 1
    rows = []
    for d in docs:
        entry = queue.get(str(d.get("scheduler_id")))
        rows.append({**d, "slurm_state": entry.state if entry else "",
                     "nodes": entry.nodes if entry else "",
                     "running": running.get(str(d.get("scheduler_id")), 0)})
    emit_table(rows, STATUS_COLUMNS, as_json, empty="No Slurm allocations.")


@slurm.command("run-jobs", hidden=True)
@click.argument("workflow")
@click.option("--output", "output_dir", type=click.Path(file_okay=False), default="output")
@click.option("--scheduler", help="Default scheduler for just-in-time allocations.")
@click.option("--max-allocations", type=click.IntRange(min=1))
@click.option("--poll-interval", type=click.FloatRange(min=0.01), default=1.0)
@client_options
@slurm_errors
def run_jobs(client: Client, workflow: str, output_dir: str, scheduler: str | None,
             max_allocations: int | None, poll_interval: float) -> None:
    """The worker inside an allocation (started by the allocation's batch script, which
    `schedule-nodes` writes; not meant to be run by hand).

    \b
    Example:
        torc-graph slurm run-jobs 12 --url http://submit-host:8529 --output output
    """
    allocation = Allocation.from_environment()
    where = None
    if client.url and max_allocations:
        where = _submission(client.url, output_dir, max_allocations, scheduler,
                            token_file=os.environ.get("TORC_GRAPH_TOKEN_FILE"))
    options = RunnerOptions(output_dir=Path(output_dir), poll_interval=poll_interval)
    summary = SlurmRunner(client, workflow, allocation, options, where).run()
    click.echo(f"Slurm allocation {allocation.job_id}: started {summary.started} job(s); "
               f"{summary.reason or 'stopped'}", err=True)


@workflows.command("sync")
@click.argument("workflow")
@json_option
@client_options
@slurm_errors
def sync(client: Client, as_json: bool, workflow: str) -> None:
    """Reconcile WORKFLOW's Slurm allocations with squeue/sacct: jobs of allocations that
    ended (scancel, walltime, node failure) become ready again; sacct figures are stored.

    \b
    Example:
        torc-graph workflows sync 12 --url http://submit-host:8529
    """
    report = reconcile(client, workflow)
    if as_json:
        emit_json(vars(report))
        return
    click.echo(f"Checked {report.checked} live allocation(s); ended: "
               f"{', '.join(f'{k} ({v})' for k, v in report.ended.items()) or 'none'}; "
               f"requeued {len(report.requeued)} job(s); stored {report.figures} sacct "
               "record(s)")


def run_on_slurm(client: Client, wf: str, options: RunnerOptions, progress: bool,
                 scheduler: str | None, num_allocations: int) -> None:
    """``torc-graph run --slurm``: submit allocations, follow the workflow, print the summary
    and exit like a local run. With the embedded store, serve it for the run's duration."""
    output_dir = Path(options.output_dir).absolute()
    if client.url is None:
        try:
            with credentials.ServedCredentials(client.database, wf, output_dir) as creds:
                served = ServedStore(client.database, output_dir / "torc_graph_server.log",
                                     creds.admin_file)
                with served:
                    click.echo(f"Serving {client.database} at {served.url} for the "
                               "allocations", err=True)
                    with Client(served.url) as remote:
                        remote.token = creds.follower_token
                        remote.session.headers["Authorization"] = f"Bearer {remote.token}"
                        _follow(remote, wf, output_dir, progress, scheduler,
                                num_allocations, creds.worker_file)
        except (ServeError, CredentialError) as exc:
            raise CliError(str(exc)) from None
    else:
        token_file, key = _minted(client, wf, output_dir)
        try:
            _follow(client, wf, output_dir, progress, scheduler, num_allocations, token_file)
        finally:
            _revoke(client, wf, key, token_file)


@slurm_errors
def _minted(client: Client, wf: str, output_dir: Path) -> tuple[str, str]:
    return credentials.mint(client, wf, output_dir)


def _revoke(client: Client, wf: str, key: str, token_file: str) -> None:
    """End of ``run --slurm --url``: the allocations' token stops working."""
    try:
        credentials.revoke(client, wf, key)
    except ApiError as exc:
        click.echo(f"Warning: could not revoke the allocations' token {key} ({exc}); it "
                   "expires by itself", err=True)
    Path(token_file).unlink(missing_ok=True)


@slurm_errors
def _follow(client: Client, wf: str, output_dir: Path, progress: bool, scheduler: str | None,
            num_allocations: int, token_file: str | None) -> None:
    from torc_graph.cli.run import Progress, print_summary

    doc = _run_scheduler(client, wf, scheduler)
    where = _submission(client.url or "", str(output_dir), num_allocations, doc["_key"],
                        token_file)
    display = Progress(client, wf, sys.stderr) if progress else None
    run = SlurmRun(client, wf, doc, num_allocations, where, on_progress=display)
    try:
        summary = run.run()
    finally:
        if display is not None:
            display.close(run)
    click.echo(f"Slurm allocations: {', '.join(run.submitted) or 'none'}", err=True)
    if not print_summary(client, wf, run.run_id, summary, output_dir):
        click.get_current_context().exit(1)


def _run_scheduler(client: Client, wf: str, scheduler: str | None) -> dict[str, Any]:
    if scheduler is not None:
        return alloc_mod.find_scheduler(client, wf, scheduler)
    docs = list(client.iter_items(f"/workflows/{seg(wf)}/{alloc_mod.SCHEDULERS}"))
    if len(docs) != 1:
        raise CliError(f"workflow {wf} has {len(docs)} Slurm schedulers: name one with "
                       "--scheduler (add one to the spec's slurm_schedulers)")
    return docs[0]


def _submission(url: str, output_dir: str, max_allocations: int | None,
                default_scheduler: str | None, token_file: str | None) -> alloc_mod.Submission:
    return alloc_mod.Submission(url=credentials.allocation_url(url),
                                output_dir=Path(output_dir).absolute(),
                                cwd=Path.cwd(), token_file=token_file,
                                max_allocations=max_allocations,
                                default_scheduler=default_scheduler)


@slurm_errors
def cancel_allocations(client: Client, wf: str) -> None:
    """``workflows cancel``'s Slurm part: scancel the workflow's live allocations and wait
    until squeue no longer runs them (the server has already canceled their jobs)."""
    if not alloc_mod.allocations(client, wf, alloc_mod.LIVE_STATUSES):
        return
    ids = alloc_mod.cancel(client, wf)
    if ids:
        click.echo(f"Canceled Slurm allocation(s) {', '.join(ids)}")
