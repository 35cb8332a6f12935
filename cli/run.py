"""``torc-graph run`` (create and run a workflow from a spec file, resume the workflow a spec
or name designates, or show a dry-run plan: :mod:`.plan`) and ``torc-graph jobs run`` (a worker
for an existing workflow).

Both run the local job runner (:mod:`torc_graph.runner.local`) in the foreground until the
workflow is complete, showing progress on stderr, then print a summary table and exit 0 only if
every job succeeded (status ``done``, return code 0), else 1.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from torc_graph.cli.errors import EXIT_CLIENT_ERROR, CliError
from torc_graph.cli.jobs import jobs
from torc_graph.cli.names import resolve
from torc_graph.cli.options import client_options
from torc_graph.cli.outcomes import display_status, latest_results
from torc_graph.cli.output import Column, render_table, truncate
from torc_graph.cli.plan import (create_from_spec, find_resumable, make_plan, read_spec,
                                 reset_unfinished, resume_state, spec_digest)
from torc_graph.cli.tasks import TaskLine

from torc_graph.client import ApiError, Client, ServerUnreachable, seg
from torc_graph.runner.local import (
    LocalRunner,
    RunnerError,
    RunnerOptions,
    RunnerSummary,
)
from torc_graph.spec.formats import FORMATS as SPEC_FORMATS
from torc_graph.runner.workflow import (
    StartError,
    all_uninitialized,
    restart_workflow,
    start_workflow,
)

F = TypeVar("F", bound=Callable[..., Any])

#: Up to this many jobs the summary lists every job; above it, only the unsuccessful ones.
SUMMARY_FULL_ROWS = 100
TTY_REFRESH = 0.5
PLAIN_REFRESH = 10.0
FINISHED = ("done", "canceled", "terminated", "disabled")


def runner_options(func: F) -> F:
    """The worker options shared by ``run`` and ``jobs run``; passes ``options``
    (:class:`RunnerOptions`) and ``progress`` (bool)."""

    @click.option("--num-cpus", type=click.IntRange(min=1),
                  help="CPUs jobs may use [default: all of this machine's].")
    @click.option("--memory-gb", type=click.FloatRange(min=0, min_open=True),
                  help="Memory (GiB) jobs may use [default: this machine's total].")
    @click.option("--num-gpus", type=click.IntRange(min=0),
                  help="GPUs jobs may use [default: as nvidia-smi lists, else 0].")
    @click.option("--max-parallel-jobs", type=click.IntRange(min=1),
                  help="Run at most this many jobs at a time [default: as resources allow].")
    @click.option("--output", "output_dir", type=click.Path(file_okay=False), default="output",
                  show_default=True,
                  help="Directory for job stdout/stderr (job-stdio/<key>_<run_id>.o/.e) and "
                       "the worker log.")
    @click.option("--poll-interval", type=click.FloatRange(min=0.01), default=1.0,
                  show_default=True,
                  help="Seconds between server polls (cancel, new ready jobs) while no job "
                       "ends.")
    @click.option("--process-stats/--no-process-stats", default=True, show_default=True,
                  help="Sample CPU and memory of each job's processes into job_process_stats.")
    @click.option("--progress/--no-progress", default=True, show_default=True,
                  help="Show progress on stderr (a live line on a terminal, else a line "
                       "every 10 s).")
    @functools.wraps(func)
    def wrapper(*args: Any, num_cpus, memory_gb, num_gpus, max_parallel_jobs, output_dir,
                poll_interval, process_stats, progress, **kwargs: Any) -> Any:
        options = RunnerOptions(
            output_dir=Path(output_dir), num_cpus=num_cpus, memory_gb=memory_gb,
            num_gpus=num_gpus, max_parallel_jobs=max_parallel_jobs,
            poll_interval=poll_interval, process_stats=process_stats,
        )
        return func(*args, options=options, progress=progress, **kwargs)

    return wrapper  # type: ignore[return-value]


@click.command("run")
@click.argument("target", metavar="SPEC|WORKFLOW")
@click.option("--dry-run", is_flag=True,
              help="Change nothing: show which jobs would run, in what order, and why the "
                   "others would not.")
@click.option("--new", "force_new", is_flag=True,
              help="Always create a new workflow from SPEC, even if one with the same name and "
                   "content exists.")
@runner_options
@click.option("--slurm", "on_slurm", is_flag=True,
              help="Run the jobs in Slurm allocations instead of on this machine (see "
                   "`torc-graph slurm --help`).")
@click.option("--scheduler", help="With --slurm: the Slurm scheduler (name or key) "
                                  "[default: the spec's only one].")
@click.option("--num-allocations", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --slurm: allocations to submit (and the most live at once).")
@client_options
def run(target: str, dry_run: bool, force_new: bool, client: Client, options: RunnerOptions,
        progress: bool, on_slurm: bool, scheduler: str | None, num_allocations: int) -> None:
    """Run a workflow on this machine: create it from a SPEC file, or resume one.

    SPEC is a workflow specification file (torc v0.6.4's or current torc's format) in JSON,
    JSON5 (.json5), YAML (.yaml, .yml) or KDL (.kdl). If a workflow with the same name was created from the same content before, it is resumed: jobs
    that are done and whose inputs did not change are skipped (torc's change detection: input
    files changed on disk, missing outputs, changed user data), failed, canceled and
    terminated jobs run again, and so does everything downstream of them. --new creates a
    fresh workflow instead. WORKFLOW (a name or key) resumes an existing workflow.

    Without --url the workflow lives in the embedded store (--database, default
    sqlite:///torc_graph.db): no server is needed. Jobs run in the current directory, as
    subprocesses without a shell unless the command uses shell syntax (pipes, redirections,
    variables, globs...). Exit status: 0 if every job succeeded, 1 if one did not, 2 for a
    missing or invalid SPEC.

    \b
    Example:
        torc-graph run examples/diamond.yaml --num-cpus 2
        torc-graph run examples/diamond.yaml --dry-run
        torc-graph run diamond                       # resume by name
        torc-graph run sweep.json5 --new --url http://localhost:8529 --output out
    """
    if progress:
        client.on_task_progress = TaskLine(sys.stderr)
    path = Path(target)
    if path.is_file():
        spec = read_spec(path)
        digest = spec_digest(spec)
        wf = None if force_new else find_resumable(client, spec, digest)
        if dry_run:
            show_plan(client, spec, wf, f"{target}" + (f" (resumes workflow {wf})" if wf
                                                         else " (a new workflow)"))
            return
        if wf is None:
            wf = create_from_spec(client, spec, path, digest)
            click.echo(f"Created workflow {wf} ({spec.get('name') or 'unnamed'}) from {target} "
                       f"({client.location})", err=True)
            start(client, wf)
        else:
            resume(client, wf, f"Resuming workflow {wf} ({spec.get('name')}), created from "
                               f"the same spec; --new starts a fresh one")
    else:
        if path.suffix.lower() in SPEC_FORMATS or os.sep in target:
            raise click.UsageError(f"spec file {target!r} does not exist")
        if force_new:
            raise click.UsageError("--new needs a SPEC file, not a workflow")
        try:
            wf = resolve(client, target)
        except CliError as exc:
            if exc.exit_code != EXIT_CLIENT_ERROR:
                raise
            raise click.UsageError(f"{target!r} is neither a spec file nor a workflow "
                                   "name or key") from None
        if dry_run:
            spec = client.get(f"/workflow_specifications/{seg(wf)}")
            show_plan(client, spec, wf, f"workflow {wf} ({spec.get('name') or 'unnamed'})")
            return
        resume(client, wf, f"Resuming workflow {wf}")
    if on_slurm:
        from torc_graph.cli.slurm import run_on_slurm

        run_on_slurm(client, wf, options, progress, scheduler, num_allocations)
        return
    _run_worker(client, wf, options, progress)


def start(client: Client, wf: str) -> None:
    try:
        start_workflow(client, wf)
    except StartError as exc:
        raise CliError(str(exc)) from None


def resume(client: Client, wf: str, message: str) -> None:
    """Prepare an existing workflow to run what is left: start it if it never started, else
    rerun its failed / canceled / terminated jobs and restart it (torc's change detection)."""
    click.echo(message, err=True)
    if all_uninitialized(client, wf):
        start(client, wf)
        return
    reset_unfinished(client, wf)
    try:
        restart_workflow(client, wf)
    except StartError as exc:
        raise CliError(str(exc)) from None


def show_plan(client: Client, spec: dict[str, Any], wf: str | None, what: str) -> None:
    """Print the dry-run plan of ``spec`` (resuming ``wf`` if given)."""
    cwd = Path.cwd()
    resumed = resume_state(client, wf, cwd) if wf is not None else None
    plan = make_plan(spec, cwd, resumed, source=what)
    total = len(plan.runs) + len(plan.skipped)
    click.echo(f"Dry run of {what}: {len(plan.runs)} of {total} jobs would run.")
    if plan.runs:
        click.echo(render_table([{"step": s, "job": n, "why": w} for s, n, w in plan.runs],
                                (Column("STEP", "step"), Column("JOB", "job"),
                                 Column("WHY", "why", wide=True))))
    if plan.skipped:
        click.echo("\nWould not run:")
        click.echo(render_table([{"job": n, "why": w} for n, w in plan.skipped],
                                (Column("JOB", "job"), Column("REASON", "why", wide=True))))


@jobs.command("run")
@click.argument("workflow_key")
@click.option("--restart", is_flag=True,
              help="First restart the workflow (torc's `workflows restart`): a new run_id; "
                   "jobs whose input files changed or output files are missing, and jobs "
                   "reset before, run again.")
@runner_options
@client_options
def jobs_run(workflow_key: str, restart: bool, client: Client, options: RunnerOptions,
             progress: bool) -> None:
    """Run jobs of an existing workflow on this machine until it is complete.

    This is a worker, like torc's `jobs run`: several may run at once, on one or many
    machines, and with torc's own workers. If every job of the workflow is uninitialized, the
    workflow is started first (a new run_id, then initialize_jobs). Exit status: 0 if every job
    of the workflow succeeded, 1 otherwise.

    \b
    Example:
        torc-graph jobs run 12 --num-cpus 4
        torc-graph jobs run 12 --url http://server:8529 --max-parallel-jobs 8
        torc-graph workflows reset 12 --failed-only && torc-graph jobs run 12 --restart
    """
    client.get_workflow(workflow_key)  # 404 -> exit 4 before anything else happens
    try:
        if all_uninitialized(client, workflow_key):
            start_workflow(client, workflow_key)
        elif restart:
            restart_workflow(client, workflow_key)
    except StartError as exc:
        raise CliError(str(exc)) from None
    _run_worker(client, workflow_key, options, progress)


def _run_worker(client: Client, wf: str, options: RunnerOptions, progress: bool) -> None:
    display = Progress(client, wf, sys.stderr) if progress else None
    runner = LocalRunner(client, wf, options, on_progress=display)
    try:
        summary = runner.run()
    except RunnerError as exc:
        raise CliError(str(exc)) from None
    finally:
        if display is not None:
            display.close(runner)
    ok = print_summary(client, wf, runner.run_id, summary, options.output_dir)
    if not ok:
        click.get_current_context().exit(1)


def running_names(runner: Any) -> list[str]:
    """Names of the jobs the runner has running now, in start order."""
    return runner.running_job_names()


class Progress:
    """Progress on a stream, rate-limited, counts from the server (jobs canceled by the server
    count too).

    On a terminal: one line redrawn in place every :data:`TTY_REFRESH` seconds — a bar, the
    counts, the rate, the ETA and the names of the running jobs, cut to the terminal width —
    and cleared before the summary is printed (no flicker into it). Otherwise: a plain line
    every :data:`PLAIN_REFRESH` seconds and a last one at the end.
    """

    def __init__(self, client: Client, wf: str, stream: TextIO):
        self.client = client
        self.wf = wf
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.interval = TTY_REFRESH if self.tty else PLAIN_REFRESH
        self.t0 = time.monotonic()
        self.next_at = 0.0
        self.drawn = False
        self.finished_at_start: int | None = None

    def __call__(self, runner: LocalRunner) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.interval
        self._show(runner)

    def _count(self, **filters: Any) -> int:
        page = self.client.get(f"/workflows/{seg(self.wf)}/jobs", limit=1, **filters)
        return int(page.get("total_count", 0))

    def state(self, runner: LocalRunner) -> dict[str, Any]:
        """Counts, rate (jobs finished per second since this run started) and ETA."""
        total = self._count()
        finished = sum(self._count(status=s) for s in FINISHED)
        if self.finished_at_start is None:  # jobs finished before this run (a resume)
            self.finished_at_start = finished
        elapsed = time.monotonic() - self.t0
        s = runner.summary
        remaining = max(total - finished, 0)
        rate = max(finished - self.finished_at_start, 0) / elapsed if elapsed > 0 else 0.0
        return {
            "total": total, "finished": finished, "remaining": remaining,
            "done": s.succeeded, "failed": s.failed + s.terminated + s.canceled,
            "running": runner.running, "elapsed": elapsed, "rate": rate,
            "eta": remaining / rate if rate > 0 else None, "names": running_names(runner),
        }

    def line(self, runner: LocalRunner) -> str:
        st = self.state(runner)
        return (f"[{_clock(st['elapsed'])}] done {st['done']}  running {st['running']}  "
                f"failed {st['failed']}  remaining {st['remaining']}/{st['total']}  "
                f"{st['rate']:.1f} jobs/s  ETA {_eta(st['eta'])}" + _names(st["names"]))

    def bar(self, runner: LocalRunner, width: int) -> str:
        st = self.state(runner)
        cells = 20
        fill = cells * st["finished"] // st["total"] if st["total"] else cells
        head = (f"{'█' * fill}{'░' * (cells - fill)} {st['finished']}/{st['total']}  "
                f"✓{st['done']} ✗{st['failed']} ▶{st['running']}  {st['rate']:.1f}/s  "
                f"ETA {_eta(st['eta'])}")
        return truncate(head + _names(st["names"]), width - 1)

    def _show(self, runner: LocalRunner) -> None:
        try:
            text = self.bar(runner, terminal_width(self.stream)) if self.tty else self.line(runner)
        except (ApiError, ServerUnreachable):  # a progress line must never stop the runner
            return
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, runner: LocalRunner) -> None:
        """On a terminal, erase the bar (the summary follows); else print the final line."""
        if self.tty:
            if self.drawn:
                self.stream.write("\r\033[K")
                self.stream.flush()
        else:
            self._show(runner)


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` is; $COLUMNS, else 80, when it does not say."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        columns = 0
    if columns <= 0:
        env = os.environ.get("COLUMNS", "")
        columns = int(env) if env.isdigit() and int(env) > 0 else 80
    return columns


def _names(names: list[str]) -> str:
    return ("  running: " + ", ".join(names)) if names else ""


def _eta(seconds: float | None) -> str:
    return "--:--" if seconds is None else _clock(seconds)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return ""
    return f"{seconds:.1f}s" if seconds < 60 else _clock(seconds)


SUMMARY_COLUMNS = (
    Column("KEY", "_key"),
    Column("JOB", "name", wide=True),
    Column("STATUS", "status"),
    Column("RC", "return_code"),
    Column("DURATION", lambda d: _duration(d.get("duration"))),
)


def job_rows(client: Client, wf: str, run_id: int) -> list[dict[str, Any]]:
    """Every job with its latest result up to this run (return code, duration) and its
    display status (``failed`` for a done job with a non-zero return code), in insertion
    order. After a restart, jobs that did not run again keep the result of their last run."""
    results = latest_results(client, wf, up_to_run=run_id)
    rows = []
    for job in client.iter_items(f"/workflows/{seg(wf)}/jobs"):
        result = results.get(job["_key"], {})
        minutes = result.get("exec_time_minutes")
        rows.append({
            "_key": job["_key"], "name": job.get("name"),
            "status": display_status(job, result),
            "return_code": result.get("return_code"),
            "duration": minutes * 60 if isinstance(minutes, (int, float)) else None,
        })
    return rows


def succeeded(row: dict[str, Any]) -> bool:
    return row["status"] == "done" and row["return_code"] == 0


def print_summary(client: Client, wf: str, run_id: int, summary: RunnerSummary,
                  output_dir: Path) -> bool:
    """Print the summary table; return True if every (non-disabled) job succeeded."""
    rows = job_rows(client, wf, run_id)
    counted = [r for r in rows if r["status"] != "disabled"]
    bad = [r for r in counted if not succeeded(r)]
    shown = rows if len(rows) <= SUMMARY_FULL_ROWS else bad[:SUMMARY_FULL_ROWS]
    if shown:
        click.echo(render_table(shown, SUMMARY_COLUMNS))
    if len(rows) > SUMMARY_FULL_ROWS and bad:
        more = len(bad) - len(shown)
        click.echo(f"(only unsuccessful jobs are listed{f'; {more} more' if more else ''})")
    by_status: dict[str, int] = {}
    for r in rows:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    ok = len(counted) - len(bad)
    parts = [f"{ok} succeeded", f"{len(bad)} not successful"]
    parts += [f"{n} {status}" for status, n in sorted(by_status.items()) if status != "done"]
    click.echo(f"Workflow {wf}: {len(rows)} jobs, " + ", ".join(parts) +
               f" ({summary.elapsed_seconds:.1f}s; {summary.reason or 'stopped'})")
    click.echo(f"Job output: {Path(output_dir) / 'job-stdio'}")
    return not bad and not summary.interrupted
