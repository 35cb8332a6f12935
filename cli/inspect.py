"""Read-only views of a workflow's other collections: ``files``, ``results``, ``events``,
``user-data``, ``resource-requirements`` and ``compute-nodes``.

Each command is one list (or get) request plus formatting; filters are the server's exact-match
query parameters (behavior doc §2.5).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import click

from torc_graph.cli.options import client_options, json_option, paging_options
from torc_graph.cli.output import Column, emit_json, emit_table, render_record, rounded, to_json
from torc_graph.cli.workflows import fetch_items
from torc_graph.client import ApiError, Client, ServerUnreachable, seg


def ms_to_iso(value: Any) -> Any:
    """An event timestamp (integer ms since the epoch) as ISO-8601 UTC; other values as is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    t = dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


# ------------------------------------------------------------------------------------------ files

FILE_COLUMNS = (
    Column("KEY", "_key"),
    Column("NAME", "name"),
    Column("PATH", "path", wide=True),
    Column("MTIME", lambda d: rounded(d.get("st_mtime"))),
)


@click.group("files")
def files() -> None:
    """Inspect the files of a workflow (job inputs and outputs).

    \b
    Example:
        torc-graph files list 12
    """


@files.command("list")
@click.argument("workflow")
@click.option("--name", help="Only files with this name.")
@click.option("--path", help="Only files with this path.")
@paging_options
@json_option
@client_options
def list_files(client: Client, as_json: bool, limit: int | None, skip: int, workflow: str,
               name: str | None, path: str | None) -> None:
    """List the files of a workflow.

    \b
    Example:
        torc-graph files list 12
        torc-graph files list 12 --name f1 --json
    """
    docs = fetch_items(client, f"/workflows/{seg(workflow)}/files", limit, skip,
                       name=name, path=path)
    emit_table(docs, FILE_COLUMNS, as_json, empty="No files.")


# ---------------------------------------------------------------------------------------- results

RESULT_COLUMNS = (
    Column("KEY", "_key"),
    Column("JOB_KEY", "job_key"),
    Column("JOB", "job_name"),
    Column("RUN", "run_id"),
    Column("STATUS", "status"),
    Column("RC", "return_code"),
    Column("MINUTES", lambda d: rounded(d.get("exec_time_minutes"))),
    Column("COMPLETED", "completion_time", wide=True),
)


@click.group("results")
def results() -> None:
    """Inspect job results (return codes, run times).

    \b
    Example:
        torc-graph results list 12 --return-code 1
    """


@results.command("list")
@click.argument("workflow")
@click.option("--job", "--job-key", "job_key", help="Only results of this job (name or key).")
@click.option("--run-id", type=int, help="Only results of this run.")
@click.option("--return-code", type=int, help="Only results with this return code.")
@click.option("--status", help="Only results with this status (done, canceled, terminated).")
@paging_options
@json_option
@client_options
def list_results(client: Client, as_json: bool, limit: int | None, skip: int, workflow: str,
                 job_key: str | None, run_id: int | None, return_code: int | None,
                 status: str | None) -> None:
    """List the results of a workflow's jobs, one per job per run, with the jobs' names.

    \b
    Example:
        torc-graph results list sweep
        torc-graph results list sweep --job aggregate
        torc-graph results list 12 --run-id 2 --return-code 1 --json
    """
    docs = fetch_items(client, f"/workflows/{seg(workflow)}/results", limit, skip,
                       job_key=job_key, run_id=run_id, return_code=return_code, status=status)
    if as_json:
        emit_json(docs)
        return
    names = job_names(client, workflow, {d.get("job_key") for d in docs})
    emit_table([{**d, "job_name": names.get(d.get("job_key"))} for d in docs], RESULT_COLUMNS,
               False, empty="No results.")


def job_names(client: Client, workflow: str, keys: set[str]) -> dict[str, str]:
    """job key → name for ``keys``: one request per job for a few, else one listing."""
    path = f"/workflows/{seg(workflow)}/jobs"
    if len(keys) <= 20:
        return {k: client.get(f"{path}/{seg(k)}").get("name") for k in keys if k}
    return {j["_key"]: j.get("name") for j in client.iter_items(path)}


