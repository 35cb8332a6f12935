#!/usr/bin/env python
"""Reads on big workflows: filters on a job's ``status`` against the same reads unfiltered.

Builds one workflow of N jobs per size in a fresh embedded SQLite file (1 % ``ready``, the rest
half ``done``, half ``blocked``; every job with the same resources, as a real workflow has) and
times, in CPU seconds of this process (median of ``--repeats``), each filtered read next to its
unfiltered baseline measured in the same run:

* ``count`` by status (``done``: half the jobs; ``ready``: 1 %) vs the unfiltered count;
* ``find(status, limit=1)`` vs ``find(limit=1)``;
* one page of ``GET /workflows/{wf}/jobs?status=...&limit=100`` (the engine call the route makes)
  vs the same page unfiltered;
* the dashboard's workflow list (a count per status) and pages sorted by ``name`` and
  ``status``.

    .venv/bin/python scripts/bench_reads.py                      # N = 10^5 and 10^6 (~2 min)
    .venv/bin/python scripts/bench_reads.py --sizes 100000 --json out.json

For a before/after comparison run it twice, once with ``PYTHONPATH`` naming an export of the
older tree (the script only uses the store and engine APIs both have).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from torc_graph.engine import dashboard, documents, queries, workflows
from torc_graph.store.sqlite import SQLiteStore

BATCH = 50_000


def build(path: Path, n: int) -> tuple[SQLiteStore, str]:
    """A store at ``path`` holding one workflow of ``n`` jobs (statuses as in the docstring)."""
    store = SQLiteStore(str(path), synchronous="NORMAL")
    wf = workflows.create_workflow(store, {"name": "bench_reads"})["_key"]
    internal = {"num_cpus": 1, "num_gpus": 0, "num_nodes": 1, "memory_bytes": 1 << 30,
                "runtime_seconds": 60, "scheduler_config_id": ""}
    for start in range(0, n, BATCH):
        store.insert_many("jobs", wf, [
            {"name": f"job{i:07d}", "command": "true", "internal": internal,
             "status": "ready" if i % 100 == 7 else ("done" if i % 2 else "blocked")}
            for i in range(start, min(n, start + BATCH))])
    return store, wf


def cpu(fn, repeats: int) -> float:
    """Median CPU seconds of ``fn()`` (one untimed warm-up call first)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def figures(store: SQLiteStore, wf: str, repeats: int) -> list[dict]:
    """(name, filtered seconds, baseline seconds) rows for one workflow."""

    def listing(**filters):
        return lambda: documents.list_documents(store, wf, "jobs", documents.Listing(
            limit=100, filters=filters))

    def sorted_page(field):
        return lambda: documents.list_documents(store, wf, "jobs", documents.Listing(
            limit=100, sort_by=field))

    count_all = cpu(lambda: store.count("jobs", wf), repeats)
    find_all = cpu(lambda: store.find("jobs", wf, limit=1), repeats)
    page_all = cpu(listing(), repeats)
    rows = [
        ("count(status=done)", lambda: store.count("jobs", wf, {"status": "done"}), count_all),
        ("count(status=ready)", lambda: store.count("jobs", wf, {"status": "ready"}), count_all),
        ("find(status=done, limit=1)",
         lambda: store.find("jobs", wf, {"status": "done"}, limit=1), find_all),
        ("find(status=ready, limit=1)",
         lambda: store.find("jobs", wf, {"status": "ready"}, limit=1), find_all),
        ("list_jobs?status=done&limit=100", listing(status="done"), page_all),
        ("list_jobs?status=ready&limit=100", listing(status="ready"), page_all),
        ("list_jobs_by_status(ready, limit=100)",
         lambda: queries.list_jobs_by_status(store, wf, "ready", limit=100), page_all),
        ("list_jobs?sort_by=name&limit=100", sorted_page("name"), page_all),
        ("list_jobs?sort_by=status&limit=100", sorted_page("status"), page_all),
        ("dashboard workflows (count per status)", lambda: dashboard.workflows(store), count_all),
    ]
    out = [{"figure": "count (unfiltered baseline)", "seconds": count_all},
           {"figure": "find(limit=1) (unfiltered baseline)", "seconds": find_all},
           {"figure": "list_jobs?limit=100 (unfiltered baseline)", "seconds": page_all}]
    for name, fn, base in rows:
        s = cpu(fn, repeats)
        out.append({"figure": name, "seconds": s, "baseline": base,
                    "ratio": s / base if base > 0 else None})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10**5, 10**6])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    report = {"load_before": os.getloadavg(), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="bench_reads_") as tmp:
        for n in args.sizes:
            t = time.time()
            store, wf = build(Path(tmp) / f"{n}.db", n)
            built = time.time() - t
            rows = figures(store, wf, args.repeats)
            store.close()
            report["sizes"][n] = rows
            print(f"\nN = {n:,} jobs (built in {built:.0f} s); CPU seconds, median of "
                  f"{args.repeats}; ratio = filtered / unfiltered baseline")
            print("| read | seconds | baseline | ratio |\n|---|---|---|---|")
            for r in rows:
                ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}"
                base = "" if "baseline" not in r else f"{r['baseline']:.4f}"
                print(f"| {r['figure']} | {r['seconds']:.4f} | {base} | {ratio} |")
            sys.stdout.flush()
    report["load_after"] = os.getloadavg()
    print(f"\nload average before {report['load_before']}, after {report['load_after']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
