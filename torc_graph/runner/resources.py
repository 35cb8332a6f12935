"""What a worker can run: CPUs, memory, GPUs, detected from the machine or given by the user.

The numbers use the units of torc's ``workerResources`` body: ``memory_gb`` in GiB (2**30 bytes,
the unit ``prepare_jobs_for_submission`` compares ``internal.memory_bytes`` against), integer
CPU and GPU counts.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import psutil

GIB = 1024**3


def detect_num_gpus() -> int:
    """The number of NVIDIA GPUs ``nvidia-smi -L`` lists, 0 if it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


@dataclass
class Resources:
    """An amount of worker resources; supports ``+``/``-`` and a fit test."""

    num_cpus: int
    memory_gb: float
    num_gpus: int = 0
    num_nodes: int = 1

    @classmethod
    def detect(cls, num_cpus: int | None = None, memory_gb: float | None = None,
               num_gpus: int | None = None) -> Resources:
        """The machine's resources (psutil CPUs and total memory, nvidia-smi GPUs); each
        given value replaces the detected one."""
        return cls(
            num_cpus=num_cpus if num_cpus is not None else (psutil.cpu_count() or 1),
            memory_gb=(memory_gb if memory_gb is not None
                       else round(psutil.virtual_memory().total / GIB, 3)),
            num_gpus=num_gpus if num_gpus is not None else detect_num_gpus(),
        )

    @classmethod
    def of_job(cls, job: dict[str, Any]) -> Resources:
        """What a claimed job holds while it runs (from ``job.internal``)."""
        internal = job.get("internal") or {}
        return cls(
            num_cpus=int(internal.get("num_cpus") or 0),
            memory_gb=int(internal.get("memory_bytes") or 0) / GIB,
            num_gpus=int(internal.get("num_gpus") or 0),
            num_nodes=int(internal.get("num_nodes") or 1),
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.num_cpus - other.num_cpus, self.memory_gb - other.memory_gb,
                         self.num_gpus - other.num_gpus, self.num_nodes)

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.num_cpus + other.num_cpus, self.memory_gb + other.memory_gb,
                         self.num_gpus + other.num_gpus, self.num_nodes)

    def holds(self, other: Resources) -> bool:
        """Whether ``other`` fits into this amount (CPUs, memory, GPUs)."""
        return (other.num_cpus <= self.num_cpus and other.num_gpus <= self.num_gpus
                and other.memory_gb <= self.memory_gb + 1e-9)

    def scaled(self, factor: float) -> Resources:
        """This amount times ``factor`` (CPU and GPU counts rounded down)."""
        return Resources(int(self.num_cpus * factor), self.memory_gb * factor,
                         int(self.num_gpus * factor), self.num_nodes)

    def can_claim(self) -> bool:
        """Whether asking the server for jobs can return anything (the server stops claiming
        once CPUs or memory reach zero)."""
        return self.num_cpus > 0 and self.memory_gb > 0

    def to_body(self, scheduler_config_id: str = "", time_limit: str | None = None) -> dict:
        """The ``workerResources`` body (compute node resources, claim requests)."""
        return {
            "num_cpus": int(self.num_cpus),
            "memory_gb": float(max(self.memory_gb, 0.0)),
            "num_gpus": int(self.num_gpus),
            "num_nodes": int(self.num_nodes),
            "time_limit": time_limit,
            "scheduler_config_id": scheduler_config_id,
        }
