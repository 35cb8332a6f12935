"""Job runners: workers that claim a workflow's jobs and run them.

* :mod:`.local` — :class:`~.local.LocalRunner`, the worker behind ``torc-graph run`` and
  ``torc-graph jobs run`` (torc's worker protocol, event-driven).
* :mod:`.process` — one job's process: command rule, stdio files, process group, stats.
* :mod:`.resources` — CPUs, memory and GPUs of a worker.
* :mod:`.watchdog` — the guard process that kills a dead runner's jobs.
* :mod:`.workflow` — spec files and torc's client-side workflow start.
"""
