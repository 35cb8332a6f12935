"""The sbatch submission of one allocation: sbatch options from a ``slurm_schedulers`` document
and the batch script that starts one torc_graph worker per node.

The scheduler's values become sbatch *arguments* (an argv, no shell, no ``#SBATCH`` lines), and
the few values the script itself contains are shell-quoted, so no scheduler field can inject a
command or a directive.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torc_graph.slurm.commands import parse_walltime

#: slurm_schedulers fields → sbatch options (``nodes`` and ``walltime`` are handled apart).
_OPTIONS = (("account", "--account"), ("partition", "--partition"), ("qos", "--qos"),
            ("mem", "--mem"), ("gres", "--gres"), ("tmp", "--tmp"),
            ("ntasks_per_node", "--ntasks-per-node"))


class SchedulerError(ValueError):
    """A slurm_schedulers document cannot be turned into an sbatch submission."""


def sbatch_options(scheduler: Mapping[str, Any], workflow: str, output_dir: Path) -> list[str]:
    """The sbatch arguments of an allocation for ``scheduler``.

    Raises SchedulerError (a bad walltime, node count, or a value with a newline)."""
    nodes = scheduler.get("nodes") or 1
    if not isinstance(nodes, int) or nodes < 1:
        raise SchedulerError(f"nodes must be a positive integer: {nodes!r}")
    opts = [f"--job-name=torc_graph_{workflow}", f"--nodes={nodes}",
            f"--output={output_dir / 'slurm-%j.out'}"]
    walltime = scheduler.get("walltime")
    if walltime:
        try:
            parse_walltime(walltime)
        except ValueError as exc:
            raise SchedulerError(f"walltime: {exc}") from None
        opts.append(f"--time={walltime}")
    for field, option in _OPTIONS:
        value = scheduler.get(field)
        if value in (None, ""):
            continue
        _one_line(field, str(value))
        opts.append(f"{option}={value}")
    extra = scheduler.get("extra")
    if extra:
        _one_line("extra", extra)
        try:
            opts += shlex.split(extra)
        except ValueError as exc:
            raise SchedulerError(f"extra: {exc}: {extra!r}") from None
    return opts


def batch_script(workflow: str, url: str, output_dir: Path, cwd: Path,
                 token_file: str | None = None, nodes: int = 1,
                 worker_args: Sequence[str] = ()) -> str:
    """The batch script: environment for the worker, then the worker (``torc-graph slurm
    run-jobs``), started once per node with srun when the allocation has several nodes."""
    worker = [sys.executable, "-c",
              "from torc_graph.cli.main import cli; cli(prog_name='torc-graph')",
              "slurm", "run-jobs", str(workflow), "--url", url, "--output", str(output_dir), *worker_args]
    lines = ["#!/bin/bash", "# torc_graph allocation: one worker per node",
             "unset TORC_GRAPH_DATABASE TORC_GRAPH_TOKEN",
             f"export TORC_GRAPH_URL={shlex.quote(url)}"]
    if token_file:
        # The credential convention (docs/execution-model.md §6): a token file, never argv.
        lines.append(f"export TORC_GRAPH_TOKEN_FILE={shlex.quote(token_file)}")
    lines.append(f"cd {shlex.quote(str(cwd))} || exit 1")
    command = " ".join(shlex.quote(a) for a in worker)
    if nodes > 1:
        lines.append(f"exec srun --nodes={nodes} --ntasks-per-node=1 --overlap {command}")
    else:
        lines.append(f"exec {command}")
    return "\n".join(lines) + "\n"


def _one_line(field: str, value: str) -> None:
    if "\n" in value or "\r" in value or "\0" in value:
        raise SchedulerError(f"{field} must be one line: {value!r}")
