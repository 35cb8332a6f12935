"""Scripts a runner runs besides jobs: the workflow's worker startup and completion scripts,
and the recovery script of a retried attempt (torc semantics, spec §7)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from torc_graph.runner.process import argv_for

logger = logging.getLogger("torc_graph.runner")


def run_workflow_script(label: str, script: str, log: Path, env: dict[str, str],
                        cwd: str | None) -> int:
    """Run a workflow script (``worker_startup_script``, ``workflow_completion_script``) by
    the job command rule, output appended to ``log``; returns its exit code (127 if it cannot
    start). Failures are logged, not raised."""
    logger.info("running %s: %s", label, script)
    try:
        with open(log, "ab") as out:
            rc = subprocess.run(argv_for(script), stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, check=False).returncode
    except (OSError, ValueError) as exc:
        logger.error("%s could not run: %s", label, exc)
        return 127
    if rc != 0:
        logger.error("%s exited with %s (see %s)", label, rc, log)
    return rc


def run_recovery_script(script: str, job_key: str, rc: int, attempt_id: int,
                        env: dict[str, str], cwd: str | None, output_dir: Path) -> int:
    """Run a retried attempt's ``recovery_script`` as torc does (``bash -c``, with
    ``TORC_RETURN_CODE`` and ``TORC_ATTEMPT_ID``), output appended to
    ``<output>/recovery_<job>.log``; returns its exit code (127 if it cannot start)."""
    env = {**env, "TORC_JOB_KEY": job_key, "TORC_RETURN_CODE": str(rc),
           "TORC_ATTEMPT_ID": str(attempt_id)}
    log = output_dir / f"recovery_{job_key}.log"
    logger.info("job %s attempt %s: running recovery script %s", job_key, attempt_id, script)
    try:
        with open(log, "ab") as out:
            code = subprocess.run(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                  env=env, cwd=cwd, check=False, stdin=subprocess.DEVNULL
                                  ).returncode
    except OSError as exc:
        logger.error("recovery script of job %s could not run: %s", job_key, exc)
        return 127
    if code != 0:
        logger.error("recovery script of job %s exited with %s (see %s)", job_key, code,
                     os.fspath(log))
    return code
