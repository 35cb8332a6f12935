"""Creating and starting workflows from the client side: spec files and torc's ``start``.

:func:`load_spec` reads a workflow specification file (YAML, JSON, JSON5 or KDL).
:func:`start_workflow` does what torc's ``WorkflowManager.start()`` does before workers run
(behavior doc §6.1): input checks, file timestamps, status reset, a new ``run_id``, and
``initialize_jobs``.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torc_graph.client import Client, seg
from torc_graph.runner.process import argv_for
from torc_graph.spec import SpecFileError, read_file


class SpecError(Exception):
    """A specification file cannot be read or parsed; the message says where and why."""


class StartError(Exception):
    """The workflow cannot be started (archived, missing input files or user data)."""


def load_spec(path: str | os.PathLike) -> dict[str, Any]:
    """The specification in ``path`` (YAML, JSON, JSON5 or KDL, by extension; either dialect:
    the server converts current-torc specs), see :func:`torc_graph.spec.read_file`.

    ``user`` defaults to the current user (torc's client forces it). Raises SpecError.
    """
    try:
        spec = read_file(path)
    except SpecFileError as exc:
        raise SpecError(exc.message) from None
    if not spec.get("user"):
        spec["user"] = getpass.getuser()
    return spec


def _files(client: Client, wf: str) -> list[dict[str, Any]]:
    return list(client.iter_items(f"/workflows/{seg(wf)}/files"))


def start_workflow(client: Client, wf: str, *, ignore_missing_data: bool = False,
                   cwd: str | os.PathLike | None = None) -> int:
    """Prepare workflow ``wf`` for its workers, as torc's ``workflows start`` does; return
    the new run_id.

    Raises StartError if the workflow is archived, if a consumed user-data document that no
    job produces is empty, or if an input file that no job produces does not exist (paths are
    relative to ``cwd``, default the current directory). Nothing is changed in those cases.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    w = f"/workflows/{seg(wf)}"
    workflow = client.get_workflow(wf)
    if workflow.get("is_archived"):
        raise StartError(f"workflow {wf} is archived; starting it is not allowed")
    if not ignore_missing_data:
        missing = client.get(f"{w}/missing_user_data").get("user_data", [])
        if missing:
            raise StartError(f"workflow {wf} is missing user data (keys: "
                             f"{', '.join(map(str, missing))})")
    missing_files = []
    for file_id in client.get(f"{w}/required_existing_files").get("files", []):
        doc = client.get(f"{w}/files/{seg(file_id)}")
        if not (base / doc["path"]).exists():
            missing_files.append(doc["path"])
    if missing_files:
        raise StartError(f"workflow {wf} needs input files that do not exist: "
                         f"{', '.join(missing_files)}")
    config = client.get_config(wf)
    script = config.get("workflow_startup_script")
    if script:
        rc = subprocess.run(argv_for(script), cwd=base, env={**os.environ, **client.env(),
                            "TORC_WORKFLOW_KEY": str(wf)}, check=False).returncode
        if rc != 0:
            raise StartError(f"workflow_startup_script exited with {rc}: {script}")
    for doc in _files(client, wf):
        p = base / doc["path"]
        if p.exists():
            doc = dict(doc)
            doc["st_mtime"] = p.stat().st_mtime
            doc.pop("_oldRev", None)
            client.update_document(wf, "files", doc)
    client.reset_status(wf)
    client.reset_job_status(wf)
    run_id = client.bump_run_id(wf)
    client.initialize_jobs(wf)
    client.add_event(wf, {
        "category": "workflow", "type": "start", "user": getpass.getuser(),
        "node_name": socket.gethostname(), "run_id": run_id,
        "message": f"Started workflow {wf}",
    })
    return run_id


def restart_workflow(client: Client, wf: str, *, ignore_missing_data: bool = False,
                     cwd: str | os.PathLike | None = None) -> int:
    """Prepare a workflow that ran before for another run, as torc's ``workflows restart``
    does (behavior doc §6.2); return the new run_id.

    Jobs whose input files changed on disk (``st_mtime``) or whose output files are missing
    are reset to ``uninitialized`` (the server resets their downstream jobs too), jobs whose
    inputs changed in the database are reset by ``process_changed_job_inputs``, then the
    uninitialized jobs are initialized. Jobs that are done and unchanged keep their results.
    Jobs reset earlier (``workflows reset --failed-only``, ``jobs reset``) run again.

    Raises StartError like :func:`start_workflow`.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    w = f"/workflows/{seg(wf)}"
    if client.get_workflow(wf).get("is_archived"):
        raise StartError(f"workflow {wf} is archived; restarting it is not allowed")
    if not ignore_missing_data:
        missing = client.get(f"{w}/missing_user_data").get("user_data", [])
        if missing:
            raise StartError(f"workflow {wf} is missing user data (keys: "
                             f"{', '.join(map(str, missing))})")
    run_id = client.bump_run_id(wf)
    client.reset_status(wf)

    def reset(job: dict[str, Any]) -> None:
        if job.get("status") in ("done", "canceled", "terminated"):
            client.put(f"{w}/jobs/{seg(job['_key'])}/manage_status_change/uninitialized/"
                       f"{seg(job['_rev'])}/{run_id}")

    for doc in _files(client, wf):
        path = base / doc["path"]
        on_disk = path.stat().st_mtime if path.exists() else None
        if on_disk == doc.get("st_mtime"):
            continue
        if on_disk is not None:
            client.update_document(wf, "files", {**doc, "st_mtime": on_disk})
        for job in client.iter_items(f"{w}/jobs/find_by_needs_file/{seg(doc['_key'])}"):
            reset(client.get_job(wf, job["_key"]))  # fresh rev: an earlier reset may cascade
    for job in list(client.iter_items(f"{w}/jobs/find_by_status/done")):
        produced = client.iter_items(f"{w}/files/produced_by_job/{seg(job['_key'])}")
        if any(not (base / f["path"]).exists() for f in produced):
            reset(client.get_job(wf, job["_key"]))
    client.post(f"{w}/process_changed_job_inputs")
    client.initialize_jobs(wf, only_uninitialized=True)
    client.add_event(wf, {
        "category": "workflow", "type": "restart", "user": getpass.getuser(),
        "node_name": socket.gethostname(), "run_id": run_id,
        "message": f"Restarted workflow {wf}",
    })
    return run_id


def all_uninitialized(client: Client, wf: str) -> bool:
    """True if the workflow has jobs and every one of them is ``uninitialized``."""
    path = f"/workflows/{seg(wf)}/jobs"
    total = client.get(path, limit=1).get("total_count", 0)
    if not total:
        return False
    return client.get(path, status="uninitialized", limit=1).get("total_count", 0) == total


def create_workflow(client: Client, spec: Mapping[str, Any]) -> str:
    """POST the specification; return the new workflow's key."""
    return client.add_workflow_specification(spec)["_key"]
