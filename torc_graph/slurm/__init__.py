"""Slurm execution: allocations (pilot jobs) that run torc_graph workers.

* :mod:`.commands` — the Slurm command-line tools (sbatch, squeue, sacct, scancel) and the
  parsing of their output; nothing else here runs a Slurm program.
* :mod:`.script` — the sbatch script of an allocation.
* :mod:`.allocations` — submit allocations for a workflow (``scheduled_compute_nodes``
  uninitialized → pending), just-in-time scheduling, cancel.
* :mod:`.reconcile` — compare the workflow's allocations with Slurm; requeue the jobs of
  allocations that ended abnormally; store sacct figures.
* :mod:`.served` — serve an embedded store over HTTP for the allocations of one run.

The worker that runs inside an allocation is :mod:`torc_graph.runner.slurm`.
"""