# ----------------------------------------------------------------------------------------- events

EVENT_COLUMNS = (
    Column("KEY", "_key"),
    Column("TIME", lambda d: ms_to_iso(d.get("timestamp"))),
    Column("CATEGORY", "category"),
    Column("TYPE", "type"),
    Column("MESSAGE", "message", wide=True),
)


@click.group("events")
def events() -> None:
    """Inspect and follow a workflow's events (job starts and completions, ...).

    \b
    Example:
        torc-graph events list 12 --category job
        torc-graph events follow 12
    """


@events.command("list")
@click.argument("workflow")
@click.option("--category", help="Only events of this category (job, workflow, worker, ...).")
@click.option("--after", type=float, metavar="MS",
              help="Only events after this timestamp (milliseconds since the epoch).")
@paging_options
@json_option
@client_options
def list_events(client: Client, as_json: bool, limit: int | None, skip: int, workflow: str,
                category: str | None, after: float | None) -> None:
    """List a workflow's events, oldest first.

    \b
    Example:
        torc-graph events list 12
        torc-graph events list 12 --category job --after 1700000000000 --json
    """
    wf = seg(workflow)
    if after is not None:
        # This endpoint ignores skip: page on this side.
        page = client.get(f"/workflows/{wf}/events_after_timestamp/{_ms_segment(after)}",
                          category=category)
        items = page.get("items", [])
        docs = items[skip:] if limit is None else items[skip:skip + limit]
    else:
        docs = fetch_items(client, f"/workflows/{wf}/events", limit, skip, category=category)
    emit_table(docs, EVENT_COLUMNS, as_json, empty="No events.")


@events.command("follow")
@click.argument("workflow")
@click.option("--category", help="Only events of this category.")
@click.option("--all", "from_start", is_flag=True,
              help="Print the existing events first (default: only new ones).")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between polls (embedded store) or reconnection attempts.")
@json_option
@client_options
def follow(client: Client, as_json: bool, workflow: str, category: str | None,
           from_start: bool, interval: float) -> None:
    """Print a workflow's events as they arrive, until Ctrl-C.

    With --json each event is printed as one JSON line. Against a server the events come
    from its event stream (reconnecting after a drop, missing none); on the embedded store
    they are polled every --interval seconds.

    \b
    Example:
        torc-graph events follow 12
        torc-graph events follow 12 --all --category job --json
    """
    wf = seg(workflow)
    client.get_workflow(workflow)  # fail fast (404) on a wrong workflow key
    printer = _Printer(as_json)
    try:
        if client.url:
            _follow_stream(client, wf, category, from_start, interval, printer)
        else:
            _follow_poll(client, wf, category, from_start, interval, printer)
    except KeyboardInterrupt:
        # Ctrl-C is the normal way to stop following.
        return


