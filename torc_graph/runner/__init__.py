"""Job runners: workers that claim a workflow's jobs and run them.

* :mod:`.local` — :class:`~.local.LocalRunner`, the worker behind ``torc-graph run`` and
  ``torc-graph jobs run`` (the loop, interrupts, shutdown).
* :mod:`.conversation` — the runner's round trips: what to send when, taking the answers.
* :mod:`.options` — what a runner is told and what it reports.
* :mod:`.execution` — claim / complete / heartbeat / release (batched API, torc v0.6.4 fallback).
* :mod:`.link` — retries with backoff through server outages, without blocking the loop.
* :mod:`.slots` — the running job processes, their resources, and waiting on them.
* :mod:`.prefetch` — claimed jobs not started yet, and claim sizing.
* :mod:`.reporting` — completion and release items, causes, the report queue.
* :mod:`.heartbeat` — one lease renewal per interval for all the worker's jobs.
* :mod:`.walltime` — the end of the allocation (Slurm).
* :mod:`.node` — the worker's compute node document and events.
* :mod:`.scripts`, :mod:`.outputs` — workflow and recovery scripts; produced-file checks.
* :mod:`.signals` — SIGINT/SIGTERM handlers for the run.
* :mod:`.process` — one job's process: command rule, stdio files, process group, stats.
* :mod:`.resources` — CPUs, memory and GPUs of a worker.
* :mod:`.watchdog` — the guard process that kills a dead runner's jobs.
* :mod:`.workflow` — spec files and torc's client-side workflow start.
"""
