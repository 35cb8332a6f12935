"""Real-Slurm tests: a real torc_graph server (LiveServer, SQLite file), real sbatch / squeue /
sacct / scancel, and allocations whose workers reach the server over HTTP.

Skipped, with the reason, when Slurm is not usable here (start it with
``scripts/start-slurm.sh``; ``SLURM_CPUS=8`` lets several allocations run at once on a small
machine). Every test scancels what its workflows left in squeue.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from torc_graph.cli.main import cli
from torc_graph.client import Client, seg
from torc_graph.runner.workflow import create_workflow, start_workflow
from torc_graph.slurm import allocations as alloc_mod
from torc_graph.slurm import commands
from torc_graph.testing import LiveServer

_REASON = commands.missing_tools()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _REASON is None:
        return
    skip = pytest.mark.skip(reason=f"Slurm is not available ({_REASON}); start it with "
                                   "`sudo scripts/start-slurm.sh`")
    for item in items:
        if "tests/slurm" in str(item.fspath):
            item.add_marker(skip)


def node_cpus() -> int:
    """CPUs the Slurm node advertises."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True,
                         check=False).stdout.split()
    return int(out[0]) if out and out[0].isdigit() else 1


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.3) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class SlurmEnv:
    """One test's server, client, directory and helpers."""

    def __init__(self, server: LiveServer, tmp_path: Path):
        self.server = server
        self.url = server.url
        self.dir = tmp_path
        self.output = tmp_path / "output"
        self.client = Client(server.url)
        self.workflows: list[str] = []

    def create(self, spec: dict[str, Any], start: bool = True) -> str:
        wf = create_workflow(self.client, spec)
        self.workflows.append(wf)
        if start:
            start_workflow(self.client, wf)
        return wf

    def cli(self, *args: str, ok: bool = True) -> Any:
        result = CliRunner().invoke(cli, [*args, "--url", self.url], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    def schedule(self, wf: str, scheduler: str, n: int, *extra: str) -> list[str]:
        before = {a["scheduler_id"] for a in alloc_mod.allocations(self.client, wf)}
        self.cli("slurm", "schedule-nodes", wf, "--scheduler", scheduler,
                 "--num-allocations", str(n), "--output", str(self.output), *extra)
        return [a["scheduler_id"] for a in alloc_mod.allocations(self.client, wf)
                if a["scheduler_id"] not in before]

    def jobs(self, wf: str, **filters: Any) -> list[dict[str, Any]]:
        return list(self.client.iter_items(f"/workflows/{seg(wf)}/jobs", **filters))

    def results(self, wf: str) -> list[dict[str, Any]]:
        return list(self.client.iter_items(f"/workflows/{seg(wf)}/results"))

    def events(self, wf: str, **filters: Any) -> list[dict[str, Any]]:
        return list(self.client.iter_items(f"/workflows/{seg(wf)}/events", **filters))

    def wait_complete(self, wf: str, timeout: float) -> None:
        wait_for(lambda: self.client.is_complete(wf).get("is_complete"), timeout,
                 f"workflow {wf} to complete (jobs: "
                 f"{sorted((j['name'], j['status']) for j in self.jobs(wf))[:10]}...)")

    def wait_gone(self, job_ids: list[str], timeout: float = 60) -> None:
        def gone() -> bool:
            queue = commands.queue(job_ids)
            return all(e.state in commands.FINISHED_STATES for e in queue.values())
        wait_for(gone, timeout, f"Slurm jobs {job_ids} to leave squeue")

    def executed_by_allocation(self, wf: str) -> dict[str, set[str]]:
        """Slurm job id -> keys of the jobs its workers started."""
        nodes = {n["_id"]: str((n.get("scheduler") or {}).get("slurm_job_id"))
                 for n in self.client.iter_items(f"/workflows/{seg(wf)}/compute_nodes")}
        ran: dict[str, set[str]] = {}
        for edge in self.client.iter_items(f"/workflows/{seg(wf)}/edges/executed"):
            ran.setdefault(nodes[edge["_from"]], set()).add(edge["_to"].split("/")[-1])
        return ran

    def cleanup(self) -> None:
        ids = [a["scheduler_id"] for wf in self.workflows
               for a in alloc_mod.allocations(self.client, wf) if a.get("scheduler_id")]
        if ids:
            commands.cancel(ids)
            self.wait_gone(ids)
        self.client.close()


@pytest.fixture
def slurm_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlurmEnv]:
    monkeypatch.chdir(tmp_path)
    with LiveServer(f"sqlite:///{tmp_path / 'torc.db'}", workers=2,
                    log_path=tmp_path / "server.log") as server:
        # The CLI and clients of this process use the server's admin token (not a token of
        # ~/.config/torc_graph/token, which belongs to some other server).
        monkeypatch.setenv("TORC_GRAPH_TOKEN", server.token)
        env = SlurmEnv(server, tmp_path)
        try:
            yield env
        finally:
            env.cleanup()


def scheduler(name: str, walltime: str = "00:10:00", cpus: int = 1) -> dict[str, Any]:
    """A spec slurm_schedulers entry (v0.6.4 form) whose allocations have ``cpus`` CPUs."""
    return {"name": name, "account": "", "nodes": 1, "walltime": walltime,
            "extra": f"--cpus-per-task={cpus}"}


def spec(name: str, jobs: list[dict[str, Any]], schedulers: list[dict[str, Any]],
         buffer: int = 5, runtime: str = "PT1M", **runtimes: str) -> dict[str, Any]:
    """A v0.6.4 workflow spec; jobs default to the resource requirement ``rr`` (1 CPU,
    ``runtime``); ``runtimes`` adds more (name=runtime, 1 CPU)."""
    for job in jobs:
        job.setdefault("resource_requirements", "rr")
    return {"name": name, "user": "tester",
            "config": {"compute_node_expiration_buffer_seconds": buffer},
            "schedulers": {"slurm_schedulers": schedulers},
            "resource_requirements": [{"name": rr, "num_cpus": 1, "memory": "10m",
                                       "runtime": value}
                                      for rr, value in {"rr": runtime, **runtimes}.items()],
            "jobs": jobs}