class _Printer:
    """Prints followed events: a header line before the first table row; JSON lines as is."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.header_done = as_json

    def __call__(self, event: dict[str, Any]) -> None:
        if self.as_json:
            click.echo(to_json_line(event))
            return
        if not self.header_done:
            click.echo(_event_header())
            self.header_done = True
        click.echo(_event_line(event))


def _follow_stream(client: Client, wf: str, category: str | None, from_start: bool,
                   interval: float, printer: _Printer) -> None:
    """Follow ``GET .../events/stream``; on a drop or the server's end of the stream,
    reconnect with the last key seen as Last-Event-ID (so no event is lost or repeated)."""
    last = None if from_start else _last_event_key(client, wf)
    while True:
        try:
            for event in client.stream_events(wf, last, category=category):
                printer(event)
                last = event["_key"]
        except ServerUnreachable:
            time.sleep(interval)  # the server restarts or the network drops: try again
        except ApiError as exc:
            if exc.status != 503:
                raise
            time.sleep(max(interval, 1.0))  # the server's stream slots are taken


def _last_event_key(client: Client, wf: str) -> str | None:
    """The key of the newest event (insertion order), or None without events."""
    total = client.get(f"/workflows/{wf}/events", limit=1).get("total_count") or 0
    if not total:
        return None
    items = client.get(f"/workflows/{wf}/events", skip=total - 1, limit=1).get("items") or []
    return items[-1]["_key"] if items else None


def _follow_poll(client: Client, wf: str, category: str | None, from_start: bool,
                 interval: float, printer: _Printer) -> None:
    """Poll ``events_after_timestamp`` every ``interval`` seconds (the embedded store)."""
    last: float = 0
    if not from_start:
        latest = client.get(f"/workflows/{wf}/latest_event_timestamp").get("timestamp")
        last = latest if latest is not None else 0
    # Events of the same millisecond can arrive in separate polls: re-read the boundary
    # millisecond each time and drop the events already printed.
    seen_at_last: set[str] = set()
    if not from_start and last:
        seen_at_last = _keys_at(client, wf, last, category)
    while True:
        page = client.get(f"/workflows/{wf}/events_after_timestamp/{_ms_segment(last - 1)}",
                          category=category)
        new = [e for e in page.get("items", [])
               if not (e.get("timestamp") == last and e.get("_key") in seen_at_last)]
        for event in new:
            printer(event)
        if new:
            newest = max(e.get("timestamp", last) for e in new)
            if newest != last:
                last, seen_at_last = newest, set()
            seen_at_last |= {e["_key"] for e in new if e.get("timestamp") == last}
        time.sleep(interval)


def _ms_segment(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _keys_at(client: Client, wf: str, ts: float, category: str | None) -> set[str]:
    page = client.get(f"/workflows/{wf}/events_after_timestamp/{_ms_segment(ts - 1)}",
                      category=category)
    return {e["_key"] for e in page.get("items", []) if e.get("timestamp") == ts}


def to_json_line(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


# Streamed lines cannot be fitted to the widest row (rows are not known yet): fixed widths.
_FOLLOW_WIDTHS = (8, 24, 10, 10)


def _event_header() -> str:
    heads = ("KEY", "TIME", "CATEGORY", "TYPE")
    return "  ".join(h.ljust(w) for h, w in zip(heads, _FOLLOW_WIDTHS)) + "  MESSAGE"


def _event_line(event: dict[str, Any]) -> str:
    cells = (event.get("_key", ""), ms_to_iso(event.get("timestamp")),
             event.get("category", ""), event.get("type", ""))
    return "  ".join(str(c if c is not None else "").ljust(w)
                     for c, w in zip(cells, _FOLLOW_WIDTHS)) + "  " + str(event.get("message", ""))


# -------------------------------------------------------------------------------------- user data

USER_DATA_COLUMNS = (
    Column("KEY", "_key"),
    Column("NAME", "name"),
    Column("EPHEMERAL", "is_ephemeral"),
    Column("DATA", "data", wide=True),
)


@click.group("user-data")
def user_data() -> None:
    """Inspect the user data of a workflow (JSON documents jobs store and consume).

    \b
    Example:
        torc-graph user-data list 12
        torc-graph user-data show 12 345
    """


@user_data.command("list")
@click.argument("workflow")
@click.option("--name", help="Only user data with this name.")
@click.option("--ephemeral/--persistent", "is_ephemeral", default=None,
              help="Only ephemeral (or only persistent) user data.")
@paging_options
@json_option
@client_options
def list_user_data(client: Client, as_json: bool, limit: int | None, skip: int, workflow: str,
                   name: str | None, is_ephemeral: bool | None) -> None:
    """List the user data of a workflow (the DATA column is compact JSON, truncated).

    \b
    Example:
        torc-graph user-data list 12
        torc-graph user-data list 12 --name inputs --json
    """
    docs = fetch_items(client, f"/workflows/{seg(workflow)}/user_data", limit, skip,
                       name=name, is_ephemeral=is_ephemeral)
    emit_table(docs, USER_DATA_COLUMNS, as_json, empty="No user data.")


@user_data.command("show")
@click.argument("workflow")
@click.argument("user_data_key", metavar="USER_DATA")
@json_option
@client_options
def show_user_data(client: Client, as_json: bool, workflow: str, user_data_key: str) -> None:
    """Show one user-data document with its data in full.

    \b
    Example:
        torc-graph user-data show 12 345
        torc-graph user-data show 12 345 --json | jq .data
    """
    doc = client.get(f"/workflows/{seg(workflow)}/user_data/{seg(user_data_key)}")
    if as_json:
        emit_json(doc)
        return
    click.echo(render_record(doc, [f for f in doc if f != "data"]))
    click.echo("data:")
    click.echo(to_json(doc.get("data")) if "data" in doc else "(absent)")


# -------------------------------------------------------------------------- resource requirements

RR_COLUMNS = (
    Column("KEY", "_key"),
    Column("NAME", "name", wide=True),
    Column("CPUS", "num_cpus"),
    Column("GPUS", "num_gpus"),
    Column("NODES", "num_nodes"),
    Column("MEMORY", "memory"),
    Column("RUNTIME", "runtime"),
)


@click.group("resource-requirements")
def resource_requirements() -> None:
    """Inspect the resource requirements (CPUs, memory, runtime) jobs declare.

    \b
    Example:
        torc-graph resource-requirements list 12
    """


@resource_requirements.command("list")
@click.argument("workflow")
@click.option("--name", help="Only requirements with this name.")
@paging_options
@json_option
@client_options
def list_resource_requirements(client: Client, as_json: bool, limit: int | None, skip: int,
                               workflow: str, name: str | None) -> None:
    """List the resource requirements of a workflow.

    \b
    Example:
        torc-graph resource-requirements list 12
        torc-graph resource-requirements list 12 --json
    """
    docs = fetch_items(client, f"/workflows/{seg(workflow)}/resource_requirements", limit, skip,
                       name=name)
    emit_table(docs, RR_COLUMNS, as_json, empty="No resource requirements.")


# ---------------------------------------------------------------------------------- compute nodes

COMPUTE_NODE_COLUMNS = (
    Column("KEY", "_key"),
    Column("HOSTNAME", "hostname", wide=True),
    Column("PID", "pid"),
    Column("CPUS", "resources.num_cpus"),
    Column("MEM_GB", lambda d: rounded((d.get("resources") or {}).get("memory_gb"), 1)),
    Column("GPUS", "resources.num_gpus"),
    Column("ACTIVE", "is_active"),
    Column("STARTED", "start_time", wide=True),
    Column("SECONDS", lambda d: rounded(d.get("duration_seconds"), 1)),
)


@click.group("compute-nodes")
def compute_nodes() -> None:
    """Inspect the compute nodes (workers) that ran a workflow's jobs.

    \b
    Example:
        torc-graph compute-nodes list 12 --active
    """


@compute_nodes.command("list")
@click.argument("workflow")
@click.option("--hostname", help="Only workers on this host.")
@click.option("--active/--inactive", "is_active", default=None,
              help="Only active (or only finished) workers.")
@paging_options
@json_option
@client_options
def list_compute_nodes(client: Client, as_json: bool, limit: int | None, skip: int,
                       workflow: str, hostname: str | None, is_active: bool | None) -> None:
    """List the compute nodes (worker processes) of a workflow.

    \b
    Example:
        torc-graph compute-nodes list 12
        torc-graph compute-nodes list 12 --hostname node01 --json
    """
    docs = fetch_items(client, f"/workflows/{seg(workflow)}/compute_nodes", limit, skip,
                       hostname=hostname, is_active=is_active)
    emit_table(docs, COMPUTE_NODE_COLUMNS, as_json, empty="No compute nodes.")


#: The groups this module contributes to the ``torc-graph`` command.
GROUPS = (files, results, events, user_data, resource_requirements, compute_nodes)
