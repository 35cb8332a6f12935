"""The files a finished job should have produced (torc's check after a successful job)."""

from __future__ import annotations

import logging
from pathlib import Path

from torc_graph.client import ApiError, Client, seg
from torc_graph.runner.link import ServerLink
from torc_graph.runner.process import JobProcess

logger = logging.getLogger("torc_graph.runner")


def check_outputs(client: Client, link: ServerLink, wf: str, proc: JobProcess,
                  cwd: str | None) -> int:
    """Record the ``st_mtime`` of each file job ``proc`` produced (paths relative to ``cwd``);
    returns 1 if one is missing (and says so in the job's stderr file), else 0. Waits through
    a server outage; raises ServerUnreachable when giving up."""
    rc = 0
    path = f"/workflows/{seg(wf)}/files/produced_by_job/{seg(proc.key)}"
    base = Path(cwd) if cwd else Path.cwd()
    for file in link.wait(lambda: list(client.iter_items(path))):
        fpath = base / file["path"]
        if not fpath.exists():
            rc = 1
            message = (f"torc-graph: job {proc.key} should have produced {file['path']}, "
                       "which does not exist\n")
            logger.error(message.strip())
            with open(proc.stderr_path, "a", encoding="utf-8") as err:
                err.write(message)
            continue
        file = dict(file)
        file["st_mtime"] = fpath.stat().st_mtime
        try:
            link.wait(client.update_document, wf, "files", file)
        except ApiError as exc:
            logger.warning("could not update file %s: %s", file.get("_key"), exc)
    return rc
